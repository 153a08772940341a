"""Integration with a known answer: the analyses, the causal suite and the report on the
planted-mechanism model, fed by the real data stage's contrast pairs. The verdicts the report
computes must match what was planted."""

from __future__ import annotations

import json

import pytest

from stoplens.data import DataConfig, build_datasets, write_datasets
from stoplens.models.load import LoadedModel, ModelSource
from stoplens.models.planted import build_planted
from stoplens.pipeline import AnalyzeOptions, Models, run_analyses, run_causal_suite
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
    assert doc["pairs"]["checks"]["max_abs_delta_before_trigger"] == 0.0
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
