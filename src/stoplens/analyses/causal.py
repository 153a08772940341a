"""The causal suite for one model: "is this direction / this layer the cause of stopping?"

`run_causal` wires the pieces together, with a strict split discipline:

1. activation patching on the VAL pairs (denoising, and noising if asked): where the signal
   is, per layer and position group; it also guides the selection (step 3), so it never sees
   TEST;
2. difference-in-means directions on the TRAIN pairs (and the control-vs-control null
   direction, control2 - control, if its pairs are given);
3. direction selection on the VAL pairs (`stoplens.analyses.directions.select_direction`),
   among the layers where denoising patching at the decision position recovers at least
   ``patch_guide_min`` of the stop (all of 1..L−1 when none does; recorded);
4. effects on the TEST pairs against >= 16 random directions and the control direction
   (`stoplens.analyses.steering.steering_effects`);
5. generalization to held-out placements (`stoplens.analyses.generalization`): for each
   split, directions fitted on TRAIN pairs of the fit placements, layer and α selected again
   on VAL pairs of the fit placements only (the held-out placements never inform the
   choice), effects on TEST pairs of the held-out placements; and the base-model control
   (`stoplens.analyses.base_control`).

It returns a `CausalResult` whose ``necessary`` / ``sufficient`` / ``general_*`` /
``base_control`` / ``cost`` fields are `Evidence` (`stoplens.analyses.evidence`). The verdict
itself is the report's job.

Owns: `CausalConfig`, `CausalResult` and the orchestration. Must not: measure anything
itself (the modules above do), plot or write files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from stoplens.analyses.base_control import BaseControlResult, base_model_control
from stoplens.analyses.directions import (
    DirectionSelection,
    MeanDiffDirections,
    SelectionCriteria,
    mean_diff_directions,
    select_direction,
)
from stoplens.analyses.evidence import Evidence, causal_evidence, selection_details
from stoplens.analyses.generalization import (
    PlacementGeneralization,
    heldout_splits,
    placement_generalization,
)
from stoplens.analyses.patching import (
    DEFAULT_GROUPS,
    PatchingResult,
    activation_patching,
    candidate_layers_from_patching,
)
from stoplens.analyses.results import Nulls, dataclass_dict
from stoplens.analyses.steering import Examples, Steering, SteeringResult, steering_effects
from stoplens.capture.encode import EncodedPairs
from stoplens.interventions.cache import OutcomeCache
from stoplens.interventions.readout import Readout
from stoplens.models import arch
from stoplens.progress import timed

# --- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CausalConfig:
    """Settings and verdict thresholds of the causal suite (thresholds are written into the
    results beside the measured values)."""

    seed: int = 0
    batch_size: int = 32
    n_boot: int = 1000
    # activation patching
    patch_groups: tuple[str, ...] = DEFAULT_GROUPS
    patch_noising: bool = True  # also patch control -> triggered
    patch_min_gap: float = 1.0  # min |stop score(trig) - stop score(ctrl)| for a pair to count
    patch_max_pairs: int | None = 48  # patching cost is (L+1) x groups x pairs forwards
    patch_max_layers: int | None = 16  # deeper models: an evenly spaced grid incl. 0 and L
    patch_guide_min: float = 0.5  # selection candidates: denoising recovery at the decision pos.
    # directions and selection
    position: str = "last"
    prune_last_fraction: float = 0.0
    alphas: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    kl_threshold: float = 0.1
    ablation_threshold: float = 0.0  # ablated triggered mean stop score must fall below
    ablation_max_stop_fraction: float = 0.1  # ... and at most this share of the stops remain
    addition_threshold: float = 0.0  # added clean mean stop score must rise above
    # test effects
    n_random: int = 32
    n_random_kl: int = 8  # random directions behind the KL reference (kl_null_mean)
    null_prompts: int | None = 32  # pairs each random direction runs on (None: all)
    n_examples: int = 4
    gen_tokens: int = 8
    # generalization: explicit (fit placements, test placements) splits, or None for the
    # scheme: "halves" = the placements (sorted) split into two complementary halves, each
    # fitted on one and tested on the other (2 splits); "leave_one_out" = each placement with
    # >= min_placement_pairs test pairs held out in turn (one split per placement, ~3x the cost)
    heldout: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] | None = None
    heldout_scheme: str = "halves"
    min_placement_pairs: int = 8
    n_random_heldout: int = 24
    # verdict thresholds (numbers only; the verdict logic belongs to the report)
    p_threshold: float = 0.05  # empirical p against the random-direction null (>= 1/(n+1))
    necessary_fraction: float = 0.9  # ablation must remove this share of the baseline stops
    min_sufficient_effect: float = 0.5  # rise in clean stop rate under addition
    max_kl: float = 0.1  # KL cost of ablation on clean prompts
    max_base_stop_rate: float = 0.05  # base model under the same interventions

    def __post_init__(self) -> None:
        for name in ("n_random", "n_random_heldout"):
            k = getattr(self, name)
            if k < 16:
                raise ValueError(
                    f"{name} must be >= 16 (got {k}): the random-direction null needs at "
                    "least 16 directions of the same norm"
                )
            if 1 / (k + 1) > self.p_threshold:
                raise ValueError(
                    f"{name}={k} random directions can never give an empirical p <= "
                    f"p_threshold={self.p_threshold} (smallest p is 1/{k + 1}); raise {name}"
                )
        if self.heldout_scheme not in ("halves", "leave_one_out"):
            raise ValueError(
                f"heldout_scheme must be 'halves' or 'leave_one_out', got {self.heldout_scheme!r}"
            )
        if self.patch_max_layers is not None and self.patch_max_layers < 2:
            raise ValueError("patch_max_layers must be >= 2 (residual 0 and L) or None (all)")
        if not 0 <= self.prune_last_fraction < 1:
            raise ValueError("prune_last_fraction must be in [0, 1)")
        if self.position not in ("last", "post"):
            raise ValueError(f"position must be 'last' or 'post', got {self.position!r}")
        if not self.alphas or any(a <= 0 for a in self.alphas):
            raise ValueError("alphas must be a non-empty grid of positive numbers")

    def to_dict(self) -> dict[str, Any]:
        return dataclass_dict(self)

    def nulls(self, heldout: bool = False, pair_ids: frozenset[str] | None = None) -> Nulls:
        """The random-direction null and bootstrap of the TEST effects (or the held-out;
        ``pair_ids``: run the null on those pairs only, see `Nulls.pair_ids`)."""
        n = self.n_random_heldout if heldout else self.n_random
        return Nulls(
            n, self.n_boot, self.seed, n_kl=self.n_random_kl, max_prompts=self.null_prompts,
            pair_ids=pair_ids,
        )  # fmt: skip

    def patch_layers(self, n_layers: int) -> tuple[int, ...]:
        """The residual layers activation patching sweeps: all of 0..L, or for a model with
        more than ``patch_max_layers`` of them an evenly spaced grid that keeps 0 and L (for
        a 30-block model and 16: every second layer). Direction selection then chooses among
        the patched layers only."""
        every = tuple(range(n_layers + 1))
        if self.patch_max_layers is None or len(every) <= self.patch_max_layers:
            return every
        grid = np.linspace(0, n_layers, self.patch_max_layers).round().astype(int)
        return tuple(sorted({int(x) for x in grid}))

    def criteria(self, candidate_layers: Sequence[int]) -> SelectionCriteria:
        """`select_direction`'s grid and filters, restricted to ``candidate_layers``."""
        return SelectionCriteria(
            alphas=tuple(self.alphas),
            kl_threshold=self.kl_threshold,
            prune_last_fraction=self.prune_last_fraction,
            ablation_threshold=self.ablation_threshold,
            ablation_max_stop_fraction=self.ablation_max_stop_fraction,
            addition_threshold=self.addition_threshold,
            candidate_layers=tuple(candidate_layers),
        )


@dataclass(frozen=True)
class CausalResult:
    """Everything the causal suite measured for one model (+ optional base)."""

    config: CausalConfig
    n_pairs: dict[str, int]
    patching: PatchingResult
    patching_noising: PatchingResult | None
    directions: MeanDiffDirections
    control_directions: MeanDiffDirections | None
    selection: DirectionSelection
    effects: SteeringResult
    generalization: tuple[PlacementGeneralization, ...]
    base: BaseControlResult | None
    necessary: Evidence
    sufficient: Evidence
    general_necessary: Evidence | None
    general_sufficient: Evidence | None
    base_control: Evidence | None
    cost: Evidence | None
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclass_dict(self)


# --- orchestration ------------------------------------------------------------------------------


def _patching(
    readout: Readout, val: EncodedPairs, cfg: CausalConfig, progress: bool
) -> tuple[EncodedPairs, PatchingResult, PatchingResult | None]:
    """Denoising (and, if configured, noising) activation patching on at most
    ``patch_max_pairs`` VAL pairs."""
    patch_pairs = val
    if cfg.patch_max_pairs is not None and len(val) > cfg.patch_max_pairs:
        patch_pairs = val.subset(range(cfg.patch_max_pairs))
    kw: dict[str, Any] = dict(
        groups=cfg.patch_groups, min_gap=cfg.patch_min_gap, progress=progress,
        eos_id=readout.eos_id, pad_id=readout.pad_id, batch_size=readout.batch_size,
        n_boot=cfg.n_boot, seed=cfg.seed,
    )  # fmt: skip
    model = readout.model
    kw["layers"] = cfg.patch_layers(arch.n_layers(model))
    denoising = activation_patching(model, patch_pairs, mode="denoising", **kw)
    noising = None
    if cfg.patch_noising:
        noising = activation_patching(model, patch_pairs, mode="noising", **kw)
    return patch_pairs, denoising, noising


def _candidates(patching: PatchingResult, cfg: CausalConfig, n_layers: int) -> tuple[list, bool]:
    """The layers denoising patching points at (and whether it pointed at any); all patched
    layers of 1..L−1 when it points at none."""
    group = "last" if cfg.position == "last" else "post"
    found = candidate_layers_from_patching(patching, group, cfg.patch_guide_min)
    if found:
        return found, True
    return [layer for layer in patching.layers if 0 < layer < n_layers], False


def _directions(
    readout: Readout, pairs: EncodedPairs | None, cfg: CausalConfig, layers=None
) -> MeanDiffDirections | None:
    if pairs is None or not len(pairs):
        return None
    return mean_diff_directions(
        readout.model, pairs, position=cfg.position, layers=layers, pad_id=readout.pad_id,
        batch_size=readout.batch_size,
    )  # fmt: skip


def _base_control(
    readout: Readout, base: nn.Module, data, steering, cfg, step
) -> BaseControlResult:
    """The fine-tuned model's interventions (and the base's own mean difference on TRAIN) on
    the base, on TEST."""
    train, test = data
    with step("base-model control"):
        base_readout = readout.on(base)
        own_dirs = _directions(base_readout, train, cfg, layers=[steering.layer])
        assert own_dirs is not None
        own = own_dirs.get(steering.layer)
        own_direction = own if float(own.norm()) > 1e-8 else None
        return base_model_control(base_readout, test, steering, own_direction=own_direction)


def _generalization(
    readout: Readout,
    data: tuple[EncodedPairs, EncodedPairs, EncodedPairs],
    split: tuple[tuple[str, ...], tuple[str, ...]],
    sel: DirectionSelection,
    cfg: CausalConfig,
    cache: OutcomeCache,
    criteria: SelectionCriteria,
) -> PlacementGeneralization:
    """One held-out-placement split: refit on TRAIN, reselect on VAL, measure on TEST."""
    train, val, test = data
    fit, held = split
    return placement_generalization(
        readout, train, test, fit_placements=fit, test_placements=held, layer=sel.layer,
        alpha=sel.alpha, reference_direction=sel.direction, position=cfg.position,
        nulls=cfg.nulls(heldout=True, pair_ids=null_pair_ids(test, cfg)), cache=cache,
        val_pairs=val, criteria=criteria,
    )  # fmt: skip


def null_pair_ids(test: EncodedPairs, cfg: CausalConfig) -> frozenset[str]:
    """The ids of the TEST pairs the main effects' random null runs on. The held-out splits
    run their nulls on the same pairs (those of their placements), so the random directions'
    ablations there are cache hits, not new passes."""
    ids = test.pair_ids()
    return frozenset(ids[i] for i in cfg.nulls().prompts(test.placements(), ids))


def run_causal(
    model: nn.Module,
    train: EncodedPairs,
    val: EncodedPairs,
    test: EncodedPairs,
    *,
    eos_id: int,
    pad_id: int = 0,
    config: CausalConfig | None = None,
    base: nn.Module | None = None,
    control_pairs: EncodedPairs | None = None,
    answers: Sequence[Sequence[int]] | None = None,
    tokenizer=None,
    cache: OutcomeCache | None = None,
    progress: bool = False,
) -> CausalResult:
    """The whole causal suite for one model (see module docstring).

    Args:
        train, val, test: aligned triggered/control pairs of the three splits.
        base: the base model, for the base-model control (optional).
        control_pairs: control-vs-control pairs of the TRAIN split (`swap_pairs`), for the
            null direction control2 - control (optional).
        answers: reference answer token ids per TEST pair, for the perplexity cost (optional).
        tokenizer: decodes the generated examples (optional).
        cache: the `OutcomeCache` of ``model`` to use (and keep filling), e.g. to share work
            with a later `cross_model`; a fresh one by default. Results do not depend on it.
        progress: a line (or bar) per sub-analysis with counts and times.
    """
    cfg = config or CausalConfig()
    readout = Readout(model, eos_id, pad_id, cfg.batch_size)
    cache = OutcomeCache.of(readout) if cache is None else cache
    timings: dict[str, float] = {}

    def step(name: str):
        return timed(f"causal: {name}", enabled=progress, timings=timings, key=name)

    patch_pairs, patching, noising, criteria, guided = _locate(readout, val, cfg, step, progress)
    splits = (train, val, control_pairs)
    dirs, ctrl_dirs, sel = _select(readout, cfg, splits, criteria, cache, step, progress)
    steering = Steering.of(sel)
    control = None if ctrl_dirs is None else ctrl_dirs.get(sel.layer)
    with step(f"effects on {len(test)} TEST pairs vs {cfg.n_random} random directions"):
        effects = steering_effects(
            readout, test, steering, nulls=cfg.nulls(), control_direction=control,
            answers=answers, examples=Examples(cfg.n_examples, cfg.gen_tokens, tokenizer),
            cache=cache, progress=progress,
        )  # fmt: skip
    gens = _heldout(readout, (train, val, test), sel, cfg, cache, criteria, step)
    base_res = None
    if base is not None:
        base_res = _base_control(readout, base, (train, test), steering, cfg, step)
    details = selection_details(sel, criteria.candidate_layers, guided)
    return CausalResult(
        config=cfg, timings_s=timings, patching=patching, patching_noising=noising,
        n_pairs=dict(train=len(train), val=len(val), test=len(test), patching=len(patch_pairs)),
        directions=dirs, control_directions=ctrl_dirs, selection=sel, effects=effects,
        generalization=gens, base=base_res,
        **causal_evidence(effects, gens, base_res, cfg, details),
    )  # fmt: skip


def _locate(readout: Readout, val: EncodedPairs, cfg: CausalConfig, step, progress: bool):
    """Step 1: activation patching on VAL, and the selection criteria restricted to the layers
    it points at (and whether it pointed at any)."""
    L = arch.n_layers(readout.model)
    n_cells = len(cfg.patch_layers(L)) * len(cfg.patch_groups)
    n_patch = len(val) if cfg.patch_max_pairs is None else min(len(val), cfg.patch_max_pairs)
    with step(f"activation patching, {n_patch} VAL pairs x {n_cells} cells"):
        patch_pairs, patching, noising = _patching(readout, val, cfg, progress)
    candidates, guided = _candidates(patching, cfg, L)
    return patch_pairs, patching, noising, cfg.criteria(candidates), guided


def _select(readout: Readout, cfg: CausalConfig, splits, criteria, cache, step, progress):
    """Steps 2-3: difference-in-means directions on TRAIN (and the control-vs-control null
    direction, from the control-vs-control pairs), then the selection on VAL among
    ``criteria.candidate_layers``. ``splits``: (train, val, control pairs or None)."""
    train, val, control_pairs = splits
    with step(f"difference-in-means directions, {len(train)} TRAIN pairs"):
        dirs = _directions(readout, train, cfg)
        ctrl_dirs = _directions(readout, control_pairs, cfg)
    assert dirs is not None
    n_layers = len(criteria.candidate_layers)
    with step(f"direction selection, {n_layers} layers x {len(val)} VAL pairs"):
        sel = select_direction(
            readout, dirs, val, criteria=criteria, cache=cache, progress=progress
        )
    return dirs, ctrl_dirs, sel


def _heldout(readout, data, sel, cfg, cache, criteria, step) -> tuple[PlacementGeneralization, ...]:
    """Step 5: every held-out-placement split (`_generalization`)."""
    if cfg.heldout is not None:
        splits = [(tuple(f), tuple(t)) for f, t in cfg.heldout]
    else:
        scheme, min_pairs = cfg.heldout_scheme, cfg.min_placement_pairs
        splits = heldout_splits(data[0], data[2], scheme=scheme, min_pairs=min_pairs)
    with step(f"held-out placements, {len(splits)} splits"):
        return tuple(
            _generalization(readout, data, split, sel, cfg, cache, criteria) for split in splits
        )
