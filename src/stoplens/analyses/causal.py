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
5. generalization to held-out placements: for each split, directions fitted on TRAIN pairs
   of the fit placements, layer and α selected again on VAL pairs of the fit placements
   only (the held-out placements never inform the choice), effects on TEST pairs of the
   held-out placements; and the base-model control.

It returns a `CausalResult` whose ``necessary`` / ``sufficient`` / ``general_*`` /
``base_control`` / ``cost`` fields are `Evidence`: the measured value with its CI and n, its null (mean,
95th percentile, empirical p) and the configured thresholds. The verdict itself is the
report's job.

Also here, because they combine directions and steering: `placement_generalization`,
`cross_model` (two models' directions: per-layer cosine, cross-ablation / cross-addition) and
`checkpoint_dynamics` (a typed series over training checkpoints).

Owns: the orchestration and these combined analyses. Must not: plot or write files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from stoplens.analyses.directions import (
    DirectionSelection,
    MeanDiffDirections,
    candidate_layers_from_patching,
    mean_diff_directions,
    select_direction,
)
from stoplens.analyses.patching import DEFAULT_GROUPS, PatchingResult, activation_patching
from stoplens.analyses.results import dataclass_dict
from stoplens.analyses.stats import Estimate, cosine, jsonable, wilson
from stoplens.analyses.steering import (
    BaseControlResult,
    SteeringResult,
    base_model_control,
    steering_effects,
)
from stoplens.capture.pairs import EncodedPairs
from stoplens.interventions.cache import OutcomeCache
from stoplens.interventions.primitives import Ablation
from stoplens.interventions.readout import intervened_logits, stop_outcomes
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
    patch_max_pairs: int | None = 64  # patching cost is (L+1) x groups x pairs forwards
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
                raise ValueError(f"{name} must be >= 16 (DESIGN.md §4 item 5), got {k}")
            if 1 / (k + 1) > self.p_threshold:
                raise ValueError(
                    f"{name}={k} random directions can never give an empirical p <= "
                    f"p_threshold={self.p_threshold} (smallest p is 1/{k + 1}); raise {name}"
                )
        if self.heldout_scheme not in ("halves", "leave_one_out"):
            raise ValueError(
                f"heldout_scheme must be 'halves' or 'leave_one_out', got {self.heldout_scheme!r}"
            )
        if not 0 <= self.prune_last_fraction < 1:
            raise ValueError("prune_last_fraction must be in [0, 1)")
        if self.position not in ("last", "post"):
            raise ValueError(f"position must be 'last' or 'post', got {self.position!r}")
        if not self.alphas or any(a <= 0 for a in self.alphas):
            raise ValueError("alphas must be a non-empty grid of positive numbers")

    def to_dict(self) -> dict[str, Any]:
        return dataclass_dict(self)


# --- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """One verdict-ready number: ``measured`` (value, 95% CI, n), its null (mean, 95th
    percentile, empirical one-sided p; None where the claim has no null), the
    control-direction value where there is one, and the thresholds to judge it by."""

    claim: str
    measured: Estimate
    null_mean: float | None
    null_p95: float | None
    p_value: float | None
    control: float | None
    thresholds: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclass_dict(self)


@dataclass(frozen=True)
class PlacementGeneralization:
    """Direction fitted on TRAIN pairs with ``fit_placements``, effects measured on TEST pairs
    with ``test_placements`` (``heldout``) and, for comparison, on TEST pairs of the fit
    placements (``in_distribution``, None if there are none). ``cos_to_reference``: cosine
    with the direction fitted on all placements (if given)."""

    fit_placements: tuple[str, ...]
    test_placements: tuple[str, ...]
    layer: int
    alpha: float
    n_fit: int
    cos_to_reference: float | None
    heldout: SteeringResult
    in_distribution: SteeringResult | None
    selection: DirectionSelection | None = None  # re-selected on VAL fit placements, if done

    @property
    def ablation_ratio(self) -> float | None:
        """Held-out / in-distribution ablation effect."""
        if self.in_distribution is None or self.in_distribution.ablation_effect.value == 0:
            return None
        return self.heldout.ablation_effect.value / self.in_distribution.ablation_effect.value

    def to_dict(self) -> dict[str, Any]:
        d = dataclass_dict(self)
        d["ablation_ratio"] = jsonable(self.ablation_ratio)
        return d


@dataclass(frozen=True)
class CrossModelResult:
    """Two models' directions compared. ``cos_by_layer``: cos(r_a, r_b) of the mean
    differences per layer; ``cos_selected``: of the two selected directions. ``effects``:
    "<source>_on_<target>" -> `SteeringResult` of the source's selected direction (at its
    layer and α) ablated / added in the target model, with the target's random null."""

    labels: tuple[str, str]
    layers: tuple[int, int]
    cos_by_layer: dict[int, float]
    cos_selected: float
    effects: dict[str, SteeringResult]

    def to_dict(self) -> dict[str, Any]:
        return dataclass_dict(self)


@dataclass(frozen=True)
class CheckpointSeries:
    """Per training checkpoint (in ``steps`` order): triggered stop rate and false-stop rate
    (Wilson CIs), the drop in stop rate when the direction is ablated (``fixed``: a given
    direction, e.g. the final model's; ``own``: the checkpoint's own mean difference at
    ``layer``), the own direction's norm and cosine to the fixed one, and any extra metrics
    (name -> one value per checkpoint, None where unavailable)."""

    steps: tuple[int, ...]
    layer: int
    stop_rate: tuple[Estimate, ...]
    false_stop_rate: tuple[Estimate, ...]
    ablation_effect_fixed: tuple[float | None, ...]
    ablation_effect_own: tuple[float | None, ...]
    own_norm: tuple[float | None, ...]
    cos_own_to_fixed: tuple[float | None, ...]
    metrics: dict[str, tuple[float | None, ...]]

    def to_dict(self) -> dict[str, Any]:
        return dataclass_dict(self)


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


# --- combined analyses ------------------------------------------------------------------------


def _by_placement(pairs: EncodedPairs, placements: Sequence[str]) -> EncodedPairs:
    keep = set(placements)
    return pairs.subset([i for i, m in enumerate(pairs.meta) if m.get("placement") in keep])


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return cosine(a.detach().double().cpu().numpy(), b.detach().double().cpu().numpy())


def placement_generalization(
    model: nn.Module,
    train_pairs: EncodedPairs,
    test_pairs: EncodedPairs,
    *,
    fit_placements: Sequence[str],
    test_placements: Sequence[str],
    layer: int,
    alpha: float,
    eos_id: int,
    pad_id: int = 0,
    reference_direction: torch.Tensor | None = None,
    position: str = "last",
    n_random: int = 16,
    batch_size: int = 32,
    n_boot: int = 1000,
    seed: int = 0,
    cache: OutcomeCache | None = None,
    val_pairs: EncodedPairs | None = None,
    select_kw: Mapping[str, Any] | None = None,
) -> PlacementGeneralization:
    """Fit the mean difference on TRAIN pairs with ``fit_placements``; measure ablation /
    addition (α times the new direction) on TEST pairs with ``test_placements``. With
    ``val_pairs`` the layer and α are selected again (`select_direction` with ``select_kw``)
    on the VAL pairs of the fit placements, among the layers of ``select_kw``'s
    ``candidate_layers``; ``layer`` / ``alpha`` are then only the fallback when those VAL
    pairs are empty. ``cache``: an `OutcomeCache` of ``model`` shared with the run's other
    effects."""
    overlap = set(fit_placements) & set(test_placements)
    if overlap:
        raise ValueError(f"placements {sorted(overlap)} are both fitted and held out")
    fit = _by_placement(train_pairs, fit_placements)
    held = _by_placement(test_pairs, test_placements)
    if len(fit) == 0 or len(held) == 0:
        raise ValueError(
            f"placement_generalization: {len(fit)} fit pairs for {list(fit_placements)}, "
            f"{len(held)} test pairs for {list(test_placements)}; both must be non-empty"
        )
    cache = OutcomeCache(model, eos_id) if cache is None else cache
    sel = None
    val_fit = None if val_pairs is None else _by_placement(val_pairs, fit_placements)
    if val_fit is not None and len(val_fit):
        skw = dict(select_kw or {})
        cands = skw.get("candidate_layers")
        dirs = mean_diff_directions(
            model, fit, position=position, layers=cands, pad_id=pad_id, batch_size=batch_size
        )
        sel = select_direction(
            model, dirs, val_fit, eos_id=eos_id, pad_id=pad_id, batch_size=batch_size,
            cache=cache, **skw,
        )  # fmt: skip
        layer, alpha, r = sel.layer, sel.alpha, sel.direction
    else:
        r = mean_diff_directions(
            model, fit, position=position, layers=[layer], pad_id=pad_id, batch_size=batch_size
        ).get(layer)
    kw: dict[str, Any] = dict(
        direction=r,
        layer=layer,
        alpha=alpha,
        eos_id=eos_id,
        pad_id=pad_id,
        n_random=n_random,
        cost=False,
        n_examples=0,
        batch_size=batch_size,
        n_boot=n_boot,
        seed=seed,
        cache=cache,
    )
    inside = _by_placement(test_pairs, fit_placements)
    return PlacementGeneralization(
        fit_placements=tuple(fit_placements),
        test_placements=tuple(test_placements),
        layer=int(layer),
        alpha=float(alpha),
        n_fit=len(fit),
        cos_to_reference=None if reference_direction is None else _cos(r, reference_direction),
        heldout=steering_effects(model, held, **kw),
        in_distribution=steering_effects(model, inside, **kw) if len(inside) else None,
        selection=sel,
    )


def cross_model(
    model_a: nn.Module,
    model_b: nn.Module,
    selection_a: DirectionSelection,
    selection_b: DirectionSelection,
    pairs: EncodedPairs,
    *,
    eos_id: int,
    pad_id: int = 0,
    labels: tuple[str, str] = ("a", "b"),
    pairs_b: EncodedPairs | None = None,
    n_random: int = 16,
    batch_size: int = 32,
    n_boot: int = 1000,
    seed: int = 0,
    caches: tuple[OutcomeCache | None, OutcomeCache | None] = (None, None),
) -> CrossModelResult:
    """Does one model's direction control the other? (e.g. knowledge vs behavioral regime
    fine-tunes of the same base). ``pairs`` are evaluated on model A (and on B unless
    ``pairs_b`` is given: needed only if the two tokenizers differ). ``caches``: the two
    models' `OutcomeCache`s from their `run_causal` (a model's own direction on itself is then
    looked up, not recomputed)."""
    pairs_b = pairs if pairs_b is None else pairs_b
    la, lb = labels
    models = {la: (model_a, pairs), lb: (model_b, pairs_b)}
    own = {
        la: caches[0] if caches[0] is not None else OutcomeCache(model_a, eos_id),
        lb: caches[1] if caches[1] is not None else OutcomeCache(model_b, eos_id),
    }
    sels = {la: selection_a, lb: selection_b}
    effects = {}
    for src, sel in sels.items():
        for tgt, (model, prs) in models.items():
            effects[f"{src}_on_{tgt}"] = steering_effects(
                model,
                prs,
                direction=sel.direction,
                layer=sel.layer,
                alpha=sel.alpha,
                eos_id=eos_id,
                pad_id=pad_id,
                n_random=n_random,
                cost=False,
                n_examples=0,
                batch_size=batch_size,
                n_boot=n_boot,
                seed=seed,
                cache=own[tgt],
            )
    return CrossModelResult(
        labels=(la, lb),
        layers=(selection_a.layer, selection_b.layer),
        cos_by_layer=selection_a.directions.cosine(selection_b.directions),
        cos_selected=_cos(selection_a.direction, selection_b.direction),
        effects=effects,
    )


ModelLike = nn.Module | Callable[[], nn.Module]
Metric = Callable[[int, nn.Module], float | None]


@torch.no_grad()
def checkpoint_dynamics(
    checkpoints: Sequence[tuple[int, ModelLike]],
    pairs: EncodedPairs,
    *,
    eos_id: int,
    layer: int,
    pad_id: int = 0,
    direction: torch.Tensor | None = None,
    fit_pairs: EncodedPairs | None = None,
    position: str = "last",
    metrics: Mapping[str, Metric] | None = None,
    batch_size: int = 32,
) -> CheckpointSeries:
    """Per checkpoint (``(step, model)``; a zero-argument loader may stand in for the model
    so that only one is in memory at a time): stop rate and false-stop rate on ``pairs``, the
    ablation effect of ``direction`` and/or of the checkpoint's own mean difference at
    ``layer`` fitted on ``fit_pairs``, and ``metrics[name](step, model)`` for each extra
    metric (e.g. layerwise peak, PC1 share, EOS rank from the correlational analyses)."""
    if direction is None and fit_pairs is None:
        raise ValueError("checkpoint_dynamics: give a direction, fit_pairs, or both")
    metrics = dict(metrics or {})
    kw: dict[str, Any] = dict(pad_id=pad_id, batch_size=batch_size)
    n = len(pairs)
    rows: list[dict[str, Any]] = []
    for step, m in sorted(checkpoints, key=lambda x: x[0]):
        model = m if isinstance(m, nn.Module) else m()
        s_t, _ = stop_outcomes(intervened_logits(model, pairs.trig_ids, None, **kw), eos_id)
        s_c, _ = stop_outcomes(intervened_logits(model, pairs.ctrl_ids, None, **kw), eos_id)
        row: dict[str, Any] = {
            "step": int(step),
            "stop": wilson(int(s_t.sum()), n),
            "false": wilson(int(s_c.sum()), n),
            "fixed": None,
            "own": None,
            "own_norm": None,
            "cos": None,
        }

        def effect(v: torch.Tensor, model=model, s_t=s_t) -> float:
            ablated = intervened_logits(model, pairs.trig_ids, Ablation(v), **kw)
            return float(s_t.mean() - stop_outcomes(ablated, eos_id)[0].mean())

        if direction is not None:
            row["fixed"] = effect(direction)
        if fit_pairs is not None:
            own = mean_diff_directions(
                model, fit_pairs, position=position, layers=[layer], **kw
            ).get(layer)
            row["own_norm"] = float(own.norm())
            if float(own.norm()) > 1e-8:
                row["own"] = effect(own)
                if direction is not None:
                    row["cos"] = _cos(own, direction)
        values = {name: f(int(step), model) for name, f in metrics.items()}
        row["metrics"] = {k: None if v is None else float(v) for k, v in values.items()}
        rows.append(row)
        del model
    return CheckpointSeries(
        steps=tuple(r["step"] for r in rows),
        layer=int(layer),
        stop_rate=tuple(r["stop"] for r in rows),
        false_stop_rate=tuple(r["false"] for r in rows),
        ablation_effect_fixed=tuple(r["fixed"] for r in rows),
        ablation_effect_own=tuple(r["own"] for r in rows),
        own_norm=tuple(r["own_norm"] for r in rows),
        cos_own_to_fixed=tuple(r["cos"] for r in rows),
        metrics={k: tuple(r["metrics"][k] for r in rows) for k in metrics},
    )


# --- orchestration ------------------------------------------------------------------------------


def _filters_of(sel: DirectionSelection) -> dict[str, bool]:
    """The validation filters of the selected layer (which of them it passed)."""
    chosen = next((c for c in sel.candidates if c.layer == sel.layer), None)
    return {} if chosen is None else dict(chosen.filters)


def _heldout_splits(
    cfg: CausalConfig, train: EncodedPairs, test: EncodedPairs
) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    if cfg.heldout is not None:
        return [(tuple(f), tuple(t)) for f, t in cfg.heldout]
    in_train = {str(m.get("placement")) for m in train.meta}
    places = sorted({str(m.get("placement")) for m in test.meta} & in_train)
    if cfg.heldout_scheme == "halves":
        if len(places) < 2:
            return []
        a, b = tuple(places[0::2]), tuple(places[1::2])
        return [(a, b), (b, a)]
    count = lambda prs, p: sum(m.get("placement") == p for m in prs.meta)  # noqa: E731
    splits: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    for p in sorted({str(m.get("placement")) for m in test.meta}):
        others = tuple(q for q in sorted(in_train) if q != p)
        if others and count(test, p) >= cfg.min_placement_pairs:
            splits.append((others, (p,)))
    return splits


def _worst(
    claim: str, gens: Sequence[PlacementGeneralization], attr: str, null_attr: str, cfg
) -> Evidence | None:
    if not gens:
        return None
    worst = min(gens, key=lambda g: getattr(g.heldout, attr).value)
    null = getattr(worst.heldout, null_attr)
    min_effect = (
        cfg.necessary_fraction * worst.heldout.baseline_stop_rate.value
        if attr == "ablation_effect"
        else cfg.min_sufficient_effect
    )
    return Evidence(
        claim=claim,
        measured=getattr(worst.heldout, attr),
        null_mean=null.null_mean,
        null_p95=null.null_p95,
        p_value=max(getattr(g.heldout, null_attr).p_value for g in gens),
        control=None,
        thresholds={"min_effect": min_effect, "p_value": cfg.p_threshold},
        details={
            "worst_split": {
                "fit": list(worst.fit_placements),
                "test": list(worst.test_placements),
            },
            "per_split": [
                {
                    "fit": list(g.fit_placements),
                    "test": list(g.test_placements),
                    "effect": getattr(g.heldout, attr).to_dict(),
                    "in_distribution_effect": (
                        None
                        if g.in_distribution is None
                        else getattr(g.in_distribution, attr).to_dict()
                    ),
                    "p_value": getattr(g.heldout, null_attr).p_value,
                    "cos_to_reference": g.cos_to_reference,
                    "layer": g.layer,
                    "alpha": g.alpha,
                    "selection_passed": None if g.selection is None else g.selection.passed,
                    "selection_filters": None if g.selection is None else _filters_of(g.selection),
                }
                for g in gens
            ],
        },
    )


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
    cache = OutcomeCache(model, eos_id) if cache is None else cache
    common: dict[str, Any] = dict(eos_id=eos_id, pad_id=pad_id, batch_size=cfg.batch_size)
    boot: dict[str, Any] = dict(n_boot=cfg.n_boot, seed=cfg.seed)
    L = arch.n_layers(model)
    timings: dict[str, float] = {}

    def step(name: str):
        return timed(f"causal: {name}", enabled=progress, timings=timings, key=name)

    patch_pairs = val
    if cfg.patch_max_pairs is not None and len(val) > cfg.patch_max_pairs:
        patch_pairs = val.subset(range(cfg.patch_max_pairs))
    patch_kw: dict[str, Any] = dict(
        groups=cfg.patch_groups, min_gap=cfg.patch_min_gap, progress=progress, **common, **boot
    )
    n_cells = (L + 1) * len(cfg.patch_groups)
    with step(f"activation patching, {len(patch_pairs)} VAL pairs x {n_cells} cells"):
        patching = activation_patching(model, patch_pairs, mode="denoising", **patch_kw)
        noising = (
            activation_patching(model, patch_pairs, mode="noising", **patch_kw)
            if cfg.patch_noising
            else None
        )
    guide_group = "last" if cfg.position == "last" else "post"
    candidates = candidate_layers_from_patching(patching, guide_group, cfg.patch_guide_min)
    guided = bool(candidates)
    if not guided:
        candidates = list(range(1, L))

    with step(f"difference-in-means directions, {len(train)} TRAIN pairs"):
        dirs = mean_diff_directions(
            model, train, position=cfg.position, pad_id=pad_id, batch_size=cfg.batch_size
        )
        ctrl_dirs = (
            mean_diff_directions(
                model, control_pairs, position=cfg.position, pad_id=pad_id,
                batch_size=cfg.batch_size,
            )
            if control_pairs is not None and len(control_pairs)
            else None
        )  # fmt: skip
    select_kw: dict[str, Any] = dict(
        alphas=cfg.alphas,
        kl_threshold=cfg.kl_threshold,
        prune_last_fraction=cfg.prune_last_fraction,
        ablation_threshold=cfg.ablation_threshold,
        ablation_max_stop_fraction=cfg.ablation_max_stop_fraction,
        addition_threshold=cfg.addition_threshold,
        candidate_layers=candidates,
    )
    with step(f"direction selection, {len(candidates)} layers x {len(val)} VAL pairs"):
        sel = select_direction(
            model, dirs, val, cache=cache, progress=progress, **select_kw, **common
        )
    with step(f"effects on {len(test)} TEST pairs vs {cfg.n_random} random directions"):
        effects = steering_effects(
            model,
            test,
            direction=sel.direction,
            layer=sel.layer,
            alpha=sel.alpha,
            n_random=cfg.n_random,
            control_direction=None if ctrl_dirs is None else ctrl_dirs.get(sel.layer),
            answers=answers,
            tokenizer=tokenizer,
            n_examples=cfg.n_examples,
            gen_tokens=cfg.gen_tokens,
            cache=cache,
            progress=progress,
            **common,
            **boot,
        )

    splits = _heldout_splits(cfg, train, test)
    with step(f"held-out placements, {len(splits)} splits"):
        gens = tuple(
            placement_generalization(
                model,
                train,
                test,
                fit_placements=fit,
                test_placements=held,
                layer=sel.layer,
                alpha=sel.alpha,
                reference_direction=sel.direction,
                position=cfg.position,
                n_random=cfg.n_random_heldout,
                cache=cache,
                val_pairs=val,
                select_kw=select_kw,
                **common,
                **boot,
            )
            for fit, held in splits
        )

    base_res = None
    if base is not None:
        with step("base-model control"):
            own = mean_diff_directions(
                base,
                train,
                position=cfg.position,
                layers=[sel.layer],
                pad_id=pad_id,
                batch_size=cfg.batch_size,
            ).get(sel.layer)
            base_res = base_model_control(
                base,
                test,
                direction=sel.direction,
                layer=sel.layer,
                alpha=sel.alpha,
                own_direction=own if float(own.norm()) > 1e-8 else None,
                **common,
            )
    sel_details = {
        "selection_passed": sel.passed,
        "selection_filters": _filters_of(sel),
        "selection_reason": sel.reason,
        "candidate_layers": candidates,
        "guided_by_patching": guided,
    }

    necessary = Evidence(
        claim="ablating the direction removes stopping on triggered prompts (TEST)",
        measured=effects.ablation_effect,
        null_mean=effects.ablation_null.null_mean,
        null_p95=effects.ablation_null.null_p95,
        p_value=effects.ablation_null.p_value,
        control=None if effects.control is None else effects.control.ablation_effect,
        thresholds={
            "min_effect": cfg.necessary_fraction * effects.baseline_stop_rate.value,
            "p_value": cfg.p_threshold,
        },
        details={
            "baseline_stop_rate": effects.baseline_stop_rate.to_dict(),
            "ablated_stop_rate": effects.ablated_stop_rate.to_dict(),
            **sel_details,
        },
    )
    sufficient = Evidence(
        claim="adding the direction induces stopping on clean prompts (TEST)",
        measured=effects.addition_effect,
        null_mean=effects.addition_null.null_mean,
        null_p95=effects.addition_null.null_p95,
        p_value=effects.addition_null.p_value,
        control=(None if effects.control is None else effects.control.addition_effect_natural_norm),
        thresholds={"min_effect": cfg.min_sufficient_effect, "p_value": cfg.p_threshold},
        details={
            "baseline_false_stop_rate": effects.baseline_false_stop_rate.to_dict(),
            "added_stop_rate": effects.added_stop_rate.to_dict(),
            "alpha": sel.alpha,
            "added_norm": effects.added_norm,
            **sel_details,
        },
    )
    base_control = None
    if base_res is not None:
        base_control = Evidence(
            claim="the fine-tuned model's interventions (and the base's own mean difference) "
            "do nothing stop-like in the base model",
            measured=base_res.max_stop_rate,
            null_mean=None,
            null_p95=None,
            p_value=None,
            control=None,
            thresholds={"max_stop_rate": cfg.max_base_stop_rate},
            details={"base": base_res.to_dict()},
        )
    cost = None
    if effects.kl is not None:
        cost = Evidence(
            claim="ablation leaves clean next-token distributions nearly unchanged (KL)",
            measured=effects.kl,
            null_mean=effects.kl_null_mean,
            null_p95=None,
            p_value=None,
            control=None,
            thresholds={"max_kl": cfg.max_kl},
            details={"perplexity": effects.perplexity, **sel_details},
        )
    return CausalResult(
        config=cfg,
        n_pairs={
            "train": len(train),
            "val": len(val),
            "test": len(test),
            "patching": len(patch_pairs),
        },
        timings_s=timings,
        patching=patching,
        patching_noising=noising,
        directions=dirs,
        control_directions=ctrl_dirs,
        selection=sel,
        effects=effects,
        generalization=gens,
        base=base_res,
        necessary=necessary,
        sufficient=sufficient,
        general_necessary=_worst(
            "ablation of a direction fitted on other placements removes stopping on held-out "
            "placements",
            gens,
            "ablation_effect",
            "ablation_null",
            cfg,
        ),
        general_sufficient=_worst(
            "addition of a direction fitted on other placements induces stopping on held-out "
            "placements' clean prompts",
            gens,
            "addition_effect",
            "addition_null",
            cfg,
        ),
        base_control=base_control,
        cost=cost,
    )
