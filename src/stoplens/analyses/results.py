"""What every result shares: a frozen dataclass written into results.json, and an observed
effect compared with a null sample.

Owns: `dataclass_dict` / `NO_JSON` (result dataclass -> JSON-ready dict), `NullComparison` /
`null_comparison` (observed effect vs a null sample, empirical p), `mean_ci` (a per-prompt
mean with its bootstrap CI) and `Nulls` (how many random directions and resamples, which
seed). Must not: run models, read files or plot. Intervals themselves
are `stoplens.analyses.stats`'.
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
    expected > null; ties count against the effect)."""

    observed: float
    null: tuple[float, ...]
    null_mean: float
    null_p5: float
    null_p95: float
    p_value: float

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


def null_comparison(observed: float, null: Sequence[float]) -> NullComparison:
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
    )


def mean_ci(x: np.ndarray, *, n_boot: int, seed: int) -> Estimate:
    """Mean over prompts of a 1-D array with its bootstrap 95% CI."""
    est = bootstrap_mean(np.asarray(x, dtype=np.float64).ravel(), n_boot=n_boot, seed=seed)
    assert isinstance(est, Estimate)
    return est


@dataclass(frozen=True)
class Nulls:
    """How an effect is judged: against ``n_random`` random directions of the same norm
    (>= 16, seeded by ``seed``) with bootstrap 95% CIs from ``n_boot`` resamples; the KL
    reference uses the first ``n_kl`` of them."""

    n_random: int = 32
    n_boot: int = 1000
    seed: int = 0
    n_kl: int = 8
    """Random directions (the first ``n_kl`` of them) whose ablation KL gives the KL
    reference ``kl_null_mean``: a mean beside the measured cost, not a test, so fewer are
    needed than for the p-values (each costs one full pass over the clean prompts)."""

    def __post_init__(self) -> None:
        if self.n_random < 16:
            raise ValueError(
                f"n_random must be >= 16 (got {self.n_random}): fewer random directions "
                "make the null's 95th percentile and p-value meaningless"
            )
        if self.n_kl < 1:
            raise ValueError(f"n_kl must be >= 1 (got {self.n_kl})")

    def directions(self, d: int) -> torch.Tensor:
        """The random unit directions [n_random, d] (`random_directions`)."""
        return random_directions(d, self.n_random, self.seed)

    def ci(self, x: np.ndarray) -> Estimate:
        """Mean over prompts with its bootstrap 95% CI."""
        return mean_ci(x, n_boot=self.n_boot, seed=self.seed)
