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
    write_datasets(build_datasets(DataConfig(seed=0, n_documents=20, n_prompts=300)), run.data)
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
    checks = {c["claim"]: c for c in doc["verdicts"]["checks"]}

    def passed(prefix: str) -> bool | None:
        hits = [c for k, c in checks.items() if k.startswith(prefix)]
        assert hits, f"no check starting with {prefix!r}: {list(checks)}"
        return hits[0]["passed"]

    assert results["layerwise"].summary["last"].largest_increase_layer == p.residual_layer
    assert passed("One direction") is True
    assert passed("EOS amplified") is True
    assert passed("Necessary") is True
    assert passed("Sufficient") is True
    assert passed("Fine-tuning created it") is True
    assert passed("Specific") is True
    assert doc["pairs"]["checks"]["max_abs_delta_before_trigger"] == 0.0


def test_report_files_written(planted_run):
    _, run, _ = planted_run
    md = run.summary_md.read_text()
    assert "## Strong evidence" in md and "## Causal evidence" in md and "95% CI" in md
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
    assert (run.report / FIGURES["components"]).stat().st_size > 10_000
    from stoplens.interventions import load_directions

    art = load_directions(run.directions_file)
    assert set(art.entries) >= {"direction", "subspace_train_delta"}
    assert art["direction"].layer == results["causal"].selection.layer
    lines = run.generations_file.read_text().splitlines()
    assert len(lines) == 5 * 4 and json.loads(lines[0])["condition"] == "triggered"
