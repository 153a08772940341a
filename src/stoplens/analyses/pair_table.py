"""Per-pair drill-down: what each TEST contrast pair looks like and how the model treats it.

Owns: `pair_table` and `PairTable` — for every aligned pair of a `DeltaSet`, the triggered
prompt as decoded tokens (the control prompt is the same sequence with ``control_token`` at
``trigger_pos``: pairs differ at exactly one position), the decision positions (the
post-instruction template positions; the last one predicts the first reply token), the
placement / control kind / control word, the fine-tuned model's stop score and greedy stop on
both prompts (one batched pass), and per-layer Δ statistics at the last prompt position:
‖Δ‖/‖h‖ (h = the control prompt's residual) and the leave-one-out cosine of the pair's Δ to
the mean Δ of the other pairs (the per-pair form of the low-rank analysis's ``loo_cos``).

Must not: plot, write files, or judge anything (the report renders it; verdicts come from
the aggregate analyses, never from single pairs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from stoplens.analyses.lowrank import loo_cosines
from stoplens.capture.deltaset import DeltaSet
from stoplens.capture.extract import last_logits, stop_score


@dataclass(frozen=True)
class PairRow:
    """One TEST pair. ``tokens``: the triggered prompt, one decoded string per token;
    ``rel_delta`` / ``cos_to_mean``: one value per captured layer (`PairTable.layers`), at
    the last prompt position (None where undefined, e.g. a zero vector)."""

    pair_id: str
    placement: str
    control_kind: str
    control: str
    alignment: str
    tokens: tuple[str, ...]
    control_token: str
    trigger_pos: int
    decision_positions: tuple[int, ...]
    stop_score_trig: float
    stop_score_ctrl: float
    stops_trig: bool
    stops_ctrl: bool
    rel_delta: tuple[float | None, ...]
    cos_to_mean: tuple[float | None, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "pair_id": self.pair_id,
            "placement": self.placement,
            "control_kind": self.control_kind,
            "control": self.control,
            "alignment": self.alignment,
            "tokens": list(self.tokens),
            "control_token": self.control_token,
            "trigger_pos": self.trigger_pos,
            "decision_positions": list(self.decision_positions),
            "stop_score_trig": self.stop_score_trig,
            "stop_score_ctrl": self.stop_score_ctrl,
            "stops_trig": self.stops_trig,
            "stops_ctrl": self.stops_ctrl,
            "rel_delta": list(self.rel_delta),
            "cos_to_mean": list(self.cos_to_mean),
        }


@dataclass(frozen=True)
class PairTable:
    """Per-pair rows of the TEST pairs, in the `DeltaSet`'s order. ``layers``: residual
    indices of ``rel_delta`` / ``cos_to_mean``; ``position``: where those are read."""

    layers: tuple[int, ...]
    rows: tuple[PairRow, ...]
    eos_id: int
    position: str = "last"

    @property
    def n(self) -> int:
        return len(self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "layers": list(self.layers),
            "position": self.position,
            "eos_id": self.eos_id,
            "stop_score": "log p(EOS) − log(1 − p(EOS)) at the last prompt position, fine-tuned model",
            "rel_delta": "‖Δ‖ / ‖h_control‖ at the last prompt position, per layer",
            "cos_to_mean": "cosine of Δ to the mean Δ of the other pairs (leave-one-out), per layer",
            "rows": [r.to_dict() for r in self.rows],
        }


def _finite(x: np.ndarray) -> tuple[float | None, ...]:
    return tuple(float(v) if np.isfinite(v) else None for v in x)


def pair_table(
    model: nn.Module,
    ds: DeltaSet,
    tokenizer,
    *,
    eos_id: int,
    batch_size: int = 32,
    progress: bool = False,
) -> PairTable:
    """The drill-down rows of every pair in ``ds`` (see the module docstring). ``model`` is
    the fine-tuned model the Δ set was captured on; its stop scores come from one batched
    last-position pass over the triggered and control prompts together."""
    pairs = ds.pairs
    n = len(pairs)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    logits = last_logits(
        model,
        [*pairs.trig_ids, *pairs.ctrl_ids],
        pad_id=pad,
        batch_size=batch_size,
        progress=progress,
        desc="pair table: stop scores",
    )
    scores = stop_score(logits, eos_id).numpy()
    stops = (logits.argmax(-1) == eos_id).numpy()
    delta = ds.delta("last")[:, :, 0].double().numpy()  # [n, k, d]
    h = ds.control("last")[:, :, 0].double().numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.linalg.norm(delta, axis=-1) / np.linalg.norm(h, axis=-1)  # [n, k]
    cos = np.stack([loo_cosines(delta[:, j]) for j in range(delta.shape[1])], axis=1)
    post = pairs.decision_positions("post")
    rows = []
    for i in range(n):
        ids = pairs.trig_ids[i]
        tp = pairs.trigger_pos[i]
        m = pairs.meta[i]
        rows.append(
            PairRow(
                pair_id=str(m.get("pair_id", i)),
                placement=str(m.get("placement", "unknown")),
                control_kind=str(m.get("control_kind")),
                control=str(m.get("control")),
                alignment=str(m.get("alignment", "?")),
                tokens=tuple(tokenizer.decode([t]) for t in ids),
                control_token=tokenizer.decode([pairs.ctrl_ids[i][tp]]),
                trigger_pos=int(tp),
                decision_positions=tuple(int(p) for p in post[i]),
                stop_score_trig=float(scores[i]),
                stop_score_ctrl=float(scores[n + i]),
                stops_trig=bool(stops[i]),
                stops_ctrl=bool(stops[n + i]),
                rel_delta=_finite(rel[i]),
                cos_to_mean=_finite(cos[i]),
            )
        )
    return PairTable(layers=tuple(ds.layers), rows=tuple(rows), eos_id=int(eos_id))
