"""Known answers both ways: the verdicts on planted models whose answer is known.

(e) the planted single-direction mechanism must get "a dedicated mechanism"; models without
it must not: (a) the untrained base with the trigger added, (b) an inert trigger (an ordinary
token), (c) an "any odd token stops" detector (fails specificity), (d) a mechanism carried by
two orthogonal directions, each sufficient (fails "one direction" and single-direction
necessity); and (f) the planted mechanism whose stop direction is also read by ordinary tokens
(fails "cheap": removing the direction changes clean outputs, so necessity is no evidence).
Every judged verdict line is shown to fail on at least one of (a)–(d), (f).

The whole stack runs as in `stoplens run`: aligned pairs, the four analyses with their nulls,
trigger specificity, the causal suite (patching-guided selection on VAL, effects on TEST) and
`build_verdicts`."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from stoplens.analyses.causal import CausalConfig, run_causal
from stoplens.analyses.diff_lens import diff_lens
from stoplens.analyses.layerwise import layerwise_delta
from stoplens.analyses.logit_lens import logit_lens_delta
from stoplens.analyses.lowrank import LowrankConfig, lowrank
from stoplens.analyses.specificity import trigger_specificity
from stoplens.capture.delta_capture import capture_delta_set
from stoplens.capture.encode import encode_pairs
from stoplens.models.planted import CONTROL_WORDS, build_planted, planted_pair_records
from stoplens.report.checks import build_verdicts
from stoplens.report.verdicts import Verdicts, VerdictThresholds

pytestmark = pytest.mark.slow

CFG = CausalConfig(
    n_random=20, n_random_heldout=20, n_boot=200, patch_max_pairs=24, batch_size=64,
    min_placement_pairs=6, n_examples=0, gen_tokens=0, patch_noising=False,
)  # fmt: skip


def _records(n: int, seed: int) -> list[dict]:
    """Planted pair records whose controls vary across pairs (as in real data)."""
    w = CONTROL_WORDS
    recs = planted_pair_records(n, seed)
    for i, r in enumerate(recs):
        r["control"], r["control2"] = w[i % len(w)], w[(i + 3) % len(w)]
        r["control_candidates"] = [w[(i + 1) % len(w)], w[(i + 2) % len(w)]]
    return recs


@dataclass
class Outcome:
    verdicts: Verdicts

    def passed(self, key: str) -> bool | None:
        hits = [c for c in self.verdicts.checks if c.key == key]
        assert hits, f"no check {key!r}: {[c.key for c in self.verdicts.checks]}"
        return hits[0].passed

    def failing(self) -> set[str]:
        return {c.key for c in self.verdicts.checks if c.passed is False}


def _judge(model, base, pm) -> Outcome:
    tok = pm.tokenizer
    pad = tok.pad_token_id
    enc = lambda recs: encode_pairs(tok, recs, pm.trigger_id)  # noqa: E731
    test_recs = _records(96, 3)
    train, val, test = enc(_records(64, 1)), enc(_records(48, 2)), enc(test_recs)
    ds = capture_delta_set(
        model, tok, pm.trigger_id, test_recs, base=base, base_trigger_added=True, batch_size=64
    )
    results = {
        "layerwise": layerwise_delta(ds),
        "lowrank": lowrank(ds, LowrankConfig(n_boot_spectrum=100, n_boot=200)),
        "logit_lens": logit_lens_delta(model, ds, tok, eos_id=pm.eos_id),
        "diff_lens": diff_lens(model, ds, tok, eos_id=pm.eos_id, base_model=base),
        "specificity": trigger_specificity(
            model,
            tok,
            ds.pairs,
            trigger_id=pm.trigger_id,
            eos_id=pm.eos_id,
            fixed_id=ds.fixed_token[0] if ds.fixed_token else None,
            pad_id=pad,
        ),
        "causal": run_causal(
            model, train, val, test, eos_id=pm.eos_id, pad_id=pad, config=CFG, base=base
        ),
    }
    return Outcome(build_verdicts(results, VerdictThresholds()))


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Outcome]:
    out = {}
    single = build_planted("qwen2", variant="single")
    out["single"] = _judge(single.model, single.base, single)
    out["untrained"] = _judge(single.base, single.base, single)  # (a) base, trigger untrained
    inert = build_planted("qwen2", variant="inert")
    out["inert"] = _judge(inert.model, inert.base, inert)
    odd = build_planted("qwen2", variant="oddity")
    out["oddity"] = _judge(odd.model, odd.base, odd)
    two = build_planted("gpt2", variant="two_heads")
    out["two_heads"] = _judge(two.model, two.base, two)
    out["entangled"] = _judge(_entangled(single), single.base, single)
    return out


def _entangled(pm):
    """The single planted model whose unembedding rows of 300 ordinary tokens also read the
    stop direction u, with coefficients in [-1, 0.5] (clean prompts carry -βσu, so their
    next-token distribution depends on it; EOS, at 1.5 u, still wins on triggered prompts):
    ablating u then changes clean outputs (KL ~3.5 nats) while removing every stop."""
    import copy

    import torch

    from stoplens.models import arch

    m = copy.deepcopy(pm.model)
    head = arch.get_unembed(m).weight
    gen = torch.Generator().manual_seed(0)
    rows = [t for t in torch.randperm(head.shape[0], generator=gen).tolist() if t != pm.eos_id]
    with torch.no_grad():
        for t in rows[:300]:
            head[t] += (-1.0 + 1.5 * float(torch.rand((), generator=gen))) * pm.direction
    return m


def test_e_planted_single_direction_is_a_dedicated_mechanism(outcomes):
    o = outcomes["single"]
    assert o.verdicts.dedicated, [(c.key, c.note) for c in o.verdicts.checks if c.passed is False]
    assert o.verdicts.overall == "dedicated mechanism"


@pytest.mark.parametrize("name", ["untrained", "inert"])
def test_ab_no_mechanism_without_a_trained_trigger(outcomes, name):
    o = outcomes[name]
    assert o.verdicts.overall in ("no stop behaviour", "no mechanism")
    assert not o.verdicts.dedicated and o.verdicts.representation == "none"
    # the mechanism checks fail on their own, not only through the behaviour gate
    for key in ("behaviour", "eos_lens", "did", "necessary", "sufficient"):
        assert o.passed(key) is False, key


def test_c_oddity_detector_fails_specificity(outcomes):
    o = outcomes["oddity"]
    assert o.passed("behaviour") is True
    assert o.passed("specific") is False
    assert not o.verdicts.dedicated
    assert "not specific to the trigger" in o.verdicts.headline


def test_d_two_directions_fail_one_direction_and_necessity(outcomes):
    o = outcomes["two_heads"]
    assert o.passed("behaviour") is True
    assert o.passed("one_direction") is False
    assert o.passed("necessary") is False
    assert o.passed("sufficient") is True
    assert not o.verdicts.dedicated
    assert "sufficient; necessity not shown" in o.verdicts.headline


def test_f_entangled_direction_is_not_cheap_so_necessity_is_no_evidence(outcomes):
    o = outcomes["entangled"]
    assert o.passed("behaviour") is True
    assert o.passed("cheap") is False
    assert o.passed("necessary") is False
    assert not o.verdicts.dedicated and "not cheap" in o.verdicts.headline


def test_every_judged_line_fails_on_some_negative_control(outcomes):
    judged = {
        c.key
        for c in outcomes["single"].verdicts.checks
        if c.passed is not None and c.tier in ("behaviour", "strong", "medium", "causal")
    }
    negatives = ("untrained", "inert", "oddity", "two_heads", "entangled")
    failing = set().union(*(outcomes[k].failing() for k in negatives))
    assert judged <= failing, judged - failing
