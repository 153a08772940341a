"""The per-pair drill-down table on a planted model: tokens, positions, stop scores and the
per-pair Δ statistics agree with the aggregate analyses and with what was planted."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stoplens.analyses.lowrank import lowrank
from stoplens.analyses.pair_table import pair_table
from stoplens.models.trigger import DEFAULT_TRIGGER

pytestmark = pytest.mark.usefixtures("single_thread")


def test_pair_table_rows_match_the_planted_mechanism(qwen_case):
    ds, pm = qwen_case.ds, qwen_case.pm
    t = pair_table(pm.model, ds, pm.tokenizer, eos_id=pm.eos_id, batch_size=64)
    assert t.n == ds.n and t.layers == ds.layers
    P = ds.pairs.post_instruction
    for i, r in enumerate(t.rows):
        ids = ds.pairs.trig_ids[i]
        assert len(r.tokens) == len(ids)
        assert r.tokens[r.trigger_pos].strip() == DEFAULT_TRIGGER
        assert r.control_token.strip() == r.control and r.control_token != r.tokens[r.trigger_pos]
        assert r.decision_positions == tuple(range(len(ids) - P, len(ids)))
        assert r.trigger_pos < r.decision_positions[0]
        assert r.placement == "middle" and r.control_kind in ("word", "near_miss")
    # the planted model stops on every triggered prompt and on no control
    assert all(r.stops_trig and not r.stops_ctrl for r in t.rows)
    assert min(r.stop_score_trig for r in t.rows) > 0 > max(r.stop_score_ctrl for r in t.rows)
    # at the embeddings the last position cannot see the trigger: Δ = 0 exactly, no cosine
    assert all(r.rel_delta[0] == 0.0 and r.cos_to_mean[0] is None for r in t.rows)
    # at the planted layer every pair's Δ points along the others' mean; the per-pair cosines
    # average to the low-rank analysis's leave-one-out cosine (same definition)
    j = ds.layer_pos(qwen_case.answer)
    cos = np.array([r.cos_to_mean[j] for r in t.rows], dtype=float)
    assert cos.min() > 0.9
    assert cos.mean() == pytest.approx(float(lowrank(ds).trigger.loo_cos.value[j]), abs=1e-6)
    assert min(r.rel_delta[j] for r in t.rows) > 0
    doc = json.loads(json.dumps(t.to_dict(), allow_nan=False))
    assert doc["n"] == ds.n and len(doc["rows"][0]["rel_delta"]) == len(ds.layers)
