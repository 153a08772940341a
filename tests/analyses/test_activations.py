"""capture/delta_capture.py, the Δ sets the analyses read (here beside the analyses'
fixtures): the free checks (Δ = 0 before the trigger, identical controls give Δ = 0), errors, subsets, the run-dir cache and agreement with the streamed path."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from stoplens.capture.delta_capture import capture_delta_set
from stoplens.capture.encode import encode_pairs, swap_pairs
from stoplens.capture.extract import capture_residuals
from stoplens.data.config import PLACEHOLDER
from stoplens.errors import StoplensError

pytestmark = pytest.mark.usefixtures("single_thread")


def test_shapes_and_meta(qwen_case):
    ds, pm = qwen_case.ds, qwen_case.pm
    L = pm.model.config.num_hidden_layers
    assert ds.layers == tuple(range(L + 1)) and ds.n_layers == L
    assert ds.n == 64 and ds.n_null == 64 and not ds.dropped
    P = ds.pairs.post_instruction
    assert ds.delta("post").shape == (64, L + 1, P, ds.d_model)
    assert ds.delta("last").shape == (64, L + 1, 1, ds.d_model)
    assert torch.equal(ds.delta("last")[:, :, 0], ds.delta("post")[:, :, -1])
    assert ds.null_delta("trigger").shape == (64, L + 1, 1, ds.d_model)
    assert ds.has_base and ds.base_trigger_added
    d = ds.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["control_kinds"] == {"near_miss": 32, "word": 32}
    assert d["checks"]["max_abs_delta_before_trigger"] == 0.0 and d["first_positions"] == 5


def test_delta_is_exactly_zero_before_the_trigger(case):
    ds = case.ds
    assert ds.checks["n_before_checked"] > 0
    assert ds.checks["max_abs_delta_before_trigger"] == 0.0
    assert ds.checks["base_max_abs_delta_before_trigger"] == 0.0
    # every position before the trigger, one pair at a time, read directly
    pairs = ds.pairs
    i = next(j for j, p in enumerate(pairs.trigger_pos) if p >= 3)
    pos = [list(range(pairs.trigger_pos[i]))]
    t = capture_residuals(case.pm.model, [pairs.trig_ids[i]], pos, progress=False)
    c = capture_residuals(case.pm.model, [pairs.ctrl_ids[i]], pos, progress=False)
    assert torch.equal(t, c)
    # and Δ at the trigger position itself is not zero (the embedding differs)
    assert ds.delta("trigger")[:, 0].abs().amax() > 0


def test_control_vs_identical_control_gives_zero(qwen_case, make_records):
    pm = qwen_case.pm
    pairs = encode_pairs(pm.tokenizer, make_records(16), pm.trigger_id)
    same = swap_pairs(pairs, pairs)  # control against itself
    assert len(same) == 16 and same.trig_ids == same.ctrl_ids
    pos = same.decision_positions("post")
    x = capture_residuals(
        pm.model, [*same.trig_ids, *same.ctrl_ids], [*pos, *pos], batch_size=5, progress=False
    )
    assert torch.equal(x[:16], x[16:])


def test_null_drops_control2_equal_to_control(qwen_case, make_records):
    pm = qwen_case.pm
    recs = make_records(12)
    for r in recs[:4]:
        r["control2"] = r["control"]
    ds = capture_delta_set(pm.model, pm.tokenizer, pm.trigger_id, recs, layers=[0, 2])
    assert ds.n == 12 and ds.n_null == 8
    assert ds.dropped["null: control2 equals control"] == 4
    assert ds.null_index.tolist() == list(range(4, 12))
    assert ds.null_delta("last").abs().amax() > 0


def test_null_never_falls_back_to_the_pairs_own_control(qwen_case, make_records):
    pm = qwen_case.pm
    recs = make_records(6)
    for r in recs:  # control2 does not align, and the first fallback is the control itself
        r["control"], r["control2"] = "apple", "qqqzzzxv"
        r["control_candidates"] = ["apple", "river"]
    ds = capture_delta_set(pm.model, pm.tokenizer, pm.trigger_id, recs, layers=[0, 2])
    assert ds.n_null == 6 and not ds.dropped
    assert ds.null_delta("trigger")[:, 0].abs().amax() > 0


def test_layer_subset_and_select(qwen_case):
    ds = qwen_case.ds
    sub = ds.select(control_kind="near_miss")
    assert sub.n == 32 and {m["control_kind"] for m in sub.pairs.meta} == {"near_miss"}
    assert sub.n_null == 32
    # null rows still line up with their pair's control
    j = 5
    orig = int(np.flatnonzero([m["control_kind"] == "near_miss" for m in ds.pairs.meta])[j])
    assert torch.equal(sub.null_delta("last")[j], ds.null_delta("last")[orig])
    assert ds.layer_pos(3) == 3
    with pytest.raises(ValueError):
        ds.layer_pos(99)


def test_non_finite_activations_name_the_dtype(qwen_case, make_records):
    pm = qwen_case.pm
    broken = copy.deepcopy(pm.model)
    with torch.no_grad():
        broken.model.layers[0].mlp.down_proj.weight.fill_(float("inf"))
    with pytest.raises(StoplensError, match="float16"):
        capture_delta_set(broken, pm.tokenizer, pm.trigger_id, make_records(4))


def test_prompt_longer_than_context_is_a_clear_error(qwen_case, make_records):
    pm = qwen_case.pm
    recs = make_records(2)
    recs[0]["template"] = [{"role": "user", "content": "apple " * 600 + PLACEHOLDER + " river"}]
    with pytest.raises(StoplensError, match="longer than the model context"):
        capture_delta_set(pm.model, pm.tokenizer, pm.trigger_id, recs)


def test_base_without_trigger_row_is_a_clear_error(qwen_case, make_records):
    pm = qwen_case.pm
    small = copy.deepcopy(pm.base)
    small.resize_token_embeddings(pm.trigger_id)  # the trigger id no longer fits
    with pytest.raises(StoplensError, match="add_trigger"):
        capture_delta_set(pm.model, pm.tokenizer, pm.trigger_id, make_records(4), base=small)


def test_no_aligned_pair_is_a_clear_error(qwen_case, make_records):
    pm = qwen_case.pm
    recs = make_records(3)
    for r in recs:
        r["trigger"] = "nothing"
    with pytest.raises(StoplensError, match="no contrast pair"):
        capture_delta_set(pm.model, pm.tokenizer, pm.trigger_id, recs)


def test_cache_hit_returns_identical_tensors_and_misses_on_change(
    qwen_case, tmp_path, make_records
):
    pm = qwen_case.pm
    recs = make_records(8)
    kw = dict(base=pm.base, layers=[0, 1, 2, 4], cache_dir=tmp_path)
    a = capture_delta_set(pm.model, pm.tokenizer, pm.trigger_id, recs, **kw)
    assert not a.from_cache and a.key
    b = capture_delta_set(pm.model, pm.tokenizer, pm.trigger_id, recs, **kw)
    assert b.from_cache and b.key == a.key
    for kind in ("first", "before", "trigger", "post", "last"):
        assert torch.equal(a.delta(kind), b.delta(kind))
        assert torch.equal(a.null_delta(kind, "base"), b.null_delta(kind, "base"))
    assert b.checks == a.checks
    # different pairs -> miss
    c = capture_delta_set(pm.model, pm.tokenizer, pm.trigger_id, make_records(8, seed=2), **kw)
    assert not c.from_cache and c.key != a.key
    # different model (the unplanted base as "fine-tuned") -> miss
    d = capture_delta_set(pm.base, pm.tokenizer, pm.trigger_id, recs, **kw)
    assert not d.from_cache and d.key != a.key
    # different layers -> miss
    e = capture_delta_set(
        pm.model, pm.tokenizer, pm.trigger_id, recs, **{**kw, "layers": [0, 1, 2, 3, 4]}
    )
    assert not e.from_cache
    assert len(list(tmp_path.glob("*.safetensors"))) == 4
    assert not list(tmp_path.glob(".*tmp"))


def test_streamed_statistics_agree_with_the_in_memory_delta_set(qwen_case):
    from streaming import stream_deltas  # benchmarks/streaming.py

    ds, pm = qwen_case.ds, qwen_case.pm
    pairs = ds.pairs
    stats = stream_deltas(
        pm.model,
        pairs.trig_ids,
        pairs.ctrl_ids,
        pairs.decision_positions("last"),
        pad_id=pm.tokenizer.pad_token_id,
        chunk_pairs=16,
        progress=False,
    )
    x = ds.delta("last")[:, :, 0].double()  # [n, k, d]
    np.testing.assert_allclose(
        stats.norm_mean_delta()[:, 0].numpy(), x.mean(0).norm(dim=-1).numpy(), atol=1e-5
    )
    np.testing.assert_allclose(
        stats.mean_norm_delta()[:, 0].numpy(), x.norm(dim=-1).mean(0).numpy(), atol=1e-5
    )
