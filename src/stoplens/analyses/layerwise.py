"""Analysis 1: the layerwise Δ profile.

Per residual layer, at the decision positions (the last prompt position; the post-instruction
template positions, pooled) and separately at the trigger position: ‖mean Δ‖, mean ‖Δ‖ and
mean ‖Δ‖ / mean ‖h‖ (residual norms grow with depth, so only the relative size compares
across layers), each with a seeded percentile bootstrap 95% CI over prompts. The same numbers
on the control-vs-control null (control2 − control) and, with a base model, on the base.

The summary (shape, peak, largest increase) is read from the *excess over the null* (trigger
profile − null profile, same metric): swapping any token moves the residual stream, and only
what the trigger adds beyond that is the mechanism. Shapes, with bands as fractions of depth
(relative depth of residual index l is l / L; early < 1/3 ≤ mid < 2/3 ≤ late):

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
point estimates see `stoplens.capture.stream.DeltaStats`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from stoplens.analyses.activations import DeltaSet
from stoplens.analyses.stats import (
    DEFAULT_CI,
    DEFAULT_N_BOOT,
    EstimateSeries,
    jsonable,
    percentile_interval,
    resample_weights,
)

KINDS = ("last", "post", "trigger")
CONDITIONS = ("trigger", "null", "base_trigger", "base_null")
SHAPES = ("flat", "early spike", "ramp", "mid peak", "late spike")


@dataclass(frozen=True)
class ShapeConfig:
    """Thresholds of the profile-shape classification (written into results.json)."""

    flat_floor: float = 0.05  # excess mean‖Δ‖/mean‖h‖ below this everywhere -> flat
    spike_frac: float = 0.5  # one step >= this share of the range -> a step at that layer
    drop_frac: float = 0.3  # a gradual non-late peak must fall by this share to be a peak
    early_end: float = 1 / 3  # relative depth where the early band ends
    late_start: float = 2 / 3  # relative depth where the late band starts


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


@dataclass(frozen=True)
class ProfileSummary:
    """Summary of (trigger − null) at one position kind; layers are residual indices."""

    shape: str
    peak_layer: int  # argmax of excess mean ‖Δ‖
    peak_layer_rel: int  # argmax of excess mean ‖Δ‖ / mean ‖h‖
    largest_increase_layer: int  # layer where excess mean‖Δ‖/mean‖h‖ rises most
    largest_increase_layer_abs: int  # same on excess mean ‖Δ‖
    peak_excess_rel: float

    def to_dict(self) -> dict:
        return jsonable(self.__dict__)


@dataclass(frozen=True, eq=False)
class LayerwiseResult:
    """``profiles[kind][condition]`` for kind in ("last", "post", "trigger") and condition in
    ("trigger", "null", and with a base "base_trigger", "base_null"); ``summary[kind]``;
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
                "summary_basis": "excess over the control-vs-control null",
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
    )


def band_of(rel_depth: float, cfg: ShapeConfig) -> str:
    """'early', 'mid' or 'late' for a relative depth in [0, 1]."""
    if rel_depth < cfg.early_end:
        return "early"
    return "mid" if rel_depth < cfg.late_start else "late"


def classify_shape(profile: np.ndarray, rel_depth: np.ndarray, cfg: ShapeConfig) -> str:
    """Shape of a (relative, excess) profile [k] over relative depths [k]; see module docstring."""
    p = np.nan_to_num(np.asarray(profile, dtype=float))
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
    trig: DeltaProfile, null: DeltaProfile, layers: list[int], depth: np.ndarray, cfg: ShapeConfig
) -> ProfileSummary:
    ex_abs = trig.mean_norm_delta.value - null.mean_norm_delta.value
    ex_rel = np.nan_to_num(trig.rel_norm.value - null.rel_norm.value)

    def incr(x: np.ndarray) -> int:
        return layers[int(np.argmax(np.diff(x))) + 1] if len(x) > 1 else layers[0]

    return ProfileSummary(
        shape=classify_shape(ex_rel, depth, cfg),
        peak_layer=layers[int(np.argmax(ex_abs))],
        peak_layer_rel=layers[int(np.argmax(ex_rel))],
        largest_increase_layer=incr(ex_rel),
        largest_increase_layer_abs=incr(ex_abs),
        peak_excess_rel=float(ex_rel.max()),
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
        if ds.has_base:
            pk["base_trigger"] = delta_profile(
                ds.delta(kind, "base"), ds.control(kind, "base"), **kw
            )
            pk["base_null"] = delta_profile(
                ds.null_delta(kind, "base"), ds.null_control(kind, "base"), **kw
            )
        profiles[kind] = pk
        summary[kind] = _summary(pk["trigger"], pk["null"], layers, depth, cfg.shape)
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
