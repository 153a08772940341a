"""One layer of the direction selection sweep (`stoplens.analyses.directions`, steps 2-3 of
its method) on the VAL split: ablate r̂ on the triggered prompts, add α r at residual[l] on
the clean ones for each α of the grid, measure the KL cost of the ablation on the clean ones,
and apply the filters.

Owns: `SelectionCriteria`, `AlphaScore`, `LayerCandidate` and `sweep_layer`. Must not: choose
among layers (`stoplens.analyses.directions`), plot or write files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from stoplens.analyses.results import dataclass_dict
from stoplens.capture.encode import EncodedPairs
from stoplens.capture.extract import kl_divergence
from stoplens.interventions.cache import OutcomeCache
from stoplens.interventions.primitives import Ablation, Addition
from stoplens.interventions.readout import Readout


@dataclass(frozen=True)
class SelectionCriteria:
    """What the selection sweeps and how it filters (`stoplens.analyses.directions`): the α
    grid, the KL, ablation and addition thresholds, ``prune_last_fraction`` and, optionally,
    the ``candidate_layers`` to restrict the sweep to."""

    alphas: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    kl_threshold: float = 0.1
    prune_last_fraction: float = 0.0
    ablation_threshold: float = 0.0
    ablation_max_stop_fraction: float = 0.1
    addition_threshold: float = 0.0
    candidate_layers: tuple[int, ...] | None = None


@dataclass(frozen=True)
class AlphaScore:
    """Activation addition of α r on the clean VAL prompts."""

    alpha: float
    stop_rate: float
    stop_score: float

    def to_dict(self) -> dict[str, Any]:
        return dataclass_dict(self)


@dataclass(frozen=True)
class LayerCandidate:
    """One layer of the selection sweep (VAL split). Scores are means over prompts;
    ``filters`` says which selection filters this layer passes."""

    layer: int
    norm: float
    filters: dict[str, bool]
    ablation_stop_rate: float | None = None
    ablation_stop_score: float | None = None
    addition: tuple[AlphaScore, ...] = ()
    alpha: float | None = None
    addition_stop_rate: float | None = None
    addition_stop_score: float | None = None
    kl: float | None = None

    @property
    def passed(self) -> bool:
        return all(self.filters.values())

    def to_dict(self) -> dict[str, Any]:
        d = dataclass_dict(self)
        d["passed"] = self.passed
        return d


def sweep_layer(
    readout: Readout,
    cache: OutcomeCache,
    val_pairs: EncodedPairs,
    layer: int,
    r: torch.Tensor,
    clean_logits: torch.Tensor,
    triggered_rate: float,
    f: SelectionCriteria,
) -> LayerCandidate:
    """Ablate r̂ on the triggered VAL prompts, add α r for each α on the clean ones, measure
    the KL cost of the ablation on the clean ones, and apply the filters."""
    trig, clean = val_pairs.trig_ids, val_pairs.ctrl_ids
    abl = Ablation(r)
    s_a, sc_a = cache.read(readout, trig, abl)
    kl = float(kl_divergence(readout.logits(clean, abl), clean_logits).mean())
    sweep = []
    for a in f.alphas:
        s_x, sc_x = cache.read(readout, clean, Addition(float(a) * r, layer))
        sweep.append(AlphaScore(float(a), float(s_x.mean()), float(sc_x.mean())))
    good = [s for s in sweep if s.stop_score > f.addition_threshold]
    # the smallest α that induces stopping; else the α that comes closest
    chosen = min(good, key=lambda s: s.alpha) if good else max(sweep, key=lambda s: s.stop_score)
    filters = {
        "layer": True,
        "nonzero": True,
        "ablation": float(sc_a.mean()) < f.ablation_threshold
        and float(s_a.mean()) <= f.ablation_max_stop_fraction * triggered_rate,
        "addition": bool(good),
        "kl": kl <= f.kl_threshold,
    }
    return LayerCandidate(
        layer=layer,
        norm=float(r.norm()),
        ablation_stop_rate=float(s_a.mean()),
        ablation_stop_score=float(sc_a.mean()),
        addition=tuple(sweep),
        alpha=chosen.alpha,
        addition_stop_rate=chosen.stop_rate,
        addition_stop_score=chosen.stop_score,
        kl=kl,
        filters=filters,
    )
