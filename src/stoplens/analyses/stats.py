"""Statistics shared by the analyses: seeded bootstrap CIs over prompts, Wilson intervals,
z-scores and ranks against a vocabulary, and JSON-ready conversion.

Owns: how an interval is computed and how a number is written into results.json (NaN/inf →
None). Must not: run models, read files or plot.

Bootstrap. Percentile intervals over prompts (the unit of resampling is the prompt, never a
position or a layer). Resamples are drawn once per call as a multinomial count matrix
``W [n_boot, n]`` (rows sum to 1), so the bootstrap of any mean is one matrix product ``W @ x``
and several statistics of the same call share the same resamples (ratios of means, cosines of
means). Everything is seeded; the same seed gives the same interval.

Two paths for Δ-set statistics:

* in memory (the analyses here; n ≈ 64–500): every Δ is kept (`stoplens.capture.deltaset`)
  because bootstrap CIs over prompts, leave-one-out cosines and per-prompt readouts need them;
* streaming (`DeltaStats` in benchmarks/streaming.py, outside the package): n, Σ Δ, Σ ‖Δ‖,
  Σ ‖h‖ and the Gram ΔᵀΔ per layer in float64, updated batch by batch at flat memory (10,000+
  pairs). It gives the same point estimates (‖mean Δ‖, mean ‖Δ‖, mean ‖h‖, uncentred energy, centred PCA, top
  direction; tests check the agreement) but not the CIs that need every Δ.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_N_BOOT = 1000
DEFAULT_CI = 0.95


# --- estimates ------------------------------------------------------------------------------


def _clean(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its ``ci`` interval [lo, hi] over ``n`` units (prompts)."""

    value: float
    lo: float
    hi: float
    n: int

    def to_dict(self) -> dict:
        return {
            "value": _clean(self.value),
            "lo": _clean(self.lo),
            "hi": _clean(self.hi),
            "n": self.n,
        }


@dataclass(frozen=True, eq=False)
class EstimateSeries:
    """Estimates along an axis (usually layers): ``value``, ``lo``, ``hi`` float arrays [k]."""

    value: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n: int

    def __len__(self) -> int:
        return len(self.value)

    def __getitem__(self, i: int) -> Estimate:
        return Estimate(float(self.value[i]), float(self.lo[i]), float(self.hi[i]), self.n)

    def to_dict(self) -> dict:
        return {
            "value": jsonable(self.value),
            "lo": jsonable(self.lo),
            "hi": jsonable(self.hi),
            "n": self.n,
        }

    @staticmethod
    def stack(items: Sequence[Estimate]) -> EstimateSeries:
        n = items[0].n if items else 0
        return EstimateSeries(
            np.array([e.value for e in items], dtype=float),
            np.array([e.lo for e in items], dtype=float),
            np.array([e.hi for e in items], dtype=float),
            n,
        )


def jsonable(obj: Any) -> Any:
    """``obj`` as JSON-ready Python: numpy arrays/scalars to lists/numbers, NaN/inf to None,
    objects with ``to_dict`` through it, dataclasses field by field, tuples to lists."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if hasattr(obj, "to_dict") and callable(obj.to_dict):
        return obj.to_dict()
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _clean(float(obj))
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):  # torch tensors without importing torch here
        return jsonable(obj.tolist())
    raise TypeError(f"jsonable: cannot convert {type(obj).__name__}")


# --- bootstrap ------------------------------------------------------------------------------


def resample_weights(n: int, n_boot: int = DEFAULT_N_BOOT, seed: int = 0) -> np.ndarray:
    """Bootstrap resampling weights [n_boot, n] float64: row b holds count_i / n of a resample
    of n prompts drawn with replacement, so ``W @ x`` is the resampled mean of ``x`` [n, ...]."""
    if n <= 0:
        raise ValueError("bootstrap needs at least one item")
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)
    return counts.astype(np.float64) / n


def percentile_interval(boot: np.ndarray, ci: float = DEFAULT_CI) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of bootstrap replicates ``boot`` [n_boot, ...] -> (lo, hi) [...]."""
    a = (1.0 - ci) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN (-> None)
        lo, hi = np.nanquantile(boot, [a, 1.0 - a], axis=0)
    return lo, hi


def bias_corrected_interval(
    boot: np.ndarray,
    estimate: np.ndarray | float,
    ci: float = DEFAULT_CI,
    bounds: tuple[float, float] = (-np.inf, np.inf),
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of ``boot`` shifted by the bootstrap's bias estimate
    (mean of the replicates − ``estimate``).

    For statistics that resampling itself inflates. An example is the top-k energy share of an
    SVD: a resample repeats rows, which concentrates the spectrum. There the plain percentile
    interval can lie entirely above the estimate it should cover. ``bounds``: the statistic's
    range, which the shifted interval is clipped to.
    """
    lo, hi = percentile_interval(boot, ci)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        bias = np.nanmean(boot, axis=0) - np.asarray(estimate, dtype=np.float64)
    return np.clip(lo - bias, *bounds), np.clip(hi - bias, *bounds)


def bootstrap_mean(
    x: np.ndarray, n_boot: int = DEFAULT_N_BOOT, seed: int = 0, ci: float = DEFAULT_CI
) -> Estimate | EstimateSeries:
    """Mean over prompts with a percentile bootstrap CI. ``x``: [n] -> Estimate;
    [n, k] -> EstimateSeries over k (all columns share the resamples)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    w = resample_weights(n, n_boot, seed)
    flat = x.reshape(n, -1)
    boot = w @ flat
    lo, hi = percentile_interval(boot, ci)
    value = flat.mean(0)
    if x.ndim == 1:
        return Estimate(float(value[0]), float(lo[0]), float(hi[0]), n)
    return EstimateSeries(value, lo, hi, n)


def nan_bootstrap_mean(
    x: np.ndarray, *, n_boot: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cell-wise mean over pairs of ``x`` [n, ...] ignoring NaN (excluded pairs), with
    percentile bootstrap 95% CIs from one set of pair resamples shared by every cell:
    (mean, lo, hi, n) each of shape ``x.shape[1:]``."""
    n, shape = x.shape[0], x.shape[1:]
    flat = x.reshape(n, -1)
    valid = ~np.isnan(flat)
    vals = np.where(valid, flat, 0.0)
    count = valid.sum(axis=0)
    w = resample_weights(n, n_boot, seed)  # [n_boot, n]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = vals.sum(axis=0) / count
        boot = (w @ vals) / (w @ valid)  # NaN where a resample holds no valid pair
    lo, hi = percentile_interval(boot)
    return mean.reshape(shape), lo.reshape(shape), hi.reshape(shape), count.reshape(shape)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two equal-length vectors (ties get their mean rank; pairs
    with a NaN are dropped; NaN when fewer than 3 pairs remain or a vector is constant)."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError("spearman: the two vectors differ in length")
    ok = ~(np.isnan(x) | np.isnan(y))
    x, y = x[ok], y[ok]
    if x.size < 3:
        return float("nan")
    rx, ry = _mean_ranks(x), _mean_ranks(y)
    sx, sy = rx.std(), ry.std()
    if sx == 0 or sy == 0:
        return float("nan")
    return float(((rx - rx.mean()) * (ry - ry.mean())).mean() / (sx * sy))


def _mean_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.arange(1, x.size + 1)
    for v in np.unique(x):  # ties: the mean of their ranks
        tie = x == v
        if tie.sum() > 1:
            ranks[tie] = ranks[tie].mean()
    return ranks


def bootstrap_stat(
    stat: Callable[[np.ndarray], float],
    x: np.ndarray,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    ci: float = DEFAULT_CI,
) -> Estimate:
    """A general statistic ``stat(x[idx])`` bootstrapped over the first axis of ``x``
    (a loop over resamples; prefer `bootstrap_mean` or `resample_weights` for means)."""
    x = np.asarray(x)
    n = x.shape[0]
    rng = np.random.default_rng(seed)
    boot = np.array([stat(x[rng.integers(0, n, n)]) for _ in range(n_boot)], dtype=float)
    lo, hi = percentile_interval(boot, ci)
    return Estimate(float(stat(x)), float(lo), float(hi), n)


def wilson(k: int, n: int, ci: float = DEFAULT_CI) -> Estimate:
    """Wilson score interval for a proportion k/n (value = k/n; NaN when n = 0)."""
    if n <= 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    z = _z_of(ci)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return Estimate(p, lo, hi, n)


def clustered_wilson(
    flags: Sequence[bool] | np.ndarray, clusters: Sequence[object], ci: float = DEFAULT_CI
) -> tuple[Estimate, float, int]:
    """A proportion over records that come in clusters (e.g. one prompt rendered with the
    trigger in three placements): records of one prompt are not independent, so the Wilson
    interval uses the effective sample size n / deff (Kish), with the design effect from the
    cluster-robust variance of the ratio estimator, bounded to [number of clusters, n]. When
    the rate is 0 or 1 the design effect cannot be estimated and the conservative bound (one
    observation per cluster) is used. Returns (estimate with value k/n, n_eff, clusters)."""
    y = np.asarray(flags, dtype=float)
    n = len(y)
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0), 0.0, 0
    ids: dict[object, int] = {}
    cid = np.array([ids.setdefault(c, len(ids)) for c in clusters])
    C = len(ids)
    p = float(y.mean())
    if n <= C:
        return wilson(int(y.sum()), n, ci), float(n), C
    var_binom = p * (1 - p) / n
    if var_binom <= 0:
        n_eff = float(C)
    else:
        tot = np.bincount(cid, weights=y, minlength=C)
        size = np.bincount(cid, minlength=C).astype(float)
        var_cl = C / max(C - 1, 1) * float(((tot - p * size) ** 2).sum()) / n**2
        deff = max(1.0, var_cl / var_binom)
        n_eff = float(min(n, max(C, n / deff)))
    e = wilson_float(p * n_eff, n_eff, ci)
    return Estimate(p, e.lo, e.hi, n), n_eff, C


def wilson_float(k: float, n: float, ci: float = DEFAULT_CI) -> Estimate:
    """Wilson interval for a (possibly effective, non-integer) count k of n."""
    if n <= 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    z = _z_of(ci)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(p * (1 - p), 0.0) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if k <= 0 else max(0.0, centre - half)
    hi = 1.0 if k >= n else min(1.0, centre + half)
    return Estimate(p, lo, hi, round(n))


def _z_of(ci: float) -> float:
    """Two-sided normal quantile for coverage ``ci`` (inverse erf by bisection; no scipy)."""
    target = ci
    lo, hi = 0.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if math.erf(mid / math.sqrt(2)) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


# --- vocabulary z-scores and ranks ---------------------------------------------------------


def zscore_of(values: np.ndarray, index: int) -> float:
    """(values[index] − mean) / std over the last axis (the vocabulary); [V] -> float."""
    v = np.asarray(values, dtype=np.float64)
    sd = v.std()
    return float((v[index] - v.mean()) / sd) if sd > 0 else float("nan")


def rank_of(values: np.ndarray, index: int, descending: bool = True) -> int:
    """Rank of values[index] in [V] (1 = largest when ``descending``). Ties count against it
    (conservative): rank 1 means strictly above every other entry, and an all-equal vector
    (e.g. Δ = 0) ranks it last."""
    v = np.asarray(values)
    x = v[index]
    return int((v >= x).sum()) if descending else int((v <= x).sum())


def cosine(a: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> float:
    """Cosine similarity of two vectors (0 when either is ~0)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > eps and nb > eps else 0.0
