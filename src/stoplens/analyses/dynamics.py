"""Training dynamics: how stopping and its direction appear over fine-tuning checkpoints.

Per checkpoint: the triggered stop rate and false-stop rate, the drop in stop rate when a
fixed direction (e.g. the final model's) and the checkpoint's own difference of means are
ablated, the own direction's norm and its cosine to the fixed one, and any extra metrics the
caller computes (e.g. the layerwise peak from the correlational analyses).

Owns: `checkpoint_dynamics` and `CheckpointSeries`. Must not: load checkpoints itself (the
caller passes models or loaders), plot or write files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from stoplens.analyses.directions import mean_diff_directions
from stoplens.analyses.generalization import direction_cosine
from stoplens.analyses.results import dataclass_dict
from stoplens.analyses.stats import Estimate, wilson
from stoplens.capture.encode import EncodedPairs
from stoplens.interventions.cache import OutcomeCache
from stoplens.interventions.primitives import Ablation, Intervention, unit
from stoplens.interventions.readout import Readout
from stoplens.progress import bar as progress_bar

ModelLike = nn.Module | Callable[[], nn.Module]
Metric = Callable[[int, nn.Module], float | None]


@dataclass(frozen=True)
class CheckpointSeries:
    """Per training checkpoint (in ``steps`` order): triggered stop rate and false-stop rate
    (Wilson CIs), the drop in stop rate when the direction is ablated (``fixed``: a given
    direction, e.g. the final model's; ``own``: the checkpoint's own mean difference at
    ``layer``), the own direction's norm and cosine to the fixed one, and any extra metrics
    (name -> one value per checkpoint, None where unavailable)."""

    steps: tuple[int, ...]
    layer: int
    stop_rate: tuple[Estimate, ...]
    false_stop_rate: tuple[Estimate, ...]
    ablation_effect_fixed: tuple[float | None, ...]
    ablation_effect_own: tuple[float | None, ...]
    own_norm: tuple[float | None, ...]
    cos_own_to_fixed: tuple[float | None, ...]
    metrics: dict[str, tuple[float | None, ...]]

    def to_dict(self) -> dict[str, Any]:
        return dataclass_dict(self)


def _one_checkpoint(
    readout: Readout,
    pairs: EncodedPairs,
    layer: int,
    direction: torch.Tensor | None,
    fit_pairs: EncodedPairs | None,
    position: str,
    cache: OutcomeCache | None = None,
) -> dict[str, Any]:
    """The row of one checkpoint (see `CheckpointSeries`), metrics aside; ``cache``: outcomes
    already computed on this checkpoint's model (e.g. the final model's)."""
    n = len(pairs)

    def outcomes(seqs, iv: Intervention | None = None):
        return readout.outcomes(seqs, iv) if cache is None else cache.read(readout, seqs, iv)

    s_t, _ = outcomes(pairs.trig_ids)
    s_c, _ = outcomes(pairs.ctrl_ids)
    row: dict[str, Any] = {
        "stop": wilson(int(s_t.sum()), n),
        "false": wilson(int(s_c.sum()), n),
        "fixed": None,
        "own": None,
        "own_norm": None,
        "cos": None,
    }

    def effect(v: torch.Tensor) -> float:
        return float(s_t.mean() - outcomes(pairs.trig_ids, Ablation(unit(v)))[0].mean())

    if direction is not None:
        row["fixed"] = effect(direction)
    if fit_pairs is not None:
        own = mean_diff_directions(
            readout.model, fit_pairs, position=position, layers=[layer],
            pad_id=readout.pad_id, batch_size=readout.batch_size,
        ).get(layer)  # fmt: skip
        row["own_norm"] = float(own.norm())
        if float(own.norm()) > 1e-8:
            row["own"] = effect(own)
            if direction is not None:
                row["cos"] = direction_cosine(own, direction)
    return row


@torch.no_grad()
def checkpoint_dynamics(
    checkpoints: Sequence[tuple[int, ModelLike]],
    pairs: EncodedPairs,
    *,
    eos_id: int,
    layer: int,
    pad_id: int = 0,
    direction: torch.Tensor | None = None,
    fit_pairs: EncodedPairs | None = None,
    position: str = "last",
    metrics: Mapping[str, Metric] | None = None,
    batch_size: int = 32,
    caches: Sequence[OutcomeCache] = (),
    progress: bool = False,
) -> CheckpointSeries:
    """Per checkpoint (``(step, model)``; a zero-argument loader may stand in for the model
    so that only one is in memory at a time): stop rate and false-stop rate on ``pairs``, the
    ablation effect of ``direction`` and/or of the checkpoint's own mean difference at
    ``layer`` fitted on ``fit_pairs``, and ``metrics[name](step, model)`` for each extra
    metric (e.g. layerwise peak, PC1 share, EOS rank from the correlational analyses).
    ``caches``: `OutcomeCache`s of models a checkpoint may be (a loader may return the final
    model itself): that checkpoint reads its outcomes through the cache of its model.
    ``progress``: a bar with one tick per checkpoint."""
    if direction is None and fit_pairs is None:
        raise ValueError("checkpoint_dynamics: give a direction, fit_pairs, or both")
    metrics = dict(metrics or {})
    rows: list[dict[str, Any]] = []
    bar = progress_bar(total=len(checkpoints), desc="causal: checkpoints", enabled=progress)
    for step, m in sorted(checkpoints, key=lambda x: x[0]):
        model = m if isinstance(m, nn.Module) else m()
        readout = Readout(model, eos_id, pad_id, batch_size)
        cache = next((c for c in caches if c.model is model), None)
        row = _one_checkpoint(readout, pairs, layer, direction, fit_pairs, position, cache)
        values = {name: f(int(step), model) for name, f in metrics.items()}
        row["step"] = int(step)
        row["metrics"] = {k: None if v is None else float(v) for k, v in values.items()}
        rows.append(row)
        bar.update(1)
        del model, readout
    bar.close()
    col = lambda key: tuple(r[key] for r in rows)  # noqa: E731
    return CheckpointSeries(
        steps=col("step"),
        layer=int(layer),
        stop_rate=col("stop"),
        false_stop_rate=col("false"),
        ablation_effect_fixed=col("fixed"),
        ablation_effect_own=col("own"),
        own_norm=col("own_norm"),
        cos_own_to_fixed=col("cos"),
        metrics={k: tuple(r["metrics"][k] for r in rows) for k in metrics},
    )
