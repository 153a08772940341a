"""Which components carry $STOP: activation patching of every attention head and every MLP.

Components (`stoplens.capture.sites`). A head (l, h) is slice h of the input of block l's
attention output projection (so grouped-query attention, as in Qwen2, Llama, SmolLM2, is
handled); an MLP l is the output of block l's MLP module.

Exact patching. As residual patching (`stoplens.analyses.patching`), per pair and position
group, but only one component's activation is replaced by the source run's; the stop score is
read at the last prompt position. Effects are normalised per pair by the trigger's own effect
``gap = s_trig - s_ctrl`` so that every mode reads "0 = no effect, 1 = the whole stop":

    denoising (source triggered, target control):  (s_patched - s_ctrl) / gap  (carries it)
    noising   (source control, target triggered):  (s_trig - s_patched) / gap  (needs it)
    null      (source control2, target control):   (s_patched - s_ctrl2→ctrl) / gap

The null swaps one ordinary control word for another (the pairs' ``control2``): what patching a
component moves when nothing stop-like differs, in the same units (measured at the ranking
group's positions, the ones the verdict reads). A component is *beyond the
null* in a mode when its effect is at least ``min_effect`` in size (default 0.1 of the stop:
downstream components react to the signal with tiny, consistent effects that are real but not
carriers), its 95% CI excludes 0 and lies entirely outside the null's CI. Pairs with
``|gap| < min_gap`` are excluded and counted. CIs: percentile bootstrap over pairs.

Attribution patching (Nanda 2023, first order): s_patched - s_target ≈ Σ_{p in group}
(a_src - a_tgt)_p · ∂s/∂a_tgt,p, for every component and group from one forward pass of the
source and one forward + backward pass of the target per batch. Its ranking picks the
components to patch exactly (all of them when there are few); the Spearman rank correlation
between the two on the exactly patched set is reported per mode and group.

Attention. For the top heads: the attention weight from the decision (post-instruction)
positions to the trigger position in the triggered run, and to the control token at the same
position in the control run (eager attention, the model's own weights).

The engines (exact and first-order patching) are `stoplens.analyses.component_engines`.

Owns: `component_patching` (null, exact-set selection, rank correlation). The normalisation
and the `ComponentEffects` table are `stoplens.analyses.component_effects`'s, the ranked table
`stoplens.analyses.component_ranking`'s, the top heads' attention
`stoplens.analyses.head_attention`'s. Must not: plot, write files, or know module names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from stoplens.analyses.component_effects import Baseline, ComponentEffects, normalised_effects
from stoplens.analyses.component_engines import attribution_patching, patch_components
from stoplens.analyses.component_ranking import RankedComponent, rank_components
from stoplens.analyses.head_attention import HeadAttention, head_attention
from stoplens.analyses.patching import GROUPS, position_groups
from stoplens.analyses.results import dataclass_dict
from stoplens.analyses.stats import spearman
from stoplens.capture.encode import EncodedPairs
from stoplens.capture.extract import stop_score
from stoplens.capture.sites import Component, all_components
from stoplens.interventions.readout import Readout
from stoplens.models import arch
from stoplens.progress import timed

MODES = ("denoising", "noising")

# --- results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ComponentConfig:
    """Settings of `component_patching`."""

    groups: tuple[str, ...] = ("suffix", "trigger", "after", "post")
    rank_group: str = "suffix"
    modes: tuple[str, ...] = MODES
    max_pairs: int | None = 48  # each exact cell is a pass over these pairs per mode
    min_gap: float = 1.0
    min_effect: float = 0.1  # |normalised effect| a component needs to count as beyond the null
    max_exact_all: int = 64  # patch every component exactly when there are at most this many
    top_k: int = 8  # else: attribution's top-k per mode (in the ranking and "post" groups) ...
    n_check: int = 6  # ... plus this many others drawn at random (unbiased rank correlation)
    n_attention_heads: int = 4
    batch_size: int = 32
    grad_batch_size: int = 8
    chunk_size: int = 64
    n_boot: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        bad = [g for g in self.groups if g not in GROUPS]
        if bad:
            raise ValueError(f"unknown position group(s) {bad}; choose from {GROUPS}")
        if self.rank_group not in self.groups:
            raise ValueError(f"rank_group {self.rank_group!r} must be one of groups {self.groups}")
        if not self.modes or any(m not in MODES for m in self.modes):
            raise ValueError(f"modes must be a non-empty subset of {MODES}")

    def to_dict(self) -> dict[str, Any]:
        return dataclass_dict(self)


@dataclass(frozen=True)
class ComponentResult:
    """Everything `component_patching` measured. ``ranking``: every component, exactly
    patched ones first (by their largest |exact effect| over modes), then by |attribution|.
    ``rank_correlation``: mode -> group -> Spearman(attribution, exact) over ``exact_set``."""

    config: ComponentConfig
    n_layers: int
    n_heads: int
    head_dim: int
    n_pairs: int
    n_valid: int
    n_null: int
    components: tuple[str, ...]
    exact_set: tuple[str, ...]
    exact_selection: str
    attribution: dict[str, ComponentEffects]
    exact: dict[str, ComponentEffects]
    null: ComponentEffects | None
    null_attribution: ComponentEffects | None
    rank_correlation: dict[str, dict[str, float]]
    ranking: tuple[RankedComponent, ...]
    attention: tuple[HeadAttention, ...]
    mean_stop_score: dict[str, float]
    timings_s: dict[str, float]

    def top(self, k: int = 5) -> tuple[RankedComponent, ...]:
        return self.ranking[:k]

    def to_dict(self) -> dict[str, Any]:
        return dataclass_dict(self)


# --- the analysis --------------------------------------------------------------------------------


def _exact_groups(comps: Sequence[Component], cfg: ComponentConfig) -> tuple[str, ...]:
    """Every group when every component is patched exactly; on deep models only the ranking
    group and the decision positions ("post"), where a hand-over shows (the other groups
    keep their attribution estimates)."""
    if len(comps) <= cfg.max_exact_all:
        return tuple(cfg.groups)
    return tuple(g for g in cfg.groups if g in (cfg.rank_group, "post"))


def _select_exact(
    comps: Sequence[Component], attr: dict[str, ComponentEffects], cfg: ComponentConfig
) -> tuple[list[Component], str]:
    if len(comps) <= cfg.max_exact_all:
        return list(comps), f"all {len(comps)} components"
    cols = [attr[cfg.modes[0]].groups.index(g) for g in _exact_groups(comps, cfg)]
    chosen: dict[Component, None] = {}
    for mode in cfg.modes:
        score = np.nan_to_num(np.abs(attr[mode].mean[:, cols]), nan=-1.0).max(1)
        for i in np.argsort(-score, kind="stable")[: cfg.top_k]:
            chosen[comps[int(i)]] = None
    rest = [c for c in comps if c not in chosen]
    rng = np.random.default_rng(cfg.seed)
    extra = [rest[int(i)] for i in rng.choice(len(rest), min(cfg.n_check, len(rest)), False)]
    return sorted([*chosen, *extra], key=lambda c: c.order), (
        f"attribution's top {cfg.top_k} per mode (largest |effect| over the groups "
        f"{', '.join(_exact_groups(comps, cfg))}) "
        f"({len(chosen)} components) + {len(extra)} others at random (seed {cfg.seed})"
    )


def _src_tgt(pairs: EncodedPairs, base: Baseline) -> dict[str, tuple]:
    """Per mode: (source prompts, target prompts, target's own stop scores, sign)."""
    return {
        "denoising": (pairs.trig_ids, pairs.ctrl_ids, base.s_ctrl, 1.0),
        "noising": (pairs.ctrl_ids, pairs.trig_ids, base.s_trig, -1.0),
    }


def _attribution(
    readout: Readout, comps, groups, src_tgt, base: Baseline, cfg: ComponentConfig, progress
) -> dict[str, ComponentEffects]:
    """First-order patching of every component, per mode, normalised (base 0: the estimate
    is of s_patched - s_target)."""
    out = {}
    for mode in cfg.modes:
        src, tgt, _, sign = src_tgt[mode]
        raw = attribution_patching(
            readout.model, src, tgt, comps, groups, batch_size=cfg.grad_batch_size,
            desc=f"components: attribution ({mode})", progress=progress,
            eos_id=readout.eos_id, pad_id=readout.pad_id,
        )  # fmt: skip
        out[mode] = normalised_effects(
            raw, np.zeros(len(base.gap)), base.gap, base.valid, sign, mode=mode,
            method="attribution", components=comps, groups=cfg.groups, n_boot=cfg.n_boot,
            seed=cfg.seed,
        )  # fmt: skip
    return out


def _exact(
    readout: Readout, exact_set, positions, src_tgt, base: Baseline, cfg: ComponentConfig, progress
) -> dict[str, ComponentEffects]:
    """Exact patching of ``exact_set`` at the groups of ``positions``, per mode, normalised."""
    out = {}
    for mode in cfg.modes:
        src, tgt, s_tgt, sign = src_tgt[mode]
        raw = patch_components(
            readout.model, src, tgt, exact_set, positions, batch_size=cfg.batch_size,
            chunk_size=cfg.chunk_size, desc=f"components: exact ({mode})", progress=progress,
            eos_id=readout.eos_id, pad_id=readout.pad_id,
        )  # fmt: skip
        out[mode] = normalised_effects(
            raw, s_tgt, base.gap, base.valid, sign, mode=mode, method="exact",
            components=exact_set, groups=tuple(positions), n_boot=cfg.n_boot, seed=cfg.seed,
        )  # fmt: skip
    return out


def _rank_correlation(comps, exact_set, attribution, exact, cfg) -> dict[str, dict[str, float]]:
    """mode -> group -> Spearman(attribution, exact) over the exactly patched components."""
    rows = [comps.index(c) for c in exact_set]
    return {
        mode: {
            g: spearman(exact[mode].mean[:, gi], attribution[mode].mean[rows, cfg.groups.index(g)])
            for gi, g in enumerate(exact[mode].groups)
        }
        for mode in cfg.modes
    }


@dataclass(frozen=True, eq=False)
class _Patched:
    """What the patching steps measured (the fields of `ComponentResult` of the same names;
    the null ones stay None without null pairs)."""

    attribution: dict[str, ComponentEffects]
    exact_set: list[Component]
    exact_selection: str
    exact: dict[str, ComponentEffects]
    null: ComponentEffects | None = None
    null_attribution: ComponentEffects | None = None
    n_null: int = 0


def _patch(
    readout: Readout, pairs, null_pairs, comps, groups, base: Baseline, cfg, progress, timings
) -> _Patched:
    """Attribution patching of every component, exact patching of the set it selects, and the
    control-vs-control null; each step timed into ``timings``."""
    src_tgt = _src_tgt(pairs, base)

    def step(label: str, key: str):
        return timed(f"components: {label}", enabled=progress, timings=timings, key=key)

    with step(f"attribution patching, {len(comps)} components x {len(pairs)} pairs", "attribution"):
        attribution = _attribution(readout, comps, groups, src_tgt, base, cfg, progress)
    exact_set, how = _select_exact(comps, attribution, cfg)
    positions = {g: groups[g] for g in _exact_groups(comps, cfg)}
    with step(f"exact patching of {len(exact_set)} components ({how})", "exact"):
        exact = _exact(readout, exact_set, positions, src_tgt, base, cfg, progress)
    if null_pairs is None or not len(null_pairs):
        return _Patched(attribution, exact_set, how, exact)
    with step("control-vs-control null", "null"):
        null = _null(readout, pairs, null_pairs, exact_set, comps, cfg, base, progress)
    return _Patched(attribution, exact_set, how, exact, *null)


def _top_heads_attention(model, pairs, ranking, pad_id, cfg, progress, timings):
    """The attention of the ranking's top ``n_attention_heads`` heads (timed into
    ``timings``)."""
    heads = [Component(r.layer, r.head) for r in ranking if r.head is not None]
    label = "components: attention of the top heads"
    with timed(label, enabled=progress, timings=timings, key="attention"):
        return head_attention(
            model, pairs, heads[: cfg.n_attention_heads], pad_id=pad_id,
            batch_size=cfg.batch_size, n_boot=cfg.n_boot, seed=cfg.seed,
        )  # fmt: skip


def component_patching(
    model: nn.Module,
    pairs: EncodedPairs,
    *,
    eos_id: int,
    pad_id: int = 0,
    null_pairs: EncodedPairs | None = None,
    config: ComponentConfig | None = None,
    progress: bool = True,
) -> ComponentResult:
    """Attribution patching of every head and MLP, exact patching of all of them (small
    models) or of attribution's top components, the control-vs-control null, the rank
    correlation between the two methods, and the top heads' attention (module docstring).

    Args:
        pairs: aligned triggered / control pairs (TEST split); the first
            ``config.max_pairs`` are used.
        null_pairs: control-vs-control pairs of the same prompts
            (`stoplens.capture.encode.swap_pairs`: "triggered" = control2, "control" =
            control), matched by pair_id; the null is skipped without them.
    """
    cfg = config or ComponentConfig()
    if len(pairs) == 0:
        raise ValueError("component_patching: no pairs")
    if cfg.max_pairs is not None and len(pairs) > cfg.max_pairs:
        pairs = pairs.subset(range(cfg.max_pairs))
    timings: dict[str, float] = {}
    comps = all_components(model)
    groups = position_groups(pairs, cfg.groups)
    readout = Readout(model, eos_id, pad_id, cfg.batch_size)
    base = Baseline.measure(readout, pairs, cfg.min_gap)
    got = _patch(readout, pairs, null_pairs, comps, groups, base, cfg, progress, timings)
    ranking = rank_components(comps, got.exact_set, got.attribution, got.exact, got.null, cfg)
    attention = _top_heads_attention(model, pairs, ranking, pad_id, cfg, progress, timings)
    return ComponentResult(
        config=cfg,
        n_layers=arch.n_layers(model),
        n_heads=arch.n_heads(model),
        head_dim=arch.head_dim(model),
        n_pairs=len(pairs),
        n_valid=int(base.valid.sum()),
        n_null=got.n_null,
        components=tuple(c.name for c in comps),
        exact_set=tuple(c.name for c in got.exact_set),
        exact_selection=got.exact_selection,
        attribution=got.attribution,
        exact=got.exact,
        null=got.null,
        null_attribution=got.null_attribution,
        rank_correlation=_rank_correlation(comps, got.exact_set, got.attribution, got.exact, cfg),
        ranking=ranking,
        attention=attention,
        mean_stop_score={
            "triggered": float(base.s_trig.mean()),
            "control": float(base.s_ctrl.mean()),
        },
        timings_s=timings,
    )


def _null(readout: Readout, pairs, null_pairs, exact_set, comps, cfg, base: Baseline, progress):
    """Exact and first-order patching control2 -> control, normalised by the matched pair's
    trigger gap; pairs without a control-vs-control partner are NaN. Returns (exact effects,
    attribution effects, number of null pairs); (None, None, 0) when no pair has a partner."""
    gap, valid = base.gap, base.valid
    by_id = {str(m.get("pair_id")): i for i, m in enumerate(null_pairs.meta)}
    rows = [(i, by_id[str(m.get("pair_id"))]) for i, m in enumerate(pairs.meta)
            if str(m.get("pair_id")) in by_id]  # fmt: skip
    if not rows:
        return None, None, 0
    pi, ni = [r[0] for r in rows], [r[1] for r in rows]
    src = [null_pairs.trig_ids[j] for j in ni]
    tgt = [null_pairs.ctrl_ids[j] for j in ni]
    sub = pairs.subset(pi)
    groups = position_groups(sub, (cfg.rank_group,))  # the null judges the ranking group only
    model = readout.model
    s_tgt = stop_score(readout.logits(tgt), readout.eos_id).double().numpy()
    kw: dict[str, Any] = dict(groups=(cfg.rank_group,), n_boot=cfg.n_boot, seed=cfg.seed)
    raw = patch_components(
        model, src, tgt, exact_set, groups, batch_size=cfg.batch_size, chunk_size=cfg.chunk_size,
        desc="components: exact (null)", progress=progress, eos_id=readout.eos_id,
        pad_id=readout.pad_id,
    )  # fmt: skip
    full = torch.full((len(pairs), *raw.shape[1:]), float("nan"))
    full[pi] = raw
    base_full = np.zeros(len(pairs))
    base_full[pi] = s_tgt
    valid_null = np.zeros_like(valid)
    valid_null[pi] = valid[pi]
    null = normalised_effects(
        full, base_full, gap, valid_null, 1.0, mode="null", method="exact", components=exact_set,
        **kw,
    )  # fmt: skip
    raw_a = attribution_patching(
        model, src, tgt, comps, groups, batch_size=cfg.grad_batch_size,
        desc="components: attribution (null)", progress=progress, eos_id=readout.eos_id,
        pad_id=readout.pad_id,
    )  # fmt: skip
    full_a = torch.full((len(pairs), *raw_a.shape[1:]), float("nan"))
    full_a[pi] = raw_a
    null_a = normalised_effects(
        full_a, np.zeros(len(pairs)), gap, valid_null, 1.0, mode="null", method="attribution",
        components=comps, **kw,
    )  # fmt: skip
    return null, null_a, len(rows)
