"""Checks on behaviour and the causal suite: the model stops (behaviour), only on the
trigger (specific), and the direction is necessary, sufficient, general and cheap; the base
control as information. A claim fails when the selected layer failed the VAL filters it
rests on, whatever the TEST effect.

Owns: the mapping from specificity and causal results to `Check`s. Must not: compute
statistics beyond reading values out of result objects, or write files.
"""

from __future__ import annotations

from stoplens.report.checks.meaning import MEANING, ci
from stoplens.report.verdicts import Check, VerdictThresholds, fmt

# --- behaviour and specificity ---------------------------------------------------------------


def behaviour_check(spec, th: VerdictThresholds) -> Check:
    t = spec.triggered
    return Check(
        "behaviour",
        "The model stops on the trigger (greedy first reply token = EOS, TEST pairs)",
        bool(t.lo >= th.min_stop_rate),
        t.value,
        ci(t),
        t.n,
        spec.control.value,
        f"lower CI bound ≥ {th.min_stop_rate}",
        f"it stops on {round(t.value * t.n)} of {t.n} triggered prompts and on "
        f"{round(spec.control.value * spec.control.n)} of {spec.control.n} controls",
        null_name="control prompts' stop rate",
        meaning=MEANING["behaviour"],
        ref="/specificity/triggered",
        key="behaviour",
    )


def specific_check(spec, th: VerdictThresholds) -> Check:
    rows = {**spec.substitutes, "control": spec.control}
    kind, worst = max(rows.items(), key=lambda kv: (kv[1].value, kv[1].hi))
    detail = ", ".join(f"{k} {fmt(v.value)} (≤ {fmt(v.hi)})" for k, v in rows.items())
    return Check(
        "causal",
        "Specific: other tokens in the trigger's place do not stop the model",
        bool(worst.hi <= th.max_other_stop),
        worst.value,
        ci(worst),
        worst.n,
        spec.triggered.value,
        f"every substitute's upper CI bound ≤ {th.max_other_stop}",
        f"worst: {kind}; stop rates {detail}",
        null_name="stop rate with the trigger",
        meaning=MEANING["specific"],
        ref="/specificity/substitutes",
        key="specific",
    )


# --- causal ---------------------------------------------------------------------------------


def _effect_ok(ev) -> bool:
    m = ev.measured
    min_eff = ev.thresholds.get("min_effect")
    p_thr = ev.thresholds.get("p_value")
    return bool(
        (min_eff is None or m.value >= min_eff)
        and (ev.null_p95 is None or m.lo > ev.null_p95)
        and (p_thr is None or ev.p_value is None or ev.p_value <= p_thr)
    )


def _effect_threshold(ev) -> str:
    thr = []
    if ev.thresholds.get("min_effect") is not None:
        thr.append(f"effect ≥ {ev.thresholds['min_effect']}")
    if ev.null_p95 is not None:
        thr.append("CI above the random-direction 95th percentile")
    if ev.thresholds.get("p_value") is not None:
        thr.append(f"p ≤ {ev.thresholds['p_value']}")
    return ", ".join(thr)


def _effect_check(ev, claim: str, key: str, prereq: list[tuple[bool, str]]) -> Check:
    effect = _effect_ok(ev)
    failed = [why for ok, why in prereq if not ok]
    note = ev.claim
    if ev.p_value is not None:
        note += f"; empirical p = {ev.p_value:.3g}"
    m = ev.measured
    on = ev.null_prompts
    if ev.p_value is not None and on is not None and on < m.n:
        note += f" (random null on {on} of the {m.n} pairs, ranked by the effect on those pairs)"
    if ev.control is not None:
        note += f"; control-vs-control direction: {fmt(ev.control)}"
    if failed:
        note += "; FAILS because " + "; ".join(failed)
    return Check(
        "causal",
        claim,
        bool(effect and not failed),
        m.value,
        (m.lo, m.hi),
        m.n,
        ev.null_p95 if ev.null_p95 is not None else ev.null_mean,
        _effect_threshold(ev),
        note,
        null_name="random directions of the same norm (95th percentile)",
        meaning=MEANING[key.split(":")[0]],
        figure="steering",
        ref="/causal/" + key.replace(":", "_"),
        key=key,
    )


def cheap_check(causal) -> Check | None:
    cost = causal.cost
    if cost is None:
        return None
    m = cost.measured
    thr = cost.thresholds.get("max_kl", 0.1)
    return Check(
        "causal",
        "Cheap: ablation barely changes clean next-token distributions",
        bool(m.hi <= thr),
        m.value,
        (m.lo, m.hi),
        m.n,
        cost.null_mean,
        f"KL upper CI bound ≤ {thr}",
        "KL(ablated ‖ original) in nats on clean TEST prompts",
        null_name="random-direction ablation (mean KL)",
        meaning=MEANING["cheap"],
        figure="steering",
        ref="/causal/cost",
        key="cheap",
    )


# which validation filters of the selected layer each claim rests on
_NEEDS = {
    "necessary": ("layer", "nonzero", "ablation", "kl"),
    "sufficient": ("layer", "nonzero", "addition"),
}


def _validated(filters: dict[str, bool] | None, passed: bool | None, claim: str) -> bool:
    """Did the selected layer pass the VAL filters this claim rests on? (All filters when the
    per-filter record is missing.)"""
    if not filters:
        return bool(passed)
    return all(filters.get(k, False) for k in _NEEDS[claim])


def causal_checks(causal) -> list[Check]:
    sel = causal.selection
    filters = causal.necessary.details.get("selection_filters")

    def sel_why(claim: str) -> tuple[bool, str]:
        if _validated(filters, sel.passed, claim):
            return True, ""
        failed = [k for k in _NEEDS[claim] if filters and not filters.get(k, False)]
        what = f" (fails: {', '.join(failed)})" if failed else ""
        return False, f"the selected layer failed its validation on VAL{what}: {sel.reason}"

    cheap = cheap_check(causal)
    out = [
        _effect_check(
            causal.necessary,
            "Necessary: ablating the direction removes stopping beyond the random-direction null",
            "necessary",
            [sel_why("necessary"), *_cheap_prereq(cheap)],
        ),
        _effect_check(
            causal.sufficient,
            "Sufficient: adding the direction induces stopping beyond the random-direction null",
            "sufficient",
            [sel_why("sufficient")],
        ),
    ]
    out += _general_checks(causal)
    if cheap is not None:
        out.append(cheap)
    base = _base_control_check(causal)
    if base is not None:
        out.append(base)
    return out


def _cheap_prereq(cheap: Check | None) -> list[tuple[bool, str]]:
    """Necessity rests on a cheap ablation: its prerequisite line (none without a cost)."""
    return (
        []
        if cheap is None
        else [
            (
                bool(cheap.passed),
                f"the ablation is not cheap (KL {fmt(cheap.value)}, CI ≤ {fmt(cheap.ci[1] if cheap.ci else None)})",
            )
        ]
    )


def _general_checks(causal) -> list[Check]:
    """Generality: ablation and addition on held-out placements, each failing when a split
    failed its own validation on VAL."""
    out = []
    for ev, claim, key in (
        (
            causal.general_necessary,
            "General (necessary): ablation works on held-out placements",
            "general:necessary",
        ),
        (
            causal.general_sufficient,
            "General (sufficient): addition works on held-out placements",
            "general:sufficient",
        ),
    ):
        if ev is None:
            continue
        claim_of = key.split(":")[1]
        splits = ev.details.get("per_split", [])
        bad = [
            s
            for s in splits
            if s.get("selection_passed") is not None
            and not _validated(s.get("selection_filters"), s.get("selection_passed"), claim_of)
        ]
        pre = [(not bad, f"{len(bad)} split(s) failed their own {claim_of} validation on VAL")]
        out.append(_effect_check(ev, claim, key, pre))
    return out


def _base_control_check(causal) -> Check | None:
    """The fine-tuned model's direction (and the base's own) in the base: information."""
    base = causal.base_control
    if base is None:
        return None
    m = base.measured
    return Check(
        "info",
        "Base model: the fine-tuned model's direction (and the base's own mean "
        "difference) in the base",
        None,
        m.value,
        (m.lo, m.hi),
        m.n,
        None,
        "reported, not judged",
        "highest stop rate of the base under the same interventions (triggered, clean, "
        "ablated, direction added, own direction added)",
        meaning=MEANING["base"],
        figure="steering",
        ref="/causal/base_control",
        key="base_control",
    )
