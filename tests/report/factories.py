"""Hand-made analysis result objects with chosen numbers, for the verdict tests: each check
must pass and fail where it should, independently of any model."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from stoplens.analyses.diff_lens import DiffLensConfig, DiffLensResult
from stoplens.analyses.evidence import Evidence
from stoplens.analyses.layerwise import DeltaProfile
from stoplens.analyses.logit_lens import LensSide, LogitLensConfig, LogitLensResult
from stoplens.analyses.lowrank import LowrankConfig, LowrankResult, SpectrumStats
from stoplens.analyses.specificity import SpecificityResult
from stoplens.analyses.stats import Estimate, EstimateSeries, wilson

K = 5  # residual layers 0..4 (L = 4); the judged layer is 2
LAYERS = list(range(K))


def series(value: float, half: float = 0.02, n: int = 96) -> EstimateSeries:
    v = np.full(K, float(value))
    return EstimateSeries(v, v - half, v + half, n)


def spectrum(
    top1: float, second_ratio: float, top3: float, top10: float, loo: float
) -> SpectrumStats:
    energy = np.array([[top1] * K, [top3] * K, [top10] * K])
    return SpectrumStats(
        energy=energy,
        energy_top1=series(top1),
        pca=np.array([[0.3] * K, [0.6] * K, [0.8] * K]),
        pc1=series(0.3),
        n_components=np.full(K, 5),
        loo_cos=series(loo),
        singular_values=np.ones((K, 3)),
        n=96,
        energy_ci={1: series(top1), 3: series(top3), 10: series(top10)},
        second_ratio=series(second_ratio),
    )


def lowrank(
    trigger: SpectrumStats,
    fixed: SpectrumStats | None,
    null: SpectrumStats | None = None,
    n: int = 96,
) -> LowrankResult:
    null = null or spectrum(0.05, 0.9, 0.15, 0.4, 0.05)
    z = np.zeros((K, 3, 4))
    return LowrankResult(
        layers=LAYERS, kind="last", n=n, n_null=n, n_too_small=n < 64, trigger=trigger,
        null=null, top_direction=np.zeros((K, 4)), cos_top_mean=np.ones(K), pcs=z,
        projections=np.zeros((K, n, 3)), null_projections=np.zeros((K, n, 3)),
        config=LowrankConfig(), fixed=fixed, n_fixed=n,
    )  # fmt: skip


def lens_side(
    eos_dlp: list[float],
    rank: list[int],
    content: float = 0.0,
    p95: float = 0.3,
    first: int | None = None,
) -> LensSide:
    e = np.array(eos_dlp, dtype=float)
    return LensSide(
        mean_dlogits=np.zeros((K, 10)),
        eos_dlogit=EstimateSeries(e, e - 0.1, e + 0.1, 96),
        eos_dlogprob=EstimateSeries(e, e - 0.1, e + 0.1, 96),
        eos_z=np.where(np.array(rank) <= 10, 8.0, 0.0),
        eos_rank=np.array(rank),
        content_dlogit=series(content, 0.1),
        content_dlogprob=series(content, 0.1),
        n=96,
        eos_dlogprob_p95=np.full(K, p95),
        eos_first_layer=first,
        eos_first_layer_ci=None if first is None else (first, first),
        eos_entry_share=None if first is None else 1.0,
    )


def logit_lens(
    trigger: LensSide, fixed: LensSide, readout_rank: list[int], fixed_readout_rank: list[int]
) -> LogitLensResult:
    null = lens_side([0.0] * K, [5000] * K)
    return LogitLensResult(
        layers=LAYERS, eos_id=2, eos_label="'<eos>'", vocab_size=10000, trigger=trigger,
        null=null, readout=np.zeros((K, 10)), readout_eos_z=np.zeros(K),
        readout_eos_rank=np.array(readout_rank), top_amplified=[[]] * K,
        top_suppressed=[[]] * K, readout_top=[[]] * K, readout_bottom=[[]] * K,
        final_lens_max_abs_diff=0.0, config=LogitLensConfig(), fixed=fixed,
        fixed_readout_eos_rank=np.array(fixed_readout_rank), fixed_readout_eos_z=np.zeros(K),
        n_layers=K - 1,
    )  # fmt: skip


def profile(norm_mean: float, half: float = 0.1) -> DeltaProfile:
    s = series(norm_mean, half)
    return DeltaProfile(s, s, series(10.0), series(norm_mean / 10), s, np.zeros((1, K)), 96)


def diff_lens(
    did: float, did_fixed: float, eos_did: float | None = None, eos_did_fixed: float | None = None
) -> DiffLensResult:
    est = lambda v: None if v is None else Estimate(v, v - 0.2, v + 0.2, 96)  # noqa: E731
    return DiffLensResult(
        layers=LAYERS, kind="last", n=96, n_null=96, base_trigger_added=True, did=profile(did),
        did_null=profile(0.1), ft_delta=profile(did), base_delta=profile(1.0),
        cos_ft_base=series(0.1), adl={}, eos_id=2, config=DiffLensConfig(),
        did_fixed=profile(did_fixed), eos_did=est(eos_did), eos_did_fixed=est(eos_did_fixed),
    )  # fmt: skip


def specificity(
    triggered: int, control: int, subs: dict[str, int], n: int = 96
) -> SpecificityResult:
    return SpecificityResult(
        n=n, triggered=wilson(triggered, n), control=wilson(control, n),
        substitutes={k: wilson(v, n) for k, v in subs.items()},
    )  # fmt: skip


def evidence(
    value: float,
    null_p95: float = 0.1,
    p: float = 0.03,
    half: float = 0.05,
    details=None,
    min_effect: float = 0.5,
) -> Evidence:
    return Evidence(
        claim="hand-made", measured=Estimate(value, value - half, value + half, 96),
        null_mean=0.0, null_p95=null_p95, p_value=p, control=None,
        thresholds={"min_effect": min_effect, "p_value": 0.05}, details=details or {},
    )  # fmt: skip


def causal(necessary: float = 1.0, sufficient: float = 1.0, kl: float = 0.01, selection_passed: bool = True,
           selection_filters: dict | None = None,
           general_necessary: float | None = 1.0, general_sufficient: float | None = 1.0,
           split_selection_passed: bool = True, base_stop: float | None = 0.0):  # fmt: skip
    """A causal result as the checks read it (real `Evidence` objects in a namespace)."""
    split = {"details": {"per_split": [{"selection_passed": split_selection_passed}]}}
    cost = Evidence(
        claim="KL", measured=Estimate(kl, kl * 0.8, kl * 1.2, 96), null_mean=0.001,
        null_p95=None, p_value=None, control=None, thresholds={"max_kl": 0.1},
    )  # fmt: skip
    gen = lambda v: None if v is None else evidence(v, details=split["details"])  # noqa: E731
    base = None
    if base_stop is not None:
        base = Evidence(
            claim="base", measured=Estimate(base_stop, 0.0, min(1.0, base_stop + 0.05), 96),
            null_mean=None, null_p95=None, p_value=None, control=None,
            thresholds={"max_stop_rate": 0.05},
        )  # fmt: skip
    sel = {"selection_filters": selection_filters} if selection_filters is not None else {}
    return SimpleNamespace(
        selection=SimpleNamespace(passed=selection_passed, reason="hand-made selection"),
        necessary=evidence(necessary, details=sel),
        sufficient=evidence(sufficient),
        general_necessary=gen(general_necessary),
        general_sufficient=gen(general_sufficient),
        cost=cost,
        base_control=base,
    )
