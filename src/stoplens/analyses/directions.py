"""Candidate $STOP directions (difference in means, per layer) and their selection.

Method (Arditi et al. 2024, as in refusal_direction's ``select_direction``):

1. On the TRAIN split, per residual layer l: r_l = mean(h_trig) - mean(h_ctrl) at the decision
   position (default the last prompt position), accumulated in float64.
2. On the VAL split, for every layer: directional ablation of r̂_l (every block input,
   attention output and MLP output, all positions) on the triggered prompts, activation
   addition of α r_l at residual[l] (all positions) on the clean prompts for each α in a grid,
   and KL(ablated || original) of the next-token distribution on the clean prompts.
3. Filters: the layer is a candidate (see below); ablation brings the triggered mean stop
   score below ``ablation_threshold`` AND leaves at most ``ablation_max_stop_fraction`` of the
   triggered prompts that stopped without it still stopping (a mean score can fall far while
   many prompts still stop, e.g. when the direction carries the signal for only some of them);
   addition lifts the clean mean stop score above
   ``addition_threshold`` for some α (the smallest such α is kept); KL <= ``kl_threshold``.
   Among layers passing every filter, the one whose ablation leaves the lowest triggered stop
   score is selected. If none passes, the layer passing the most filters is returned with
   ``passed=False`` and the reason says which filters failed.

Candidate layers. Never residual 0 (at the decision position Δ = 0 there) nor residual L
(there every stopping model writes its EOS readout: a direction found there restates
behaviour, as the logit lens does). Within 1..L−1, the caller may restrict the sweep to
``candidate_layers``, e.g. where activation patching finds the signal at the decision
position (`candidate_layers_from_patching`): refusal_direction's "never the last 20% of
layers" is then not needed (on SmolLM2 it barred exactly the layers where the signal arrives)
and is off by default (``prune_last_fraction`` = 0).

The test-split effect is measured elsewhere (`stoplens.analyses.steering`), never here.
Owns: the mean differences and the selection among layers (one layer's sweep and filters:
`stoplens.analyses.direction_sweep`). Must not: plot or write files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from stoplens.analyses.direction_sweep import LayerCandidate, SelectionCriteria, sweep_layer
from stoplens.analyses.results import NO_JSON, dataclass_dict
from stoplens.analyses.stats import jsonable
from stoplens.capture.encode import EncodedPairs
from stoplens.capture.extract import capture_residuals
from stoplens.interventions.cache import OutcomeCache
from stoplens.interventions.readout import Readout
from stoplens.models import arch
from stoplens.progress import bar as progress_bar


@dataclass(frozen=True)
class MeanDiffDirections:
    """Difference-in-means directions, one per residual layer.

    ``directions``: [n_layers, d_model] float32, mean(triggered) - mean(control) at
    ``position`` (means in float64), for residual indices ``layers``. ``mean_resid_norm``:
    [n_layers] mean ‖h‖ of the control activations (residual norms grow with depth).
    ``to_dict`` leaves the vectors out (save them with safetensors if needed)."""

    layers: tuple[int, ...]
    directions: torch.Tensor = field(metadata=NO_JSON)
    mean_resid_norm: torch.Tensor = field(metadata=NO_JSON)
    position: str = "last"
    n: int = 0

    def get(self, layer: int) -> torch.Tensor:
        """r at residual ``layer``, [d_model]."""
        return self.directions[self.layers.index(layer)]

    @property
    def norms(self) -> np.ndarray:
        return self.directions.double().norm(dim=-1).numpy()

    def cosine(self, other: MeanDiffDirections) -> dict[int, float]:
        """Per shared layer, cos(r_self, r_other)."""
        out = {}
        for layer in self.layers:
            if layer in other.layers:
                a, b = self.get(layer).double(), other.get(layer).double()
                den = float(a.norm() * b.norm())
                out[layer] = float(a @ b) / den if den > 1e-12 else float("nan")
        return out

    def to_dict(self) -> dict[str, Any]:
        norms = self.norms
        rel = norms / np.maximum(self.mean_resid_norm.double().numpy(), 1e-12)
        return jsonable(
            {
                "layers": list(self.layers),
                "position": self.position,
                "n": self.n,
                "norm": norms,
                "mean_resid_norm": self.mean_resid_norm,
                "relative_norm": rel,
            }
        )


@torch.no_grad()
def mean_diff_directions(
    model: nn.Module,
    pairs: EncodedPairs,
    *,
    position: str = "last",
    layers: Sequence[int] | None = None,
    pad_id: int = 0,
    batch_size: int = 32,
    chunk_size: int = 256,
) -> MeanDiffDirections:
    """Per-layer mean(triggered) - mean(control) at ``position`` ("last", "post" = mean over
    the post-instruction positions, or "trigger"), over all pairs, accumulated in float64.
    Pass control-vs-control pairs (`stoplens.capture.encode.swap_pairs`) for the null direction
    (control2 - control)."""
    if len(pairs) == 0:
        raise ValueError("mean_diff_directions: no pairs")
    L = arch.n_layers(model)
    layers = tuple(range(L + 1)) if layers is None else tuple(int(x) for x in layers)
    pos = pairs.decision_positions(position)
    d = arch.d_model(model)
    diff = torch.zeros(len(layers), d, dtype=torch.float64)
    norm_sum = torch.zeros(len(layers), dtype=torch.float64)
    count = 0
    kw: dict[str, Any] = dict(pad_id=pad_id, batch_size=batch_size, progress=False)
    for s in range(0, len(pairs), chunk_size):
        sl = slice(s, s + chunk_size)
        ht = capture_residuals(model, pairs.trig_ids[sl], pos[sl], layers, desc="trig", **kw)
        hc = capture_residuals(model, pairs.ctrl_ids[sl], pos[sl], layers, desc="ctrl", **kw)
        diff += (ht.double() - hc.double()).sum(dim=(0, 2))
        norm_sum += hc.double().norm(dim=-1).sum(dim=(0, 2))
        count += ht.shape[0] * ht.shape[2]
    directions = (diff / count).float()
    assert torch.isfinite(directions).all(), "mean difference contains NaN/inf"
    return MeanDiffDirections(
        layers=layers,
        directions=directions,
        mean_resid_norm=(norm_sum / count).float(),
        position=position,
        n=len(pairs),
    )


@dataclass(frozen=True)
class DirectionSelection:
    """The selected direction and the full VAL sweep behind the choice.

    ``direction``: [d_model] raw mean difference r at ``layer`` (TRAIN split); ``alpha``: the
    addition coefficient (vector added = alpha * r). ``baseline``: unintervened VAL stop
    rates / scores. ``passed``: the selected layer passes every filter."""

    layer: int
    alpha: float
    passed: bool
    reason: str
    candidates: tuple[LayerCandidate, ...]
    baseline: dict[str, float]
    thresholds: dict[str, Any]
    n_val: int
    directions: MeanDiffDirections
    direction: torch.Tensor = field(metadata=NO_JSON)

    @property
    def unit(self) -> torch.Tensor:
        return self.direction / self.direction.norm().clamp_min(1e-12)

    def to_dict(self) -> dict[str, Any]:
        d = dataclass_dict(self)
        d["direction_norm"] = float(self.direction.norm())
        return d


def allowed_layers(
    n_layers: int, prune_last_fraction: float = 0.0, candidates: Sequence[int] | None = None
) -> list[int]:
    """Residual indices eligible for selection: 1 <= l < L, l / L < 1 - prune_last_fraction,
    and (when given) l in ``candidates``."""
    keep = None if candidates is None else {int(c) for c in candidates}
    return [
        layer
        for layer in range(1, n_layers)
        if layer / n_layers < 1 - prune_last_fraction and (keep is None or layer in keep)
    ]


def _choose(
    cands: Sequence[LayerCandidate], baseline: dict[str, float], kl_threshold: float
) -> tuple[LayerCandidate, str]:
    """Among the layers passing every filter, the lowest ablated triggered stop score; if none
    passes, the layer passing the most filters (and the reason says which fail)."""
    eligible = [c for c in cands if c.filters["layer"] and c.filters["nonzero"]]
    if not eligible:
        raise ValueError("select_direction: every eligible layer has a zero mean difference")
    passing = [c for c in eligible if c.passed]
    key = lambda c: c.ablation_stop_score  # noqa: E731
    if passing:
        best = min(passing, key=key)
        return best, (
            f"layer {best.layer}: lowest ablated triggered stop score "
            f"({best.ablation_stop_score:.3g}; unablated {baseline['triggered_stop_score']:.3g}) "
            f"among {len(passing)} layer(s) passing all filters "
            f"{sorted(c.layer for c in passing)}; addition α={best.alpha:g} gives clean stop "
            f"score {best.addition_stop_score:.3g} (unsteered {baseline['clean_stop_score']:.3g}); "
            f"KL {best.kl:.3g} <= {kl_threshold:g}"
        )
    best = min(eligible, key=lambda c: (-sum(c.filters.values()), key(c)))
    failed = [k for k, v in best.filters.items() if not v]
    return best, (
        f"NO layer passes every filter; layer {best.layer} passes the most (fails: "
        f"{', '.join(failed)}) with ablated triggered stop score "
        f"{best.ablation_stop_score:.3g}, addition stop score {best.addition_stop_score:.3g} "
        f"at α={best.alpha:g}, KL {best.kl:.3g}"
    )


def _check_selection(
    directions: MeanDiffDirections,
    val_pairs: EncodedPairs,
    criteria: SelectionCriteria,
    ok_layers: set[int],
    n_layers: int,
) -> None:
    if len(val_pairs) == 0:
        raise ValueError("select_direction: no validation pairs")
    if not criteria.alphas:
        raise ValueError("select_direction: empty alpha grid")
    if not ok_layers & set(directions.layers):
        raise ValueError(
            f"no eligible layer: a model with {n_layers} layers, prune_last_fraction="
            f"{criteria.prune_last_fraction} and candidates {criteria.candidate_layers} leaves "
            f"none of {directions.layers}; lower the fraction or widen the candidates"
        )


def _baseline(
    readout: Readout, cache: OutcomeCache, val_pairs: EncodedPairs
) -> tuple[torch.Tensor, dict[str, float]]:
    """The clean prompts' full next-token logits [n, vocab] (for KL) and the unintervened
    stop rates and mean stop scores."""
    clean_logits = readout.logits(val_pairs.ctrl_ids)
    s_t, sc_t = cache.read(readout, val_pairs.trig_ids, None)
    s_c, sc_c = cache.store(val_pairs.ctrl_ids, None, clean_logits)
    return clean_logits, {
        "triggered_stop_rate": float(s_t.mean()),
        "triggered_stop_score": float(sc_t.mean()),
        "clean_stop_rate": float(s_c.mean()),
        "clean_stop_score": float(sc_c.mean()),
    }


@torch.no_grad()
def select_direction(
    readout: Readout,
    directions: MeanDiffDirections,
    val_pairs: EncodedPairs,
    *,
    criteria: SelectionCriteria = SelectionCriteria(),
    cache: OutcomeCache | None = None,
    progress: bool = False,
) -> DirectionSelection:
    """Sweep the candidate layers of ``directions`` on ``val_pairs`` and select one (module
    doc). Layers outside ``criteria.candidate_layers`` are reported as candidates failing the
    "layer" filter without being swept. ``cache``: an `OutcomeCache` of the readout's model to
    share (additions at one layer then run from its stored residual)."""
    f = criteria
    L = arch.n_layers(readout.model)
    ok_layers = set(allowed_layers(L, f.prune_last_fraction, f.candidate_layers))
    _check_selection(directions, val_pairs, f, ok_layers, L)
    cache = OutcomeCache.of(readout) if cache is None else cache
    clean_logits, baseline = _baseline(readout, cache, val_pairs)
    cands = []
    n_swept = len(ok_layers & set(directions.layers))
    desc = "causal: direction selection (layers)"
    with progress_bar(total=n_swept, desc=desc, enabled=progress) as bar:
        for layer in directions.layers:
            r = directions.get(layer).float()
            norm = float(r.norm())
            if layer in ok_layers and norm >= 1e-8:
                rate = baseline["triggered_stop_rate"]
                cands.append(
                    sweep_layer(readout, cache, val_pairs, layer, r, clean_logits, rate, f)
                )
            else:  # not swept (fails the layer filter), or nothing to ablate or add
                filters = {"layer": layer in ok_layers, "nonzero": norm >= 1e-8}
                cands.append(LayerCandidate(layer, norm, filters))
            if layer in ok_layers:
                bar.update(1)
    best, reason = _choose(cands, baseline, f.kl_threshold)
    assert best.alpha is not None
    return DirectionSelection(
        layer=best.layer,
        alpha=float(best.alpha),
        passed=best.passed,
        reason=reason,
        candidates=tuple(cands),
        baseline=baseline,
        thresholds={
            "kl_threshold": f.kl_threshold,
            "prune_last_fraction": f.prune_last_fraction,
            "ablation_threshold": f.ablation_threshold,
            "ablation_max_stop_fraction": f.ablation_max_stop_fraction,
            "addition_threshold": f.addition_threshold,
            "alphas": [float(a) for a in f.alphas],
            "allowed_layers": sorted(ok_layers),
            "candidate_layers": None if f.candidate_layers is None else sorted(f.candidate_layers),
        },
        n_val=len(val_pairs),
        directions=directions,
        direction=directions.get(best.layer).float().clone(),
    )
