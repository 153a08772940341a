"""Analysis 2: is Δ low-rank — one shared direction?

Per captured layer, on the n×d matrix of Δs at the last decision position:

* uncentred SVD energy share of the top-1/3/10 singular directions (σ₁²/Σσ²...): one shared
  direction gives a top-1 share near 1, *including its mean*;
* centred PCA explained variance (PC1, top-3, top-10, components for 80%): the structure of the
  variation around the mean. (Centred PCA where every Δ is the same vector — e.g. position 0,
  or identical prompts — is meaningless; the predecessor's "PC1 = 91.8%" was that artifact.);
* leave-one-out cosine of each Δ to the mean of the others (mean with a bootstrap CI);
* the second direction's energy relative to the first (σ₂²/σ₁², with CI): "one direction"
  means one *dominant* direction — a mechanism carried by two directions used on different
  prompts shares its energy between two (top-1 ≈ ½, σ₂²/σ₁² ≈ 1);
* the same on the fixed-token null Δs (one fixed ordinary token in the trigger's place against
  the same controls: any fixed token shares a direction, so this is the null for "one
  direction") and on the control-vs-control null Δs (the noise floor).

The top uncentred direction per layer (unit, signed to agree with the mean Δ) is part of the
result. The top-k energy shares, σ₂²/σ₁² and the PC1 share carry bootstrap CIs
(``n_boot_spectrum`` resamples, via the n×n or d×d Gram matrix of each resample, batched; exact
eigensolves up to 192×192, warm-started subspace iteration beyond), shifted by the bootstrap's
bias estimate: a resample repeats rows, which concentrates the spectrum, so the plain
percentile interval can miss the estimate (the intervals and their engine are
`stoplens.analyses.spectrum_bootstrap`'s). With n Δs the rank is at most n: ``n_too_small`` is
set when n < ``min_n`` or n ≤ the largest k asked, and no claim of low rank should be made then. In-memory path; streamed point estimates of the same
spectrum come from `DeltaStats` in benchmarks/streaming.py (outside the package). Must not:
plot or write files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from stoplens.analyses.spectrum_bootstrap import share_intervals
from stoplens.analyses.stats import (
    DEFAULT_CI,
    DEFAULT_N_BOOT,
    EstimateSeries,
    bootstrap_mean,
    jsonable,
)
from stoplens.capture.deltaset import DeltaSet


@dataclass(frozen=True)
class LowrankConfig:
    ks: tuple[int, ...] = (1, 3, 10)
    var_threshold: float = 0.8  # number of centred components reaching this share
    min_n: int = 64
    n_components_dist: int = 3  # PCs kept for the component-distribution figure
    n_boot: int = DEFAULT_N_BOOT  # for the leave-one-out cosine
    n_boot_spectrum: int = 200  # for the top-1 energy and PC1 shares (one eigensolve each)
    seed: int = 0
    ci: float = DEFAULT_CI
    kind: str = "last"


@dataclass(frozen=True, eq=False)
class SpectrumStats:
    """Spectrum statistics of one Δ set, per layer.

    ``energy`` [len(ks), k] uncentred top-k energy shares; ``energy_top1`` with CI;
    ``energy_ci`` {k: CI series} of every top-k share; ``second_ratio`` σ₂²/σ₁² with CI;
    ``pca`` [len(ks), k] centred explained-variance shares of the top-k PCs; ``pc1`` with CI;
    ``n_components`` [k] centred components for ``var_threshold``; ``loo_cos`` leave-one-out
    cosine (mean, CI); ``singular_values`` [k, r] uncentred (r = min(n, d))."""

    energy: np.ndarray
    energy_top1: EstimateSeries
    pca: np.ndarray
    pc1: EstimateSeries
    n_components: np.ndarray
    loo_cos: EstimateSeries
    singular_values: np.ndarray
    n: int
    energy_ci: dict[int, EstimateSeries] | None = None
    second_ratio: EstimateSeries | None = None

    def to_dict(self, ks: tuple[int, ...]) -> dict:
        return jsonable(
            {
                "n": self.n,
                **{f"energy_top{k}": self.energy[i] for i, k in enumerate(ks)},
                **{f"pca_top{k}": self.pca[i] for i, k in enumerate(ks)},
                **{f"energy_top{k}_ci": v for k, v in (self.energy_ci or {}).items()},
                "second_ratio": self.second_ratio,
                "energy_top1_ci": self.energy_top1,
                "pc1_ci": self.pc1,
                "n_components_for_threshold": self.n_components,
                "loo_cos": self.loo_cos,
            }
        )


@dataclass(frozen=True, eq=False)
class LowrankResult:
    """Low-rank structure of Δ at ``kind`` per captured layer (``layers`` [k]).

    ``trigger`` / ``null`` / ``fixed`` (None without a fixed-token capture): `SpectrumStats`.
    ``top_direction`` [k, d]: unit top uncentred
    direction of the trigger Δs. ``cos_top_mean`` [k]: its cosine with the mean Δ.
    ``pcs`` [k, c, d]: the trigger's top-c centred PCs (c = ``n_components_dist``).
    ``projections`` [k, n, c] / ``null_projections`` [k, n_null, c]: each (uncentred) Δ
    projected on those PCs, for the component-distribution figure.
    """

    layers: list[int]
    kind: str
    n: int
    n_null: int
    n_too_small: bool
    trigger: SpectrumStats
    null: SpectrumStats
    top_direction: np.ndarray
    cos_top_mean: np.ndarray
    pcs: np.ndarray
    projections: np.ndarray
    null_projections: np.ndarray
    config: LowrankConfig
    fixed: SpectrumStats | None = None
    n_fixed: int = 0

    def direction(self, residual_layer: int) -> np.ndarray:
        """Top uncentred direction [d] at a residual index."""
        return self.top_direction[self.layers.index(residual_layer)]

    def to_dict(self, full: bool = False) -> dict:
        """JSON-ready summary; ``full=True`` adds directions and projections (large)."""
        ks = self.config.ks
        out = {
            "layers": self.layers,
            "kind": self.kind,
            "n": self.n,
            "n_null": self.n_null,
            "n_too_small": self.n_too_small,
            "trigger": self.trigger.to_dict(ks),
            "null": self.null.to_dict(ks),
            "fixed": None if self.fixed is None else self.fixed.to_dict(ks),
            "n_fixed": self.n_fixed,
            "cos_top_direction_mean_delta": self.cos_top_mean,
            "config": self.config,
        }
        if full:
            out["top_direction"] = self.top_direction
            out["pcs"] = self.pcs
            out["projections"] = self.projections
            out["null_projections"] = self.null_projections
        return jsonable(out)


# --- computation ----------------------------------------------------------------------------


def _shares(eig: np.ndarray, ks: tuple[int, ...]) -> np.ndarray:
    tot = eig.sum()
    if tot <= 0:
        return np.full(len(ks), np.nan)
    c = np.cumsum(eig) / tot
    return np.array([c[min(k, len(c)) - 1] for k in ks])


def loo_cosines(x: np.ndarray) -> np.ndarray:
    """Cosine of each row of ``x`` [n, d] to the mean of the other rows -> [n]."""
    n = x.shape[0]
    if n < 2:
        return np.full(n, np.nan)
    s = x.sum(0)
    others = (s[None, :] - x) / (n - 1)
    num = (x * others).sum(1)
    den = np.linalg.norm(x, axis=1) * np.linalg.norm(others, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)


def _n_components(evc: np.ndarray, threshold: float) -> int:
    """Centred components needed to reach ``threshold`` of the variance, from the centred
    eigenvalues ``evc`` (descending); 0 when there is no variance."""
    tot = evc.sum()
    if not tot > 0:
        return 0
    return int(np.searchsorted(np.cumsum(evc) / tot, threshold - 1e-12) + 1)


def _svd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD in torch (float64). Heavy linear algebra stays in torch: alternating numpy's
    BLAS threads with torch's oversubscribes small shared CPUs (measured several-fold slower)."""
    u, s, vt = torch.linalg.svd(torch.from_numpy(np.ascontiguousarray(x)), full_matrices=False)
    return u.numpy(), s.numpy(), vt.numpy()


def top1_energy_share(x: np.ndarray) -> float:
    """Share of the (uncentred) energy of the Δs ``x`` [n, d] on their first singular vector:
    ``SpectrumStats.energy_top1``'s value at one layer, without the intervals."""
    _, s, _ = _svd(np.ascontiguousarray(x, dtype=np.float64))
    ev = s**2
    return float(ev[0] / ev.sum()) if ev.sum() > 0 else float("nan")


def spectrum_stats(x: np.ndarray, cfg: LowrankConfig) -> tuple[SpectrumStats, dict]:
    """`SpectrumStats` of Δs ``x`` [n, k, d] (float64) plus per-layer extras (top direction,
    PCs, mean) for the caller."""
    n, k, d = x.shape
    ks = cfg.ks
    energy = np.zeros((len(ks), k))
    pca = np.zeros((len(ks), k))
    ncomp = np.zeros(k, dtype=int)
    e1 = np.zeros((3, k))
    p1 = np.zeros((3, k))
    ek = np.zeros((len(ks), 3, k))  # top-k share: value, lo, hi
    r21 = np.zeros((3, k))  # σ₂²/σ₁²: value, lo, hi
    r = min(n, d)
    svals = np.zeros((k, r))
    loo = np.zeros((n, k))
    top = np.zeros((k, d))
    c = cfg.n_components_dist
    pcs = np.zeros((k, c, d))
    means = np.zeros((k, d))
    for j in range(k):
        xj = np.ascontiguousarray(x[:, j])
        mu = xj.mean(0)
        means[j] = mu
        _, s, vt = _svd(xj)
        svals[j, : len(s)] = s
        ev = s**2
        energy[:, j] = _shares(ev, ks)
        v = vt[0]
        top[j] = v if v @ mu >= 0 else -v
        _, sc, vtc = _svd(xj - mu)
        evc = sc**2
        pca[:, j] = _shares(evc, ks)
        ncomp[j] = _n_components(evc, cfg.var_threshold)
        for i in range(min(c, vtc.shape[0])):
            pc = vtc[i]
            pcs[j, i] = pc if pc @ mu >= 0 else -pc  # signed so the trigger's mean projects >= 0
        loo[:, j] = loo_cosines(xj)
        iv = share_intervals(
            xj, ks, energy[:, j], ev, evc, n_boot=cfg.n_boot_spectrum, seed=cfg.seed, ci=cfg.ci
        )
        ek[:, :, j] = iv.energy
        r21[:, j] = iv.second_ratio
        e1[:, j] = iv.top1
        p1[:, j] = iv.pc1
    loo_est = bootstrap_mean(loo, cfg.n_boot, cfg.seed, cfg.ci)
    assert isinstance(loo_est, EstimateSeries)
    stats = SpectrumStats(
        energy=energy,
        energy_top1=EstimateSeries(e1[0], e1[1], e1[2], n),
        pca=pca,
        pc1=EstimateSeries(p1[0], p1[1], p1[2], n),
        n_components=ncomp,
        loo_cos=loo_est,
        singular_values=svals,
        n=n,
        energy_ci={kk: EstimateSeries(ek[i, 0], ek[i, 1], ek[i, 2], n) for i, kk in enumerate(ks)},
        second_ratio=EstimateSeries(r21[0], r21[1], r21[2], n),
    )
    return stats, {"top": top, "pcs": pcs, "mean": means}


def lowrank(ds: DeltaSet, config: LowrankConfig | None = None) -> LowrankResult:
    """Analysis 2 on a `DeltaSet` (see module docstring)."""
    cfg = config or LowrankConfig()
    if cfg.kind not in ("last", "trigger"):
        raise ValueError("lowrank reads one position: kind 'last' or 'trigger'")
    x = ds.delta(cfg.kind)[:, :, 0].double().numpy()  # [n, k, d]
    xn = ds.null_delta(cfg.kind)[:, :, 0].double().numpy()
    trig, extra = spectrum_stats(x, cfg)
    null, _ = spectrum_stats(xn, cfg)
    fixed = None
    n_fixed = 0
    if ds.has_fixed:
        xf = ds.fixed_delta(cfg.kind)[:, :, 0].double().numpy()
        fixed, _ = spectrum_stats(xf, cfg)
        n_fixed = xf.shape[0]
    top, pcs, means = extra["top"], extra["pcs"], extra["mean"]
    norms = np.linalg.norm(means, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cos_top_mean = np.where(norms > 0, (top * means).sum(-1) / norms, np.nan)
    proj = np.einsum("nkd,kcd->knc", x, pcs)
    nproj = np.einsum("nkd,kcd->knc", xn, pcs)
    n = x.shape[0]
    return LowrankResult(
        layers=list(ds.layers),
        kind=cfg.kind,
        n=n,
        n_null=xn.shape[0],
        n_too_small=bool(n < cfg.min_n or n <= max(cfg.ks)),
        trigger=trig,
        null=null,
        top_direction=top,
        cos_top_mean=cos_top_mean,
        pcs=pcs,
        projections=proj,
        null_projections=nproj,
        config=cfg,
        fixed=fixed,
        n_fixed=n_fixed,
    )
