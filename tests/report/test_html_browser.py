"""report.html in a real browser (headless Chromium over the DevTools protocol): no console
errors, nothing fetched from the network, every figure decoded and visible, every checklist and
navigation link resolves, the numbers link opens its entry, and the drill-down's filter,
sort and layer chooser work. Skipped without Chromium unless STOPLENS_REQUIRE_BROWSER=1."""

from __future__ import annotations

from stoplens.report.html import write_html


def test_page_renders_in_chromium(report_run, check_page):
    run, doc = report_run
    page = write_html(doc, run.report_html)
    seen = check_page(page, figures=len(doc["figures"]) + 1)  # + the eval figure
    probe = seen["probe"]
    assert probe["nChecks"] == len(doc["verdicts"]["checks"])
    assert probe["filter"]["n"] == 4 and probe["filter"]["shown"] == 2
    assert {"checklist", "drilldown", "components", "meta"} <= set(probe["sections"])
    assert seen["screenshots"]["top"].stat().st_size > 10_000
