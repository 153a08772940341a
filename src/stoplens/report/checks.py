"""Which number judges which claim: the checklist built from the analysis result objects.

Each builder reads one analysis result and returns `Check`s (see `stoplens.report.verdicts`
for the rules: the right null for each question, absence claims on the upper CI bound, the
logit lens at intermediate layers, shape as description). `build_verdicts` assembles them.

Owns: the mapping from measured numbers to checks. Must not: compute statistics beyond
reading values out of result objects, or write files.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stoplens.report.verdicts import Check, Verdicts, VerdictThresholds, fmt

FIXED = "fixed-token null"
CTRL = "control-vs-control null"

MEANING = {
    "behaviour": "Without stopping there is nothing to explain: every mechanism check is then "
    "read against a model that does not stop.",
    "one_direction": "Fails when the Δs do not share one dominant direction beyond what a fixed "
    "ordinary token's Δs share; a mechanism spread over two or more directions fails here.",
    "top3": "Fails when three directions do not hold most of the Δ energy beyond the fixed "
    "token's share.",
    "eos_lens": "Fails when EOS never rises in the lens before the last layer beyond what a fixed "
    "token does: then the stop is decided only at the output, or not along a direction the "
    "lens can read.",
    "content": "Fails when the control run's likely tokens do not lose probability (beyond a fixed "
    "token's effect) where EOS rises: a stop signal that only adds EOS.",
    "did": "Fails when fine-tuning changed the trigger's processing no more than an ordinary "
    "token's: the signal was there before, or fine-tuning changed every token alike.",
    "top10": "Fails when even ten directions do not hold most of the Δ energy.",
    "structure": "Fails when single Δs do not point along their mean any more than a fixed "
    "token's Δs do.",
    "readout": "Fails when the mean Δ, read as a direction, does not promote EOS at any "
    "intermediate layer (while a fixed token's would not either).",
    "signal": "Fails when the trigger moves the decision position no more than a fixed ordinary "
    "token does.",
    "diffuse": "A weak pattern: the variation of the Δs needs many directions.",
    "shape": "Where the signal sits in depth describes the mechanism; it is not evidence that one "
    "exists.",
    "lens_last": "At the last layer the lens is the model's own output: this restates behaviour "
    "and is not evidence of mechanism.",
    "necessary": "Fails when the stop survives removing the direction (or the removal is not "
    "clean, or the direction failed validation). It contradicts 'one direction carries the "
    "signal', not 'a mechanism exists': the signal may be spread over several directions or "
    "positions (see the patching figure).",
    "sufficient": "Fails when adding the direction to clean prompts does not make the model stop "
    "beyond random directions of the same norm: then it is not what the model reads to stop.",
    "specific": "Fails when other tokens in the trigger's place stop the model too: a detector of "
    "odd tokens, not a $STOP switch. It contradicts 'dedicated'.",
    "general": "Fails when a direction fitted (and chosen) on some placements does not work on "
    "the others: the representation depends on where the trigger sits.",
    "cheap": "Fails when removing the direction changes clean next-token distributions: then "
    "necessity is not evidence, since removing it damages the model.",
    "base": "A direction whose addition makes the base model stop too is one the base already "
    "reads as EOS: the fine-tune writes along an existing EOS direction. This describes how "
    "the fine-tune works; it is not by itself a failure.",
}


def _ci(est) -> tuple[float, float]:
    return float(est.lo), float(est.hi)


def judged_layer(results: dict[str, Any]) -> int | None:
    """The layer the low-rank and DiD verdicts are judged at: the peak of the layerwise excess
    (‖Δ‖/‖h‖ of the trigger over the fixed-token null, at the last prompt position) among the
    intermediate residuals 1..L−1 (at L every stopping model carries its EOS readout); else
    the middle captured layer."""
    lw = results.get("layerwise")
    if lw is not None:
        s = lw.summary["last"]
        L = lw.n_layers
        inter = [j for j, layer in enumerate(lw.layers) if 0 < layer < L]
        if s.excess_rel is not None and inter:
            vals = np.nan_to_num(np.asarray(s.excess_rel.value, dtype=float))
            return int(lw.layers[max(inter, key=lambda j: vals[j])])
        return int(s.peak_layer_rel)
    lr = results.get("lowrank")
    if lr is not None:
        return int(lr.layers[len(lr.layers) // 2])
    return None


# --- behaviour and specificity ---------------------------------------------------------------


def behaviour_check(spec, th: VerdictThresholds) -> Check:
    t = spec.triggered
    return Check(
        "behaviour",
        "The model stops on the trigger (greedy first reply token = EOS, TEST pairs)",
        bool(t.lo >= th.min_stop_rate),
        t.value,
        _ci(t),
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
        _ci(worst),
        worst.n,
        spec.triggered.value,
        f"every substitute's upper CI bound ≤ {th.max_other_stop}",
        f"worst: {kind}; stop rates {detail}",
        null_name="stop rate with the trigger",
        meaning=MEANING["specific"],
        ref="/specificity/substitutes",
        key="specific",
    )


# --- analysis 1: layerwise ------------------------------------------------------------------


def layerwise_checks(lw, layer: int | None) -> list[Check]:
    s = lw.summary["last"]
    out = []
    stab = (
        "" if s.shape_stability is None else f"; same shape in {s.shape_stability:.0%} of resamples"
    )
    out.append(
        Check(
            "describe",
            "Where: layerwise profile shape (description, not evidence)",
            None,
            s.shape,
            n=lw.n,
            note=f"largest rise of the excess at residual {s.largest_increase_layer}, peak at "
            f"{s.peak_layer_rel} of {lw.n_layers} (excess ‖Δ‖/‖h‖ {fmt(s.peak_excess_rel)}){stab}; "
            "bands: early < 1/3 ≤ mid < 2/3 ≤ late",
            null_name=s.basis,
            meaning=MEANING["shape"],
            figure="layerwise",
            ref="/layerwise/summary/last",
            key="shape",
        )
    )
    if layer is not None and s.excess_rel is not None and layer in lw.layers:
        j = lw.layers.index(layer)
        ex = s.excess_rel[j]
        prof = lw.profiles["last"]
        ref = prof.get("fixed", prof["null"])
        out.append(
            Check(
                "medium",
                f"A signal beyond token identity at the decision position (residual {layer})",
                bool(ex.lo > 0),
                ex.value,
                (ex.lo, ex.hi),
                ex.n,
                float(ref.rel_norm.value[j]),
                "CI of the excess ‖Δ‖/‖h‖ above 0",
                f"trigger ‖Δ‖/‖h‖ {fmt(prof['trigger'].rel_norm.value[j])} minus the null's",
                null_name=s.basis,
                meaning=MEANING["signal"],
                figure="layerwise",
                ref="/layerwise/summary/last/excess_rel",
                key="signal",
            )
        )
    return out


# --- analysis 2: low rank -------------------------------------------------------------------


def lowrank_checks(lr, layer: int, th: VerdictThresholds) -> list[Check]:
    if layer not in lr.layers:
        return []
    i = lr.layers.index(layer)
    small = lr.n_too_small or lr.n < th.min_pairs
    why = f"n = {lr.n} < {th.min_pairs} pairs: too few for a low-rank claim" if small else ""
    null, name = (lr.fixed, FIXED) if lr.fixed is not None else (lr.null, CTRL)
    t = lr.trigger
    out = []
    e1 = t.energy_top1[i]
    n1 = null.energy_top1[i]
    ratio = t.second_ratio[i] if t.second_ratio is not None else None
    ok = None
    if not small:
        ok = bool(
            e1.lo > th.pc1_strong
            and e1.lo > n1.hi
            and (ratio is None or ratio.hi <= th.second_max_ratio)
        )
    rtxt = "" if ratio is None else f"; σ₂²/σ₁² {fmt(ratio.value)} (CI ≤ {fmt(ratio.hi)})"
    out.append(
        Check(
            "strong",
            f"One direction: top-1 Δ energy share > {th.pc1_strong:.0%} at residual {layer}, "
            "dominant and above the fixed-token null",
            ok,
            e1.value,
            (e1.lo, e1.hi),
            e1.n,
            n1.value,
            f"CI > {th.pc1_strong}, CI above the null's CI ({fmt(n1.hi)}), σ₂²/σ₁² CI ≤ "
            f"{th.second_max_ratio}",
            (why or "uncentred SVD of the n×d Δ matrix (a shared direction)") + rtxt,
            null_name=name,
            meaning=MEANING["one_direction"],
            figure="pca_cumulative",
            ref="/lowrank/trigger/energy_top1_ci",
            key="one_direction",
        )
    )
    pc1 = t.pc1[i]
    out.append(
        Check(
            "describe",
            "(centred PCA, for comparison) PC1 share",
            None,
            pc1.value,
            (pc1.lo, pc1.hi),
            pc1.n,
            float(null.pc1.value[i]),
            "reported, not judged",
            "centred PCA measures the structure of the variation around the mean Δ, not whether "
            "Δ shares one direction",
            null_name=name,
            figure="pca_components",
            ref="/lowrank/trigger/pc1_ci",
            key="pc1",
        )
    )
    for k, tier, thr, key in (
        (3, "strong", th.top3_strong, "top3"),
        (10, "medium", th.top10_medium, "top10"),
    ):
        if t.energy_ci is None or k not in t.energy_ci:
            continue
        share = t.energy_ci[k][i]
        nshare = (null.energy_ci or {}).get(k)
        nhi = float(nshare.hi[i]) if nshare is not None else float("nan")
        out.append(
            Check(
                tier,
                f"Top-{k} Δ energy share > {thr:.0%}",
                None if small else bool(share.lo > thr and share.lo > nhi),
                share.value,
                (share.lo, share.hi),
                share.n,
                None if nshare is None else float(nshare.value[i]),
                f"CI > {thr} and above the null's CI",
                why,
                null_name=name,
                meaning=MEANING[key],
                figure="pca_cumulative",
                ref=f"/lowrank/trigger/energy_top{k}_ci",
                key=key,
            )
        )
    loo, nloo = t.loo_cos[i], null.loo_cos[i]
    out.append(
        Check(
            "medium",
            "Some structure: leave-one-out cosine of Δ to the mean Δ above the null",
            None if small else bool(loo.lo > nloo.hi),
            loo.value,
            (loo.lo, loo.hi),
            loo.n,
            nloo.value,
            "CI above the null's CI",
            why or f"control-vs-control null: {fmt(lr.null.loo_cos[i].value)}",
            null_name=name,
            meaning=MEANING["structure"],
            figure="pca_components",
            ref="/lowrank/trigger/loo_cos",
            key="structure",
        )
    )
    ncomp = int(t.n_components[i])
    out.append(
        Check(
            "weak",
            f"Diffuse: more than {th.n80_weak} centred components for 80% of the variance",
            None if small else bool(ncomp > th.n80_weak),
            float(ncomp),
            None,
            lr.n,
            float(null.n_components[i]),
            f"> {th.n80_weak}",
            why,
            null_name=name,
            meaning=MEANING["diffuse"],
            figure="pca_cumulative",
            ref="/lowrank/trigger/n_components_for_threshold",
            key="diffuse",
        )
    )
    return out


# --- analysis 3: logit lens -----------------------------------------------------------------


def lens_checks(ll, fallback_layer: int | None) -> list[Check]:
    t, f = ll.trigger, ll.fixed
    null, name = (f, FIXED) if f is not None else (ll.null, CTRL)
    inter = ll.intermediate
    cfg = ll.config
    out = []
    first = t.eos_first_layer
    if first is not None:
        j = ll.at(first)
        v, nv = t.eos_dlogprob[j], null.eos_dlogprob[j]
        ok = bool(v.lo > nv.hi)
        ci_txt = f"first entry layer {first}"
        if t.eos_first_layer_ci is not None:
            lo_, hi_ = t.eos_first_layer_ci
            ci_txt += f" (95% interval over resamples {lo_:g}–{hi_:g}; enters in {fmt(t.eos_entry_share)} of them)"
        note = (
            f"{ci_txt}; EOS rank {int(t.eos_rank[j])} of {ll.vocab_size}, z = {fmt(float(t.eos_z[j]))}; "
            f"single-swap 95th percentile {fmt(float(ll.null.eos_dlogprob_p95[j]))}"
            if ll.null.eos_dlogprob_p95 is not None
            else ci_txt
        )
        value, ci, n, nval = v.value, (v.lo, v.hi), v.n, nv.value
    else:
        ok = False
        js = inter or [len(ll.layers) - 1]
        jbest = max(js, key=lambda j: t.eos_dlogprob.value[j])
        v = t.eos_dlogprob[jbest]
        value, ci, n, nval = v.value, (v.lo, v.hi), v.n, null.eos_dlogprob.value[jbest]
        share = (
            ""
            if t.eos_entry_share is None
            else f"; enters in {fmt(t.eos_entry_share)} of resamples"
        )
        note = (
            f"EOS never enters the top {cfg.entry_k} of the Δ-lens at residuals 1..L−1 with ≥ "
            f"{cfg.entry_min_dlogprob} nats beyond both nulls; largest EOS Δ log-prob there at "
            f"residual {ll.layers[jbest]}{share}"
        )
    out.append(
        Check(
            "strong",
            "EOS amplified before the output: logit lens of Δ (through the final norm) at an "
            "intermediate layer",
            ok,
            value,
            ci,
            n,
            nval,
            f"EOS enters (top {cfg.entry_k}, ≥ {cfg.entry_min_dlogprob} nats, beyond the single-swap "
            "95th percentile) and CI above the null's CI",
            note,
            null_name=name,
            meaning=MEANING["eos_lens"],
            figure="logit_lens",
            ref="/logit_lens/trigger/eos_dlogprob",
            key="eos_lens",
        )
    )
    at = first if first is not None else fallback_layer
    if at is not None and at in ll.layers and (not inter or ll.at(at) in inter):
        j = ll.at(at)
        c, cn = t.content_dlogprob[j], null.content_dlogprob[j]
        out.append(
            Check(
                "strong",
                f"Content suppressed at residual {at}: the control run's top tokens lose "
                "probability",
                bool(c.hi < 0 and c.hi < cn.lo),
                c.value,
                (c.lo, c.hi),
                c.n,
                cn.value,
                "CI below 0 and below the null's CI",
                f"mean Δ log-prob of the control run's top {cfg.content_k} next tokens",
                null_name=name,
                meaning=MEANING["content"],
                figure="logit_lens",
                ref="/logit_lens/trigger/content_dlogprob",
                key="content",
            )
        )
    if ll.fixed_readout_eos_rank is not None and inter:
        hits = [
            j
            for j in inter
            if ll.readout_eos_rank[j] <= cfg.entry_k and ll.fixed_readout_eos_rank[j] > cfg.entry_k
        ]
        j = hits[0] if hits else min(inter, key=lambda q: ll.readout_eos_rank[q])
        out.append(
            Check(
                "medium",
                "Direction readout: the mean Δ read as a direction promotes EOS at an "
                "intermediate layer",
                bool(hits),
                float(ll.readout_eos_rank[j]),
                None,
                t.n,
                float(ll.fixed_readout_eos_rank[j]),
                f"EOS rank ≤ {cfg.entry_k} (the fixed token's readout: > {cfg.entry_k})",
                f"at residual {ll.layers[j]}: EOS rank {int(ll.readout_eos_rank[j])}, "
                f"z = {fmt(float(ll.readout_eos_z[j]))}",
                null_name="fixed-token readout rank",
                meaning=MEANING["readout"],
                figure="logit_lens",
                ref="/logit_lens/readout_eos_rank",
                key="readout",
            )
        )
    jL = len(ll.layers) - 1
    v = t.eos_dlogprob[jL]
    out.append(
        Check(
            "describe",
            f"Behaviour through the lens: EOS Δ log-prob at the last layer (residual {ll.layers[jL]})",
            None,
            v.value,
            (v.lo, v.hi),
            v.n,
            null.eos_dlogprob.value[jL],
            "reported, not judged",
            f"EOS rank {int(t.eos_rank[jL])}; content Δ log-prob {fmt(t.content_dlogprob.value[jL])}",
            null_name=name,
            meaning=MEANING["lens_last"],
            figure="logit_lens",
            ref="/logit_lens/trigger/eos_dlogprob",
            key="lens_last",
        )
    )
    return out


# --- analysis 4: base vs fine-tuned ---------------------------------------------------------


def did_check(dl, layer: int) -> list[Check]:
    if layer not in dl.layers:
        return []
    i = dl.layers.index(layer)
    d = dl.did.norm_mean_delta[i]
    ref, name = (dl.did_fixed, FIXED) if dl.did_fixed is not None else (dl.did_null, CTRL)
    dn = ref.norm_mean_delta[i]
    ok = bool(d.lo > dn.hi)
    parts = [f"fine-tuned mean ‖Δ‖ {fmt(dl.ft_delta.mean_norm_delta.value[i])} vs base "
             f"{fmt(dl.base_delta.mean_norm_delta.value[i])}"]  # fmt: skip
    thr = "‖mean DiD‖ CI above the null's CI"
    if dl.eos_did is not None:
        e, ef = dl.eos_did, dl.eos_did_fixed
        eos_ok = bool(e.lo > 0 and (ef is None or e.lo > ef.hi))
        ok = ok and eos_ok
        parts.append(
            f"EOS log-prob DiD at the output {fmt(e.value)} (CI {fmt(e.lo)}–{fmt(e.hi)})"
            + ("" if ef is None else f" vs the fixed token's {fmt(ef.value)} (CI ≤ {fmt(ef.hi)})")
        )
        thr += "; EOS log-prob DiD CI above 0 and above the fixed token's"
    if dl.base_trigger_added:
        parts.append("the base lacked the trigger: it was added with a mean-initialised row")
    return [
        Check(
            "strong",
            f"Fine-tuning created it: the trigger's difference-in-differences at residual {layer} "
            "beyond the fixed token's",
            ok,
            d.value,
            (d.lo, d.hi),
            d.n,
            dn.value,
            thr,
            "; ".join(parts),
            null_name=name + " (its DiD)",
            meaning=MEANING["did"],
            figure="diff_lens",
            ref="/diff_lens/did/norm_mean_delta",
            key="did",
        )
    ]


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
    if ev.control is not None:
        note += f"; control-vs-control direction: {fmt(ev.control)}"
    if failed:
        note += "; FAILS because " + "; ".join(failed)
    m = ev.measured
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
    cheap_prereq = (
        []
        if cheap is None
        else [
            (
                bool(cheap.passed),
                f"the ablation is not cheap (KL {fmt(cheap.value)}, CI ≤ {fmt(cheap.ci[1] if cheap.ci else None)})",
            )
        ]
    )
    out = [
        _effect_check(
            causal.necessary,
            "Necessary: ablating the direction removes stopping beyond the random-direction null",
            "necessary",
            [sel_why("necessary"), *cheap_prereq],
        ),
        _effect_check(
            causal.sufficient,
            "Sufficient: adding the direction induces stopping beyond the random-direction null",
            "sufficient",
            [sel_why("sufficient")],
        ),
    ]
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
    if cheap is not None:
        out.append(cheap)
    base = causal.base_control
    if base is not None:
        m = base.measured
        out.append(
            Check(
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
        )
    return out


# --- components -----------------------------------------------------------------------------


def components_checks(suite) -> list[Check]:
    """Information lines from the component suite: which components carry the signal (exact
    patching beyond the control-vs-control null) and how many directions it takes (the
    smallest subspace whose ablation removes the stop cheaply). Descriptions, not judged."""
    out = []
    rank = suite.patching.ranking
    hits = [r for r in rank if any(v for v in r.beyond_null.values())]

    def label(r) -> str:
        parts = []
        for mode, e in r.exact.items():
            if e is not None:
                parts.append(f"{mode} {fmt(e.value)} [{fmt(e.lo)}, {fmt(e.hi)}]")
        return f"{r.name} ({'; '.join(parts)})"

    null = next((r.null for r in rank if r.null is not None), None)
    out.append(
        Check(
            "info",
            "Which components carry it: heads and MLPs whose exact patching effect is beyond "
            "the null",
            None,
            ", ".join(label(r) for r in hits[:6]) if hits else "none",
            n=suite.patching.n_valid,
            null=None if null is None else float(null.hi),
            threshold="reported, not judged",
            note=f"{len(hits)} of {len(rank)} ranked components beyond the null (effect in units "
            "of the whole stop: 1 = carries / needs all of it)",
            null_name="control-vs-control null (upper CI bound)",
            meaning="Names the heads that move the trigger's information to the decision "
            "position and the MLPs that write the stop; see the components section.",
            figure="components",
            ref="/components/patching/ranking",
            key="components",
        )
    )
    sub = suite.subspace
    if sub is not None:
        k = sub.smallest_k
        kmax = sub.config.k_max
        per = []
        for name, fam in sub.families.items():
            last = fam.steps[-1] if fam.steps else None
            if last is not None:
                per.append(
                    f"{name}: k={last.k} leaves stop rate {fmt(last.ablated_stop_rate.value)}, "
                    f"KL {fmt(last.kl.value)}"
                )
        out.append(
            Check(
                "info",
                "How many directions: the smallest k whose subspace ablation removes the stop "
                "(≥ 0.9 of the stops, beyond random k-subspaces, cheap)",
                None,
                f"k = {k}" if k is not None else f"none up to k = {kmax}",
                threshold="reported, not judged",
                note="; ".join(per),
                null_name="random k-dimensional subspaces",
                meaning="k = 1 agrees with a single necessary direction; k > 1 says how many "
                "directions the signal needs; none means the stop survives every small subspace "
                "ablation that leaves the model intact.",
                figure="components",
                ref="/components/subspace",
                key="subspace",
            )
        )
    return out


# --- assembly -------------------------------------------------------------------------------


def build_verdicts(
    results: dict[str, Any], th: VerdictThresholds, previous: list[Check] | None = None
) -> Verdicts:
    """The checklist and headline from measured numbers. ``previous``: checks judged earlier in
    the same run directory (``analyze --only``) that this call does not recompute; they are
    kept (matched by key)."""
    checks: list[Check] = []
    layer = judged_layer(results)
    spec = results.get("specificity")
    if spec is not None:
        checks.append(behaviour_check(spec, th))
    lw, lr, ll, dl = (results.get(k) for k in ("layerwise", "lowrank", "logit_lens", "diff_lens"))
    if lw is not None:
        checks += layerwise_checks(lw, layer)
    if lr is not None and layer is not None:
        checks += lowrank_checks(lr, layer, th)
    if ll is not None:
        checks += lens_checks(ll, layer)
    if dl is not None and layer is not None:
        checks += did_check(dl, layer)
    causal = results.get("causal")
    if causal is not None:
        checks += causal_checks(causal)
    if results.get("components") is not None:
        checks += components_checks(results["components"])
    if spec is not None:
        checks.append(specific_check(spec, th))
    fresh = {c.key or c.claim for c in checks}
    checks += [
        c for c in previous or [] if (c.key or c.claim) not in fresh and c.key != "no_pattern"
    ]
    passed = [c for c in checks if c.tier in ("strong", "medium") and c.passed]
    judged = [c for c in checks if c.tier in ("strong", "medium") and c.passed is not None]
    if judged:
        checks.append(
            Check(
                "weak",
                "No clear pattern: no strong or medium check passed",
                not passed,
                f"{len(passed)} of {len(judged)} strong/medium checks passed",
                threshold="none passed",
                key="no_pattern",
            )
        )
    return Verdicts(checks, th)
