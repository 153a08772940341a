"""Does the direction carry over? To placements it was not fitted on, and to another model.

* `placement_generalization`: the mean difference fitted on TRAIN pairs of some trigger
  placements (layer and α selected again on VAL pairs of those placements only), its
  ablation / addition effects measured on TEST pairs of the held-out placements, beside the
  same effects on TEST pairs of the fit placements;
* `cross_model`: two models' directions (e.g. knowledge vs behavioral regime fine-tunes of
  the same base): per-layer cosine, and each selected direction ablated / added in both
  models against the target model's random null.

Owns: these two analyses, their results and the held-out splits (`heldout_splits`). Must
not: measure an effect itself (`stoplens.analyses.steering`), plot or write files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from stoplens.analyses.directions import (
    DirectionSelection,
    SelectionCriteria,
    mean_diff_directions,
    select_direction,
)
from stoplens.analyses.results import Nulls, dataclass_dict
from stoplens.analyses.stats import cosine, jsonable
from stoplens.analyses.steering import Examples, Steering, SteeringResult, steering_effects
from stoplens.capture.encode import EncodedPairs
from stoplens.interventions.cache import OutcomeCache
from stoplens.interventions.readout import Readout

NO_EXAMPLES = Examples(n=0)


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


def by_placement(pairs: EncodedPairs, placements: Sequence[str]) -> EncodedPairs:
    """The pairs whose trigger placement is one of ``placements``."""
    keep = set(placements)
    return pairs.subset([i for i, m in enumerate(pairs.meta) if m.get("placement") in keep])


def direction_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """cos(a, b) of two directions, in float64."""
    return cosine(a.detach().double().cpu().numpy(), b.detach().double().cpu().numpy())


def _refit(
    readout: Readout,
    fit: EncodedPairs,
    val_fit: EncodedPairs | None,
    fallback: tuple[int, float],
    position: str,
    cache: OutcomeCache,
    criteria: SelectionCriteria,
) -> tuple[Steering, DirectionSelection | None]:
    """The direction fitted on ``fit``; layer and α selected again on ``val_fit`` when it has
    pairs (among ``criteria.candidate_layers``), else the ``fallback`` (layer, α)."""
    model = readout.model
    batch: dict[str, Any] = dict(pad_id=readout.pad_id, batch_size=readout.batch_size)
    if val_fit is None or not len(val_fit):
        layer, alpha = fallback
        r = mean_diff_directions(model, fit, position=position, layers=[layer], **batch)
        return Steering(r.get(layer), layer, alpha), None
    dirs = mean_diff_directions(
        model, fit, position=position, layers=criteria.candidate_layers, **batch
    )
    sel = select_direction(readout, dirs, val_fit, criteria=criteria, cache=cache)
    return Steering.of(sel), sel


Split = tuple[tuple[str, ...], tuple[str, ...]]


def heldout_splits(
    train: EncodedPairs, test: EncodedPairs, *, scheme: str = "halves", min_pairs: int = 8
) -> list[Split]:
    """The (fit placements, held-out placements) splits of a scheme: "halves" = the
    placements present in both TRAIN and TEST (sorted) split into two complementary halves,
    each fitted on one and tested on the other; "leave_one_out" = each TEST placement with
    at least ``min_pairs`` pairs held out in turn, fitted on all the others."""
    in_train = {str(m.get("placement")) for m in train.meta}
    places = sorted({str(m.get("placement")) for m in test.meta} & in_train)
    if scheme == "halves":
        if len(places) < 2:
            return []
        a, b = tuple(places[0::2]), tuple(places[1::2])
        return [(a, b), (b, a)]
    count = lambda p: sum(m.get("placement") == p for m in test.meta)  # noqa: E731
    splits: list[Split] = []
    for p in sorted({str(m.get("placement")) for m in test.meta}):
        others = tuple(q for q in sorted(in_train) if q != p)
        if others and count(p) >= min_pairs:
            splits.append((others, (p,)))
    return splits


def placement_generalization(
    readout: Readout,
    train_pairs: EncodedPairs,
    test_pairs: EncodedPairs,
    *,
    fit_placements: Sequence[str],
    test_placements: Sequence[str],
    layer: int,
    alpha: float,
    reference_direction: torch.Tensor | None = None,
    position: str = "last",
    nulls: Nulls = Nulls(n_random=16),
    cache: OutcomeCache | None = None,
    val_pairs: EncodedPairs | None = None,
    criteria: SelectionCriteria = SelectionCriteria(),
) -> PlacementGeneralization:
    """Fit the mean difference on TRAIN pairs with ``fit_placements``; measure ablation /
    addition (α times the new direction) on TEST pairs with ``test_placements``. With
    ``val_pairs`` the layer and α are selected again (`select_direction` with ``criteria``)
    on the VAL pairs of the fit placements, among ``criteria.candidate_layers``; ``layer`` /
    ``alpha`` are then only the fallback when those VAL pairs are empty. ``cache``: an
    `OutcomeCache` of the readout's model shared with the run's other effects."""
    overlap = set(fit_placements) & set(test_placements)
    if overlap:
        raise ValueError(f"placements {sorted(overlap)} are both fitted and held out")
    fit = by_placement(train_pairs, fit_placements)
    held = by_placement(test_pairs, test_placements)
    if len(fit) == 0 or len(held) == 0:
        raise ValueError(
            f"placement_generalization: {len(fit)} fit pairs for {list(fit_placements)}, "
            f"{len(held)} test pairs for {list(test_placements)}; both must be non-empty"
        )
    cache = OutcomeCache.of(readout) if cache is None else cache
    val_fit = None if val_pairs is None else by_placement(val_pairs, fit_placements)
    steering, sel = _refit(readout, fit, val_fit, (layer, alpha), position, cache, criteria)
    kw: dict[str, Any] = dict(nulls=nulls, cost=False, examples=NO_EXAMPLES, cache=cache)
    inside = by_placement(test_pairs, fit_placements)
    ref = reference_direction
    return PlacementGeneralization(
        fit_placements=tuple(fit_placements),
        test_placements=tuple(test_placements),
        layer=int(steering.layer),
        alpha=float(steering.alpha),
        n_fit=len(fit),
        cos_to_reference=None if ref is None else direction_cosine(steering.direction, ref),
        heldout=steering_effects(readout, held, steering, **kw),
        in_distribution=steering_effects(readout, inside, steering, **kw) if len(inside) else None,
        selection=sel,
    )


def cross_model(
    a: Readout,
    b: Readout,
    selection_a: DirectionSelection,
    selection_b: DirectionSelection,
    pairs: EncodedPairs,
    *,
    labels: tuple[str, str] = ("a", "b"),
    pairs_b: EncodedPairs | None = None,
    nulls: Nulls = Nulls(n_random=16),
    caches: tuple[OutcomeCache | None, OutcomeCache | None] = (None, None),
) -> CrossModelResult:
    """Does one model's direction control the other? ``pairs`` are evaluated on model ``a``
    (and on ``b`` unless ``pairs_b`` is given: needed only if the two tokenizers differ).
    ``caches``: the two models' `OutcomeCache`s from their `run_causal` (a model's own
    direction on itself is then looked up, not recomputed)."""
    la, lb = labels
    targets = {la: (a, pairs), lb: (b, pairs if pairs_b is None else pairs_b)}
    own = {
        label: cache if cache is not None else OutcomeCache.of(readout)
        for (label, (readout, _)), cache in zip(targets.items(), caches, strict=True)
    }
    kw: dict[str, Any] = dict(nulls=nulls, cost=False, examples=NO_EXAMPLES)
    effects = {
        f"{src}_on_{tgt}": steering_effects(readout, prs, Steering.of(sel), cache=own[tgt], **kw)
        for src, sel in {la: selection_a, lb: selection_b}.items()
        for tgt, (readout, prs) in targets.items()
    }
    return CrossModelResult(
        labels=(la, lb),
        layers=(selection_a.layer, selection_b.layer),
        cos_by_layer=selection_a.directions.cosine(selection_b.directions),
        cos_selected=direction_cosine(selection_a.direction, selection_b.direction),
        effects=effects,
    )
