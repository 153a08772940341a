"""benchmarks/streaming.py (outside the package: `stoplens run` holds every Δ in memory):
streamed Δ statistics and shards, on the planted Qwen2 model: streamed numbers equal the
in-memory computation, shards round-trip, an interrupted write leaves no readable partial shard."""

from __future__ import annotations

import json
import os

import pytest
import torch
from streaming import (
    DeltaStats,
    iter_shards,
    load_deltas,
    loo_cosine_to_mean,
    read_index,
    stream_deltas,
)

from stoplens.capture.encode import encode_pairs
from stoplens.capture.extract import capture_residuals
from stoplens.errors import DataError
from stoplens.models.planted import build_planted, planted_pair_records

N = 40


@pytest.fixture(scope="module")
def setup():
    pm = build_planted("qwen2")
    ep = encode_pairs(pm.tokenizer, planted_pair_records(N, 5), pm.trigger_id)
    assert len(ep) == N
    return pm, ep


def _stream(pm, ep, shard_dir=None, **kw):
    kw = {"batch_size": 5, "chunk_pairs": 7, "progress": False, **kw}
    return stream_deltas(
        pm.model,
        ep.trig_ids,
        ep.ctrl_ids,
        ep.decision_positions("post"),
        pad_id=pm.tokenizer.pad_token_id,
        shard_dir=shard_dir,
        **kw,
    )


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-5) -> None:
    """Equal to ``rtol`` relative, with an absolute floor at ``rtol`` x the largest entry
    (spectra contain exact zeros, e.g. layer 0 where Δ = 0 after the trigger)."""
    a, b = a.double(), b.double()
    floor = rtol * max(float(b.abs().max()), 1e-12)
    torch.testing.assert_close(a, b, rtol=rtol, atol=floor)


def test_streamed_statistics_equal_in_memory(setup, tmp_path):
    pm, ep = setup
    stats = _stream(pm, ep, tmp_path / "sh")
    pos = ep.decision_positions("post")
    P = len(pos[0])
    assert stats.n == N and stats.sum_delta.shape == (5, P, 64)

    # the streamed Δs are the Δs of an independent in-memory capture (other batching)
    pad = pm.tokenizer.pad_token_id
    ht = capture_residuals(pm.model, ep.trig_ids, pos, pad_id=pad, batch_size=64, progress=False)
    hc = capture_residuals(pm.model, ep.ctrl_ids, pos, pad_id=pad, batch_size=64, progress=False)
    ref = (ht - hc).double()  # [n, Ly, P, d]
    index, delta = load_deltas(tmp_path / "sh")
    assert index.tolist() == list(range(N))
    torch.testing.assert_close(delta.double(), ref, atol=1e-4, rtol=1e-4)

    # every streamed statistic equals the in-memory computation on those same Δs
    x = delta.double()
    _close(stats.mean_delta(), x.mean(0))
    _close(stats.norm_mean_delta(), x.mean(0).norm(dim=-1))
    _close(stats.mean_norm_delta(), x.norm(dim=-1).mean(0))
    _close(stats.mean_norm_h("ctrl"), hc.double().norm(dim=-1).mean(0), rtol=1e-4)
    _close(stats.mean_norm_h("trig"), ht.double().norm(dim=-1).mean(0), rtol=1e-4)
    order, norms = stats.per_pair_norms()
    assert order.tolist() == list(range(N))
    _close(norms, x.norm(dim=-1))
    for li in range(len(stats.layers)):
        for p in range(P):
            m = x[:, li, p]  # [n, d]
            energy = torch.linalg.svdvals(m) ** 2
            _close(stats.svd_energy()[li, p], energy)
            pca = torch.linalg.svdvals(m - m.mean(0)) ** 2 / (N - 1)
            _close(stats.pca_variance()[li, p], pca[: N - 1])
    share = stats.svd_energy_share()
    assert torch.all(share[..., -1][1:] > 1 - 1e-9)  # layers with Δ ≠ 0 sum to 1

    # second pass: leave-one-out cosine to the mean of the others
    idx, cos = loo_cosine_to_mean(tmp_path / "sh", stats)
    rest = (x.sum(0, keepdim=True) - x) / (N - 1)
    want = torch.nn.functional.cosine_similarity(x, rest, dim=-1)
    assert idx.tolist() == list(range(N))
    _close(cos[:, 1:], want[:, 1:])  # layer 0 has Δ = 0 after the trigger: cosine undefined

    # known answer: the planted direction is the top uncentred direction after the planted block
    li = stats.layers.index(pm.residual_layer)
    top = stats.top_directions(1)[li, -1, 0]
    assert abs(float(top @ pm.direction.double())) > 0.9


def test_shards_round_trip_subsets_and_dtypes(setup, tmp_path):
    pm, ep = setup
    stats = _stream(pm, ep, tmp_path / "f32", layers=[0, 2, 4])
    index = read_index(tmp_path / "f32")
    assert index["complete"] and index["n"] == N and index["layers"] == [0, 2, 4]
    assert len(index["shards"]) == -(-N // 7)
    shards = list(iter_shards(tmp_path / "f32"))
    assert sum(s.delta.shape[0] for s in shards) == N
    got = torch.cat([s.delta for s in shards]).double()
    # float32 on disk: the shard sums are exactly what the statistics were fed
    _close(got.sum(0), stats.sum_delta.cpu(), rtol=1e-9)
    one = list(iter_shards(tmp_path / "f32", layers=[4]))
    torch.testing.assert_close(torch.cat([s.delta for s in one])[:, 0], got[:, 2].float())
    with pytest.raises(ValueError, match="not streamed"):
        next(iter_shards(tmp_path / "f32", layers=[1]))

    _stream(pm, ep, tmp_path / "f16", layers=[0, 2, 4], shard_dtype="float16")
    _, half = load_deltas(tmp_path / "f16")
    _, full = load_deltas(tmp_path / "f32")
    torch.testing.assert_close(half, full, atol=2e-2, rtol=2e-3)

    with pytest.raises(DataError, match="overwrite"):
        _stream(pm, ep, tmp_path / "f32")
    _stream(pm, ep, tmp_path / "f32", layers=[1], overwrite=True)
    assert read_index(tmp_path / "f32")["layers"] == [1]


def test_interrupted_shard_write_leaves_no_readable_partial_shard(setup, tmp_path, monkeypatch):
    pm, ep = setup
    real_replace = os.replace

    def failing_replace(src, dst):  # the disk fills up while shard 1 is being written
        if os.path.basename(dst) == "deltas-00001.safetensors":
            raise OSError("No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space"):
        _stream(pm, ep, tmp_path / "sh")
    monkeypatch.undo()

    d = tmp_path / "sh"
    assert sorted(p.name for p in d.iterdir()) == ["deltas-00000.safetensors", "index.json"]
    index = read_index(d)
    assert not index["complete"] and index["n"] == 7
    with pytest.raises(DataError, match="incomplete"):
        next(iter_shards(d))
    assert [s.delta.shape[0] for s in iter_shards(d, allow_incomplete=True)] == [7]

    # a hard kill mid-write leaves a temp file and never a listed shard: readers ignore both
    (d / ".deltas-00001.safetensors.x1y2.tmp").write_bytes(b"\x00" * 100)
    (d / "deltas-00001.safetensors").write_bytes(b"\x08\x00\x00\x00")  # not in the index
    assert [s.delta.shape[0] for s in iter_shards(d, allow_incomplete=True)] == [7]

    # a listed shard that was truncated afterwards is refused, never half-read
    raw = (d / "deltas-00000.safetensors").read_bytes()
    (d / "deltas-00000.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="unreadable"):
        next(iter_shards(d, allow_incomplete=True))
    json.loads((d / "index.json").read_text())  # the index itself is always whole


def test_merge_equals_one_pass_and_gram_off(setup):
    pm, ep = setup
    whole = _stream(pm, ep, layers=[3])
    a = _stream(pm, ep.subset(range(25)), layers=[3])
    b = _stream(pm, ep.subset(range(25, N)), layers=[3])
    both = a.merge(b)
    assert both.n == N
    _close(both.gram, whole.gram, rtol=1e-6)
    _close(both.pca_variance(), whole.pca_variance(), rtol=1e-5)
    no_gram = _stream(pm, ep, layers=[3], gram=False)
    _close(no_gram.mean_norm_delta(), whole.mean_norm_delta())
    with pytest.raises(ValueError, match="gram=False"):
        no_gram.svd_energy()
    with pytest.raises(ValueError, match="different token lengths"):
        stream_deltas(pm.model, [[1, 2]], [[1]], [[0]], progress=False)
    with pytest.raises(ValueError, match="expected"):
        DeltaStats.empty([0], 1, 8).update(
            torch.zeros(2, 1, 1, 4), torch.zeros(2, 1, 1), torch.zeros(2, 1, 1)
        )
