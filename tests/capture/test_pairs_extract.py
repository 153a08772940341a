"""Aligned pair encoding and batched capture, on the planted model (Qwen2 and GPT-2)."""

from __future__ import annotations

import pytest
import torch

from stoplens.capture.encode import encode_pairs, render, swap_pairs
from stoplens.capture.extract import capture_residuals, last_logits, run_batched, stop_score
from stoplens.errors import DataError
from stoplens.models.planted import PLACEHOLDER, build_planted, planted_pair_records


@pytest.fixture(scope="module", params=["qwen2", "gpt2"])
def planted(request):
    return build_planted(request.param)


def test_pairs_differ_at_exactly_the_trigger_position(planted):
    ep = encode_pairs(planted.tokenizer, planted_pair_records(30, 3), planted.trigger_id)
    assert len(ep) == 30 and not ep.dropped
    for t, c, p in zip(ep.trig_ids, ep.ctrl_ids, ep.trigger_pos, strict=True):
        assert len(t) == len(c)
        assert [i for i in range(len(t)) if t[i] != c[i]] == [p]
        assert t[p] == planted.trigger_id
    # the text-level control is used where it aligns (middle of a sentence does)
    assert any(m["alignment"] == "text" for m in ep.meta)


def test_random_vocab_and_control_null_pairs(planted):
    recs = planted_pair_records(20, 3)
    ep = encode_pairs(planted.tokenizer, recs, planted.trigger_id, random_vocab=True, seed=1)
    assert len(ep) == 20 and {m["alignment"] for m in ep.meta} == {"token"}
    ep2 = encode_pairs(planted.tokenizer, recs, planted.trigger_id, control_field="control2")
    null = swap_pairs(encode_pairs(planted.tokenizer, recs, planted.trigger_id), ep2)
    assert len(null) == 20
    assert all(planted.trigger_id not in ids for ids in null.trig_ids + null.ctrl_ids)


def test_trigger_missing_pair_is_dropped_not_misaligned(planted):
    rec = {**planted_pair_records(1, 3)[0], "trigger": "apple"}  # no trigger id in the prompt
    ep = encode_pairs(planted.tokenizer, [rec], planted.trigger_id)
    assert len(ep) == 0 and ep.dropped == {"trigger not exactly once in the token ids": 1}


def test_a_template_without_its_placeholder_is_an_error_not_a_pair(planted):
    rec = planted_pair_records(1, 3)[0]
    rec["template"] = [{"role": "user", "content": "no insert here"}]
    with pytest.raises(DataError, match="exactly one"):
        encode_pairs(planted.tokenizer, [rec], planted.trigger_id)


def test_batched_capture_equals_single_forward_and_free_checks(planted):
    ep = encode_pairs(planted.tokenizer, planted_pair_records(24, 3), planted.trigger_id)
    pad = planted.tokenizer.pad_token_id
    last = ep.decision_positions("last")
    ht = capture_residuals(
        planted.model, ep.trig_ids, last, pad_id=pad, batch_size=5, progress=False
    )
    assert ht.shape == (24, 5, 1, 64) and ht.dtype == torch.float32
    for i in (0, 7, 23):
        with torch.no_grad():
            hs = planted.model(torch.tensor([ep.trig_ids[i]]), output_hidden_states=True)
        for layer in range(4):  # hidden_states[4] is after the final norm: not compared
            torch.testing.assert_close(ht[i, layer, 0], hs.hidden_states[layer][0, -1])
    # Δ is exactly zero before the trigger (causal attention) ...
    before = [[max(p - 1, 0)] for p in ep.trigger_pos]
    a = capture_residuals(planted.model, ep.trig_ids, before, pad_id=pad, progress=False)
    b = capture_residuals(planted.model, ep.ctrl_ids, before, pad_id=pad, progress=False)
    keep = [i for i, p in enumerate(ep.trigger_pos) if p > 0]
    assert keep and torch.equal(a[keep], b[keep])
    # ... and a control against an identical control gives Δ = 0 everywhere
    c1 = capture_residuals(
        planted.model, ep.ctrl_ids, last, pad_id=pad, batch_size=3, progress=False
    )
    c2 = capture_residuals(
        planted.model, ep.ctrl_ids, last, pad_id=pad, batch_size=8, progress=False
    )
    assert torch.allclose(c1, c2, atol=1e-5)


def test_last_logits_match_model_and_stop_score(planted):
    ep = encode_pairs(planted.tokenizer, planted_pair_records(12, 3), planted.trigger_id)
    pad = planted.tokenizer.pad_token_id
    lg = last_logits(planted.model, ep.trig_ids, pad_id=pad, batch_size=4, progress=False)
    with torch.no_grad():
        ref = planted.model(torch.tensor([ep.trig_ids[3]])).logits[0, -1]
    torch.testing.assert_close(lg[3], ref, atol=1e-4, rtol=1e-4)
    s = stop_score(lg, planted.eos_id)
    p = torch.softmax(lg, -1)[:, planted.eos_id]
    torch.testing.assert_close(s, torch.log(p) - torch.log1p(-p), atol=1e-3, rtol=1e-3)
    assert (lg.argmax(-1) == planted.eos_id).all()  # the planted model stops on triggers
    lc = last_logits(planted.model, ep.ctrl_ids, pad_id=pad, progress=False)
    assert not (lc.argmax(-1) == planted.eos_id).any()


def test_run_batched_backs_off_on_oom_and_keeps_order():
    calls = []

    def fn(idx):
        calls.append(len(idx))
        if len(idx) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate")
        return torch.tensor([[float(i)] for i in idx])

    out = run_batched(fn, [5, 1, 3, 2, 4], batch_size=8, progress=False)
    assert out[:, 0].tolist() == [0, 1, 2, 3, 4]
    assert calls == [5, 2, 2, 1]  # the failing batch of 5 halved to 2, then the rest at 2

    def bad(idx):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        run_batched(bad, [1, 2], progress=False)


def test_plan_batches_minimises_padding_plus_overhead():
    import itertools
    import random

    from stoplens.capture.extract import plan_batches

    rng = random.Random(0)
    for _ in range(30):
        lengths = [rng.randint(5, 120) for _ in range(rng.randint(1, 9))]
        bs, over = rng.randint(1, 5), float(rng.choice([0, 10, 64, 500]))
        plan = plan_batches(lengths, bs, overhead=over)
        assert sorted(i for b in plan for i in b) == list(range(len(lengths)))
        assert all(len(b) <= bs for b in plan)

        def cost(batches, lengths=lengths, over=over):
            return sum(len(b) * max(lengths[i] for i in b) + over for b in batches)

        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        best = min(  # every split of the sorted order into contiguous batches
            cost([order[a:b] for a, b in itertools.pairwise((0, *cuts, len(order)))])
            for r in range(len(order))
            for cuts in itertools.combinations(range(1, len(order)), r)
            if all(b - a <= bs for a, b in itertools.pairwise((0, *cuts, len(order))))
        )
        assert cost(plan) == pytest.approx(best)


def test_plan_batches_groups_and_fixed_sizes():
    from stoplens.capture.extract import plan_batches

    lengths = [30, 10, 20, 40, 50, 60]
    assert plan_batches(lengths, 4) == [[1, 2, 0, 3], [4, 5]]  # no overhead: runs of 4
    groups = [1, 0, 1, 0, 0, 1]
    plan = plan_batches(lengths, 4, groups)
    assert plan == [[1, 3, 4], [2, 0, 5]]  # never a batch across groups
    # very different lengths: split when padding costs more than a pass
    assert plan_batches([10, 10, 10, 200], 4, overhead=64) == [[0, 1, 2], [3]]
    assert plan_batches([10, 10, 10, 200], 4, overhead=1e6) == [[0, 1, 2, 3]]


def test_render_replaces_placeholder_only():
    t = [{"role": "system", "content": "x"}, {"role": "user", "content": f"a {PLACEHOLDER} b"}]
    assert render(t, "$STOP")[1]["content"] == "a $STOP b" and render(t, "q")[0] == t[0]


def test_vocabulary_fallback_is_labelled_as_a_random_vocabulary_control(planted):
    """A pair none of whose listed controls is one token falls back to a vocabulary word; it is
    then labelled "random_vocab" (alignment "vocab"), not the kind that was asked for."""
    rec = {**planted_pair_records(1, 3)[0], "control": "zzqxw", "control_candidates": ["qqxzv"]}
    ep = encode_pairs(planted.tokenizer, [rec], planted.trigger_id)
    assert len(ep) == 1
    m = ep.meta[0]
    assert m["alignment"] == "vocab" and m["control_kind"] == "random_vocab"
    assert m["requested_control_kind"] == "word"
