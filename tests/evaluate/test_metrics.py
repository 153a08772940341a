"""metrics.py: Wilson intervals, the stop score, KL, and the batched decision-position read."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stoplens.evaluate.metrics import (
    Rate,
    decision_readout,
    kl_divergence,
    pad_right,
    stop_score,
    target_logits,
    wilson_interval,
)
from stoplens.models.tiny import random_model


def test_wilson_interval_known_values():
    # reference values (Wilson score interval, z = 1.96), e.g. from statsmodels proportion_confint
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(0, 6)[0] == 0.0 and wilson_interval(6, 6)[1] == 1.0  # exact ends
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(95, 100) == pytest.approx((0.8882, 0.9785), abs=1e-4)
    lo, hi = wilson_interval(3, 7)
    assert lo < 3 / 7 < hi
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    assert Rate.of(0, 0).rate is None and Rate.of(3, 4).rate == 0.75


def test_stop_score_is_the_log_odds_of_eos_and_stays_finite():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 50, generator=g) * 3
    p = torch.softmax(logits.double(), -1)[:, 7]
    want = torch.log(p) - torch.log1p(-p)
    torch.testing.assert_close(stop_score(logits, 7).double(), want, rtol=1e-5, atol=1e-5)
    extreme = torch.zeros(2, 50)
    extreme[0, 7] = 200.0  # p(EOS) = 1 - 1e-85: naive log(1 - p) is -inf
    extreme[1, 7] = -200.0
    s = stop_score(extreme, 7)
    assert torch.isfinite(s).all()
    assert s[0] == pytest.approx(200.0 - math.log(49), abs=1e-3)
    assert s[1] == pytest.approx(-200.0 - math.log(49), abs=1e-3)


def test_kl_divergence():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(4, 30, generator=g), torch.randn(4, 30, generator=g)
    assert torch.allclose(kl_divergence(a, a), torch.zeros(4, dtype=torch.float64), atol=1e-6)
    lp, lq = torch.log_softmax(a.double(), -1), torch.log_softmax(b.double(), -1)
    want = (lp.exp() * (lp - lq)).sum(-1)
    torch.testing.assert_close(kl_divergence(a, b), want, rtol=1e-9, atol=1e-12)
    assert (kl_divergence(a, b) > 0).all()


@pytest.mark.parametrize("family", ["qwen2", "gpt2", "gpt_neox"])
def test_decision_readout_equals_each_models_own_logits_one_prompt_at_a_time(family):
    """The batched readout (length-sorted batches through `capture.extract`) gives, per
    prompt, the stop score, the argmax flag and KL(ft ‖ base) of the models' own forward
    passes at the last position; the base's padded vocabulary is compared on the shared part."""
    ft = random_model(family, 60, d_model=32, seed=1)
    base = random_model(family, 64, d_model=32, seed=2)
    g = torch.Generator().manual_seed(2)
    seqs = [torch.randint(1, 60, (n,), generator=g).tolist() for n in (3, 9, 5, 9, 1)]
    with torch.no_grad():  # make EOS the argmax of one prompt, so both flags occur
        eos = int(ft(input_ids=torch.tensor([seqs[2]])).logits[0, -1].argmax())
    r = decision_readout(ft, base, seqs, eos, pad_id=0, batch_size=2)
    assert r.ft_score.shape == (5,) and r.kl.dtype == np.float64 and r.ft_stop.dtype == bool
    assert r.ft_stop[2]
    for i, s in enumerate(seqs):
        with torch.no_grad():
            lf = ft(input_ids=torch.tensor([s])).logits[0, -1]
            lb = base(input_ids=torch.tensor([s])).logits[0, -1, :60]
        want = (stop_score(lf, eos), stop_score(lb, eos), kl_divergence(lf[None], lb[None])[0])
        got = (r.ft_score[i], r.base_score[i], r.kl[i])
        for w, x in zip(want, got, strict=True):
            assert abs(float(w) - x) <= 1e-4 * max(1.0, abs(float(w)))
        assert r.ft_stop[i] == (int(lf.argmax()) == eos)
        assert r.base_stop[i] == (int(lb.argmax()) == eos)


def test_target_logits_pick_the_labelled_positions():
    model = random_model("llama", 40, d_model=32)
    seqs = [[5, 6, 7, 8], [9, 10]]
    labels = [[-100, -100, 7, 8], [-100, 10]]
    logits, tgt = target_logits(model, seqs, labels, pad_id=0)
    assert tgt.tolist() == [7, 8, 10]
    with torch.no_grad():
        full0 = model(input_ids=torch.tensor([seqs[0]])).logits[0]
        full1 = model(input_ids=torch.tensor([seqs[1]])).logits[0]
    torch.testing.assert_close(
        logits, torch.stack([full0[1], full0[2], full1[0]]), rtol=1e-4, atol=1e-5
    )


def test_pad_right():
    ids, mask = pad_right([[1, 2], [3]], 0)
    assert ids.tolist() == [[1, 2], [3, 0]] and mask.tolist() == [[1, 1], [1, 0]]
