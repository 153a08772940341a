"""Half precision (the GPU path, run here on the CPU): a bfloat16 model gives float32 captures
and float64 streamed statistics that agree with the float32 model to bf16 precision, the
additions resumed from a stored bf16 residual equal the hooked bf16 pass, and the planted
mechanism is still found."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from streaming import stream_deltas  # benchmarks/streaming.py

from stoplens.analyses.results import Nulls
from stoplens.analyses.steering import Examples, Steering, steering_effects
from stoplens.capture.encode import encode_pairs
from stoplens.capture.extract import capture_residuals
from stoplens.interventions.cache import OutcomeCache
from stoplens.interventions.primitives import Addition
from stoplens.interventions.readout import Readout, intervened_logits, stop_outcomes
from stoplens.models.planted import build_planted, planted_pair_records


@pytest.fixture(scope="module")
def setup():
    pm = build_planted("qwen2")
    recs = planted_pair_records(16, 9)
    pairs = encode_pairs(pm.tokenizer, recs, pm.trigger_id)
    half = copy.deepcopy(pm.model).to(torch.bfloat16)
    return pm, pairs, half


def test_bf16_capture_is_float32_and_close_to_fp32(setup):
    pm, pairs, half = setup
    pos = pairs.decision_positions("post")
    full = capture_residuals(pm.model, pairs.trig_ids, pos, progress=False)
    got = capture_residuals(half, pairs.trig_ids, pos, progress=False)
    assert got.dtype == torch.float32 and got.shape == full.shape
    rel = (got - full).norm(dim=-1) / full.norm(dim=-1).clamp_min(1e-6)
    assert float(rel.max()) < 0.05  # bf16 keeps 8 bits of mantissa


def test_bf16_streamed_statistics_accumulate_in_float64(setup):
    pm, pairs, half = setup
    kw = dict(pad_id=pm.tokenizer.pad_token_id, batch_size=4, progress=False)
    args = (pairs.trig_ids, pairs.ctrl_ids, pairs.decision_positions("post"))
    s16, s32 = stream_deltas(half, *args, **kw), stream_deltas(pm.model, *args, **kw)
    assert s16.sum_delta.dtype == torch.float64 and s16.n == s32.n == len(pairs)
    m16, m32 = s16.mean_delta(), s32.mean_delta()
    assert m16.dtype == torch.float64
    assert float((m16 - m32).norm() / m32.norm()) < 0.05


def test_bf16_resumed_addition_equals_the_hooked_pass_and_mechanism_is_found(setup):
    pm, pairs, half = setup
    pad = pm.tokenizer.pad_token_id
    add = Addition(4.0 * pm.direction, pm.residual_layer)
    cache = OutcomeCache(half, pm.eos_id)
    stops, scores = cache.outcomes(pairs.ctrl_ids, add, pad_id=pad)
    assert cache.stored_residuals == len(pairs)
    ref = stop_outcomes(intervened_logits(half, pairs.ctrl_ids, add, pad_id=pad), pm.eos_id)
    assert np.array_equal(stops, ref[0]) and np.allclose(scores, ref[1], atol=1e-3)
    res = steering_effects(
        Readout(half, pm.eos_id, pad), pairs, Steering(4.0 * pm.direction, pm.residual_layer, 1.0),
        nulls=Nulls(16, n_boot=100), cost=False, examples=Examples(0), cache=cache,
    )  # fmt: skip
    assert res.ablation_effect.value == 1.0 and res.addition_effect.value == 1.0
    assert res.ablation_null.null_p95 < 0.2 and res.addition_null.null_p95 < 0.2
