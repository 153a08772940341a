"""The report: verdicts from the measured numbers, figures, `results.json` and
`ANALYSIS_SUMMARY.md`, all written atomically into the run directory's report folder.

Owns: which number judges which claim (`build_verdicts`) and how the report reads. Must not:
compute statistics (every value, CI and null comes from an analysis result object).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from stoplens.analyses.stats import jsonable
from stoplens.io import atomic_write_json, atomic_write_text
from stoplens.report import plots
from stoplens.report.verdicts import Check, Thresholds, Verdicts, fmt, render_check
from stoplens.rundir import RunDir

FIGURES = {
    "layerwise": "1_layerwise_delta_norm.png",
    "pca_cumulative": "2_pca_cumulative_variance.png",
    "pca_components": "2_pca_component_distributions.png",
    "logit_lens": "3_logit_lens_delta.png",
    "diff_lens": "4_base_vs_finetuned_adl.png",
    "patching": "5_activation_patching.png",
    "steering": "6_direction_ablation_addition.png",
    "checkpoints": "7_checkpoint_dynamics.png",
    "cross_regime": "8_cross_regime.png",
}


def judged_layer(results: dict[str, Any]) -> int | None:
    """The layer the low-rank verdicts are judged at: the layerwise peak (excess of ‖Δ‖/‖h‖
    over the null at the last prompt position); else the middle captured layer."""
    lw = results.get("layerwise")
    if lw is not None:
        return int(lw.summary["last"].peak_layer_rel)
    lr = results.get("lowrank")
    if lr is not None:
        return int(lr.layers[len(lr.layers) // 2])
    return None


def _est(series, i: int) -> tuple[float, tuple[float, float], int]:
    e = series[i]
    return e.value, (e.lo, e.hi), e.n


def _k_index(lr, k: int) -> int | None:
    ks = list(lr.config.ks)
    return ks.index(k) if k in ks else None


NO_PATTERN = "No clear pattern"


def build_verdicts(
    results: dict[str, Any], th: Thresholds, previous: list[Check] | None = None
) -> Verdicts:
    """The strong / medium / weak checklist and the causal verdicts, from measured numbers.
    ``previous``: checks judged earlier in the same run directory (``analyze --only``) that
    this call does not recompute; they are kept, and "no clear pattern" sees them too."""
    checks: list[Check] = []
    lw, lr, ll, dl = (results.get(k) for k in ("layerwise", "lowrank", "logit_lens", "diff_lens"))
    layer = judged_layer(results)
    shape = lw.shape if lw is not None else None
    if lw is not None:
        s = lw.summary["last"]
        depth = s.peak_layer_rel / max(lw.n_layers, 1)
        val = (
            f"{shape} (largest rise at layer {s.largest_increase_layer} of {lw.n_layers}; peak at layer "
            f"{s.peak_layer_rel}, depth {depth:.2f}; excess ‖Δ‖/‖h‖ {s.peak_excess_rel:.3g})"
        )
        note = "excess over the control-vs-control null at the last prompt position; bands: early < 1/3 ≤ mid < 2/3 ≤ late"
        checks.append(
            Check(
                "strong",
                "Early spike",
                shape == "early spike",
                val,
                n=lw.n,
                null="control-vs-control profile subtracted",
                threshold="shape = early spike",
                note=note,
            )
        )
        checks.append(
            Check(
                "medium",
                "Mid-layer peak",
                shape == "mid peak",
                val,
                n=lw.n,
                threshold="shape = mid peak",
            )
        )
        checks.append(
            Check(
                "weak",
                "Late spike or flat",
                shape in ("late spike", "flat"),
                val,
                n=lw.n,
                threshold="shape ∈ {late spike, flat}",
            )
        )
    if lr is not None and layer is not None and layer in lr.layers:
        i = lr.layers.index(layer)
        small = lr.n_too_small or lr.n < th.min_pairs
        why = f"n = {lr.n} < {th.min_pairs} pairs: too few for a low-rank claim" if small else ""
        v, ci, n = _est(lr.trigger.energy_top1, i)
        nv = float(lr.null.energy_top1.value[i])
        ok = None if small else bool(v > th.pc1_strong and ci[0] > nv)
        checks.append(
            Check(
                "strong",
                f"One direction: top-1 Δ energy share > {th.pc1_strong:.0%} at layer {layer}",
                ok,
                v,
                ci,
                n,
                nv,
                f"> {th.pc1_strong} and CI above the null",
                why
                or "uncentred SVD of the n×d Δ matrix (a shared direction); centred PC1 is reported beside it",
            )
        )
        pc1 = lr.trigger.pc1[i]
        checks.append(
            Check(
                "strong",
                "(centred PCA, for comparison) PC1 share",
                None,
                pc1.value,
                (pc1.lo, pc1.hi),
                pc1.n,
                float(lr.null.pc1.value[i]),
                "reported, not judged",
                "centred PCA measures the structure of the variation around the mean Δ, not whether Δ shares one direction",
            )
        )
        for k, tier, thr in ((3, "strong", th.top3_strong), (10, "medium", th.top10_medium)):
            j = _k_index(lr, k)
            if j is None:
                continue
            share = float(lr.trigger.energy[j, i])
            nul = float(lr.null.energy[j, i])
            checks.append(
                Check(
                    tier,
                    f"Top-{k} Δ energy share > {thr:.0%}",
                    None if small else bool(share > thr and share > nul),
                    share,
                    None,
                    lr.n,
                    nul,
                    f"> {thr} and above the null",
                    why,
                )
            )
        loo = lr.trigger.loo_cos[i]
        nloo = lr.null.loo_cos[i]
        checks.append(
            Check(
                "medium",
                "Some structure: leave-one-out cosine of Δ to the mean Δ above the null",
                None if small else bool(loo.lo > nloo.hi),
                loo.value,
                (loo.lo, loo.hi),
                loo.n,
                nloo.value,
                "CI above the null's CI",
                why,
            )
        )
        ncomp = int(lr.trigger.n_components[i])
        checks.append(
            Check(
                "weak",
                f"Diffuse: more than {th.n80_weak} centred components for 80% of the variance",
                None if small else bool(ncomp > th.n80_weak),
                float(ncomp),
                None,
                lr.n,
                float(lr.null.n_components[i]),
                f"> {th.n80_weak}",
                why,
            )
        )
    if ll is not None:
        i = len(ll.layers) - 1
        rank = int(ll.trigger.eos_rank[i])
        z = float(ll.trigger.eos_z[i])
        v, ci, n = _est(ll.trigger.eos_dlogprob, i)
        nv = ll.null.eos_dlogprob[i]
        amp = bool(rank <= th.eos_rank_max and z >= th.eos_z_min and ci[0] > nv.hi)
        checks.append(
            Check(
                "strong",
                f"EOS amplified (logit lens of Δ through the final norm at layer {ll.layers[i]})",
                amp,
                v,
                ci,
                n,
                nv.value,
                f"EOS rank ≤ {th.eos_rank_max}, z ≥ {th.eos_z_min}, CI above the null",
                f"EOS Δ log-prob; EOS rank {rank} of {ll.vocab_size}, z = {z:.2f}",
            )
        )
        c = ll.trigger.content_dlogprob[i]
        cn = ll.null.content_dlogprob[i]
        checks.append(
            Check(
                "strong",
                "Content suppressed (the control run's top tokens lose probability)",
                bool(c.hi < 0 and c.hi < cn.lo),
                c.value,
                (c.lo, c.hi),
                c.n,
                cn.value,
                "CI below 0 and below the null's CI",
                "mean Δ log-prob of the control run's top next tokens",
            )
        )
    if dl is not None and layer is not None and layer in dl.layers:
        i = dl.layers.index(layer)
        d = dl.did.norm_mean_delta[i]
        dn = dl.did_null.norm_mean_delta[i]
        b = dl.base_delta.mean_norm_delta[i]
        f = dl.ft_delta.mean_norm_delta[i]
        note = f"fine-tuned mean ‖Δ‖ {fmt(f.value)} vs base {fmt(b.value)}"
        if dl.base_trigger_added:
            note += "; the base lacked the trigger, so it was added with a mean-initialised row (the honest base control)"
        checks.append(
            Check(
                "causal",
                f"Fine-tuning created it: ‖mean difference-in-differences‖ at layer {layer} above the null",
                bool(d.lo > dn.hi),
                d.value,
                (d.lo, d.hi),
                d.n,
                dn.value,
                "CI above the null's CI",
                note,
            )
        )
    causal = results.get("causal")
    if causal is not None:
        checks.extend(_causal_checks(causal))
    fresh = {c.claim for c in checks}
    checks.extend(c for c in previous or [] if c.claim not in fresh and c.claim != NO_PATTERN)
    strongish = [c for c in checks if c.tier in ("strong", "medium") and c.passed]
    checks.append(
        Check(
            "weak",
            NO_PATTERN,
            not strongish,
            f"{len(strongish)} strong/medium checks passed",
            threshold="none passed",
        )
    )
    return Verdicts(checks, th)


def _evidence_check(ev, label: str, key: str) -> Check:
    m = ev.measured
    min_eff = ev.thresholds.get("min_effect")
    p_thr = ev.thresholds.get("p_value")
    passed = bool(
        (min_eff is None or m.value >= min_eff)
        and (ev.null_p95 is None or m.lo > ev.null_p95)
        and (p_thr is None or ev.p_value is None or ev.p_value <= p_thr)
    )
    thr = []
    if min_eff is not None:
        thr.append(f"effect ≥ {min_eff}")
    if ev.null_p95 is not None:
        thr.append("CI above the random-direction 95th percentile")
    if p_thr is not None:
        thr.append(f"p ≤ {p_thr}")
    note = ev.claim
    if ev.p_value is not None:
        note += f"; empirical p = {ev.p_value:.3g}"
    if ev.control is not None:
        note += f"; control-vs-control direction: {fmt(ev.control)}"
    return Check(
        "causal",
        label,
        passed,
        m.value,
        (m.lo, m.hi),
        m.n,
        ev.null_p95 if ev.null_p95 is not None else ev.null_mean,
        ", ".join(thr),
        note,
    )


def _causal_checks(causal) -> list[Check]:
    out = [
        _evidence_check(
            causal.necessary,
            "Necessary: ablation removes stopping beyond the random-direction null",
            "necessary",
        ),
        _evidence_check(
            causal.sufficient,
            "Sufficient: addition induces stopping beyond the random-direction null",
            "sufficient",
        ),
    ]
    for ev, label in (
        (causal.general_necessary, "General (necessary): ablation works on held-out placements"),
        (causal.general_sufficient, "General (sufficient): addition works on held-out placements"),
    ):
        if ev is not None:
            out.append(_evidence_check(ev, label, "general"))
    if causal.specific is not None:
        m = causal.specific.measured
        thr = causal.specific.thresholds.get("max_stop_rate", 0.1)
        out.append(
            Check(
                "causal",
                "Specific: the same interventions on the base model do nothing stop-like",
                bool(m.value <= thr),
                m.value,
                (m.lo, m.hi),
                m.n,
                None,
                f"max stop rate ≤ {thr}",
                causal.specific.claim,
            )
        )
    if causal.cost is not None:
        m = causal.cost.measured
        thr = causal.cost.thresholds.get("max_kl", 0.1)
        out.append(
            Check(
                "causal",
                "Cheap: ablation barely changes clean next-token distributions",
                bool(m.value <= thr),
                m.value,
                (m.lo, m.hi),
                m.n,
                causal.cost.null_mean,
                f"KL ≤ {thr}",
                "KL(ablated ‖ original) in nats; null = random directions",
            )
        )
    return out


# --- writing -------------------------------------------------------------------------------


def make_figures(run: RunDir, results: dict[str, Any]) -> dict[str, str]:
    """Draw every figure the results allow; returns {figure key: file name}."""
    made: dict[str, str] = {}
    layer = judged_layer(results)

    def out(key: str) -> Path:
        made[key] = FIGURES[key]
        return run.figure(FIGURES[key])

    if results.get("layerwise") is not None:
        plots.layerwise_figure(results["layerwise"], out("layerwise"))
    lr = results.get("lowrank")
    if lr is not None and layer is not None and layer in lr.layers:
        plots.lowrank_figure(lr, layer, out("pca_cumulative"))
        plots.components_figure(lr, layer, out("pca_components"))
    if results.get("logit_lens") is not None:
        plots.logit_lens_figure(results["logit_lens"], out("logit_lens"))
    if results.get("diff_lens") is not None:
        plots.diff_lens_figure(results["diff_lens"], out("diff_lens"))
    causal = results.get("causal")
    if causal is not None:
        plots.patching_figure(causal.patching, out("patching"), causal.patching_noising)
        plots.steering_figure(causal, out("steering"))
    if results.get("checkpoints") is not None:
        plots.checkpoint_figure(results["checkpoints"], out("checkpoints"))
    if results.get("cross_regime") is not None:
        plots.cross_regime_figure(results["cross_regime"], out("cross_regime"))
    return made


def results_dict(results: dict[str, Any], eval_result=None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, val in results.items():
        if key == "delta_set" or val is None:
            continue
        out[key] = val.to_dict() if hasattr(val, "to_dict") else val
    ds = results.get("delta_set")
    if ds is not None:
        out["pairs"] = {
            "n": ds.n,
            "n_null": ds.n_null,
            "dropped": dict(ds.dropped),
            "checks": jsonable(ds.checks),
            "alignment": dict(Counter(str(m.get("alignment")) for m in ds.pairs.meta)),
            "placements": dict(Counter(str(m.get("placement")) for m in ds.pairs.meta)),
            "base_trigger_added": ds.base_trigger_added,
            "activations_from_cache": ds.from_cache,
        }
    if eval_result is not None:
        out["eval"] = eval_result.to_dict()
    return out


def render_markdown(doc: dict[str, Any], verdicts: Verdicts, figures: dict[str, str]) -> str:
    meta = doc.get("meta", {})
    lines = [
        "# stoplens analysis summary",
        "",
        f"Model: {meta.get('models', {}).get('ft', 'n/a')}  ",
        f"Base: {meta.get('models', {}).get('base', 'n/a')}  ",
        f"Created {meta.get('created', '')}, seed {meta.get('seed')}, stoplens {meta.get('versions', {}).get('stoplens')}, "
        f"torch {meta.get('versions', {}).get('torch')}, transformers {meta.get('versions', {}).get('transformers')}.",
        "",
        f"**Overall: {verdicts.overall} evidence** for a dedicated $STOP mechanism (computed from the checklist below).",
        "",
        "Every number is measured on held-out test-split contrast pairs (triggered prompt vs the same prompt with the "
        "trigger replaced by a control token; the two token sequences differ at exactly one position), at the last "
        "prompt position unless stated, with a 95% CI and n; the null is the same measurement on control-vs-control "
        "pairs or on random directions. `[x]` passed, `[ ]` failed, `[?]` not judged (the note says why).",
        "",
    ]
    ev = doc.get("eval")
    if ev:
        title = "held-out test split" + (
            " and out-of-template prompts" if ev.get("out_of_template") else ""
        )
        lines += [f"## Behaviour ({title})", ""]
        lines += _eval_lines(ev)
        lines.append("")
    pairs = doc.get("pairs")
    if pairs:
        lines += [
            "## Contrast pairs",
            "",
            f"n = {pairs['n']} aligned pairs (null: {pairs['n_null']}); alignment {pairs['alignment']}; "
            f"placements {pairs['placements']}; dropped {pairs['dropped'] or 'none'}. "
            f"Free check, max |Δ| before the trigger: {pairs['checks'].get('max_abs_delta_before_trigger', 'n/a')} (must be 0).",
            "",
        ]
    for tier, title in (
        ("strong", "Strong evidence"),
        ("medium", "Medium evidence"),
        ("weak", "Weak evidence"),
        ("causal", "Causal evidence"),
    ):
        rows = [c for c in verdicts.checks if c.tier == tier]
        if rows:
            lines += [f"## {title}", ""] + [render_check(c) for c in rows] + [""]
    causal = doc.get("causal")
    if causal:
        sel = causal.get("selection", {})
        lines += [
            "### Direction selection",
            "",
            f"Layer {sel.get('layer')} (α = {fmt(sel.get('alpha'))}) selected on the validation split: {sel.get('reason', '')}",
            "",
        ]
    if doc.get("cross_regime"):
        cr = doc["cross_regime"]
        lines += [
            "### Knowledge-trained vs behavior-trained",
            "",
            f"Cosine of the two selected directions: {fmt(cr.get('cos_selected'))}.",
            "",
        ]
    lines += ["## Figures", ""] + [f"- `{name}`" for name in figures.values()] + [""]
    lines += [
        "## Thresholds (configuration)",
        "",
        "```json",
        json.dumps(doc["verdicts"]["thresholds"], indent=2),
        "```",
        "",
    ]
    timings = meta.get("timings_s")
    if timings:
        lines += ["## Run time (s)", "", ", ".join(f"{k}: {v}" for k, v in timings.items()), ""]
    return "\n".join(lines)


def _eval_lines(ev: dict[str, Any]) -> list[str]:
    from stoplens.evaluate.report import eval_markdown

    return eval_markdown(ev) if ev.get("conditions") else ["- see results/eval.json"]


def _check_from_dict(d: dict[str, Any]) -> Check:
    ci = d.get("ci")
    return Check(**{**d, "ci": tuple(ci) if ci else None})


def write_report(
    run: RunDir,
    results: dict[str, Any],
    *,
    eval_result=None,
    meta: dict[str, Any] | None = None,
    thresholds: Thresholds | None = None,
    progress: bool = True,
    merge: bool = False,
) -> Path:
    """Figures, results.json and ANALYSIS_SUMMARY.md into ``run.report``. With ``merge``,
    sections already in results.json that this call did not recompute are kept."""
    th = thresholds or Thresholds()
    run.report.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {}
    if merge and run.results_json.is_file():
        doc = json.loads(run.results_json.read_text(encoding="utf-8"))
    previous = [_check_from_dict(d) for d in doc.get("verdicts", {}).get("checks", [])]
    doc.update(jsonable(results_dict(results, eval_result)))
    verdicts = build_verdicts(results, th, previous)
    doc["verdicts"] = jsonable(verdicts.to_dict())
    doc["meta"] = jsonable(meta or {})
    figures = make_figures(run, results)
    doc["figures"] = {**doc.get("figures", {}), **figures}
    atomic_write_json(run.results_json, doc)
    atomic_write_text(run.summary_md, render_markdown(doc, verdicts, doc["figures"]))
    return run.summary_md
