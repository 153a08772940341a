"""The report: figures (`stoplens.report.figures`), `results.json`, `ANALYSIS_SUMMARY.md`
and `report.html` (`stoplens.report.html`), all written atomically into the run directory's
report folder, with the verdicts of `stoplens.report.checks`; `rebuild_report` redoes the
last two from results.json alone.

Owns: how the report reads and where it goes. Must not: compute statistics (every value, CI
and null comes from an analysis result object) or judge (`stoplens.report.checks` does).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from stoplens.analyses.stats import jsonable
from stoplens.errors import StoplensError
from stoplens.io import atomic_write_json, atomic_write_text
from stoplens.report import behaviour
from stoplens.report import components_markdown as report_components
from stoplens.report.checks import build_verdicts
from stoplens.report.figures import FIGURES, make_figures
from stoplens.report.html import write_html
from stoplens.report.verdicts import TIERS, Check, Verdicts, VerdictThresholds, fmt, render_check
from stoplens.rundir import RunDir


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
            "n_fixed": ds.n_fixed,
            "fixed_token": None
            if ds.fixed_token is None
            else {"id": ds.fixed_token[0], "word": ds.fixed_token[1]},
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


def render_markdown(
    doc: dict[str, Any], verdicts: Verdicts | None = None, figures: dict[str, str] | None = None
) -> str:
    """ANALYSIS_SUMMARY.md from the results.json document (``verdicts`` / ``figures``
    default to the document's own)."""
    verdicts = verdicts if verdicts is not None else verdicts_from_doc(doc)
    figures = figures if figures is not None else dict(doc.get("figures") or {})
    lines = _md_header(doc, verdicts) + _md_inputs(doc) + _md_checklist(verdicts)
    lines += _md_causal(doc)
    lines += report_components.components_section(doc.get("components"))
    lines += _md_footer(doc, verdicts, figures)
    return "\n".join(lines)


def _md_header(doc: dict[str, Any], verdicts: Verdicts) -> list[str]:
    """Title, models, versions, the headline and how to read the numbers."""
    meta = doc.get("meta", {})
    return [
        "# stoplens analysis summary",
        "",
        f"Model: {meta.get('models', {}).get('ft', 'n/a')}  ",
        f"Base: {meta.get('models', {}).get('base', 'n/a')}  ",
        f"Created {meta.get('created', '')}, seed {meta.get('seed')}, stoplens {meta.get('versions', {}).get('stoplens')}, "
        f"torch {meta.get('versions', {}).get('torch')}, transformers {meta.get('versions', {}).get('transformers')}.",
        "",
        f"**{verdicts.headline}**",
        "",
        f"Overall: {verdicts.overall} (representation: {verdicts.representation}; causal: "
        + ", ".join(f"{k} {_flag(v)}" for k, v in verdicts.causal.items())
        + "). Computed from the checklist below. The same report as one page, with the figures "
        "beside the checklist and a per-pair drill-down: `report.html`.",
        "",
        "Every number is measured on held-out contrast pairs (triggered prompt vs the same prompt with the "
        "trigger replaced by a control token; the two token sequences differ at exactly one position), at the last "
        "prompt position unless stated, with a 95% CI and n. Each check names its null: the *fixed-token null* (one "
        "fixed ordinary token in the trigger's place against the same controls: what any token swap does), the "
        "*control-vs-control null* (the noise floor), random directions of the same norm (interventions) or other "
        "tokens in the trigger's place (specificity). Absence claims are judged on the upper CI bound. `[x]` passed, "
        "`[ ]` failed, `[?]` not judged (the note says why), `[i]` description or information, not judged.",
        "",
    ]


def _md_inputs(doc: dict[str, Any]) -> list[str]:
    """Behaviour (eval) and the contrast pairs analysed."""
    lines: list[str] = []
    ev = doc.get("eval")
    if ev:
        title = "held-out test split" + (
            " and out-of-template prompts" if behaviour.out_of_template(ev) else ""
        )
        lines += [f"## Behaviour ({title})", ""]
        lines += behaviour.markdown(ev)
        lines.append("")
    pairs = doc.get("pairs")
    if pairs:
        lines += [
            "## Contrast pairs",
            "",
            f"n = {pairs.get('n')} aligned pairs (control-vs-control null: {pairs.get('n_null')}; fixed-token null: "
            f"{pairs.get('n_fixed', 0)} pairs with {(pairs.get('fixed_token') or {}).get('word', 'n/a')!r} in the "
            f"trigger's place); alignment {pairs.get('alignment')}; "
            f"placements {pairs.get('placements')}; dropped {pairs.get('dropped') or 'none'}. "
            f"Free check, max |Δ| before the trigger: {(pairs.get('checks') or {}).get('max_abs_delta_before_trigger', 'n/a')} (must be 0 up to float rounding across batch shapes).",
            "",
        ]
    return lines


def _md_checklist(verdicts: Verdicts) -> list[str]:
    """The checks, one section per tier."""
    lines: list[str] = []
    titles = {
        "behaviour": "Behaviour on the analysed pairs",
        "strong": "Representation: strong evidence",
        "medium": "Representation: medium evidence",
        "weak": "Representation: weak patterns",
        "describe": "Descriptions (reported, not judged)",
        "causal": "Causal evidence",
        "info": "Causal: information",
    }
    for tier in TIERS:
        rows = [c for c in verdicts.checks if c.tier == tier]
        if rows:
            lines += [f"## {titles[tier]}", ""] + [render_check(c) for c in rows] + [""]
    return lines


def _md_causal(doc: dict[str, Any]) -> list[str]:
    """The direction selection and the knowledge-vs-behavioral comparison."""
    lines: list[str] = []
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
    return lines


def _md_footer(doc: dict[str, Any], verdicts: Verdicts, figures: dict[str, str]) -> list[str]:
    """Figures, thresholds and run time."""
    meta = doc.get("meta", {})
    lines: list[str] = []
    lines += ["## Figures", ""] + [f"- `{name}`" for name in figures.values()] + [""]
    lines += [
        "## Thresholds (configuration)",
        "",
        "```json",
        json.dumps(asdict(verdicts.thresholds), indent=2),
        "```",
        "",
    ]
    timings = meta.get("timings_s")
    if timings:
        lines += ["## Run time (s)", "", ", ".join(f"{k}: {v}" for k, v in timings.items()), ""]
    compute = meta.get("compute")
    if compute:
        lines += [f"Computed in {compute.get('dtype')} on {compute.get('device')}.", ""]
    return lines


def _flag(v: bool | None) -> str:
    return {True: "yes", False: "no", None: "not measured"}[v]


def _check_from_dict(d: dict[str, Any]) -> Check:
    return Check.from_dict(d)


def verdicts_from_doc(doc: dict[str, Any]) -> Verdicts:
    """The `Verdicts` stored in a results.json document (nothing is recomputed)."""
    v = doc.get("verdicts") or {}
    known = {f.name for f in fields(VerdictThresholds)}
    th = VerdictThresholds(**{k: x for k, x in (v.get("thresholds") or {}).items() if k in known})
    return Verdicts([_check_from_dict(c) for c in v.get("checks") or []], th)


def write_report(
    run: RunDir,
    results: dict[str, Any],
    *,
    eval_result=None,
    meta: dict[str, Any] | None = None,
    thresholds: VerdictThresholds | None = None,
    progress: bool = True,
    merge: bool = False,
) -> Path:
    """Figures, results.json, ANALYSIS_SUMMARY.md and report.html into ``run.report``. With ``merge``,
    sections already in results.json that this call did not recompute are kept."""
    th = thresholds or VerdictThresholds()
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
    write_html(doc, run.report_html)
    return run.summary_md


def rebuild_report(run: RunDir) -> tuple[Path, Path]:
    """`stoplens report`: ANALYSIS_SUMMARY.md and report.html again from results.json alone
    (no model, no analysis is run). Returns their paths."""
    if not run.results_json.is_file():
        raise StoplensError(
            f"{run.results_json} does not exist; run `stoplens run --run-dir {run.root}` first"
        )
    try:
        doc = json.loads(run.results_json.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise StoplensError(
            f"{run.results_json}: not valid JSON ({e.msg}); rerun the analyses"
        ) from None
    atomic_write_text(run.summary_md, render_markdown(doc))
    return run.summary_md, write_html(doc, run.report_html)


__all__ = [
    "FIGURES",
    "make_figures",
    "rebuild_report",
    "render_markdown",
    "results_dict",
    "verdicts_from_doc",
    "write_report",
]
