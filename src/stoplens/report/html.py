"""``report.html``: the whole report as one self-contained page, rendered from the results.json
document alone (figures read from the report folder and inlined as base64 PNG; no network,
no external script or style; the page's Content-Security-Policy forbids loading anything).

Sections: headline and checklist (each line links to its figure and to its numbers; hovering a
line shows its figure beside the list), behaviour, contrast pairs, each analysis with its
figure, its null and its per-layer numbers, the causal suite, components (when present), the
drill-down table of TEST pairs, example generations, run metadata.

The page renders whatever the document holds and skips what is absent: a section that cannot
be laid out (a key it expected is missing or has another shape) shows a visible notice and
its raw numbers instead of failing the report.

Owns: what the page contains and in which order. Must not: compute statistics or verdicts
(they are in the document), or know where the run directory is (callers pass the folder).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stoplens.io import atomic_write_text
from stoplens.report import behaviour
from stoplens.report.html_assets import CSP, CSS, JS
from stoplens.report.html_layout import (
    ANALYSES,
    EVAL_FIGURE,
    EVIDENCE,
    FALLBACK_LINKS,
    FIGURE_TITLES,
    LAID_OUT,
)
from stoplens.report.html_pairs import examples_section, pair_section
from stoplens.report.html_parts import (
    esc,
    estimate_cell,
    figure,
    generic,
    is_estimate,
    json_block,
    num,
    resolve,
    sort_value,
    table,
)

log = logging.getLogger(__name__)


# --- small pieces ---------------------------------------------------------------------------


def judged_layer(doc: dict[str, Any]) -> int | None:
    """The layer the report judges at (as `stoplens.report.summary.judged_layer`, from the
    document): the layerwise peak, else the middle low-rank layer."""
    peak = resolve(doc, "/layerwise/summary/last/peak_layer_rel")
    if isinstance(peak, int):
        return peak
    layers = resolve(doc, "/lowrank/layers")
    return int(layers[len(layers) // 2]) if isinstance(layers, list) and layers else None


def _links(check: dict[str, Any], figures: dict[str, str]) -> tuple[str | None, str | None]:
    """(figure key, JSON pointer) of a check: its own keys, else the fallback table."""
    fig, ref = check.get("figure"), check.get("ref")
    if "figure" not in check or "ref" not in check:
        claim = str(check.get("claim", ""))
        for prefix, f, r in FALLBACK_LINKS:
            if claim.startswith(prefix):
                fig = fig if "figure" in check else f
                ref = ref if "ref" in check else r
                break
    return (fig if fig in figures else None), (ref if isinstance(ref, str) and ref else None)


_TONE = {
    "strong": "b-strong", "dedicated mechanism": "b-strong",
    "medium": "b-medium", "partial evidence": "b-medium",
    "weak": "b-weak", "none": "b-weak", "no mechanism": "b-weak", "no stop behaviour": "b-weak",
}  # fmt: skip


def _status(passed: Any, tier: str = "") -> tuple[str, str]:
    if passed is None and tier in ("describe", "info"):
        return (
            '<span class="note" title="a description or information, not judged">– info</span>',
            "1",
        )
    if passed is True:
        return '<span class="pass" title="passed">✓ pass</span>', "2"
    if passed is False:
        return '<span class="fail" title="failed">✗ fail</span>', "0"
    return '<span class="na" title="not judged (the note says why)">? n/a</span>', "1"


def _measured(c: dict[str, Any]) -> str:
    """The measured-value cell (<td>): a number with its CI, or a sentence."""
    ci = c.get("ci") or [None, None]
    v = c.get("value")
    if isinstance(v, int | float) and not isinstance(v, bool):
        return f'<td class="num" data-v="{v!r}">{estimate_cell(v, ci[0], ci[1], c.get("n"))}</td>'
    return f'<td class="note">{esc(num(v))}</td>'


def _per_layer(doc: dict[str, Any], layers_ptr: str, cols: tuple[tuple[str, str], ...]) -> str:
    layers = resolve(doc, layers_ptr)
    if not isinstance(layers, list) or not layers:
        return ""
    present = [(label, resolve(doc, p)) for label, p in cols]
    present = [(label, s) for label, s in present if s is not None]
    rows = []
    for i, L in enumerate(layers):
        row: list[Any] = [(str(L), str(L))]
        for _, s in present:
            if is_estimate(s) and isinstance(s.get("value"), list):
                v = _item(s["value"], i)
                row.append(
                    (
                        estimate_cell(v, _item(s.get("lo"), i), _item(s.get("hi"), i), s.get("n")),
                        sort_value(v),
                    )
                )
            elif isinstance(s, list):
                v = _item(s, i)
                row.append((esc(num(v)), sort_value(v)))
            else:
                row.append("")
        rows.append(row)
    head = ["layer", *[label for label, _ in present]]
    return table(head, rows, numeric=tuple(range(1, len(head))))


def _item(x: Any, i: int) -> Any:
    return x[i] if isinstance(x, list) and i < len(x) else None


def _more(x: Any, what: str = "all numbers of this section") -> str:
    return f"<details><summary>{esc(what)}</summary>{generic(x)}</details>"


class _Page:
    """Collects sections (id, title, html) and the figures they placed."""

    def __init__(self, doc: dict[str, Any], report_dir: Path) -> None:
        self.doc = doc
        self.dir = Path(report_dir)
        figs = doc.get("figures")
        self.figures: dict[str, str] = dict(figs) if isinstance(figs, dict) else {}
        self.placed: set[str] = set()
        self.sections: list[tuple[str, str, str]] = []
        self.problems: list[str] = []

    def fig(self, key: str, caption: str = "") -> str:
        if key not in self.figures or key in self.placed:
            return ""
        self.placed.add(key)
        return figure(key, FIGURE_TITLES.get(key, key), self.dir / self.figures[key], caption)

    def add(self, ident: str, title: str, build: Callable[[], str], raw: Any = None) -> None:
        try:
            body = build()
        except (KeyError, TypeError, IndexError, ValueError, AttributeError) as e:
            log.warning("report.html: section %r could not be laid out: %r", title, e)
            self.problems.append(title)
            body = (
                f'<p class="warn problem">This section could not be laid out ({esc(type(e).__name__)}: '
                f"{esc(e)}); its raw numbers follow.</p>"
                + (generic(raw) if raw is not None else "")
            )
        if body:
            self.sections.append((ident, title, body))


# --- sections -------------------------------------------------------------------------------


def _headline(doc: dict[str, Any]) -> str:
    v = doc.get("verdicts") or {}
    overall = v.get("overall")
    checks = [c for c in v.get("checks") or [] if isinstance(c, dict)]
    raw = v.get("headline")
    hl: dict[str, Any] = raw if isinstance(raw, dict) else {}
    badges = ""
    if overall:
        tone = _TONE.get(str(overall), "b-medium")
        word = f"{overall} evidence" if overall in ("strong", "medium", "weak") else overall
        badges += f'<span class="badge {tone}">overall: {esc(word)}</span>'
    if hl.get("representation"):
        rep = str(hl["representation"])
        badges += f'<span class="badge {_TONE.get(rep, "")}">representation: {esc(rep)}</span>'
    flags = hl.get("causal")
    if isinstance(flags, dict):
        for k, v in flags.items():
            word = {True: "yes", False: "no"}.get(v, "not measured")
            tone = {True: "b-strong", False: "b-weak"}.get(v, "")
            badges += f'<span class="badge {tone}">{esc(k)}: {word}</span>'
    elif flags:
        badges += f'<span class="badge">causal: {esc(flags)}</span>'
    if hl.get("causal_text"):
        badges += f'<div class="note">causal: {esc(hl["causal_text"])}</div>'
    judged = [c for c in checks if c.get("passed") is not None]
    passed = sum(1 for c in judged if c.get("passed") is True)
    text = hl.get("text") or (
        f"Overall {overall or 'n/a'} evidence for a dedicated $STOP mechanism, computed from the "
        f"checklist below: {passed} of {len(judged)} judged checks passed."
    )
    return f'<div class="headline">{badges}<p>{esc(text)}</p></div>'


def _checklist(page: _Page) -> str:
    doc = page.doc
    checks = [c for c in (doc.get("verdicts") or {}).get("checks") or [] if isinstance(c, dict)]
    if not checks:
        return _headline(doc) + '<p class="note">No checklist in results.json.</p>'
    rows, entries = [], []
    for i, c in enumerate(checks):
        fig, ref = _links(c, page.figures)
        icon, sv = _status(c.get("passed"), str(c.get("tier", "")))
        null = num(c.get("null")) if c.get("null") is not None else ""
        if c.get("null_name"):
            null = f"{null} ({c['null_name']})" if null else str(c["null_name"])
        expl = " ".join(str(c[k]) for k in ("meaning", "note") if c.get(k))
        links = f'<a href="#num-{i}">numbers</a>'
        if fig:
            links = f'<a href="#fig-{esc(fig)}">figure</a> · ' + links
        rows.append(
            f'<tr class="check" data-claim="{esc(c.get("claim", ""))}"'
            + (f' data-fig="{esc(fig)}"' if fig else "")
            + f'><td data-v="{sv}">{icon}</td><td class="tier">{esc(c.get("tier", ""))}</td>'
            f"<td><b>{esc(c.get('claim', ''))}</b>"
            + (f'<div class="note">{esc(expl)}</div>' if expl else "")
            + f"</td>{_measured(c)}"
            f'<td class="num">{esc(num(c.get("n")) if c.get("n") is not None else "")}</td>'
            f"<td>{esc(null)}</td><td>{esc(c.get('threshold', ''))}</td><td>{links}</td></tr>"
        )
        target = resolve(doc, ref)
        own = {
            k: c.get(k)
            for k in ("value", "ci", "n", "null", "null_name", "threshold", "note")
            if k in c
        }
        entries.append(
            f'<details class="num-entry" id="num-{i}"><summary>{esc(c.get("claim", ""))}'
            + (f" — results.json <code>{esc(ref)}</code>" if ref else "")
            + "</summary>"
            + generic(own)
            + (generic(target) if target is not None else "")
            + "</details>"
        )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("", "tier", "claim", "measured [95% CI]", "n", "null", "threshold", "see")
    )
    viewer = (
        '<div class="viewer"><img id="viewer-img" alt="figure of the selected check" style="display:none">'
        '<div id="viewer-cap" class="cap">hover or click a line to see its figure</div></div>'
    )
    listing = (
        f'<div><table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
        '<p class="note">✓ passed, ✗ failed, ? not judged (the note says why), – info: a description, not judged. Every value carries its '
        "95% CI, n and null; thresholds are configuration (see Run metadata).</p></div>"
    )
    numbers = (
        "<h3>Numbers behind each line</h3>"
        '<p class="note">The check as judged, then the results.json entry it reads; the '
        "“numbers” link of a line opens its entry.</p>" + "".join(entries)
    )
    return _headline(doc) + f'<div class="checks">{listing}{viewer}</div>' + numbers


def _behaviour(page: _Page) -> str:
    ev = page.doc.get("eval")
    if not isinstance(ev, dict):
        return ""
    out = _behaviour_table(ev)
    oot = behaviour.out_of_template(ev)
    if oot is not None:
        out += f"<h3>{esc(behaviour.OOT_TITLE)}</h3>" + _behaviour_table(oot)
    png = page.dir / EVAL_FIGURE
    if png.is_file():
        out += figure("eval", "Stop scores, base vs fine-tuned", png)
    return out


def _behaviour_table(ev: dict) -> str:
    body = []
    for r in behaviour.rows(ev):
        label = (
            f"<b>{esc(r.label)}</b>"
            if r.group is None
            else f"{esc(behaviour.KIND_TITLES.get(r.kind, r.kind))} / {esc(r.group)}"
        )
        body.append(
            [
                label,
                (esc(r.n if r.n is not None else ""), sort_value(r.n)),
                (esc(behaviour.fmt_rate(r.base)), sort_value((r.base or {}).get("rate"))),
                (esc(behaviour.fmt_rate(r.ft)), sort_value((r.ft or {}).get("rate"))),
                (esc(behaviour.fmt_score(r.base_median)), sort_value(r.base_median)),
                (esc(behaviour.fmt_score(r.ft_median)), sort_value(r.ft_median)),
            ]
        )
    out = table(
        [
            "condition",
            "n",
            "base",
            "fine-tuned",
            "median stop score, base",
            "median stop score, ft",
        ],
        body,
        numeric=(1, 2, 3, 4, 5),
    )
    out += (
        '<p class="note">Triggered rows: stop rate (higher is better); all others: false-stop rate '
        "(lower is better); 95% Wilson CIs in brackets; per placement (triggered) and per variant "
        "(near misses, distractors).</p>"
    )
    out += "".join(f"<p>{esc(s)}</p>" for s in behaviour.extra_lines(ev))
    return out


def _pairs(page: _Page) -> str:
    p = page.doc.get("pairs")
    if not isinstance(p, dict):
        return ""
    before = resolve(p, "/checks/max_abs_delta_before_trigger")
    ok = before == 0
    return (
        f"<p>n = {esc(p.get('n'))} aligned TEST pairs (null: {esc(p.get('n_null'))} control-vs-control pairs). "
        f"Free check: max |Δ| before the trigger = {esc(num(before))} "
        + (
            '<span class="pass">(0, as causal attention requires)</span>'
            if ok
            else '<span class="warn">(must be 0)</span>'
        )
        + "</p>"
        + generic({k: v for k, v in p.items() if k not in ("n", "n_null")})
    )


def _analysis(page: _Page, key: str, figs: tuple[str, ...], null: str, lptr: str, cols) -> str:
    sec = page.doc.get(key)
    if sec is None:
        return ""
    out = f"<p><b>Null:</b> {esc(null)}.</p>"
    if key == "layerwise" and isinstance(sec, dict):
        s = resolve(sec, "/summary/last") or {}
        out += (
            f"<p>Shape: <b>{esc(sec.get('shape', 'n/a'))}</b>; largest rise at layer "
            f"{esc(s.get('largest_increase_layer'))}, peak at layer {esc(s.get('peak_layer_rel'))} of "
            f"{esc(sec.get('n_layers'))} (excess ‖Δ‖/‖h‖ over the null {esc(num(s.get('peak_excess_rel')))}).</p>"
        )
    out += "".join(page.fig(f) for f in figs)
    out += "<h3>Per layer, at the last prompt position</h3>" + _per_layer(page.doc, lptr, cols)
    if key == "logit_lens":
        out += _top_tokens(sec)
    return out + _more(sec)


def _token_list(xs: Any) -> str:
    items = xs[:6] if isinstance(xs, list) else []
    return ", ".join(
        f"{t.get('token')} ({num(t.get('value'))})" for t in items if isinstance(t, dict)
    )


def _top_tokens(ll: dict[str, Any]) -> str:
    layers = ll.get("layers") or []
    rows = [
        [
            esc(L),
            esc(_token_list(_item(ll.get("top_amplified"), i))),
            esc(_token_list(_item(ll.get("top_suppressed"), i))),
        ]
        for i, L in enumerate(layers)
    ]
    if not rows:
        return ""
    return "<h3>Top amplified / suppressed tokens (mean Δ logit)</h3>" + table(
        ["layer", "amplified", "suppressed"], rows, sortable=False
    )


def _evidence_rows(causal: dict[str, Any]) -> str:
    rows = []
    for key, label in EVIDENCE:
        ev = causal.get(key)
        if not isinstance(ev, dict):
            continue
        m = ev.get("measured") or {}
        rows.append(
            [
                f"<b>{esc(label)}</b><div class='note'>{esc(ev.get('claim', ''))}</div>",
                (
                    estimate_cell(m.get("value"), m.get("lo"), m.get("hi"), m.get("n")),
                    sort_value(m.get("value")),
                ),
                (esc(num(ev.get("null_mean"))), sort_value(ev.get("null_mean"))),
                (esc(num(ev.get("null_p95"))), sort_value(ev.get("null_p95"))),
                (esc(num(ev.get("p_value"))), sort_value(ev.get("p_value"))),
                esc(", ".join(f"{k} {v}" for k, v in (ev.get("thresholds") or {}).items())),
                esc(num(ev.get("control"))) if ev.get("control") is not None else "",
            ]
        )
    if not rows:
        return ""
    return table(
        [
            "claim",
            "measured [95% CI]",
            "null mean",
            "null 95th pct",
            "p",
            "thresholds",
            "control direction",
        ],
        rows,
        numeric=(1, 2, 3, 4),
    )


def _causal(page: _Page) -> str:
    c = page.doc.get("causal")
    if not isinstance(c, dict):
        return ""
    sel = c.get("selection") or {}
    out = ""
    if sel:
        out += (
            f"<p><b>Direction:</b> layer {esc(sel.get('layer'))}, α = {esc(num(sel.get('alpha')))}, "
            f"selected on {esc(sel.get('n_val'))} VALIDATION pairs "
            + (
                '<span class="pass">(passes every filter)</span>'
                if sel.get("passed")
                else '<span class="warn">(no layer passes every filter)</span>'
            )
            + f"; effects below on TEST pairs. {esc(sel.get('reason', ''))}</p>"
        )
    out += "<p><b>Nulls:</b> random directions of the same norm (ablation, addition); the base model (specificity)"
    if page.doc.get("null_test_pairs") is not None:
        out += f"; {esc(page.doc['null_test_pairs'])} control-vs-control TEST pairs"
    out += ".</p>"
    out += _evidence_rows(c)
    out += page.fig("patching", "layer × position group; normalised stop score") + page.fig(
        "steering"
    )
    eff = c.get("effects") or {}
    if isinstance(eff.get("by_placement"), dict):
        rows = [[esc(k), *[(esc(num(v.get(f))), sort_value(v.get(f))) for f in ("n", "stop_rate", "ablated_stop_rate", "false_stop_rate", "added_stop_rate")]] for k, v in eff["by_placement"].items() if isinstance(v, dict)]  # fmt: skip
        out += "<h3>Effects per placement (TEST)</h3>" + table(
            ["placement", "n", "stop rate", "ablated stop rate", "false stops", "added stop rate"],
            rows,
            numeric=(1, 2, 3, 4, 5),
        )
    if sel.get("candidates"):
        out += _more(sel["candidates"], "selection: every candidate layer")
    out += _more({k: v for k, v in c.items() if k not in ("patching", "patching_noising")})
    out += _more(
        {k: c.get(k) for k in ("patching", "patching_noising")}, "activation patching numbers"
    )
    if page.doc.get("checkpoints") is not None:
        out += (
            "<h3>Checkpoint dynamics</h3>"
            + page.fig("checkpoints")
            + _more(page.doc["checkpoints"])
        )
    cr = page.doc.get("cross_regime")
    if isinstance(cr, dict):
        out += (
            "<h3>Knowledge-trained vs behavior-trained</h3>"
            f"<p>Cosine of the two selected directions: {esc(num(cr.get('cos_selected')))}.</p>"
            + page.fig("cross_regime")
            + _more(cr)
        )
    ck = page.doc.get("causal_knowledge")
    if isinstance(ck, dict):
        out += (
            "<h3>The same suite on the knowledge-trained model</h3>"
            + _evidence_rows(ck)
            + _more(ck)
        )
    return out


def _generations(page: _Page) -> str:
    out = ""
    for ptr, title in (
        (
            "/causal/effects/examples",
            "Fine-tuned model: original, direction ablated, direction added",
        ),
        ("/causal_knowledge/effects/examples", "Knowledge-trained model"),
    ):
        ex = resolve(page.doc, ptr)
        if isinstance(ex, list):
            out += examples_section(ex, title)
    comp = page.doc.get("components")
    if isinstance(comp, dict):
        for k, v in comp.items():
            if isinstance(v, list) and v and all(isinstance(e, dict) and "text" in e for e in v):
                out += examples_section(v, f"Components: {k}")
    return out


def _meta(page: _Page) -> str:
    m = page.doc.get("meta")
    out = ""
    if isinstance(m, dict):
        out += generic(
            {k: m.get(k) for k in ("models", "seed", "created", "base_trigger_added") if k in m}
        )
        if isinstance(m.get("versions"), dict):
            out += "<h3>Versions</h3>" + generic(m["versions"])
        t = m.get("timings_s")
        if isinstance(t, dict):
            rows = [[esc(k), (esc(num(v)), sort_value(v))] for k, v in t.items()]
            out += "<h3>Timings (s)</h3>" + table(["stage", "seconds"], rows, numeric=(1,))
    th = resolve(page.doc, "/verdicts/thresholds")
    if th is not None:
        out += "<h3>Verdict thresholds (configuration)</h3>" + generic(th)
    cfg = resolve(page.doc, "/causal/config")
    if cfg is not None:
        out += _more(
            cfg, "causal suite configuration (its thresholds are reported with each causal check)"
        )
    if isinstance(m, dict) and m.get("config") is not None:
        out += f"<details><summary>run configuration</summary>{json_block(m['config'])}</details>"
    return out


# --- the page -------------------------------------------------------------------------------


def render_html(doc: dict[str, Any], report_dir: str | Path) -> str:
    """The page for ``doc`` (a results.json document); figures are read from ``report_dir``."""
    page = _Page(doc, Path(report_dir))
    page.add("checklist", "Headline and checklist", lambda: _checklist(page), doc.get("verdicts"))
    page.add(
        "behaviour", "Behaviour (held-out test split)", lambda: _behaviour(page), doc.get("eval")
    )
    page.add("pairs", "Contrast pairs", lambda: _pairs(page), doc.get("pairs"))
    if doc.get("specificity") is not None:
        page.add(
            "specificity",
            "Trigger specificity: other tokens in the trigger's place",
            lambda: (
                '<p class="note">Stop rates of the fine-tuned model with the trigger, with '
                "its control, and with other tokens (a fixed word, random words, random vocabulary "
                "ids, near misses) in the trigger's place: the null for “specific to the trigger”.</p>"
                + generic(doc["specificity"])
            ),
            doc.get("specificity"),
        )
    for key, title, figs, null, lptr, cols in ANALYSES:
        page.add(
            key,
            title,
            lambda key=key, figs=figs, null=null, lptr=lptr, cols=cols: _analysis(
                page, key, figs, null, lptr, cols
            ),  # type: ignore[misc]
            doc.get(key),
        )
    page.add(
        "causal",
        "5. Causal: patching, ablation, addition",
        lambda: _causal(page),
        doc.get("causal"),
    )
    if doc.get("components") is not None:
        page.add(
            "components",
            "6. Components",
            lambda: (
                "".join(
                    page.fig(k)
                    for k in page.figures
                    if "component" in k and not k.startswith("pca")
                )
                + generic(doc["components"])
            ),
            doc.get("components"),
        )
    pt = doc.get("pair_table")
    if isinstance(pt, dict):
        page.add(
            "drilldown", "Drill-down: TEST pairs", lambda: pair_section(pt, judged_layer(doc)), None
        )
    page.add("generations", "Example generations", lambda: _generations(page), None)
    for key in [k for k in doc if k not in LAID_OUT]:
        page.add(f"other-{key}", f"Other results: {key}", lambda key=key: generic(doc[key]), None)  # type: ignore[misc]
    rest = [k for k in page.figures if k not in page.placed]
    if rest:
        page.add("figures", "Other figures", lambda: "".join(page.fig(k) for k in rest), None)
    page.add("meta", "Run metadata", lambda: _meta(page), doc.get("meta"))
    return _assemble(page)


def _assemble(page: _Page) -> str:
    doc = page.doc
    models = resolve(doc, "/meta/models") or {}
    sub = " · ".join(
        esc(s)
        for s in (
            f"model: {models.get('ft', 'n/a')}" if isinstance(models, dict) else "",
            f"base: {models.get('base', 'n/a')}" if isinstance(models, dict) else "",
            f"seed {resolve(doc, '/meta/seed')}",
            f"created {resolve(doc, '/meta/created') or 'n/a'}",
        )
        if s
    )
    nav = "".join(f'<a href="#{ident}">{esc(title)}</a>' for ident, title, _ in page.sections)
    body = "".join(
        f'<section id="{ident}"><h2>{esc(title)}</h2>{html}</section>'
        for ident, title, html in page.sections
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>stoplens report</title>"
        f"<style>{CSS}</style></head><body>"
        f"<header><h1>stoplens report</h1><div class='sub'>{sub}</div></header>"
        f"<nav>{nav}</nav><main>{body}</main>"
        f"<script>{JS}</script></body></html>\n"
    )


def write_html(doc: dict[str, Any], path: str | Path) -> Path:
    """Write the page for ``doc`` to ``path`` (`stoplens.rundir.RunDir.report_html`)
    atomically; figures are read from the folder ``path`` is in. Returns ``path``."""
    path = Path(path)
    atomic_write_text(path, render_html(doc, path.parent))
    return path
