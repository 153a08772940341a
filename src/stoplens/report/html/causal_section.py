"""The causal section of ``report.html``: the selected direction, the evidence rows with
their nulls, the patching and steering figures, effects per placement, checkpoint dynamics,
the cross-regime comparison and the suite on the knowledge-trained model.

Owns: how the causal results are shown. Must not: judge or compute.
"""

from __future__ import annotations

from typing import Any

from stoplens.report.html.layout import EVIDENCE
from stoplens.report.html.page import Page
from stoplens.report.html.parts import esc, estimate_cell, more, num, sort_value, table


def evidence_rows(causal: dict[str, Any]) -> str:
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


def causal_section(page: Page) -> str:
    c = page.doc.get("causal")
    if not isinstance(c, dict):
        return ""
    sel = c.get("selection") or {}
    out = _direction_line(sel) if sel else ""
    out += "<p><b>Nulls:</b> random directions of the same norm (ablation, addition)"
    n_null = ((c.get("effects") or {}).get("ablation_null") or {}).get("n_prompts")
    n_test = (c.get("effects") or {}).get("n")
    if n_null is not None and n_test is not None and n_null < n_test:
        out += (
            f", each run on {esc(n_null)} of the {esc(n_test)} TEST pairs (stratified by "
            "placement; ranked against the direction's effect on the same pairs)"
        )
    out += "; the base model (specificity)"
    if page.doc.get("null_test_pairs") is not None:
        out += f"; {esc(page.doc['null_test_pairs'])} control-vs-control TEST pairs"
    out += ".</p>"
    out += evidence_rows(c)
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
        out += more(sel["candidates"], "selection: every candidate layer")
    out += more({k: v for k, v in c.items() if k not in ("patching", "patching_noising")})
    out += more(
        {k: c.get(k) for k in ("patching", "patching_noising")}, "activation patching numbers"
    )
    return out + _related(page)


def _related(page: Page) -> str:
    """Checkpoint dynamics, knowledge-trained vs behavior-trained, and the suite on the
    knowledge-trained model, when the document has them."""
    out = ""
    if page.doc.get("checkpoints") is not None:
        out += (
            "<h3>Checkpoint dynamics</h3>" + page.fig("checkpoints") + more(page.doc["checkpoints"])
        )
    cr = page.doc.get("cross_regime")
    if isinstance(cr, dict):
        out += (
            "<h3>Knowledge-trained vs behavior-trained</h3>"
            f"<p>Cosine of the two selected directions: {esc(num(cr.get('cos_selected')))}.</p>"
            + page.fig("cross_regime")
            + more(cr)
        )
    ck = page.doc.get("causal_knowledge")
    if isinstance(ck, dict):
        out += (
            "<h3>The same suite on the knowledge-trained model</h3>" + evidence_rows(ck) + more(ck)
        )
    return out


def _direction_line(sel: dict[str, Any]) -> str:
    """The selected direction: layer, α, VAL pairs, whether it passes every filter."""
    return (
        f"<p><b>Direction:</b> layer {esc(sel.get('layer'))}, α = {esc(num(sel.get('alpha')))}, "
        f"selected on {esc(sel.get('n_val'))} VALIDATION pairs "
        + (
            '<span class="pass">(passes every filter)</span>'
            if sel.get("passed")
            else '<span class="warn">(no layer passes every filter)</span>'
        )
        + f"; effects below on TEST pairs. {esc(sel.get('reason', ''))}</p>"
    )
