"""The other sections of ``report.html``: behaviour, contrast pairs, specificity, each
analysis with its figures, null and per-layer numbers, components, example generations and
the run metadata.

Owns: what each of these sections shows. Must not: judge or compute (values come from the
document as they are).
"""

from __future__ import annotations

from typing import Any

from stoplens.report import behaviour
from stoplens.report.html.drilldown import examples_section
from stoplens.report.html.layout import EVAL_FIGURE
from stoplens.report.html.page import Page
from stoplens.report.html.parts import (
    esc,
    estimate_cell,
    figure,
    generic,
    is_estimate,
    item,
    json_block,
    more,
    num,
    resolve,
    sort_value,
    table,
)


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
                v = item(s["value"], i)
                row.append(
                    (
                        estimate_cell(v, item(s.get("lo"), i), item(s.get("hi"), i), s.get("n")),
                        sort_value(v),
                    )
                )
            elif isinstance(s, list):
                v = item(s, i)
                row.append((esc(num(v)), sort_value(v)))
            else:
                row.append("")
        rows.append(row)
    head = ["layer", *[label for label, _ in present]]
    return table(head, rows, numeric=tuple(range(1, len(head))))


def behaviour_section(page: Page) -> str:
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


def pairs_section(page: Page) -> str:
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


def analysis_section(
    page: Page, key: str, figs: tuple[str, ...], null: str, lptr: str, cols
) -> str:
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
    return out + more(sec)


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
            esc(_token_list(item(ll.get("top_amplified"), i))),
            esc(_token_list(item(ll.get("top_suppressed"), i))),
        ]
        for i, L in enumerate(layers)
    ]
    if not rows:
        return ""
    return "<h3>Top amplified / suppressed tokens (mean Δ logit)</h3>" + table(
        ["layer", "amplified", "suppressed"], rows, sortable=False
    )


def generations_section(page: Page) -> str:
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


def meta_section(page: Page) -> str:
    m = page.doc.get("meta")
    out = ""
    if isinstance(m, dict):
        out += generic(
            {
                k: m.get(k)
                for k in ("models", "compute", "seed", "created", "base_trigger_added")
                if k in m
            }
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
        out += more(
            cfg, "causal suite configuration (its thresholds are reported with each causal check)"
        )
    if isinstance(m, dict) and m.get("config") is not None:
        out += f"<details><summary>run configuration</summary>{json_block(m['config'])}</details>"
    return out


def specificity_section(page: Page) -> str:
    doc = page.doc
    return (
        '<p class="note">Stop rates of the fine-tuned model with the trigger, with '
        "its control, and with other tokens (a fixed word, random words, random vocabulary "
        "ids, near misses) in the trigger's place: the null for “specific to the trigger”.</p>"
        + generic(doc["specificity"])
    )


def components_section(page: Page) -> str:
    doc = page.doc
    return "".join(
        page.fig(k) for k in page.figures if "component" in k and not k.startswith("pca")
    ) + generic(doc["components"])
