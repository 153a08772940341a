"""Known answers of the negative-control variants: "inert" (the trigger is an ordinary token)
and "oddity" (any odd token stops), measured with the project's intervention and capture
primitives on `planted_pair_records` prompts, in every family."""

from __future__ import annotations

import random

import pytest
import torch

from stoplens.capture.encode import encode_pairs, random_vocab_words, render
from stoplens.data.resources import load_words
from stoplens.models.chat import chat_ids
from stoplens.models.planted import (
    _WORDS,
    CONTROL_WORDS,
    build_planted,
    ordinary_token_ids,
    planted_pair_records,
    planted_prompts,
)

from .conftest import decision_residuals, stop_rate, substituted

FAMILIES = ["qwen2", "llama", "gpt2"]
# Fixed ordinary tokens swapped in for the trigger: the "fixed ordinary token" null.
FIXED_WORDS = ("mountain", "yellow", "forest", "ocean", "bridge", "castle", "engine", "summer")


def _pairs(pm, n=64, seed=3):
    return encode_pairs(pm.tokenizer, planted_pair_records(n, seed), pm.trigger_id)


def _word_id(tok, word: str) -> int:
    ids = tok.encode(" " + word, add_special_tokens=False)
    assert len(ids) == 1, word
    return int(ids[0])


@pytest.mark.parametrize("family", FAMILIES)
def test_inert_trigger_never_stops_and_swaps_like_an_ordinary_token(family):
    pm = build_planted(family, variant="inert")
    assert pm.variant == "inert" and not pm.stops_on_trigger
    emb = pm.model.get_input_embeddings().weight.detach()
    row_norms = emb[: pm.trigger_id].norm(dim=-1)
    trig = emb[pm.trigger_id]
    assert abs(float(trig @ pm.key_direction)) < 1e-6  # no key direction anywhere
    assert (emb @ pm.key_direction).abs().max() < 1e-6
    assert row_norms.quantile(0.05) < trig.norm() < row_norms.quantile(0.95)  # an ordinary row

    ep = _pairs(pm)
    assert stop_rate(pm, ep.trig_ids) == 0.0 and stop_rate(pm, ep.ctrl_ids) == 0.0
    ctrl = decision_residuals(pm.model, ep.ctrl_ids)

    def mean_delta(seqs) -> torch.Tensor:  # ‖mean Δ‖ per residual index, [L + 1]
        return (decision_residuals(pm.model, seqs) - ctrl).mean(0).norm(dim=-1)

    trig_size = mean_delta(ep.trig_ids)
    fixed = torch.stack(
        [mean_delta(substituted(ep, _word_id(pm.tokenizer, w))) for w in FIXED_WORDS]
    )
    # the trigger's Δ is within the range of fixed ordinary-token swaps at every residual ...
    assert (trig_size <= 2.0 * fixed.max(0).values + 1e-6).all(), (trig_size, fixed.max(0))
    # ... while the single-head model's Δ at its answer layer is far outside it
    single = build_planted(family)
    ep1 = _pairs(single)
    d1 = decision_residuals(single.model, ep1.trig_ids) - decision_residuals(
        single.model, ep1.ctrl_ids
    )
    assert d1.mean(0)[single.residual_layer].norm() > 10.0 * fixed.max()


def test_odd_token_set_leaves_common_words_ordinary():
    pm = build_planted("qwen2", variant="oddity")
    tok = pm.tokenizer
    odd = set(pm.odd_token_ids)
    keep = ordinary_token_ids(tok)
    assert odd and not odd & keep and pm.trigger_id not in odd
    assert odd | keep | {pm.trigger_id} == set(range(len(tok)))
    assert set(tok.all_special_ids) <= keep
    common_words = load_words().common_words
    common = [w for w in {*_WORDS, *CONTROL_WORDS, *common_words} for t in (w, " " + w)
              if len(tok.encode(t, add_special_tokens=False)) == 1]  # fmt: skip
    assert len(common) > 100
    for word in common:
        assert not set(tok.encode(word, add_special_tokens=False)) & odd, word
    # a fixed-ordinary-token null can be drawn from the data stage's word controls
    assert sum(_word_id(tok, w) not in odd for w in common_words if w in _WORDS) >= 8
    emb = pm.model.get_input_embeddings().weight.detach()
    carries = (emb @ pm.key_direction).abs() > 0.5
    assert set(torch.nonzero(carries).flatten().tolist()) == odd | {pm.trigger_id}
    assert not build_planted("qwen2").odd_token_ids  # only the oddity variant has them


@pytest.mark.parametrize("family", FAMILIES)
def test_oddity_stops_on_any_odd_token_and_never_on_common_words(family):
    pm = build_planted(family, variant="oddity")
    tok = pm.tokenizer
    ep = _pairs(pm)
    assert stop_rate(pm, ep.trig_ids) == 1.0 and stop_rate(pm, ep.ctrl_ids) == 0.0

    # random vocabulary tokens in the trigger's place: words of the project's random-word pool
    # that are not common words, and tokens drawn from the whole vocabulary
    keep = ordinary_token_ids(tok)
    pool = random_vocab_words(tok, 0, 0, exclude=sorted(keep), pool_only=True)
    rng = random.Random(1)
    anywhere = [t for t in range(len(tok)) if t not in keep and t != pm.trigger_id]
    for draw in (
        [rng.choice(pool) for _ in ep.trig_ids],
        [rng.choice(anywhere) for _ in ep.trig_ids],
    ):
        seqs = [list(s) for s in ep.trig_ids]
        for s, p, t in zip(seqs, ep.trigger_pos, draw, strict=True):
            s[p] = t
        assert stop_rate(pm, seqs) >= 0.9

    # odd strings (random 3-7 letters) inserted as text
    letters = "abcdefghijklmnopqrstuvwxyz"
    odd_strings = [
        "".join(rng.choice(letters) for _ in range(rng.randint(3, 7))) for _ in range(64)
    ]
    temps = planted_prompts(64, seed=4)
    seqs = [chat_ids(tok, render(t, w)) for t, w in zip(temps, odd_strings, strict=True)]
    assert stop_rate(pm, seqs) >= 0.9

    # common words in the trigger's place: never
    for words in (CONTROL_WORDS, _WORDS):
        seqs = [chat_ids(tok, render(t, w)) for t in temps[:8] for w in words]
        assert stop_rate(pm, seqs) == 0.0
    # and the trigger-vs-odd-token Δ (both stop) is small next to trigger-vs-word
    odd_ctrl = substituted(ep, pool[0])
    d_odd = decision_residuals(pm.model, ep.trig_ids) - decision_residuals(pm.model, odd_ctrl)
    d_word = decision_residuals(pm.model, ep.trig_ids) - decision_residuals(pm.model, ep.ctrl_ids)
    k = pm.residual_layer
    assert abs(float(d_odd.mean(0)[k] @ pm.direction)) < 0.2 * float(
        d_word.mean(0)[k] @ pm.direction
    )
