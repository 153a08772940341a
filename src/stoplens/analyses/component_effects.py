"""Normalised component effects: each pair's unpatched stop scores and the trigger's own
effect ``gap = s_trig - s_ctrl``, and patched stop scores turned into "0 = no effect, 1 = the
whole stop" per pair, with bootstrap CIs over the pairs (the formulas per mode are in
`stoplens.analyses.components`).

Owns: `ComponentEffects`, `Baseline` and `normalised_effects`. Must not: patch, rank, plot or
write files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from stoplens.analyses.results import NO_JSON, dataclass_dict
from stoplens.analyses.stats import Estimate, nan_bootstrap_mean
from stoplens.capture.encode import EncodedPairs
from stoplens.capture.extract import stop_score
from stoplens.capture.sites import Component
from stoplens.interventions.readout import Readout


@dataclass(frozen=True)
class ComponentEffects:
    """Normalised effects (0 = none, 1 = the whole stop; see `stoplens.analyses.components`)
    of patching each of ``components`` in one ``mode`` by one ``method`` ("exact" |
    "attribution").

    ``mean``, ``lo``, ``hi``, ``n``: [n_components, n_groups], mean over valid pairs with
    bootstrap 95% CIs; ``per_pair`` [n_pairs, n_components, n_groups] (not in JSON)."""

    mode: str
    method: str
    components: tuple[str, ...]
    groups: tuple[str, ...]
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n: np.ndarray
    per_pair: np.ndarray = field(metadata=NO_JSON)

    def estimate(self, component: str, group: str) -> Estimate:
        ci, gi = self.components.index(component), self.groups.index(group)
        return Estimate(
            float(self.mean[ci, gi]),
            float(self.lo[ci, gi]),
            float(self.hi[ci, gi]),
            int(self.n[ci, gi]),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclass_dict(self)


@dataclass(frozen=True, eq=False)
class Baseline:
    """Each pair's unpatched stop scores [n], the trigger's own effect ``gap = s_trig - s_ctrl``
    that normalises every patched score, and ``valid``: the pairs with |gap| >= min_gap."""

    s_trig: np.ndarray
    s_ctrl: np.ndarray
    gap: np.ndarray
    valid: np.ndarray

    @classmethod
    def measure(cls, readout: Readout, pairs: EncodedPairs, min_gap: float) -> Baseline:
        s_trig, s_ctrl = (
            stop_score(readout.logits(seqs), readout.eos_id).double().numpy()
            for seqs in (pairs.trig_ids, pairs.ctrl_ids)
        )
        gap = s_trig - s_ctrl
        return cls(s_trig, s_ctrl, gap, np.abs(gap) >= min_gap)


def normalised_effects(
    raw: torch.Tensor,
    s_target: np.ndarray,
    gap: np.ndarray,
    valid: np.ndarray,
    sign: float,
    *,
    mode: str,
    method: str,
    components: Sequence[Component],
    groups: Sequence[str],
    n_boot: int,
    seed: int,
) -> ComponentEffects:
    """Per-pair effects sign * (raw - s_target) / gap of patched stop scores ``raw``
    [n, n_components, n_groups] (NaN for pairs not ``valid``) and their bootstrap mean, CI
    and count over the pairs."""
    x = raw.double().numpy()
    per = sign * (x - s_target[:, None, None]) / gap[:, None, None]
    per[~valid] = np.nan
    mean, lo, hi, count = nan_bootstrap_mean(per, n_boot=n_boot, seed=seed)
    return ComponentEffects(
        mode=mode, method=method, components=tuple(c.name for c in components),
        groups=tuple(groups), mean=mean, lo=lo, hi=hi, n=count.astype(int), per_pair=per,
    )  # fmt: skip
