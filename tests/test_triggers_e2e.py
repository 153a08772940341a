"""Any string that becomes one token works as the trigger through every stage, from the
command line: data -> train -> eval -> analyze -> causal, for triggers that look like the old
template placeholder (``<<STOP>>``), like chat-template tokens (``<|halt|>``), with brackets
(``[STOP]``) and non-ASCII without any letter (``⏹``; ``§STOP`` and more are covered fast at
the data and tokenizer level). Lean: a tiny random base shared by all, few prompts, three
training steps; the stages must run and agree on the trigger, not learn it."""

from __future__ import annotations

import json

import pytest

from stoplens.cli import main

pytestmark = pytest.mark.slow

TRIGGERS = ("<<STOP>>", "<|halt|>", "[STOP]", "⏹")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny random Qwen2 with a BPE tokenizer trained on trigger-free generated text."""
    from stoplens.data import DataConfig, build_datasets, write_datasets
    from stoplens.embedded import dataset_texts
    from stoplens.models.tiny import save_random_base

    root = tmp_path_factory.mktemp("trigger_base")
    data = write_datasets(build_datasets(DataConfig(n_prompts=40, n_documents=10)), root / "d")
    return save_random_base(root / "base", dataset_texts(data), vocab_size=500, pad_rows=5)


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_trigger_through_every_stage(trigger, base, tmp_path, capsys):
    from stoplens.data import load_pairs, pairs_file

    run = str(tmp_path / "run")
    ft = f"{run}/models/behavioral"
    q = ["--run-dir", run, "--quiet"]
    small = ["--n-prompts", "40", "--n-documents", "10", "--control-kinds", "word"]
    assert main(["data", "--trigger", trigger, "--run-dir", run, *small]) == 0
    pairs = load_pairs(tmp_path / "run" / "data" / pairs_file("test"))
    assert pairs and all(p["trigger"] == trigger for p in pairs)
    assert all(any(trigger in m["content"] for m in p["triggered"]) for p in pairs)
    # train reads the trigger from the dataset, the later stages from the adapter's metadata
    train = ["--steps", "3", "--batch-size", "4", "--save-every", "3", "--max-length", "256"]
    assert main(["train", "--model", str(base), *train, *q]) == 0
    meta = json.loads((tmp_path / "run/models/behavioral/final/stoplens_adapter.json").read_text())
    assert meta["trigger"] == trigger
    assert main(["eval", "--model", ft, *q]) == 0
    doc = json.loads((tmp_path / "run" / "results" / "eval.json").read_text())
    assert doc["n_records"] > 0 if "n_records" in doc else doc
    adapter = ["--model", str(base), "--adapter", f"{ft}/final"]
    assert main(["analyze", *adapter, "--trigger", trigger, "--layers", "0-2", *q]) == 0
    assert main(["causal", *adapter, "--no-checkpoints", *q]) == 0
    res = json.loads((tmp_path / "run" / "report" / "results.json").read_text())
    assert res["meta"]["config"]["spec"]["trigger"] == trigger
    assert res["pairs"]["n"] >= 5 and res["pairs"]["checks"]["max_abs_delta_before_trigger"] < 1e-5
    for key in ("layerwise", "lowrank", "logit_lens", "diff_lens", "causal"):
        assert key in res, key
    if trigger == TRIGGERS[0]:  # `run` on a given adapter writes its own data, with its trigger
        run2 = tmp_path / "run2"
        args = ["run", *adapter, "--run-dir", str(run2), "--no-causal", "--n-pairs", "8"]
        assert main([*args, "--layers", "0-1", "--quiet"]) == 0
        manifest = json.loads((run2 / "data" / "manifest.json").read_text())
        assert manifest["config"]["trigger"] == trigger
        assert json.loads((run2 / "report" / "results.json").read_text())["pairs"]["n"] > 0
    capsys.readouterr()
    # a conflicting --trigger is a one-line error naming the trained one
    assert main(["analyze", *adapter, "--trigger", "$STOP", *q]) == 2
    err = capsys.readouterr().err.strip()
    assert f"conflicts with {trigger!r}" in err and len(err.splitlines()) == 1
