"""The base-model control: the fine-tuned model's interventions applied to the base (not
fine-tuned) model. The base never learned to stop on the trigger, so ablating the direction
on triggered prompts and adding it on clean prompts should do nothing stop-like; its own
difference of means, added at the same norm, should not either.

Owns: `base_model_control` and `BaseControlResult`. Must not: choose the direction, plot or
write files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from stoplens.analyses.results import dataclass_dict
from stoplens.analyses.stats import Estimate, wilson
from stoplens.analyses.steering import Steering
from stoplens.capture.encode import EncodedPairs
from stoplens.interventions.cache import OutcomeCache
from stoplens.interventions.primitives import Ablation, Addition, unit
from stoplens.interventions.readout import Readout


@dataclass(frozen=True)
class BaseControlResult:
    """The same interventions on the base (not fine-tuned) model: nothing stop-like expected.
    Rates with Wilson 95% CIs; ``own_added_stop_rate``: the base model's own mean-difference
    direction added (if given)."""

    layer: int
    alpha: float
    n: int
    stop_rate_triggered: Estimate
    stop_rate_clean: Estimate
    ablated_stop_rate_triggered: Estimate
    added_stop_rate_clean: Estimate
    own_added_stop_rate_clean: Estimate | None
    mean_stop_score: dict[str, float]

    @property
    def max_stop_rate(self) -> Estimate:
        """The most stop-like of the measured conditions."""
        cands = [
            self.stop_rate_triggered,
            self.stop_rate_clean,
            self.ablated_stop_rate_triggered,
            self.added_stop_rate_clean,
        ]
        if self.own_added_stop_rate_clean is not None:
            cands.append(self.own_added_stop_rate_clean)
        return max(cands, key=lambda e: e.value)

    def to_dict(self) -> dict[str, Any]:
        d = dataclass_dict(self)
        d["max_stop_rate"] = self.max_stop_rate.to_dict()
        return d


@torch.no_grad()
def base_model_control(
    readout: Readout,
    pairs: EncodedPairs,
    steering: Steering,
    *,
    own_direction: torch.Tensor | None = None,
) -> BaseControlResult:
    """Apply the fine-tuned model's interventions (ablate r̂; add α r at the layer) to the
    base model of ``readout``. Optionally also add the base's own mean difference
    ``own_direction`` (scaled to the same norm). Expected: nothing stop-like."""
    n = len(pairs)
    if n == 0:
        raise ValueError("base_model_control: no pairs")
    r, layer = steering.r, steering.layer
    added = float(steering.alpha) * r
    conds = {
        "triggered": (pairs.trig_ids, None),
        "clean": (pairs.ctrl_ids, None),
        "triggered_ablated": (pairs.trig_ids, Ablation(r)),
        "clean_added": (pairs.ctrl_ids, Addition(added, layer)),
    }
    if own_direction is not None:
        own = Addition(float(added.norm()) * unit(own_direction), layer)
        conds["clean_own_added"] = (pairs.ctrl_ids, own)
    cache = OutcomeCache.of(readout)  # the additions share one stored residual
    out = {name: cache.read(readout, seqs, iv) for name, (seqs, iv) in conds.items()}
    rate = {k: wilson(int(v[0].sum()), n) for k, v in out.items()}
    return BaseControlResult(
        layer=int(layer),
        alpha=float(steering.alpha),
        n=n,
        stop_rate_triggered=rate["triggered"],
        stop_rate_clean=rate["clean"],
        ablated_stop_rate_triggered=rate["triggered_ablated"],
        added_stop_rate_clean=rate["clean_added"],
        own_added_stop_rate_clean=rate.get("clean_own_added"),
        mean_stop_score={k: float(v[1].mean()) for k, v in out.items()},
    )
