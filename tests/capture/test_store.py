"""The activation cache: fingerprints and atomic safetensors files."""

from __future__ import annotations

import copy

import pytest
import torch

from stoplens.capture.store import ActivationCache, fingerprint, ids_fingerprint, model_fingerprint
from stoplens.models.planted import build_planted


@pytest.fixture(scope="module")
def planted():
    return build_planted("gpt2")


def test_put_get_roundtrip_is_identical(tmp_path):
    cache = ActivationCache(tmp_path / "cache")
    t = {"a": torch.randn(3, 4, 5), "b": torch.arange(6, dtype=torch.long)}
    key = fingerprint(x=1)
    assert cache.get("deltaset", key) is None
    path = cache.put("deltaset", key, t, {"layers": [0, 2], "note": "é"})
    assert path.is_file() and path.parent == tmp_path / "cache"
    got = cache.get("deltaset", key)
    assert got is not None
    tensors, meta = got
    assert set(tensors) == {"a", "b"}
    assert torch.equal(tensors["a"], t["a"]) and torch.equal(tensors["b"], t["b"])
    assert meta == {"layers": [0, 2], "note": "é"}
    assert not list((tmp_path / "cache").glob(".*"))  # no temp files left


def test_other_key_misses_even_with_the_same_prefix(tmp_path):
    cache = ActivationCache(tmp_path)
    key = "0" * 64
    cache.put("x", key, {"a": torch.zeros(2)}, {})
    other = "0" * 16 + "1" * 48  # same file name, different full key
    assert cache.path("x", key) == cache.path("x", other)
    assert cache.get("x", other) is None
    assert cache.get("y", key) is None


def test_corrupt_file_is_a_miss_and_is_overwritten(tmp_path):
    cache = ActivationCache(tmp_path)
    key = fingerprint(x=2)
    cache.path("x", key).write_bytes(b"not a safetensors file")
    with pytest.warns(UserWarning, match="unreadable"):
        assert cache.get("x", key) is None
    cache.put("x", key, {"a": torch.ones(1)}, {})
    got = cache.get("x", key)
    assert got is not None and torch.equal(got[0]["a"], torch.ones(1))


def test_model_fingerprint_tracks_weights(planted):
    fp = model_fingerprint(planted.model)
    assert fp == model_fingerprint(planted.model)
    assert fp == model_fingerprint(copy.deepcopy(planted.model))
    assert fp != model_fingerprint(planted.base)  # same config, different weights
    edited = copy.deepcopy(planted.model)
    with torch.no_grad():
        edited.get_input_embeddings().weight[planted.trigger_id, 0] += 1e-3  # one trigger weight
    assert fp != model_fingerprint(edited)


def test_ids_and_spec_fingerprints():
    a = ids_fingerprint([[1, 2], [3]])
    assert a == ids_fingerprint([[1, 2], [3]])
    assert a != ids_fingerprint([[1], [2, 3]])
    assert a != ids_fingerprint([[1, 2]], [[3]])
    assert fingerprint(a=1, b=[1, 2]) == fingerprint(b=[1, 2], a=1)
    assert fingerprint(a=1) != fingerprint(a=2)
