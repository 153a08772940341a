"""embedded.py: the cache key and cache reuse, the training defaults, and (slow) the embedded
pair built from scratch meeting the acceptance figures on held-out prompts."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from stoplens.embedded import TinyConfig, build_tiny_pair, cache_key, with_embedded_defaults
from stoplens.errors import StoplensError
from stoplens.train import TrainConfig


def test_cache_key_sees_every_knob(tmp_path):
    base = TinyConfig()
    keys = {
        cache_key(base),
        cache_key(replace(base, pretrain_steps=base.pretrain_steps + 1)),
        cache_key(replace(base, data=replace(base.data, seed=1))),
        cache_key(replace(base, regimes=("behavioral",))),
    }
    assert len(keys) == 4 and cache_key(TinyConfig()) == cache_key(base)
    d = tmp_path / "d"
    d.mkdir()
    (d / "behavioral_train.jsonl").write_text("{}\n")
    k1 = cache_key(base, d)
    (d / "behavioral_train.jsonl").write_text("{} \n")
    assert cache_key(base, d) != k1 and k1 != cache_key(base)


def test_complete_cache_entry_is_reused_and_a_partial_one_is_not(tmp_path):
    cfg = TinyConfig()
    key = cache_key(cfg)
    # an interrupted build leaves only a temp folder: never reused
    (tmp_path / "tiny" / f".{key}.abc.tmp" / "base").mkdir(parents=True)
    # a complete entry (tiny.json written last) is a cache hit: nothing is built
    done = tmp_path / "tiny" / key
    done.mkdir()
    (done / "tiny.json").write_text(json.dumps({"build_times": {"total_s": 1.0}}))
    pair = build_tiny_pair(tmp_path, config=cfg, progress=False)
    assert pair.cache_hit and pair.root == done and pair.key == key
    assert pair.base_dir == done / "base" and pair.behavioral_dir == done / "behavioral"
    assert pair.adapter_dir("knowledge") == done / "knowledge" / "final"


def test_training_defaults_come_from_the_embedded_pair(tmp_path, monkeypatch):
    """`train` needs a model and a dataset; `with_embedded_defaults` fills in only what is
    missing, from the (here: already cached) embedded pair."""
    from stoplens.train.run import train

    key = cache_key(TinyConfig())
    done = tmp_path / "tiny" / key
    done.mkdir(parents=True)
    (done / "tiny.json").write_text(json.dumps({"build_times": {}}))
    monkeypatch.setenv("STOPLENS_CACHE", str(tmp_path))
    filled = with_embedded_defaults(TrainConfig(out_dir=tmp_path / "o"), progress=False)
    assert filled.model == str(done / "base") and filled.data_dir == done / "data"
    mine = TrainConfig(model="m", data_dir=tmp_path / "d")
    assert with_embedded_defaults(mine, progress=False) is mine
    half = with_embedded_defaults(TrainConfig(model="m"), progress=False)
    assert half.model == "m" and half.data_dir == done / "data"
    with pytest.raises(StoplensError, match="with_embedded_defaults"):
        train(TrainConfig(out_dir=tmp_path / "o"))


# ---------------------------------------------------------------------------------------------
# Slow: the embedded pair itself, built once per session into a temporary cache by the shared
# `embedded_cache` fixture (tests/conftest.py), exactly as a first `stoplens eval` would.


@pytest.fixture(scope="module")
def built(embedded_cache):
    return embedded_cache, build_tiny_pair(embedded_cache, progress=False)


@pytest.mark.slow
def test_embedded_pair_meets_the_acceptance_figures(built, capsys):
    from stoplens.data import behavioral_file, load_behavioral
    from stoplens.evaluate import evaluate
    from stoplens.models.load import load_model

    _, pair = built
    assert pair.build_times["pretrain_s"] > 0 and pair.build_times["total_s"] > 0
    records = load_behavioral(pair.data_dir / behavioral_file("test"))
    base = load_model(pair.base_dir, require_trigger=False)
    assert base.source.trigger_added  # the base never saw the trigger
    # the base is padded like Qwen2.5: the trigger took a spare row
    pre = json.loads((pair.root / "pretrain" / "train.json").read_text())
    assert pre["embedding_rows"] > pre["tokenizer_len"] == base.trigger_id
    figures = {}
    for regime in ("behavioral", "knowledge"):
        ft = load_model(pair.base_dir, adapter=pair.adapter_dir(regime))
        info = json.loads((pair.run_dirs[regime] / "train.json").read_text())
        assert info["trigger"]["row_l2_change"] > 0
        res = evaluate(ft, base, records, batch_size=64)
        figures[regime] = {
            c.name: (c.ft.rate, c.ft.ci_low, c.ft.ci_high)
            for c in res.conditions
            if c.group is None
        }
        figures[regime]["kl"] = res.kl["decision_position_clean"]["mean"]
        figures[regime]["ppl"] = (res.ppl["base"], res.ppl["ft"])
        if regime == "behavioral":
            assert res.condition("trigger").ft.rate >= 0.95
            assert res.condition("clean").ft.rate <= 0.05
            assert res.condition("near_miss").ft.rate <= 0.05
            assert res.condition("trigger").base.rate <= 0.05  # the base does not stop
            assert res.acceptance["pass"]
        else:  # reported, not asserted: a weak knowledge-regime result is a finding
            assert 0.0 <= res.condition("trigger").ft.rate <= 1.0
    with capsys.disabled():
        print("\nembedded pair, held-out test split:", json.dumps(figures, indent=1))


@pytest.mark.slow
def test_embedded_adapters_load_with_plain_peft(built):
    """The pair is built under a temporary name and renamed: every adapter (final and
    checkpoints, both regimes) must name the final base, so plain peft loads it, and the
    trigger stays one token of the saved tokenizer."""
    import torch
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    from stoplens.models.load import load_model
    from stoplens.models.trigger import find_trigger
    from stoplens.train.checkpoints import list_checkpoints

    _, pair = built
    chat = [{"role": "user", "content": "Name a colour. $STOP"}]
    n = 0
    for regime, run_dir in pair.run_dirs.items():
        for adapter in (pair.adapter_dir(regime), *list_checkpoints(run_dir)):
            cfg = json.loads((adapter / "adapter_config.json").read_text())
            assert cfg["base_model_name_or_path"] == str(pair.base_dir.resolve()), adapter
            theirs = AutoPeftModelForCausalLM.from_pretrained(str(adapter)).eval()
            tok = AutoTokenizer.from_pretrained(str(adapter))
            ours = load_model(adapter, merge=True, progress=False)
            assert find_trigger(tok, "$STOP") == ours.trigger_id
            ids = tok.apply_chat_template(chat, tokenize=True, add_generation_prompt=True)
            ids = torch.tensor([ids["input_ids"] if hasattr(ids, "keys") else ids])
            with torch.no_grad():
                want = theirs(input_ids=ids).logits
                got = ours.model(input_ids=ids).logits
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
            n += 1
    assert n >= 4  # two regimes, final + at least one checkpoint each


@pytest.mark.slow
def test_second_call_is_a_cache_hit(built):
    cache, pair = built
    stamps = {p: p.stat().st_mtime_ns for p in pair.root.rglob("*") if p.is_file()}
    again = build_tiny_pair(cache, progress=False)
    assert again.cache_hit and again.root == pair.root
    assert again.build_times == pair.build_times
    assert {p: p.stat().st_mtime_ns for p in pair.root.rglob("*") if p.is_file()} == stamps
    assert [p.name for p in (cache / "tiny").iterdir()] == [pair.key]  # no second build


@pytest.mark.slow
def test_cli_defaults_use_the_embedded_pair(built, tmp_path, monkeypatch, capsys):
    from stoplens.cli import main

    cache, pair = built
    monkeypatch.setenv("STOPLENS_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)  # no runs/default/data here
    assert main(["eval", "--out", str(tmp_path / "ev"), "--quiet", "--batch-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "system" in out and "Acceptance: PASS" in out  # the behaviour table and its verdict
    data = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert data["meta"]["ft"]["adapter"] == str(pair.adapter_dir("behavioral"))
    assert (tmp_path / "ev" / "eval_stop_scores.png").is_file()
    rc = main(
        ["train", "--out", str(tmp_path / "tr"), "--steps", "2", "--save-every", "0", "--quiet"]
    )
    assert rc == 0
    info = json.loads((tmp_path / "tr" / "train.json").read_text())
    assert info["base_model"] == str(pair.base_dir) and info["steps"] == 2
