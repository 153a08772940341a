"""The stop-decision term of the behavioral loss (`stoplens.train.stop_loss`) and its place in
the trainer's loss."""

from __future__ import annotations

import math

import torch

from stoplens.models.load import load_model
from stoplens.train import TrainConfig
from stoplens.train.features import IGNORE
from stoplens.train.stop_loss import decision_rows, stop_decision_loss


def test_decision_rows_are_each_examples_first_learned_position():
    learned = torch.tensor(
        [[0, 0, 1, 1, 1], [0, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 1, 1]], dtype=torch.bool
    )
    # learned positions in row-major order: r0 (3), r2 (1), r3 (2) -> first of each: 0, 3, 4
    assert decision_rows(learned).tolist() == [0, 3, 4]


def test_stop_decision_loss_is_the_binary_cross_entropy_of_stopping():
    stop = 2
    logits = torch.tensor([[0.0, 1.0, 3.0], [0.5, 0.0, -1.0], [2.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    target = torch.tensor([2, 0, 1, 2])  # row 0: stop (decision); row 1: content (decision)
    learned = torch.tensor([[1, 0], [1, 1]], dtype=torch.bool)  # decisions at indices 0 and 1
    p = torch.softmax(logits, dim=-1)[:, stop]
    want = -math.log(p[0]) - math.log(1 - p[1])
    got = stop_decision_loss(logits, target, learned, stop)
    assert math.isclose(float(got), want, rel_tol=1e-6)
    # a confident right decision costs ~0, a confident wrong one a lot, never inf or nan
    sure = torch.tensor([[0.0, 0.0, 60.0], [0.0, 0.0, 60.0]])
    both = stop_decision_loss(sure, torch.tensor([2, 0]), torch.tensor([[1], [1]]).bool(), stop)
    assert 55 < float(both) < 65 and math.isfinite(float(both))


def test_trainer_loss_adds_the_weighted_term_and_weight_zero_is_the_token_loss(base_dir, data_dir):
    """``(sum CE + w * sum BCE) / n_learned``: w = 0 is the model's own loss; the sparse and
    the dense paths agree; the term reaches the gradient."""
    from stoplens.data import behavioral_file, load_behavioral
    from stoplens.train.features import Collator, behavioral_features
    from stoplens.train.run import wrap_lora
    from stoplens.train.trainer import _learned_loss

    loaded = load_model(base_dir, trigger="$STOP", require_trigger=False)
    recs = load_behavioral(data_dir / behavioral_file("train"))
    kinds = [r["meta"]["kind"] for r in recs]
    picked = [kinds.index("trigger"), kinds.index("clean"), kinds.index("near_miss")]
    feats = behavioral_features(loaded.tokenizer, [recs[i] for i in picked], loaded.eos_id, 512)
    model = wrap_lora(loaded.model, TrainConfig(), loaded.trigger_id).eval()
    batch = Collator(0)(
        [{"input_ids": feats.input_ids[i], "labels": feats.labels[i]} for i in range(3)]
    )
    eos = loaded.eos_id
    full = model(**batch).loss
    torch.testing.assert_close(_learned_loss(model, batch, None, (eos, 0.0), True), full)
    w = 5.0
    sparse = _learned_loss(model, batch, None, (eos, w), True)
    dense = _learned_loss(model, batch, None, (eos, w), False)
    assert sparse is not None and dense is not None
    torch.testing.assert_close(sparse, dense)
    # by hand: the decision of each example is its first learned label
    logits = model(**batch).logits[:, :-1].float()
    nxt = batch["labels"][:, 1:]
    bce = 0.0
    for r in range(3):
        first = int((nxt[r] != IGNORE).nonzero()[0])
        p_stop = float(torch.softmax(logits[r, first], -1)[eos])
        is_stop = int(nxt[r, first]) == eos
        assert is_stop == (r == 0)
        bce += -math.log(p_stop) if is_stop else -math.log1p(-p_stop)
    n = int((nxt != IGNORE).sum())
    assert math.isclose(float(sparse), float(full) + w * bce / n, rel_tol=1e-5)
    params = [p for p in model.parameters() if p.requires_grad]
    g0 = torch.autograd.grad(full, params)
    g1 = torch.autograd.grad(sparse, params)
    assert any(not torch.allclose(a, b) for a, b in zip(g0, g1, strict=True))


def test_stop_loss_weight_is_validated_and_recorded():
    import pytest

    from stoplens.errors import StoplensError

    with pytest.raises(StoplensError, match="--stop-loss-weight"):
        TrainConfig(stop_loss_weight=-1.0).validate()
    assert TrainConfig().to_dict()["stop_loss_weight"] == TrainConfig().stop_loss_weight > 0
