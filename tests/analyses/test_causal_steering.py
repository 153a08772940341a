"""Steering effects on the planted model: ablating the planted direction removes stopping,
adding it induces stopping, random directions of the same norm do neither, the base model
does nothing stop-like; plus the null / interval helpers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stoplens.analyses.base_control import base_model_control
from stoplens.analyses.results import Nulls, null_comparison
from stoplens.analyses.steering import Examples, Steering, steering_effects
from stoplens.capture.encode import encode_pairs
from stoplens.capture.extract import kl_divergence
from stoplens.interventions.cache import OutcomeCache
from stoplens.interventions.primitives import (
    Ablation,
    Addition,
    intervention_key,
    random_directions,
)
from stoplens.interventions.readout import (
    Readout,
    greedy_tokens,
    intervened_logits,
    stop_outcomes,
    token_nll,
)
from stoplens.models import arch
from stoplens.models.planted import build_planted, planted_pair_records


@pytest.fixture(scope="module", params=["qwen2", "llama", "gpt2"])
def setup(request):
    pm = build_planted(request.param)
    pm.model.to(request.config.getoption("--device"))
    pm.base.to(request.config.getoption("--device"))
    pairs = encode_pairs(pm.tokenizer, planted_pair_records(24, 21), pm.trigger_id)
    # the planted direction at the scale of the real mean difference (~4 σ-units)
    r = 4.0 * pm.direction
    kw = dict(eos_id=pm.eos_id, pad_id=pm.tokenizer.pad_token_id, batch_size=24, n_boot=200)
    # a stand-in control direction: small, orthogonal to u and to the trigger's key a
    c = torch.randn(r.numel(), generator=torch.Generator().manual_seed(3))
    for v in (pm.direction, pm.key_direction):
        c -= (c @ v) * v
    res = steering_effects(
        _readout(pm.model, kw), pairs, Steering(r, pm.residual_layer, 1.0),
        nulls=Nulls(16, kw["n_boot"]), control_direction=0.05 * c,
        examples=Examples(2, 3, pm.tokenizer),
    )  # fmt: skip
    return pm, pairs, r, kw, res


def _readout(model, kw):
    return Readout(model, kw["eos_id"], kw["pad_id"], kw["batch_size"])


def test_ablation_removes_and_addition_induces_stopping(setup):
    _, pairs, _, _, res = setup
    n = len(pairs)
    assert res.n == n and res.baseline_stop_rate.value == 1.0
    assert res.baseline_false_stop_rate.value == 0.0
    assert res.ablated_stop_rate.value == 0.0 and res.added_stop_rate.value == 1.0
    assert res.ablation_effect.value == 1.0 and res.addition_effect.value == 1.0
    assert res.ablated_stop_rate.hi < 0.2 and res.added_stop_rate.lo > 0.8  # Wilson, n = 24


def test_random_directions_do_neither(setup):
    _, _, _, _, res = setup
    for null in (res.ablation_null, res.addition_null):
        assert null.n_null == 16 and null.null_mean < 0.1 and null.null_p95 < 0.2
        assert null.p_value == pytest.approx(1 / 17) and null.beyond_null
    # the stand-in control direction (orthogonal to u and a) does nothing either
    assert res.control is not None and abs(res.control.cos_to_direction) < 1e-5
    assert res.control.ablation_effect == 0.0 and res.control.addition_effect_same_norm == 0.0


def test_costs_examples_and_placements(setup):
    pm, _, _, _, res = setup
    assert res.kl is not None and 0 <= res.kl.value < 0.1 and res.kl_null_mean is not None
    assert res.perplexity["ratio"] > 0 and res.perplexity["on"] == "clean prompts"
    assert set(res.by_placement) == {"early", "late"}
    assert all(v["ablated_stop_rate"] == 0.0 for v in res.by_placement.values())
    conds = {e.condition: e for e in res.examples}
    assert set(conds) == {"triggered", "triggered+ablation", "clean", "clean+addition"}
    assert conds["triggered"].tokens == (pm.eos_id,) and conds["triggered"].stopped
    assert not conds["triggered+ablation"].stopped and len(conds["clean"].tokens) == 3
    d = res.to_dict()
    json.dumps(d, allow_nan=False)
    assert {"ablated_stop_rate", "added_stop_rate", "ablation_null", "addition_null", "kl",
            "perplexity", "control", "by_placement", "examples"} <= set(d)  # fmt: skip
    assert len(d["ablation_null"]["null"]) == 16


def test_a_random_direction_as_the_candidate_has_no_effect(setup):
    pm, pairs, r, kw, _ = setup
    rand = random_directions(r.numel(), 1, seed=5)[0] * r.norm()
    res = steering_effects(
        _readout(pm.model, kw), pairs, Steering(rand, pm.residual_layer, 1.0),
        nulls=Nulls(16, kw["n_boot"]), cost=False, examples=Examples(0),
    )  # fmt: skip
    assert res.ablated_stop_rate.value == 1.0 and res.added_stop_rate.value == 0.0
    assert res.ablation_null.p_value > 0.5 and not res.ablation_null.beyond_null


def test_base_model_does_nothing_stop_like(setup):
    pm, pairs, r, kw, _ = setup
    res = base_model_control(
        _readout(pm.base, kw), pairs, Steering(r, pm.residual_layer, 1.0),
        own_direction=torch.randn(r.numel()),
    )  # fmt: skip
    assert res.max_stop_rate.value == 0.0
    assert res.added_stop_rate_clean.value == 0.0 and res.stop_rate_triggered.value == 0.0
    json.dumps(res.to_dict(), allow_nan=False)


def test_primitives(setup):
    pm, pairs, r, kw, _ = setup
    seqs, pad = pairs.ctrl_ids[:4], kw["pad_id"]
    base = intervened_logits(pm.model, seqs, None, pad_id=pad)
    assert np.allclose(kl_divergence(base, base), 0.0)
    abl = intervened_logits(pm.model, seqs, Ablation(r), pad_id=pad)
    assert (kl_divergence(abl, base) >= 0).all()
    add = intervened_logits(pm.model, seqs, Addition(r, pm.residual_layer), pad_id=pad)
    assert (add.argmax(-1) == pm.eos_id).all()
    # greedy tokens: stop right after EOS, else run to n_tokens (equality with full passes:
    # test_cached_greedy_equals_full_passes_under_interventions)
    g = greedy_tokens(pm.model, pairs.trig_ids[:3] + seqs[:2], 3, pm.eos_id)
    assert g[:3] == [[pm.eos_id]] * 3 and all(len(t) == 3 for t in g[3:])
    # NLL: batched padding does not change it; counts are the scored tokens
    nll, cnt = token_nll(pm.model, seqs, pad_id=pad, batch_size=4)
    one, _ = token_nll(pm.model, seqs[1:2], pad_id=pad)
    assert cnt.tolist() == [len(s) - 1 for s in seqs] and nll[1] == pytest.approx(one[0], rel=1e-4)


def _uncached_greedy(model, seq, n, eos, iv, pad):
    """The reference: one full pass over prompt + reply so far per token."""
    out: list[int] = []
    for _ in range(n):
        t = int(intervened_logits(model, [list(seq) + out], iv, pad_id=pad)[0].argmax())
        out.append(t)
        if t == eos:
            break
    return out


@pytest.mark.parametrize("family", ["qwen2", "llama", "gpt2"])
def test_cached_greedy_equals_full_passes_under_interventions(family):
    """The key/value-cached greedy loop gives the tokens of full passes, with an ablation, an
    addition or nothing active, on every family (and stops right after EOS)."""
    pm = build_planted(family)
    pad = pm.tokenizer.pad_token_id
    recs = planted_pair_records(6, 5)
    pairs = encode_pairs(pm.tokenizer, recs, pm.trigger_id)
    r = pm.direction
    seqs = pairs.ctrl_ids[:3] + pairs.trig_ids[:2]
    torch.manual_seed(0)
    noise = torch.randn_like(r)
    for iv in (None, Ablation(r), Addition(r, pm.residual_layer), Ablation(noise)):
        got = greedy_tokens(pm.model, seqs, 6, pm.eos_id, iv)
        want = [_uncached_greedy(pm.model, s, 6, pm.eos_id, iv, pad) for s in seqs]
        assert got == want
    assert greedy_tokens(pm.model, pairs.trig_ids[:1], 6, pm.eos_id) == [[pm.eos_id]]


def test_null_comparison_and_random_directions():
    nc = null_comparison(0.9, [0.0] * 19 + [0.95])
    assert nc.p_value == pytest.approx(2 / 21) and nc.null_p95 < 0.9 and nc.beyond_null
    assert null_comparison(0.0, [0.0] * 16).p_value == 1.0  # ties count against the effect
    v = random_directions(32, 16, seed=0)
    assert v.shape == (16, 32) and torch.allclose(v.norm(dim=-1), torch.ones(16))
    assert torch.equal(v, random_directions(32, 16, seed=0))
    # prefix-consistent: nulls of different sizes with one seed share their first directions
    assert torch.equal(random_directions(32, 24, seed=0)[:16], v)
    assert not torch.equal(random_directions(32, 16, seed=1), v)
    with pytest.raises(ValueError, match="empty null"):
        null_comparison(1.0, [])


def test_rejects_too_few_random_directions(setup):
    pm, pairs, r, kw, _ = setup
    with pytest.raises(ValueError, match=">= 16"):
        steering_effects(
            _readout(pm.model, kw), pairs, Steering(r, 2, 1.0), nulls=Nulls(8, kw["n_boot"])
        )


def test_outcome_cache_matches_direct_evaluation_and_reuses_work(setup):
    pm, pairs, r, kw, _ = setup
    pad = kw["pad_id"]
    cache = OutcomeCache(pm.model, pm.eos_id)
    seqs = pairs.trig_ids[:6]
    for iv in (None, Ablation(r), Addition(r, pm.residual_layer)):
        direct = stop_outcomes(intervened_logits(pm.model, seqs, iv, pad_id=pad), pm.eos_id)
        got = cache.outcomes(seqs, iv, pad_id=pad)
        assert np.array_equal(got[0], direct[0])
        assert np.allclose(got[1], direct[1], atol=1e-4)
    assert cache.forwards == 18 and cache.hits == 0 and len(cache) == 18
    # a subset and repeated prompts are looked up, not run
    again = cache.outcomes([seqs[2], seqs[0], seqs[2]], Ablation(r.clone()), pad_id=pad)
    assert cache.forwards == 18 and cache.hits == 3
    assert np.array_equal(again[0], cache.outcomes(seqs, Ablation(r), pad_id=pad)[0][[2, 0, 2]])
    # new prompts only: the unseen ones run, once each
    cache.outcomes(pairs.trig_ids[4:9], None, pad_id=pad)
    assert cache.forwards == 21
    # keys tell interventions apart (kind, layer, exact vector)
    keys = {
        intervention_key(x)
        for x in (None, Ablation(r), Addition(r, 1), Addition(r, 2), Addition(2 * r, 1))
    }
    assert len(keys) == 5 and intervention_key(Ablation(r)) == intervention_key(Ablation(r.clone()))
    with pytest.raises(ValueError, match="another model"):
        cache.check(pm.base, pm.eos_id)
    # residuals for resumed additions are kept for one layer at a time, and stay correct
    assert cache.stored_residuals == len(seqs)
    other = next(k for k in range(1, arch.n_layers(pm.model)) if k != pm.residual_layer)
    for layer in (other, pm.residual_layer):
        add = Addition(0.5 * r, layer)
        direct = stop_outcomes(intervened_logits(pm.model, seqs, add, pad_id=pad), pm.eos_id)
        got = cache.outcomes(seqs, add, pad_id=pad)
        assert cache.stored_residuals == len(seqs)
        assert np.array_equal(got[0], direct[0]) and np.allclose(got[1], direct[1], atol=1e-4)


def test_steering_effects_same_with_a_shared_cache(setup):
    pm, pairs, r, kw, res = setup
    cache = OutcomeCache(pm.model, pm.eos_id)
    args = dict(nulls=Nulls(16, kw["n_boot"]), examples=Examples(0))
    steer, readout = Steering(r, pm.residual_layer, 1.0), _readout(pm.model, kw)
    shared = steering_effects(readout, pairs, steer, cost=False, cache=cache, **args)
    first = cache.forwards
    # the same effects again: nothing new to run; a larger null only runs its extra directions
    again = steering_effects(readout, pairs, steer, cost=False, cache=cache, **args)
    assert cache.forwards == first
    more = steering_effects(
        readout, pairs, steer, cost=False, cache=cache, **{**args, "nulls": Nulls(20, kw["n_boot"])}
    )
    n = len(pairs)
    assert cache.forwards == first + 4 * 2 * n  # 4 new directions x (ablation, addition)
    for out in (shared, again):
        assert out.ablation_null.null == res.ablation_null.null
        assert out.addition_null.null == res.addition_null.null
        assert (
            out.ablation_effect == res.ablation_effect
            and out.added_stop_rate == res.added_stop_rate
        )
    assert more.ablation_null.null[:16] == res.ablation_null.null
    with pytest.raises(ValueError, match="another model"):
        steering_effects(_readout(pm.base, kw), pairs, steer, cost=False, cache=cache, **args)


def test_kl_reference_is_the_mean_over_the_first_n_kl_random_directions(setup):
    pm, pairs, _, kw, res = setup
    readout = _readout(pm.model, kw)
    clean = readout.logits(pairs.ctrl_ids)
    dirs = Nulls(16, kw["n_boot"]).directions(pm.direction.numel())
    assert Nulls(16).n_kl == 8
    want = [
        float(kl_divergence(readout.logits(pairs.ctrl_ids, Ablation(d)), clean).mean())
        for d in dirs[:8]
    ]
    assert res.kl_null_mean == pytest.approx(float(np.mean(want)), rel=1e-6, abs=1e-9)
    with pytest.raises(ValueError, match="n_kl"):
        Nulls(16, n_kl=0)


def test_null_prompts_keep_every_placements_share():
    from collections import Counter

    from stoplens.analyses.results import null_prompts

    labels = ["a"] * 50 + ["b"] * 30 + ["c"] * 15
    assert list(null_prompts(labels[:40], 48, 0)) == list(range(40))
    assert list(null_prompts(labels, None, 0)) == list(range(95))
    idx = null_prompts(labels, 48, 0)
    assert len(idx) == 48 and list(idx) == sorted(set(idx.tolist()))
    got = Counter(labels[i] for i in idx)
    for label, size in Counter(labels).items():
        assert abs(got[label] - 48 * size / 95) <= 1, (label, got)
    assert list(null_prompts(labels, 48, 0)) == list(idx)  # seeded
    assert list(null_prompts(labels, 48, 1)) != list(idx)
    with pytest.raises(ValueError, match="max_prompts"):
        Nulls(16, max_prompts=4)


def test_null_on_a_subset_ranks_the_effect_on_the_same_pairs(setup):
    """With fewer null prompts than pairs, every random direction runs on the chosen pairs
    only, and the rank test compares it with the direction's effect on those pairs; the
    effect's estimate still uses every pair. The planted direction still beats every random
    one; the base model's direction beats none."""
    from stoplens.analyses.results import null_prompts

    pm, pairs, r, kw, res = setup
    readout = _readout(pm.model, kw)
    nulls = Nulls(16, kw["n_boot"], max_prompts=8)
    steer = Steering(r, pm.residual_layer, 1.0)
    sub = steering_effects(readout, pairs, steer, nulls=nulls, cost=False, examples=Examples(0))
    idx = null_prompts(pairs.placements(), 8, nulls.seed)
    assert sub.ablation_null.n_prompts == 8 == len(idx) and res.ablation_null.n_prompts == 24
    assert sub.ablation_effect == res.ablation_effect  # every pair
    few = pairs.subset([int(i) for i in idx])
    trig = readout.outcomes(few.trig_ids)[0].mean()
    want = trig - readout.outcomes(few.trig_ids, steer.ablation())[0].mean()
    assert sub.ablation_null.observed == pytest.approx(want)
    d0 = nulls.directions(r.numel())[0]
    null0 = trig - readout.outcomes(few.trig_ids, Ablation(d0))[0].mean()
    assert sub.ablation_null.null[0] == pytest.approx(null0)
    assert sub.ablation_null.p_value == sub.addition_null.p_value == 1 / 17
    base = steering_effects(
        _readout(pm.base, kw), pairs, steer, nulls=nulls, cost=False, examples=Examples(0)
    )
    assert base.ablation_null.p_value > 0.05


def test_a_null_restricted_to_the_main_nulls_pairs_reuses_their_ablations(setup):
    """A later effect (e.g. a held-out split) whose null runs on the main null's pairs
    (`Nulls.pair_ids`) finds every random ablation in the cache: only its own additions run."""
    from dataclasses import replace

    pm, pairs, r, kw, _ = setup
    readout, cache = _readout(pm.model, kw), OutcomeCache(pm.model, pm.eos_id)
    main = Nulls(16, kw["n_boot"], max_prompts=20)
    args = dict(cost=False, examples=Examples(0), cache=cache)
    steering_effects(readout, pairs, Steering(r, pm.residual_layer, 1.0), nulls=main, **args)
    ids = pairs.pair_ids()
    chosen = frozenset(ids[i] for i in main.prompts(pairs.placements(), ids))
    held = pairs.subset(range(12))
    n_in = sum(ids[i] in chosen for i in range(12))
    assert 8 <= n_in < 12
    before = cache.forwards
    out = steering_effects(
        readout, held, Steering(r, pm.residual_layer, 2.0),
        nulls=replace(main, pair_ids=chosen), **args,
    )  # fmt: skip
    assert out.ablation_null.n_prompts == n_in and out.ablation_effect.n == 12
    assert cache.forwards - before == 12 + 16 * n_in  # its addition, and its null's additions
    few = replace(main, pair_ids=frozenset(ids[:3]))  # under 8 of them: the usual subset
    assert len(few.prompts(pairs.placements(), ids)) == 20
