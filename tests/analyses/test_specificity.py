"""Trigger specificity: the planted single-head model stops on the trigger only."""

from __future__ import annotations

import json

import pytest

from stoplens.analyses.specificity import trigger_specificity

pytestmark = pytest.mark.usefixtures("single_thread")


def test_planted_model_stops_on_the_trigger_only(qwen_case):
    pm, ds = qwen_case.pm, qwen_case.ds
    assert ds.fixed_token is not None
    r = trigger_specificity(
        pm.model,
        pm.tokenizer,
        ds.pairs,
        trigger_id=pm.trigger_id,
        eos_id=pm.eos_id,
        fixed_id=ds.fixed_token[0],
        pad_id=pm.tokenizer.pad_token_id,
    )
    assert r.n == ds.n
    assert r.triggered.value == 1.0 and r.control.value == 0.0
    assert {"fixed", "word", "rare"} <= set(r.substitutes)
    for kind, est in r.substitutes.items():
        assert est.value == 0.0, kind
        assert est.hi < 0.07  # Wilson upper bound at 0/64
    assert r.worst is not None
    json.dumps(r.to_dict(), allow_nan=False)


def test_a_model_that_stops_on_anything_is_caught(qwen_case):
    """The base with its EOS logit boosted everywhere stops on every substitute too."""
    import copy

    import torch

    from stoplens.models import arch

    pm, ds = qwen_case.pm, qwen_case.ds
    m = copy.deepcopy(pm.base)
    head = arch.get_unembed(m)
    with torch.no_grad():
        if getattr(head, "bias", None) is None:
            head.bias = torch.nn.Parameter(torch.zeros(head.weight.shape[0]))
        head.bias[pm.eos_id] = 100.0
    r = trigger_specificity(
        m, pm.tokenizer, ds.pairs, trigger_id=pm.trigger_id, eos_id=pm.eos_id, fixed_id=None
    )
    assert r.triggered.value == 1.0
    assert all(e.value == 1.0 for e in r.substitutes.values())
    assert r.worst is not None and r.worst[1].lo > 0.9
