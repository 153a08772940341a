"""Integration with a known answer: the analyses, the causal suite and the report on the
planted-mechanism model, fed by the real data stage's contrast pairs. The verdicts the report
computes must match what was planted."""

from __future__ import annotations

import json

import pytest

from stoplens.data import DataConfig, build_datasets, write_datasets
from stoplens.models.load import LoadedModel, ModelSource
from stoplens.models.planted import build_planted
from stoplens.pipeline import (
    AnalyzeOptions,
    Models,
    run_analyses,
    run_causal_suite,
    run_component_stage,
)
from stoplens.report.summary import FIGURES, write_report
from stoplens.rundir import RunDir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def planted_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted_run")
    run = RunDir(root)
    write_datasets(build_datasets(DataConfig(seed=0, n_documents=20, n_prompts=400)), run.data)
    p = build_planted("qwen2", layer=1)
    src = ModelSource(model="planted", adapter=None, from_hub=False, trigger_added=False)
    ft = LoadedModel(p.model, p.tokenizer, p.trigger_id, p.eos_id, src)
    base = LoadedModel(p.base, p.tokenizer, p.trigger_id, p.eos_id, src)
    models = Models(
        ft=ft,
        base=base,
        base_trigger_added=True,
        data_dir=run.data,
        names={"ft": "planted", "base": "planted base"},
    )
    opts = AnalyzeOptions(batch_size=64, progress=False, checkpoints=False)
    results = run_analyses(models, run, opts)
    results.update(run_causal_suite(models, run, opts))
    results.update(run_component_stage(models, run, opts, results["causal"]))
    write_report(run, results, meta={"seed": 0}, progress=False)
    return p, run, results


def test_report_verdicts_match_the_planted_mechanism(planted_run):
    p, run, results = planted_run
    doc = json.loads(run.results_json.read_text())
    checks = {c["key"]: c for c in doc["verdicts"]["checks"]}
    notes = {k: c["note"] for k, c in checks.items() if c["passed"] is False}

    assert results["layerwise"].summary["last"].largest_increase_layer == p.residual_layer
    for key in ("behaviour", "one_direction", "eos_lens", "content", "did", "necessary",
                "sufficient", "specific", "cheap"):  # fmt: skip
        assert checks[key]["passed"] is True, (key, notes.get(key))
    assert doc["verdicts"]["overall"] == "dedicated mechanism", notes
    assert doc["pairs"]["checks"]["max_abs_delta_before_trigger"] < 1e-5  # 0 up to rounding
    assert doc["pairs"]["fixed_token"]["word"]


def test_report_files_written(planted_run):
    _, run, _ = planted_run
    md = run.summary_md.read_text()
    assert "## Representation: strong evidence" in md and "## Causal evidence" in md
    assert "95% CI" in md and "fixed-token null" in md
    for key in (
        "layerwise",
        "pca_cumulative",
        "pca_components",
        "logit_lens",
        "diff_lens",
        "patching",
        "steering",
    ):
        f = run.report / FIGURES[key]
        assert f.is_file() and f.stat().st_size > 10_000, f
    assert not list(run.report.glob(".*.tmp")), "temporary files left behind"


def test_pair_table_covers_every_test_pair(planted_run):
    _, run, results = planted_run
    doc = json.loads(run.results_json.read_text())
    pt = doc["pair_table"]
    assert pt["n"] == doc["pairs"]["n"] == results["delta_set"].n
    assert pt["layers"] == doc["layerwise"]["layers"]
    rows = pt["rows"]
    assert all(r["tokens"][r["trigger_pos"]].strip() == "$STOP" for r in rows)
    # the planted model stops on its triggered prompts, not on their controls
    assert sum(r["stops_trig"] for r in rows) / len(rows) > 0.9
    assert sum(r["stops_ctrl"] for r in rows) / len(rows) < 0.1


def test_report_page_in_a_real_browser(planted_run, check_page):
    """The page of a real (planted-model) run: checked in headless Chromium."""
    _, run, _ = planted_run
    doc = json.loads(run.results_json.read_text())
    seen = check_page(run.report_html, figures=len(doc["figures"]))
    assert {"checklist", "layerwise", "causal", "drilldown", "generations"} <= set(
        seen["probe"]["sections"]
    )
    assert seen["probe"]["filter"]["expected"] > 0


def test_component_stage_names_the_planted_head(planted_run):
    """The component suite in the pipeline: the planted head ranks first, beyond the null, one
    direction suffices; the report section, the figure, the artifact and the generations are
    written into the run directory."""
    p, run, results = planted_run
    suite = results["components"]
    top = suite.patching.ranking[0]
    assert top.name == f"L{p.layer}H0" and all(top.beyond_null.values())
    assert suite.subspace is not None and suite.subspace.smallest_k == 1
    assert suite.weights is not None and suite.weights.best("write").layer == p.layer
    md = run.summary_md.read_text()
    assert "## Which components carry $STOP" in md and "Smallest k: 1" in md
    doc = json.loads(run.results_json.read_text())
    info = {c["key"]: c for c in doc["verdicts"]["checks"] if c["tier"] == "info"}
    assert info["components"]["value"].startswith(f"L{p.layer}H0 (")
    assert info["subspace"]["value"] == "k = 1"
    assert (run.report / FIGURES["components"]).stat().st_size > 10_000
    from stoplens.interventions import load_directions

    art = load_directions(run.directions_file)
    assert set(art.entries) >= {"direction", "subspace_train_delta"}
    assert art["direction"].layer == results["causal"].selection.layer
    lines = run.generations_file.read_text().splitlines()
    assert len(lines) == 5 * 4 and json.loads(lines[0])["condition"] == "triggered"
