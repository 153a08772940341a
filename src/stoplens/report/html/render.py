"""``report.html``: the whole report as one self-contained page, rendered from the
results.json document alone (figures read from the report folder and inlined as base64 PNG;
no network, no external script or style; the page's Content-Security-Policy forbids loading
anything).

Owns: which sections the page has, in which order, and the document around them. Must not:
compute statistics or verdicts (they are in the document), or know where the run directory
is (callers pass the folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stoplens.io import atomic_write_text
from stoplens.report.checks import judged_layer_from_doc
from stoplens.report.html.assets import CSP, CSS, JS
from stoplens.report.html.causal_section import causal_section
from stoplens.report.html.checklist_section import checklist_section
from stoplens.report.html.drilldown import pair_section
from stoplens.report.html.layout import ANALYSES, LAID_OUT
from stoplens.report.html.page import Page
from stoplens.report.html.parts import esc, generic, resolve
from stoplens.report.html.sections import (
    analysis_section,
    behaviour_section,
    components_section,
    generations_section,
    meta_section,
    pairs_section,
    specificity_section,
)


def render_html(doc: dict[str, Any], report_dir: str | Path) -> str:
    """The page for ``doc`` (a results.json document); figures are read from ``report_dir``."""
    page = Page(doc, Path(report_dir))
    page.add(
        "checklist", "Headline and checklist", lambda: checklist_section(page), doc.get("verdicts")
    )
    page.add(
        "behaviour",
        "Behaviour (held-out test split)",
        lambda: behaviour_section(page),
        doc.get("eval"),
    )
    page.add("pairs", "Contrast pairs", lambda: pairs_section(page), doc.get("pairs"))
    if doc.get("specificity") is not None:
        page.add(
            "specificity",
            "Trigger specificity: other tokens in the trigger's place",
            lambda: specificity_section(page),
            doc.get("specificity"),
        )
    for key, title, figs, null, lptr, cols in ANALYSES:
        page.add(
            key,
            title,
            lambda key=key, figs=figs, null=null, lptr=lptr, cols=cols: analysis_section(
                page, key, figs, null, lptr, cols
            ),  # type: ignore[misc]
            doc.get(key),
        )
    page.add(
        "causal",
        "5. Causal: patching, ablation, addition",
        lambda: causal_section(page),
        doc.get("causal"),
    )
    if doc.get("components") is not None:
        page.add(
            "components", "6. Components", lambda: components_section(page), doc.get("components")
        )
    _add_tail(page)
    return _assemble(page)


def _add_tail(page: Page) -> None:
    """The drill-down, example generations, results without a layout of their own, figures
    not placed yet, and the run metadata."""
    doc = page.doc
    pt = doc.get("pair_table")
    if isinstance(pt, dict):
        page.add(
            "drilldown",
            "Drill-down: TEST pairs",
            lambda: pair_section(pt, judged_layer_from_doc(doc)),
            None,
        )
    page.add("generations", "Example generations", lambda: generations_section(page), None)
    for key in [k for k in doc if k not in LAID_OUT]:
        page.add(f"other-{key}", f"Other results: {key}", lambda key=key: generic(doc[key]), None)  # type: ignore[misc]
    rest = [k for k in page.figures if k not in page.placed]
    if rest:
        page.add("figures", "Other figures", lambda: "".join(page.fig(k) for k in rest), None)
    page.add("meta", "Run metadata", lambda: meta_section(page), doc.get("meta"))


def _assemble(page: Page) -> str:
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
