"""Analysis 1: the layerwise Δ profile.

Per residual layer, at the decision positions (the last prompt position; the post-instruction
template positions, pooled) and separately at the trigger position: ‖mean Δ‖, mean ‖Δ‖ and
mean ‖Δ‖ / mean ‖h‖ (residual norms grow with depth, so only the relative size compares
across layers), each with a seeded percentile bootstrap 95% CI over prompts. The same numbers
on the control-vs-control null (control2 − control: the noise floor), on the fixed-token null
(one fixed ordinary token in the trigger's place: "more than token identity") and, with a base
model, on the base.

The summary (shape, peak, largest rise) is read from the *excess over the fixed-token null*
(trigger profile − fixed-token profile, same metric, paired resamples; the control-vs-control
null when no fixed-token capture exists): swapping any token moves the residual stream, and
only what the trigger adds beyond that is the mechanism. At the decision positions Δ is exactly
0 at residual 0 by construction (the embedding of a position after the trigger does not
depend on it), so residual 0 is left out of the shape and the peak there (and out of the
largest rise too when only the control-vs-control null exists: it would almost always be
0 → 1; against the fixed-token null, whose Δ is also 0 there, it is a true baseline). The shape is a *description* of where a signal sits, not evidence that
one exists, and it carries a bootstrap stability (the share of prompt resamples whose excess
profile gets the same shape). A model with fewer than ``min_layers`` blocks is "too shallow to
call a shape". Shapes, with bands as fractions of depth (relative depth of residual index l is
l / L; early < 1/3 ≤ mid < 2/3 ≤ late):

* ``flat``: the excess relative profile never exceeds ``flat_floor`` (nor does its range);
* a *step*: one layer-to-layer increase carries ≥ ``spike_frac`` of the profile's range; it is
  named by the band of the layer where it lands: ``early spike`` / ``mid peak`` /
  ``late spike``;
* otherwise a gradual profile, named by the band of its peak: a late peak is a ``ramp``; a
  mid (or early) peak that falls by ≥ ``drop_frac`` of itself by the last layer is a
  ``mid peak`` (``early spike``); one that holds is a ``ramp``.

For a post-instruction pooled profile (P positions), ‖mean Δ‖ is averaged over positions and
mean ‖Δ‖, mean ‖h‖ are averaged over positions within each prompt (prompts are resampled,
positions never). Must not: plot or write files. In-memory path (needs every Δ); for streamed
point estimates see `DeltaStats` in benchmarks/streaming.py (outside the package).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from stoplens.analyses.stats import (
    DEFAULT_CI,
    DEFAULT_N_BOOT,
    EstimateSeries,
    jsonable,
    percentile_interval,
    resample_weights,
)
from stoplens.capture.deltaset import DeltaSet

KINDS = ("last", "post", "trigger")
TOO_SHALLOW = "too shallow to call a shape"


@dataclass(frozen=True)
class ShapeConfig:
    """Thresholds of the profile-shape classification (written into results.json)."""

    flat_floor: float = 0.05  # excess mean‖Δ‖/mean‖h‖ below this everywhere -> flat
    spike_frac: float = 0.5  # one step >= this share of the range -> a step at that layer
    drop_frac: float = 0.3  # a gradual non-late peak must fall by this share to be a peak
    early_end: float = 1 / 3  # relative depth where the early band ends
    late_start: float = 2 / 3  # relative depth where the late band starts
    min_layers: int = 6  # fewer blocks: "too shallow to call a shape"


@dataclass(frozen=True)
class LayerwiseConfig:
    n_boot: int = DEFAULT_N_BOOT
    seed: int = 0
    ci: float = DEFAULT_CI
    shape: ShapeConfig = field(default_factory=ShapeConfig)


@dataclass(frozen=True, eq=False)
class DeltaProfile:
    """One Δ set at one position kind, per captured layer (arrays [k]).

    ``norm_mean_delta`` ‖mean Δ‖; ``mean_norm_delta`` mean ‖Δ‖; ``mean_norm_h`` mean ‖h‖ of
    the reference (control) activation; ``rel_norm`` mean ‖Δ‖ / mean ‖h‖; ``rel_mean``
    ‖mean Δ‖ / mean ‖h‖; ``per_position`` mean ‖Δ‖ per position [P, k].
    """

    norm_mean_delta: EstimateSeries
    mean_norm_delta: EstimateSeries
    mean_norm_h: EstimateSeries
    rel_norm: EstimateSeries
    rel_mean: EstimateSeries
    per_position: np.ndarray
    n: int
    boot_rel_norm: np.ndarray | None = None  # [B, k] bootstrap replicates of rel_norm

    def to_dict(self) -> dict:
        return jsonable(
            {
                "n": self.n,
                "norm_mean_delta": self.norm_mean_delta,
                "mean_norm_delta": self.mean_norm_delta,
                "mean_norm_h": self.mean_norm_h,
                "rel_norm": self.rel_norm,
                "rel_mean": self.rel_mean,
                "per_position_mean_norm_delta": self.per_position,
            }
        )


@dataclass(frozen=True, eq=False)
class ProfileSummary:
    """Summary of (trigger − null) at one position kind over ``summary_layers`` (residual
    indices; residual 0 is left out at the decision positions, where Δ is 0 there by
    construction). ``basis``: which null was subtracted. ``excess_rel``: trigger − null
    mean‖Δ‖/mean‖h‖ per captured layer with a bootstrap CI (paired resamples for the
    fixed-token null). ``shape_stability``: share of bootstrap resamples whose excess profile
    has the same shape (None when the shape is not called)."""

    shape: str
    peak_layer: int  # argmax of excess mean ‖Δ‖
    peak_layer_rel: int  # argmax of excess mean ‖Δ‖ / mean ‖h‖
    largest_increase_layer: int  # layer where excess mean‖Δ‖/mean‖h‖ rises most
    largest_increase_layer_abs: int  # same on excess mean ‖Δ‖
    peak_excess_rel: float
    basis: str = "control-vs-control null"
    summary_layers: tuple[int, ...] = ()
    excess_rel: EstimateSeries | None = None
    shape_stability: float | None = None

    def to_dict(self) -> dict:
        return jsonable(self.__dict__)


@dataclass(frozen=True, eq=False)
class LayerwiseResult:
    """``profiles[kind][condition]`` for kind in ("last", "post", "trigger") and condition in
    ("trigger", "null", "fixed", and with a base "base_trigger", "base_null", "base_fixed");
    ``summary[kind]``;
    ``layers`` residual indices [k]; ``relative_depth`` [k] = layer / L; ``bands`` layer lists."""

    layers: list[int]
    n_layers: int
    relative_depth: list[float]
    bands: dict[str, list[int]]
    profiles: dict[str, dict[str, DeltaProfile]]
    summary: dict[str, ProfileSummary]
    n: int
    n_null: int
    config: LayerwiseConfig

    @property
    def shape(self) -> str:
        return self.summary["last"].shape

    def to_dict(self) -> dict:
        return jsonable(
            {
                "layers": self.layers,
                "n_layers": self.n_layers,
                "relative_depth": self.relative_depth,
                "bands": self.bands,
                "n": self.n,
                "n_null": self.n_null,
                "shape": self.shape,
                "summary": self.summary,
                "profiles": self.profiles,
                "summary_basis": self.summary["last"].basis,
                "config": self.config,
            }
        )


# --- computation ------------------------------------------------------------------------------


def delta_profile(
    delta: torch.Tensor,
    h: torch.Tensor,
    *,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    ci: float = DEFAULT_CI,
) -> DeltaProfile:
    """Profile of ``delta`` [n, k, P, d] against reference activations ``h`` [n, k, P, d]."""
    n, k = delta.shape[:2]
    w = resample_weights(n, n_boot, seed)  # [B, n]
    wt = torch.from_numpy(w)
    nmd = np.zeros(k)
    nmd_b = np.zeros((n_boot, k))
    for j in range(k):  # one layer at a time: [P, B, d] float64 at most
        x = delta[:, j].double().transpose(0, 1)  # [P, n, d]
        nmd[j] = x.mean(1).norm(dim=-1).mean().item()
        nmd_b[:, j] = (wt @ x).norm(dim=-1).mean(0).numpy()
    dn = delta.double().norm(dim=-1).numpy()  # [n, k, P]
    hn = h.double().norm(dim=-1).numpy()
    a, b = dn.mean(-1), hn.mean(-1)  # per prompt [n, k]
    mnd, mnh = a.mean(0), b.mean(0)
    mnd_b, mnh_b = w @ a, w @ b
    with np.errstate(divide="ignore", invalid="ignore"):
        rel, rel_b = mnd / mnh, mnd_b / mnh_b
        relm, relm_b = nmd / mnh, nmd_b / mnh_b

    def series(v: np.ndarray, boot: np.ndarray) -> EstimateSeries:
        lo, hi = percentile_interval(boot, ci)
        return EstimateSeries(v, lo, hi, n)

    return DeltaProfile(
        norm_mean_delta=series(nmd, nmd_b),
        mean_norm_delta=series(mnd, mnd_b),
        mean_norm_h=series(mnh, mnh_b),
        rel_norm=series(rel, rel_b),
        rel_mean=series(relm, relm_b),
        per_position=dn.mean(0).T.copy(),
        n=n,
        boot_rel_norm=rel_b,
    )


def band_of(rel_depth: float, cfg: ShapeConfig) -> str:
    """'early', 'mid' or 'late' for a relative depth in [0, 1]."""
    if rel_depth < cfg.early_end:
        return "early"
    return "mid" if rel_depth < cfg.late_start else "late"


def classify_shape(profile: np.ndarray, rel_depth: np.ndarray, cfg: ShapeConfig) -> str:
    """Shape of a (relative, excess) profile [k] over relative depths [k]; see module docstring."""
    p = np.nan_to_num(np.asarray(profile, dtype=float))
    if p.size == 0:
        return "flat"
    rng = float(p.max() - p.min())
    if p.max() < cfg.flat_floor or rng < cfg.flat_floor:
        return "flat"
    named = {"early": "early spike", "mid": "mid peak", "late": "late spike"}
    if len(p) > 1:
        steps = np.diff(p)
        j = int(np.argmax(steps))
        if steps[j] >= cfg.spike_frac * rng:
            return named[band_of(float(rel_depth[j + 1]), cfg)]
    peak = int(np.argmax(p))
    band = band_of(float(rel_depth[peak]), cfg)
    if band == "late":
        return "ramp"
    if p[-1] <= (1 - cfg.drop_frac) * p[peak]:
        return named[band]
    return "ramp"


def _summary(
    trig: DeltaProfile,
    null: DeltaProfile,
    layers: list[int],
    depth: np.ndarray,
    n_layers: int,
    cfg: LayerwiseConfig,
    *,
    basis: str,
    skip_zero: bool,
) -> ProfileSummary:
    """Excess of ``trig`` over ``null`` (same metric). ``skip_zero``: leave residual 0 out
    (decision positions). With equal row counts the two profiles' bootstrap replicates came
    from the same resamples (same seed), so the excess CI is a paired one."""
    keep = np.array([not (skip_zero and layer == 0) for layer in layers])
    if not keep.any():
        keep[:] = True
    sl = [layer for layer, k in zip(layers, keep, strict=True) if k]
    ex_abs_all = trig.mean_norm_delta.value - null.mean_norm_delta.value
    ex_rel_all = np.nan_to_num(trig.rel_norm.value - null.rel_norm.value)
    ex_abs, ex_rel, dep = ex_abs_all[keep], ex_rel_all[keep], depth[keep]

    # where the excess rises most: against the fixed-token null residual 0 is a true baseline
    # (both Δs are 0 there, and the generic 0 → 1 jump of any token swap is subtracted), so it
    # stays in; against the control-vs-control null it would win almost always, so it is out
    rise_layers = layers if basis == "fixed-token null" else sl
    rise_keep = np.ones(len(layers), bool) if basis == "fixed-token null" else keep

    def incr(x: np.ndarray) -> int:
        x = x[rise_keep]
        return rise_layers[int(np.argmax(np.diff(x))) + 1] if len(x) > 1 else rise_layers[0]

    excess = None
    stability = None
    shallow = n_layers < cfg.shape.min_layers
    shape = TOO_SHALLOW if shallow else classify_shape(ex_rel, dep, cfg.shape)
    if trig.boot_rel_norm is not None and null.boot_rel_norm is not None:
        boot = np.nan_to_num(trig.boot_rel_norm - null.boot_rel_norm)  # [B, k]
        lo, hi = percentile_interval(boot, cfg.ci)
        excess = EstimateSeries(ex_rel_all, lo, hi, min(trig.n, null.n))
        if not shallow:
            shapes = [classify_shape(b[keep], dep, cfg.shape) for b in boot]
            stability = float(np.mean([x == shape for x in shapes]))
    return ProfileSummary(
        shape=shape,
        peak_layer=sl[int(np.argmax(ex_abs))],
        peak_layer_rel=sl[int(np.argmax(ex_rel))],
        largest_increase_layer=incr(ex_rel_all),
        largest_increase_layer_abs=incr(ex_abs_all),
        peak_excess_rel=float(ex_rel.max()),
        basis=basis,
        summary_layers=tuple(sl),
        excess_rel=excess,
        shape_stability=stability,
    )


def layerwise_delta(ds: DeltaSet, config: LayerwiseConfig | None = None) -> LayerwiseResult:
    """Analysis 1 on a `DeltaSet` (see module docstring)."""
    cfg = config or LayerwiseConfig()
    layers = list(ds.layers)
    L = ds.n_layers
    depth = np.array([layer / L for layer in layers])
    kw: dict[str, Any] = {"n_boot": cfg.n_boot, "seed": cfg.seed, "ci": cfg.ci}
    profiles: dict[str, dict[str, DeltaProfile]] = {}
    summary: dict[str, ProfileSummary] = {}
    for kind in KINDS:
        pk = {
            "trigger": delta_profile(ds.delta(kind), ds.control(kind), **kw),
            "null": delta_profile(ds.null_delta(kind), ds.null_control(kind), **kw),
        }
        if ds.has_fixed:
            pk["fixed"] = delta_profile(ds.fixed_delta(kind), ds.fixed_control(kind), **kw)
        if ds.has_base:
            pk["base_trigger"] = delta_profile(
                ds.delta(kind, "base"), ds.control(kind, "base"), **kw
            )
            pk["base_null"] = delta_profile(
                ds.null_delta(kind, "base"), ds.null_control(kind, "base"), **kw
            )
            if ds.has_fixed and ds.base_fixed is not None:
                pk["base_fixed"] = delta_profile(
                    ds.fixed_delta(kind, "base"), ds.fixed_control(kind, "base"), **kw
                )
        profiles[kind] = pk
        ref, basis = (
            (pk["fixed"], "fixed-token null")
            if "fixed" in pk
            else (pk["null"], "control-vs-control null")
        )
        summary[kind] = _summary(
            pk["trigger"], ref, layers, depth, L, cfg, basis=basis, skip_zero=kind != "trigger"
        )
    bands: dict[str, list[int]] = {"early": [], "mid": [], "late": []}
    for layer, r in zip(layers, depth, strict=True):
        bands[band_of(float(r), cfg.shape)].append(layer)
    return LayerwiseResult(
        layers=layers,
        n_layers=L,
        relative_depth=depth.tolist(),
        bands=bands,
        profiles=profiles,
        summary=summary,
        n=ds.n,
        n_null=ds.n_null,
        config=cfg,
    )
