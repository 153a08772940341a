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

Modules: `render` (the page: which sections, in which order), `page` (the collector),
`checklist_section`, `causal_section`, `sections` (the others), `drilldown` (TEST pairs and
example generations), `layout` (what goes where: data only), `parts` (markup of values),
`assets` (CSS, JS, CSP).

Owns: what the page contains and in which order. Must not: compute statistics or verdicts
(they are in the document), or know where the run directory is (callers pass the folder).
This module only re-exports.
"""

from stoplens.report.html.render import render_html, write_html

__all__ = ["render_html", "write_html"]
