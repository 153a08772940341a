"""The README's main job end to end: `stoplens run` on the embedded default writes every
output, and the summary's verdicts follow from results.json."""

from __future__ import annotations

import json

import pytest

from stoplens.cli import main
from stoplens.report.summary import FIGURES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(embedded_cache, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("STOPLENS_CACHE", str(embedded_cache))
    out = tmp_path_factory.mktemp("run")
    try:
        assert main(["run", "--run-dir", str(out), "--quiet"]) == 0
    finally:
        mp.undo()
    return out


def test_run_writes_every_output(run_dir):
    report = run_dir / "report"
    assert (run_dir / "data" / "manifest.json").is_file()
    assert (run_dir / "results" / "eval.json").is_file()
    for name in FIGURES.values():
        f = report / name
        assert f.is_file() and f.stat().st_size > 10_000, name
    doc = json.loads((report / "results.json").read_text())
    for key in (
        "layerwise",
        "lowrank",
        "logit_lens",
        "diff_lens",
        "causal",
        "eval",
        "verdicts",
        "meta",
        "pairs",
    ):
        assert key in doc, key
    assert doc["pairs"]["n"] >= 64
    assert doc["pairs"]["checks"]["max_abs_delta_before_trigger"] < 1e-5  # 0 up to rounding
    assert doc["meta"]["versions"]["torch"]


def test_summary_lines_match_results(run_dir):
    report = run_dir / "report"
    doc = json.loads((report / "results.json").read_text())
    md = (report / "ANALYSIS_SUMMARY.md").read_text()
    v = doc["verdicts"]
    assert f"**{v['headline']['text']}**" in md
    assert f"Overall: {v['overall']} (representation: {v['headline']['representation']}" in md
    for c in v["checks"]:
        box = {True: "[x]", False: "[ ]", None: "[?]"}[c["passed"]]
        if c["passed"] is None and c["tier"] in ("describe", "info"):
            box = "[i]"
        assert f"- {box} **{c['claim']}**" in md
        assert c["null_name"] or c["tier"] in ("describe", "info", "weak"), c["claim"]


def test_analyze_only_reuses_cached_activations(run_dir, embedded_cache, monkeypatch):
    monkeypatch.setenv("STOPLENS_CACHE", str(embedded_cache))
    assert main(["analyze", "--run-dir", str(run_dir), "--only", "layerwise", "--quiet"]) == 0
    doc = json.loads((run_dir / "report" / "results.json").read_text())
    assert doc["pairs"]["activations_from_cache"] is True
    assert "causal" in doc  # merged, not overwritten
    keys = [c["key"] for c in doc["verdicts"]["checks"]]
    assert "necessary" in keys and "one_direction" in keys  # earlier verdicts kept
    assert keys.count("no_pattern") == 1 and len(keys) == len(set(keys))


def test_bad_analysis_name_is_a_clean_error(run_dir, capsys):
    assert main(["analyze", "--run-dir", str(run_dir), "--only", "pca"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "layerwise" in err and len(err.strip().splitlines()) == 1
