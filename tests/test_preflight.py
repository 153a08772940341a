"""Fail fast: `stoplens run` resolves every model (exists, config and tokenizer load, trigger
possible) before any stage writes data; a hub id with the hub unreachable fails at once."""

from __future__ import annotations

import time

import pytest

from stoplens.cli import main
from stoplens.errors import StoplensError
from stoplens.pipeline import ModelSpec, resolve_spec


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    return err


def test_unreachable_hub_fails_before_any_data(tmp_path, monkeypatch, capsys):
    import stoplens.models.locate as load_mod

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # nothing cached
    monkeypatch.setattr(load_mod, "_hub_reachable", lambda timeout=3.0: False)
    run = tmp_path / "run"
    t0 = time.monotonic()
    assert main(["run", "--model", "some-org/not-here", "--run-dir", str(run), "--quiet"]) == 2
    assert time.monotonic() - t0 < 30
    assert "hub cannot be reached" in _one_line_error(capsys)
    assert not run.exists()  # nothing was generated


def test_offline_hub_id_fails_before_any_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    run = tmp_path / "run"
    assert main(["run", "--model", "some-org/not-here", "--run-dir", str(run), "--quiet"]) == 2
    assert "offline" in _one_line_error(capsys)
    assert not run.exists()


def test_folder_without_tokenizer_fails_before_any_data(tmp_path, capsys):
    from stoplens.models.tiny import random_model

    random_model("llama", 50, d_model=16).save_pretrained(tmp_path / "m")  # no tokenizer
    capsys.readouterr()
    run = tmp_path / "run"
    assert main(["run", "--model", str(tmp_path / "m"), "--run-dir", str(run), "--quiet"]) == 2
    assert "tokenizer" in _one_line_error(capsys)
    assert not run.exists()


def test_unknown_dtype_fails_before_any_data(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["run", "--dtype", "int4", "--run-dir", str(run), "--quiet"]) == 2
    assert "unknown dtype 'int4'" in _one_line_error(capsys)
    assert not run.exists()


def test_resolve_spec_checks_the_trigger_and_the_embedded_pair(tmp_path):
    from stoplens.models.tiny import save_random_base

    base = save_random_base(tmp_path / "b", ["please explain the river"] * 50, vocab_size=300)
    spec = resolve_spec(ModelSpec(model=str(base), trigger="<|halt|>"), train=True)
    assert spec.trigger == "<|halt|>" and spec.model == str(base)
    # a base that is to be analysed as fine-tuned must already have the trigger as one token
    with pytest.raises(StoplensError, match="was not fine-tuned with trigger"):
        resolve_spec(ModelSpec(model=str(base), base=str(base)))
    assert resolve_spec(ModelSpec()).trigger == "$STOP"
    with pytest.raises(StoplensError, match="embedded default pair was trained with"):
        resolve_spec(ModelSpec(trigger="[STOP]"))
    with pytest.raises(StoplensError, match="--inference"):
        resolve_spec(ModelSpec(inference="fast"))
