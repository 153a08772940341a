"""Verdict-ready numbers: each causal claim as the measured value with its CI and n, its
null (mean, 95th percentile, empirical one-sided p) and the thresholds to judge it by.

The report reads ``details``: ``selection_passed`` / ``selection_filters`` /
``selection_reason`` / ``candidate_layers`` / ``guided_by_patching`` (how the direction was
chosen), and for the held-out claims ``worst_split`` / ``per_split``.

Owns: `Evidence` and its constructors from the suite's results. Must not: decide a verdict
(the report does, from these thresholds), run models, plot or write files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from stoplens.analyses.results import dataclass_dict
from stoplens.analyses.stats import Estimate

if TYPE_CHECKING:  # types only: the suite's results and config
    from stoplens.analyses.base_control import BaseControlResult
    from stoplens.analyses.causal import CausalConfig
    from stoplens.analyses.directions import DirectionSelection
    from stoplens.analyses.generalization import PlacementGeneralization
    from stoplens.analyses.steering import SteeringResult

NECESSARY = "ablating the direction removes stopping on triggered prompts (TEST)"
SUFFICIENT = "adding the direction induces stopping on clean prompts (TEST)"
GENERAL = {
    "ablation": "ablation of a direction fitted on other placements removes stopping on "
    "held-out placements",
    "addition": "addition of a direction fitted on other placements induces stopping on "
    "held-out placements' clean prompts",
}
BASE = (
    "the fine-tuned model's interventions (and the base's own mean difference) do nothing "
    "stop-like in the base model"
)
COST = "ablation leaves clean next-token distributions nearly unchanged (KL)"


@dataclass(frozen=True)
class Evidence:
    """One verdict-ready number: ``measured`` (value, 95% CI, n), its null (mean, 95th
    percentile, empirical one-sided p; None where the claim has no null), the
    control-direction value where there is one, and the thresholds to judge it by.
    ``null_prompts``: the pairs a random-direction null ran on (its p ranks the effect on
    those same pairs; ``measured`` uses all of them)."""

    claim: str
    measured: Estimate
    null_mean: float | None
    null_p95: float | None
    p_value: float | None
    control: float | None
    thresholds: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)
    null_prompts: int | None = None

    @classmethod
    def of_effect(
        cls,
        claim: str,
        effects: SteeringResult,
        kind: str,
        thresholds: dict[str, float],
        details: dict[str, Any],
        control: float | None = None,
    ) -> Evidence:
        """The ``kind`` ("ablation" | "addition") effect of ``effects`` against its null."""
        null = getattr(effects, f"{kind}_null")
        return cls(
            claim=claim,
            measured=getattr(effects, f"{kind}_effect"),
            null_mean=null.null_mean,
            null_p95=null.null_p95,
            p_value=null.p_value,
            control=control,
            thresholds=thresholds,
            details=details,
            null_prompts=null.n_prompts,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclass_dict(self)


def _filters_of(sel: DirectionSelection) -> dict[str, bool]:
    """The validation filters of the selected layer (which of them it passed)."""
    chosen = next((c for c in sel.candidates if c.layer == sel.layer), None)
    return {} if chosen is None else dict(chosen.filters)


def selection_details(
    sel: DirectionSelection, candidates: Sequence[int], guided: bool
) -> dict[str, Any]:
    """How the direction was chosen, carried in the main claims' ``details``."""
    return {
        "selection_passed": sel.passed,
        "selection_filters": _filters_of(sel),
        "selection_reason": sel.reason,
        "candidate_layers": list(candidates),
        "guided_by_patching": guided,
    }


def _min_effect(kind: str, effects: SteeringResult, cfg: CausalConfig) -> float:
    """Ablation must remove ``necessary_fraction`` of the baseline stops; addition must
    raise the clean stop rate by ``min_sufficient_effect``."""
    if kind == "ablation":
        return cfg.necessary_fraction * effects.baseline_stop_rate.value
    return cfg.min_sufficient_effect


def necessary_evidence(
    effects: SteeringResult, cfg: CausalConfig, details: dict[str, Any]
) -> Evidence:
    """Ablation on the TEST triggered prompts."""
    rates = {
        "baseline_stop_rate": effects.baseline_stop_rate.to_dict(),
        "ablated_stop_rate": effects.ablated_stop_rate.to_dict(),
    }
    return Evidence.of_effect(
        NECESSARY, effects, "ablation",
        {"min_effect": _min_effect("ablation", effects, cfg), "p_value": cfg.p_threshold},
        {**rates, **details},
        control=None if effects.control is None else effects.control.ablation_effect,
    )  # fmt: skip


def sufficient_evidence(
    effects: SteeringResult, cfg: CausalConfig, details: dict[str, Any]
) -> Evidence:
    """Addition on the TEST clean prompts (the control at its natural norm)."""
    rates = {
        "baseline_false_stop_rate": effects.baseline_false_stop_rate.to_dict(),
        "added_stop_rate": effects.added_stop_rate.to_dict(),
        "alpha": effects.alpha,
        "added_norm": effects.added_norm,
    }
    control = effects.control
    return Evidence.of_effect(
        SUFFICIENT, effects, "addition",
        {"min_effect": _min_effect("addition", effects, cfg), "p_value": cfg.p_threshold},
        {**rates, **details},
        control=None if control is None else control.addition_effect_natural_norm,
    )  # fmt: skip


def _split_row(g: PlacementGeneralization, kind: str) -> dict[str, Any]:
    sel, inside = g.selection, g.in_distribution
    return {
        "fit": list(g.fit_placements),
        "test": list(g.test_placements),
        "effect": getattr(g.heldout, f"{kind}_effect").to_dict(),
        "in_distribution_effect": (
            None if inside is None else getattr(inside, f"{kind}_effect").to_dict()
        ),
        "p_value": getattr(g.heldout, f"{kind}_null").p_value,
        "cos_to_reference": g.cos_to_reference,
        "layer": g.layer,
        "alpha": g.alpha,
        "selection_passed": None if sel is None else sel.passed,
        "selection_filters": None if sel is None else _filters_of(sel),
    }


def heldout_evidence(
    gens: Sequence[PlacementGeneralization], kind: str, cfg: CausalConfig
) -> Evidence | None:
    """The worst held-out split's ``kind`` effect, with the largest p over all splits."""
    if not gens:
        return None
    worst = min(gens, key=lambda g: getattr(g.heldout, f"{kind}_effect").value)
    details = {
        "worst_split": {"fit": list(worst.fit_placements), "test": list(worst.test_placements)},
        "per_split": [_split_row(g, kind) for g in gens],
    }
    thresholds = {"min_effect": _min_effect(kind, worst.heldout, cfg), "p_value": cfg.p_threshold}
    ev = Evidence.of_effect(GENERAL[kind], worst.heldout, kind, thresholds, details)
    return replace(ev, p_value=max(getattr(g.heldout, f"{kind}_null").p_value for g in gens))


def base_evidence(base: BaseControlResult, cfg: CausalConfig) -> Evidence:
    """The most stop-like rate of the base model under the fine-tuned model's interventions."""
    return Evidence(
        claim=BASE,
        measured=base.max_stop_rate,
        null_mean=None,
        null_p95=None,
        p_value=None,
        control=None,
        thresholds={"max_stop_rate": cfg.max_base_stop_rate},
        details={"base": base.to_dict()},
    )


def cost_evidence(
    effects: SteeringResult, cfg: CausalConfig, details: dict[str, Any]
) -> Evidence | None:
    """KL(ablated || original) on the clean prompts, beside random-direction ablation's."""
    if effects.kl is None:
        return None
    return Evidence(
        claim=COST,
        measured=effects.kl,
        null_mean=effects.kl_null_mean,
        null_p95=None,
        p_value=None,
        control=None,
        thresholds={"max_kl": cfg.max_kl},
        details={"perplexity": effects.perplexity, **details},
    )


def causal_evidence(
    effects: SteeringResult,
    gens: Sequence[PlacementGeneralization],
    base_res: BaseControlResult | None,
    cfg: CausalConfig,
    details: dict[str, Any],
) -> dict[str, Any]:
    """Every evidence field of `CausalResult` by name (``necessary``, ``sufficient``,
    ``general_*``, ``base_control``, ``cost``), from the measured effects."""
    return dict(
        necessary=necessary_evidence(effects, cfg, details),
        sufficient=sufficient_evidence(effects, cfg, details),
        general_necessary=heldout_evidence(gens, "ablation", cfg),
        general_sufficient=heldout_evidence(gens, "addition", cfg),
        base_control=None if base_res is None else base_evidence(base_res, cfg),
        cost=cost_evidence(effects, cfg, details),
    )
