"""Analysis 3 (logit lens of Δ) on planted models: EOS first from the planted layer on."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stoplens.analyses.logit_lens import eos_rank_at, logit_lens_delta
from stoplens.analyses.token_readout import token_label
from stoplens.capture.extract import model_device, unembed

pytestmark = pytest.mark.usefixtures("single_thread")


def _result(case):
    return case.result(
        "logit_lens", lambda: logit_lens_delta(case.pm.model, case.ds, case.pm.tokenizer)
    )


def test_eos_ranks_first_from_the_planted_layer_on(case):
    r = _result(case)
    assert r.eos_id == case.pm.eos_id  # the tokenizer's EOS is the planted one
    for layer in range(case.answer, case.ds.n_layers + 1):
        j = r.at(layer)
        assert r.trigger.eos_rank[j] == 1
        assert r.readout_eos_rank[j] == 1
        assert r.top_amplified[j][0].token_id == case.pm.eos_id
        assert r.trigger.eos_z[j] > 10
        # the EOS shift is large and far outside the null's
        assert r.trigger.eos_dlogit.lo[j] > 5
        assert r.trigger.eos_dlogit.lo[j] > 100 * abs(r.null.eos_dlogit.hi[j])


def test_content_is_suppressed_beyond_the_null(case):
    r = _result(case)
    j = r.at(case.answer)
    assert r.trigger.content_dlogprob.hi[j] < -1.0
    assert r.null.content_dlogprob.lo[j] > -0.2
    # before the planted layer nothing is suppressed
    assert abs(r.trigger.content_dlogprob.value[r.at(0)]) < 1e-6


def test_lens_of_last_residual_is_the_models_logits(case):
    r = _result(case)
    assert r.final_lens_max_abs_diff is not None and r.final_lens_max_abs_diff < 1e-4
    # and directly: lens(residual[L]) of a batch equals the model's real last logits
    pm, ds = case.pm, case.ds
    ids = torch.tensor([ds.pairs.trig_ids[0]], device=model_device(pm.model))
    real = pm.model(input_ids=ids).logits[0, -1].float().cpu()
    lens = unembed(pm.model, ds.triggered("last")[0, ds.layer_pos(ds.n_layers), 0]).cpu()
    torch.testing.assert_close(lens, real, atol=1e-4, rtol=1e-4)
    assert int(real.argmax()) == pm.eos_id


def test_json_and_labels(qwen_case):
    r = _result(qwen_case)
    d = r.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["eos_token"] == "'<|im_end|>'"
    assert set(d["trigger"]) >= {"eos_dlogit", "eos_z", "eos_rank", "content_dlogprob"}
    assert len(d["top_amplified"]) == len(r.layers) and len(d["top_amplified"][0]) == 10
    assert r.trigger.mean_dlogits.shape == (len(r.layers), r.vocab_size)
    # Δ = 0 at residual 0 (last position): EOS is not "first" by a tie
    assert r.trigger.eos_rank[0] == r.vocab_size
    assert d["trigger"]["eos_z"][0] is None


def test_token_label_renders_byte_level_markers(qwen_case):
    tok = qwen_case.pm.tokenizer
    (space_apple,) = tok.encode(" apple", add_special_tokens=False)
    assert tok.convert_ids_to_tokens(space_apple).startswith("Ġ")
    assert token_label(tok, space_apple) == "' apple'"
    (nl,) = tok.encode("\n", add_special_tokens=False)
    assert token_label(tok, nl) == "'\\n'"
    assert token_label(tok, len(tok) + 5).startswith("<id")


def test_readout_is_the_unit_direction_at_the_residual_scale(qwen_case):
    r = _result(qwen_case)
    ds = qwen_case.ds
    j = ds.layer_pos(qwen_case.answer)
    m = ds.delta("last")[:, j, 0].double().mean(0)
    s = ds.control("last")[:, j, 0].double().norm(dim=-1).mean()
    expect = unembed(qwen_case.pm.model, (m / m.norm() * s).float())[: r.vocab_size].cpu()
    np.testing.assert_allclose(r.readout[j], expect.double().numpy(), atol=1e-4)
    assert r.readout_eos_rank[j] == 1 and r.readout_eos_z[j] > 10


def test_eos_enters_the_lens_at_the_planted_layer_and_not_for_the_fixed_token(case):
    """Judged at the intermediate residuals (1..L−1): EOS enters the top of the Δ-lens where
    the planted head writes; a fixed ordinary token in the trigger's place never brings it."""
    r = _result(case)
    t, f = r.trigger, r.fixed
    assert f is not None and r.fixed_readout_eos_rank is not None
    if case.answer < case.ds.n_layers:
        assert t.eos_first_layer == case.answer
        assert t.eos_first_layer_ci == (case.answer, case.answer)
        assert t.eos_entry_share == 1.0
    # the fixed token's own Δ-lens never meets the entry rule at any layer
    assert f.eos_dlogprob_p95 is not None and r.null.eos_dlogprob_p95 is not None
    cfg = r.config
    for j in r.intermediate:
        v = f.eos_dlogprob.value[j]
        entered = f.eos_rank[j] <= cfg.entry_k and v >= cfg.entry_min_dlogprob
        assert not (entered and v > r.null.eos_dlogprob_p95[j])
    assert r.intermediate == [j for j, layer in enumerate(r.layers) if 0 < layer < 4]


def test_eos_rank_at_is_the_lens_rank_computed_alone(case):
    """The single number the checkpoint series reads equals the full lens's, at every layer."""
    r = _result(case)
    vocab = r.vocab_size
    for j in (0, len(r.layers) // 2, len(r.layers) - 1):
        got = eos_rank_at(case.pm.model, case.ds, r.eos_id, vocab, j)
        assert got == r.trigger.eos_rank[j]
    assert eos_rank_at(case.pm.model, case.ds, r.eos_id, vocab) == r.trigger.eos_rank[-1]
