"""report.html from a results.json document, checked without a browser: self-contained,
every in-page link resolves, the checklist links each line to its figure and its numbers
(the check's own keys, else the fallback by claim), the drill-down marks the trigger and the
decision positions, and a document with missing or odd sections still renders."""

from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from rich.console import Console

from stoplens.cli import main
from stoplens.report import behaviour
from stoplens.report.html import render_html, write_html
from stoplens.report.html.layout import EVAL_FIGURE
from stoplens.report.summary import render_markdown


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str]] = []  # (attribute, value) of every href / src
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if "id" in a:
            self.ids.add(a["id"])
        for k in ("href", "src"):
            if k in a:
                self.refs.append((k, a[k] or ""))


def _parse(page: str) -> _Links:
    p = _Links()
    p.feed(page)
    return p


def test_page_is_self_contained_and_every_link_resolves(report_run):
    run, doc = report_run
    page = render_html(doc, run.report)
    p = _parse(page)
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    for attr, value in p.refs:
        assert value.startswith("#") or value.startswith("data:image/png;base64,"), (attr, value)
    missing = [v for a, v in p.refs if v.startswith("#") and v[1:] not in p.ids]
    assert missing == []
    imgs = [a for t, a in p.tags if t == "img" and a.get("src", "").startswith("data:")]
    assert len(imgs) == len(doc["figures"]) + 1  # + the eval figure found in the folder
    for key in doc["figures"]:
        assert f"fig-{key}" in p.ids, key
    for section in ("checklist", "behaviour", "layerwise", "lowrank", "causal", "components",
                    "drilldown", "generations", "meta"):  # fmt: skip
        assert section in p.ids, section
    assert "could not be laid out" not in page and "is missing" not in page
    assert "Other results" not in page  # every section of this document has a place


def test_an_unknown_section_is_shown_not_dropped(report_run):
    run, doc = report_run
    doc["mystery_analysis"] = {"stop_rate_by_token": [{"token": "STOP", "rate": 0.0}]}
    page = render_html(doc, run.report)
    assert 'id="other-mystery_analysis"' in page and "stop_rate_by_token" in page


def test_checklist_lines_link_to_their_figure_and_numbers(report_run):
    run, doc = report_run
    page = render_html(doc, run.report)
    rows = [a for t, a in _parse(page).tags if t == "tr" and "check" in (a.get("class") or "")]
    assert [r.get("data-fig") for r in rows] == ["layerwise", "pca_cumulative", None, "steering"]
    # own ref, fallback ref (older check without the key), and the check's own fields
    assert "results.json <code>/layerwise/summary/last</code>" in page
    assert "results.json <code>/lowrank/trigger/energy_top1_ci</code>" in page
    assert "results.json <code>/causal/necessary</code>" in page
    for i in range(4):
        assert f'href="#num-{i}"' in page and f'id="num-{i}"' in page
    assert "the signal appears in the first third of the layers" in page  # meaning
    assert "(random directions)" in page  # null_name beside the null value
    assert "A synthetic headline" in page and "sufficient but not necessary" in page
    assert "necessary: no" in page and "sufficient: yes" in page  # the causal flags


def test_drilldown_marks_trigger_and_decision_positions(report_run):
    run, doc = report_run
    p = _parse(render_html(doc, run.report))
    table_rows = [a for t, a in p.tags if t == "tr" and "data-placement" in a]
    assert len(table_rows) == 4
    assert {a["data-placement"] for a in table_rows} == {"prefix", "suffix"}
    assert {a["data-kind"] for a in table_rows} == {"word", "near_miss"}
    toks = [a for t, a in p.tags if t == "span" and "title" in a]  # the legend has no title
    trig = [a for a in toks if "trig" in (a.get("class") or "").split()]
    assert len(trig) == 4
    assert {a["data-ctrl"] for a in trig} == {" blue", " STOP"} and all(
        a["data-trig"] == " $STOP" for a in trig
    )
    dec = [a for a in toks if "dec" in (a.get("class") or "").split()]
    assert len(dec) == 4 * 5
    assert json.loads(table_rows[0]["data-rel"]) == doc["pair_table"]["rows"][0]["rel_delta"]


def test_missing_or_odd_sections_never_break_the_page(tmp_path: Path):
    assert "<html" in render_html({}, tmp_path)
    odd = {
        "layerwise": "not a dict",
        "lowrank": {"layers": "?"},
        "eval": {"conditions": {"trigger": 3, "x/y": {"ft": None}}},
        "verdicts": {"checks": [{"claim": "bare"}, "junk"], "headline": "text"},
        "pair_table": {"rows": [{}], "layers": []},
        "causal": {"selection": None, "effects": {"examples": ["x"]}},
        "figures": {"layerwise": "absent.png", "mystery": "absent2.png"},
        "meta": {"models": "?", "timings_s": {"total": None}},
        "components": [1, 2, 3],
    }
    page = render_html(odd, tmp_path)
    p = _parse(page)
    assert "figure absent.png is missing" in page and "fig-mystery" in p.ids
    assert [v for a, v in p.refs if v.startswith("#") and v[1:] not in p.ids] == []


def test_write_html_is_atomic_and_deterministic(report_run):
    run, doc = report_run
    path = write_html(doc, run.report_html)
    first = path.read_bytes()
    write_html(doc, run.report_html)
    assert path.read_bytes() == first
    assert not list(run.report.glob(".*.tmp"))


def test_eval_figure_name_matches_the_eval_stage():
    from stoplens.evaluate import FIGURE

    assert EVAL_FIGURE == FIGURE


def test_behaviour_table_fits_80_columns_and_markdown_is_a_table(report_run):
    _, doc = report_run
    console = Console(record=True, width=80)
    console.print(behaviour.table(doc["eval"]))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines.index(next(x for x in lines if "triggered" in x and "300" in x)) < lines.index(
        next(x for x in lines if x.strip().startswith("clean"))
    )
    md = render_markdown(doc)
    assert "| condition | n | base | fine-tuned |" in md
    assert "| triggered / later_turn | 150 | 0% [0, 10] | 100% [90, 100] |" in md
    assert '{"' not in md.split("## Behaviour")[1].split("##")[0]  # no raw JSON dict


def test_stoplens_report_rebuilds_both_files_from_results_json(report_run, capsys):
    run, doc = report_run
    assert main(["report", str(run.root)]) == 0
    out = capsys.readouterr().out
    assert str(run.report_html) in out and "self-contained" in out
    md = run.summary_md.read_text(encoding="utf-8")
    assert "Overall: partial evidence (representation: " in md and "- [?] **Diffuse**" in md
    assert run.report_html.stat().st_size > 1000
    page = run.report_html.read_text(encoding="utf-8")
    assert page == render_html(doc, run.report)
    assert main(["report", str(run.report)]) == 0  # the report folder itself works too


def test_stoplens_report_without_results_is_a_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "stoplens run" in err and len(err.splitlines()) == 1


def test_stoplens_report_loads_no_model_library(report_run):
    run, _ = report_run
    code = (
        "import sys\nfrom stoplens.cli import main\n"
        f"assert main(['report', {str(run.root)!r}]) == 0\n"
        "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))"
    )
    src = Path(__file__).resolve().parents[2] / "src"
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("passed", [True, False, None])
def test_status_of_each_line_is_shown(report_run, passed):
    run, doc = report_run
    doc["verdicts"]["checks"][0]["passed"] = passed
    page = render_html(doc, run.report)
    row = page.split('data-claim="Early spike"')[1].split("</tr>")[0]
    assert {True: "✓ pass", False: "✗ fail", None: "? n/a"}[passed] in row
