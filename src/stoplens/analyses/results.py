"""What every result shares: a frozen dataclass written into results.json, and an observed
effect compared with a null sample.

Owns: `dataclass_dict` / `NO_JSON` (result dataclass -> JSON-ready dict), `NullComparison` /
`null_comparison` (observed effect vs a null sample, empirical p), `mean_ci` (a per-prompt
mean with its bootstrap CI), `Nulls` (how many random directions, prompts and resamples,
which seed) and `null_prompts` (the prompts a random null runs on). Must not: run models,
read files or plot. Intervals themselves are `stoplens.analyses.stats`'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from stoplens.analyses.stats import Estimate, bootstrap_mean, jsonable
from stoplens.interventions.primitives import random_directions

NO_JSON = {"json": False}
"""``field(metadata=NO_JSON)``: a dataclass field `dataclass_dict` leaves out (raw tensors)."""


def dataclass_dict(obj: Any) -> dict[str, Any]:
    """JSON-ready dict of a result dataclass (`stoplens.analyses.stats.jsonable` per field),
    leaving out fields marked ``field(metadata=NO_JSON)`` (raw tensors kept for the caller)."""
    return {
        f.name: jsonable(getattr(obj, f.name)) for f in fields(obj) if f.metadata.get("json", True)
    }


@dataclass(frozen=True)
class NullComparison:
    """An observed effect against a null distribution of the same effect (e.g. random
    directions). ``p_value`` = (1 + #{null >= observed}) / (1 + n_null) (one-sided, effect
    expected > null; ties count against the effect). ``n_prompts``: how many prompts both the
    observed effect and the null were measured on (`null_prompts`; None: not recorded)."""

    observed: float
    null: tuple[float, ...]
    null_mean: float
    null_p5: float
    null_p95: float
    p_value: float
    n_prompts: int | None = None

    @property
    def n_null(self) -> int:
        return len(self.null)

    @property
    def beyond_null(self) -> bool:
        """Observed effect above the null's 95th percentile."""
        return self.observed > self.null_p95

    def to_dict(self) -> dict[str, Any]:
        d = dataclass_dict(self)
        d["n_null"] = self.n_null
        d["beyond_null"] = self.beyond_null
        return d


def null_comparison(
    observed: float, null: Sequence[float], n_prompts: int | None = None
) -> NullComparison:
    """Compare ``observed`` with the ``null`` sample (see `NullComparison`)."""
    x = np.asarray(list(null), dtype=np.float64)
    if x.size == 0:
        raise ValueError("null_comparison: empty null")
    p = (1 + int((x >= observed).sum())) / (1 + x.size)
    p5, p95 = np.percentile(x, [5, 95])
    return NullComparison(
        observed=float(observed),
        null=tuple(float(v) for v in x),
        null_mean=float(x.mean()),
        null_p5=float(p5),
        null_p95=float(p95),
        p_value=float(p),
        n_prompts=None if n_prompts is None else int(n_prompts),
    )


def null_prompts(labels: Sequence[str], max_prompts: int | None, seed: int) -> np.ndarray:
    """The indices (sorted) of the prompts a random null runs on: all of them when there are
    at most ``max_prompts`` (or it is None), else ``max_prompts`` of them stratified by
    ``labels`` (e.g. the trigger placement): each label keeps its share, the prompts within a
    label drawn at random (seeded).

    Every random direction is a full pass over its prompts, so on a real model the nulls were
    the largest part of the causal suite. The rank test stays exact on a subset: the observed
    effect it ranks is measured on the same prompts as the null (`NullComparison.n_prompts`);
    the effect's estimate and CI still use every prompt."""
    n = len(labels)
    if max_prompts is None or n <= max_prompts:
        return np.arange(n)
    if max_prompts < 1:
        raise ValueError(f"max_prompts must be >= 1 or None (got {max_prompts})")
    rng = np.random.default_rng(seed)
    key = np.empty(n)
    for label in sorted(set(labels)):
        idx = np.array([i for i, x in enumerate(labels) if x == label])
        order = rng.permutation(len(idx))
        # the j-th drawn prompt of a label sits at (j + u) / size: taking the smallest keys
        # keeps every label's share of the subset (to within one prompt)
        key[idx[order]] = (np.arange(len(idx)) + rng.random(len(idx))) / len(idx)
    return np.sort(np.argsort(key, kind="stable")[:max_prompts])


def mean_ci(x: np.ndarray, *, n_boot: int, seed: int) -> Estimate:
    """Mean over prompts of a 1-D array with its bootstrap 95% CI."""
    est = bootstrap_mean(np.asarray(x, dtype=np.float64).ravel(), n_boot=n_boot, seed=seed)
    assert isinstance(est, Estimate)
    return est


@dataclass(frozen=True)
class Nulls:
    """How an effect is judged: against ``n_random`` random directions of the same norm
    (>= 16, seeded by ``seed``), each run on at most ``max_prompts`` of the prompts
    (`null_prompts`; None: all), with bootstrap 95% CIs from ``n_boot`` resamples; the KL
    reference uses the first ``n_kl`` of them."""

    n_random: int = 32
    n_boot: int = 1000
    seed: int = 0
    n_kl: int = 8
    """Random directions (the first ``n_kl`` of them) whose ablation KL gives the KL
    reference ``kl_null_mean``: a mean beside the measured cost, not a test, so fewer are
    needed than for the p-values (each costs one full pass over the clean prompts)."""
    max_prompts: int | None = 32
    """On SmolLM2-135M-Instruct (95 TEST pairs) the 32 directions' passes were 6.2 of the
    causal suite's 28 minutes; on 48 prompts 2.2 of 14 minutes; on 32 (stratified by
    placement, ~4-5 per placement), in batches sized against padding, 1.3 of 9.3 (32 alone
    saved nothing: they were one batch padded to the longest prompt). The observed effect
    is ranked on the same prompts."""
    pair_ids: frozenset[str] | None = None
    """Run the null only on the pairs with these ids (when at least 8 of the pairs have
    one), e.g. a held-out split on the pairs of the main effects' null: the random
    directions' ablations of those pairs are then already known (`OutcomeCache`)."""

    def __post_init__(self) -> None:
        if self.n_random < 16:
            raise ValueError(
                f"n_random must be >= 16 (got {self.n_random}): fewer random directions "
                "make the null's 95th percentile and p-value meaningless"
            )
        if self.n_kl < 1:
            raise ValueError(f"n_kl must be >= 1 (got {self.n_kl})")
        if self.max_prompts is not None and self.max_prompts < 8:
            raise ValueError(f"max_prompts must be >= 8 or None (got {self.max_prompts})")

    def directions(self, d: int) -> torch.Tensor:
        """The random unit directions [n_random, d] (`random_directions`)."""
        return random_directions(d, self.n_random, self.seed)

    def prompts(self, labels: Sequence[str], ids: Sequence[str]) -> np.ndarray:
        """The indices of the prompts (labelled ``labels``, pair ids ``ids``) the null runs
        on: those in ``pair_ids`` (all when it is None, or when fewer than 8 are), then
        `null_prompts` of them."""
        cand = list(range(len(labels)))
        if self.pair_ids is not None:
            keep = [i for i in cand if ids[i] in self.pair_ids]
            if len(keep) >= 8:
                cand = keep
        chosen = null_prompts([labels[i] for i in cand], self.max_prompts, self.seed)
        return np.asarray(cand, dtype=np.int64)[chosen]

    def ci(self, x: np.ndarray) -> Estimate:
        """Mean over prompts with its bootstrap 95% CI."""
        return mean_ci(x, n_boot=self.n_boot, seed=self.seed)
