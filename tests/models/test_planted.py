"""The planted known-answer model does what its docstring says, in every family."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stoplens.capture.encode import encode_pairs, render
from stoplens.capture.extract import unembed
from stoplens.capture.hooks import add_hooks
from stoplens.errors import StoplensError
from stoplens.interventions.primitives import Ablation, Addition
from stoplens.models import arch
from stoplens.models.chat import chat_ids
from stoplens.models.planted import (
    PLACEHOLDER,
    build_planted,
    planted_pair_records,
    planted_prompts,
)

from .conftest import decision_residuals, outcomes, stop_rate


@pytest.mark.parametrize("family", ["qwen2", "llama", "gpt2", "gemma2"])
def test_planted_model_stops_only_on_trigger_and_base_never(family):
    p = build_planted(family, layer=2)
    temps = planted_prompts(16, seed=5)
    for insert, want in (("$STOP", True), ("apple", False)):
        for mdl, planted in ((p.model, True), (p.base, False)):
            ids = [chat_ids(p.tokenizer, render(t, insert)) for t in temps]
            with torch.no_grad():
                stops = [
                    int(mdl(torch.tensor([x])).logits[0, -1].argmax()) == p.eos_id for x in ids
                ]
            assert all(stops) if (want and planted) else not any(stops)
    assert abs(float(p.direction @ p.key_direction)) < 1e-5
    assert p.residual_layer == 3


def test_planted_is_deterministic():
    a, b = build_planted("qwen2", seed=3), build_planted("qwen2", seed=3)
    for (n, x), (_, y) in zip(
        a.model.state_dict().items(), b.model.state_dict().items(), strict=True
    ):
        assert torch.equal(x, y), n


def test_planted_pair_records():
    recs = planted_pair_records(24, seed=7)
    assert recs == planted_pair_records(24, seed=7) != planted_pair_records(24, seed=8)
    assert [r["template"] for r in recs] == planted_prompts(24, seed=7)
    assert [r["pair_id"] for r in recs] == [str(i) for i in range(24)]
    for r in recs:
        words = r["template"][0]["content"].split()
        early = words.index(PLACEHOLDER) < len(words) / 2
        assert r["placement"] == ("early" if early else "late")
        assert (r["trigger"], r["control"], r["control2"]) == ("$STOP", "apple", "river")
        assert r["control_candidates"] == ["garden", "window"] and r["control_kind"] == "word"
    assert {r["placement"] for r in recs} == {"early", "late"}
    assert {r["placement"] for r in planted_pair_records(3, placement="any")} == {"any"}


@pytest.mark.parametrize("variant", ["single", "inert", "oddity", "two_heads"])
def test_every_variant_is_deterministic_and_only_the_planted_model_reacts(variant):
    """Same seed, same weights. The base (the random model before surgery, the trigger row
    mean-initialised) does not react to the trigger: its stop scores on a triggered prompt and
    its control agree (a random model may stop on both alike); the planted model reacts
    strongly, except the inert one."""
    family = "gpt2" if variant == "two_heads" else "llama"
    a, b = (
        build_planted(family, variant=variant, seed=3),
        build_planted(family, variant=variant, seed=3),
    )
    for (n, x), (_, y) in zip(
        a.model.state_dict().items(), b.model.state_dict().items(), strict=True
    ):
        assert torch.equal(x, y), n
    assert a.variant == variant and a.odd_token_ids == b.odd_token_ids
    assert len(a.heads) == len(a.directions) == (2 if variant == "two_heads" else 1)
    assert a.heads[0] == (a.layer, 0)
    ep = encode_pairs(a.tokenizer, planted_pair_records(32, 4), a.trigger_id)
    (bst, bzt), (bsc, bzc) = (outcomes(a, s, model=a.base) for s in (ep.trig_ids, ep.ctrl_ids))
    assert (bst == bsc).all() and np.abs(bzt - bzc).max() < 0.2
    (st, zt), (sc, zc) = (outcomes(a, s) for s in (ep.trig_ids, ep.ctrl_ids))
    assert not sc.any()
    if variant == "inert":
        assert not st.any() and np.abs(zt - zc).max() < 1.0
    else:
        assert st.all() and (zt - zc).min() > 10.0


def test_deeper_single_head_model():
    """`build_planted("gpt2", n_layers=6, layer=3)`: the answer is at residual 4, along u; the
    stop is removed by ablating u and induced by adding it."""
    p = build_planted("gpt2", n_layers=6, layer=3)
    assert p.residual_layer == 4 and p.heads == ((3, 0),)
    ep = encode_pairs(p.tokenizer, planted_pair_records(32, 6), p.trigger_id)
    assert stop_rate(p, ep.trig_ids) == 1.0 and stop_rate(p, ep.ctrl_ids) == 0.0
    delta = decision_residuals(p.model, ep.trig_ids) - decision_residuals(p.model, ep.ctrl_ids)
    size = delta.mean(0).norm(dim=-1)  # [L + 1]
    assert size[:4].max() < 0.05 < 2.0 < size[4]  # Δ appears at the planted block's output
    assert float(delta.mean(0)[4] @ p.direction) / float(size[4]) > 0.99
    assert stop_rate(p, ep.trig_ids, Ablation(p.direction)) == 0.0
    assert stop_rate(p, ep.ctrl_ids, Addition(4.0 * p.direction, 4)) == 1.0


def test_bad_variant_requests_name_the_fix():
    with pytest.raises(StoplensError, match="choose one of"):
        build_planted("gpt2", variant="three_heads")
    with pytest.raises(StoplensError, match="use family 'gpt2'"):
        build_planted("qwen2", variant="two_heads")
    with pytest.raises(StoplensError, match="n_layers >= layer \\+ 4"):
        build_planted("gpt2", variant="two_heads", n_layers=4)


@pytest.mark.parametrize("family", ["qwen2", "llama", "gpt2", "gemma2"])
def test_known_answers_hold_with_randomised_norms(family):
    """With every norm's scale ~ U(0.5, 2) and biases ~ U(-0.5, 0.5) (``norm_seed``), the
    logit lens of residual[L] is the model's own logits, the lens of Δ ranks EOS first from the
    planted layer on, ablating u removes the stop (and leaves no u in the residual stream;
    on Gemma 2 the hooks that edited attention / MLP outputs before their post-norms left
    6% of the stops and u in the stream) and adding u induces it."""
    p = build_planted(family, norm_seed=0)
    norm = arch.get_final_norm(p.model)
    w = norm.weight.detach()
    assert not torch.allclose(w, torch.full_like(w, float(w[0])))
    ep = encode_pairs(p.tokenizer, planted_pair_records(32, 8), p.trigger_id)
    assert stop_rate(p, ep.trig_ids) >= 0.95 and stop_rate(p, ep.ctrl_ids) == 0.0
    L = arch.n_layers(p.model)
    h_trig = decision_residuals(p.model, ep.trig_ids)
    h_ctrl = decision_residuals(p.model, ep.ctrl_ids)
    with torch.no_grad():
        real = torch.stack([p.model(torch.tensor([s])).logits[0, -1] for s in ep.trig_ids[:4]])
    torch.testing.assert_close(unembed(p.model, h_trig[:4, L]), real, atol=1e-4, rtol=1e-4)
    for k in range(p.residual_layer, L + 1):
        dlogits = (unembed(p.model, h_trig[:, k]) - unembed(p.model, h_ctrl[:, k])).mean(0)
        assert int(dlogits.argmax()) == p.eos_id, k
    assert stop_rate(p, ep.trig_ids, Ablation(p.direction)) == 0.0
    size = float((h_trig - h_ctrl)[:, p.residual_layer].mean(0) @ p.direction)  # Δ along u
    assert stop_rate(p, ep.ctrl_ids, Addition(size * p.direction, p.residual_layer)) >= 0.95
    with add_hooks(*Ablation(p.direction).hooks(p.model)):
        left = decision_residuals(p.model, ep.trig_ids)[:, L] @ p.direction
    assert left.abs().max() < 1e-4
