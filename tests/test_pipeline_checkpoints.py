"""The pipeline's checkpoint loaders go through `stoplens.train.list_checkpoints`: a
half-written checkpoint (no weights yet, or no ``trainer_state.json``, the Trainer's last
file) is never handed to the checkpoint-dynamics analysis."""

from __future__ import annotations

import stoplens.models.load
from stoplens.pipeline import ModelSpec
from stoplens.pipeline.stage_models import checkpoint_loaders, same_adapter_weights
from stoplens.train import list_checkpoints  # imported (with its load_model) before any patch


def _checkpoint(root, step: int, *, weights: bool, state: bool) -> None:
    d = root / "checkpoints" / f"checkpoint-{step}"
    d.mkdir(parents=True)
    (d / "adapter_config.json").write_text("{}")
    if weights:
        (d / "adapter_model.safetensors").write_bytes(b"\0")
    if state:
        (d / "trainer_state.json").write_text("{}")


def test_half_written_checkpoints_are_not_loaded(tmp_path, monkeypatch):
    out = tmp_path / "behavioral"
    _checkpoint(out, 3, weights=True, state=True)
    _checkpoint(out, 6, weights=False, state=True)  # weights not written yet
    _checkpoint(out, 9, weights=True, state=False)  # trainer_state.json not written yet
    _checkpoint(out, 12, weights=True, state=True)
    assert [d.name for d in list_checkpoints(out)] == ["checkpoint-3", "checkpoint-12"]
    loaded = []

    class _Loaded:
        model = "model"

    def fake_load_model(path, *, adapter=None, **kw):
        loaded.append((path, adapter.name))
        return _Loaded()

    monkeypatch.setattr(stoplens.models.load, "load_model", fake_load_model)
    spec = ModelSpec(model="base", adapter=str(out / "final"), trigger="$STOP")
    loaders = checkpoint_loaders("base", out, spec)
    assert [step for step, _ in loaders] == [3, 12]
    assert [load() for _, load in loaders] == ["model", "model"]
    assert loaded == [("base", "checkpoint-3"), ("base", "checkpoint-12")]


def test_no_checkpoint_folder_means_no_loaders(tmp_path):
    spec = ModelSpec(model="base", trigger="$STOP")
    assert checkpoint_loaders("base", tmp_path / "nothing", spec) == []


def test_the_checkpoint_that_is_the_final_adapter_is_not_loaded_again(tmp_path, monkeypatch):
    out = tmp_path / "behavioral"
    _checkpoint(out, 3, weights=True, state=True)
    _checkpoint(out, 6, weights=True, state=True)
    (out / "checkpoints" / "checkpoint-6" / "adapter_model.safetensors").write_bytes(b"final")
    final = out / "final"
    final.mkdir()
    (final / "adapter_model.safetensors").write_bytes(b"final")
    assert same_adapter_weights(out / "checkpoints" / "checkpoint-6", final)
    assert not same_adapter_weights(out / "checkpoints" / "checkpoint-3", final)
    assert not same_adapter_weights(tmp_path, final)  # no weights on one side
    loaded = []

    class _Loaded:
        model = "loaded"

    def fake_load_model(path, *, adapter=None, **kw):
        loaded.append(adapter.name)
        return _Loaded()

    monkeypatch.setattr(stoplens.models.load, "load_model", fake_load_model)
    spec = ModelSpec(model="base", adapter=str(final), trigger="$STOP")
    ft = object()
    loaders = checkpoint_loaders("base", out, spec, final=(str(final), ft))
    assert [step for step, _ in loaders] == [3, 6]
    assert loaders[0][1]() == "loaded" and loaders[1][1]() is ft
    assert loaded == ["checkpoint-3"]
