"""The smallest-subspace sweep on the planted single-head model (k = 1, along u) and its
negative control (the unplanted base: nothing to remove, no k), plus the span helpers."""

from __future__ import annotations

import json

import pytest
import torch

from stoplens.analyses.component_suite import _subspace_condition
from stoplens.analyses.subspace import (
    SubspaceConfig,
    independent_span,
    random_subspace,
    smallest_subspace,
)
from stoplens.capture.encode import encode_pairs
from stoplens.capture.sites import Component
from stoplens.models.planted import build_planted, planted_pair_records

pytestmark = pytest.mark.usefixtures("single_thread")
CFG = SubspaceConfig(k_max=2, n_random=19, n_boot=200)


@pytest.fixture(scope="module")
def planted():
    pm = build_planted("llama", layer=1)
    enc = lambda recs: encode_pairs(pm.tokenizer, recs, pm.trigger_id)  # noqa: E731
    return pm, enc(planted_pair_records(32, 11)), enc(planted_pair_records(24, 12))


def test_single_head_needs_one_direction(planted):
    pm, train, test = planted
    sub = smallest_subspace(
        pm.model, train, test, layer=pm.residual_layer, eos_id=pm.eos_id,
        pad_id=pm.tokenizer.pad_token_id, components=[Component(1, 0), Component(2)],
        config=CFG, progress=False,
    )  # fmt: skip
    assert sub.smallest_k == 1 and sub.baseline_stop_rate.value == 1.0
    fam = sub.families["train_delta"]
    assert abs(float(fam.basis[0] @ pm.direction)) > 0.99 and fam.energy[0] > 0.99
    step = fam.steps[0]
    assert step.effect.value == 1.0 and step.null.null_p95 < 0.2 and step.kl.value < CFG.max_kl
    # only components before the judged layer write into it: MLP2 is left out
    assert sub.families["component_writes"].sources == ("L1H0",)
    json.dumps(sub.to_dict(), allow_nan=False)


def test_base_model_has_no_smallest_k(planted):
    pm, train, test = planted
    sub = smallest_subspace(pm.base, train, test, layer=2, eos_id=pm.eos_id,
                            pad_id=pm.tokenizer.pad_token_id, config=CFG, progress=False)  # fmt: skip
    assert sub.baseline_stop_rate.value == 0.0
    assert sub.smallest_k is None
    assert all(not s.necessary for s in sub.families["train_delta"].steps)
    what, _ = _subspace_condition(sub)
    assert what.endswith("k = 2; it did not remove stopping)")


def test_random_null_runs_only_where_k_can_be_the_answer(planted, monkeypatch):
    """A span that removes every stop but is not cheap cannot be the sweep's answer: the
    family's first such k is still judged against the null, a larger one is not (necessity
    None, no null run); ``full_null`` runs and judges every k."""
    import dataclasses

    from stoplens.analyses import subspace as sub_mod

    pm, train, test = planted
    calls = []
    real = sub_mod._random_null
    monkeypatch.setattr(
        sub_mod, "_random_null", lambda *a, **k: calls.append(a[1]) or real(*a, **k)
    )
    kw = dict(layer=pm.residual_layer, eos_id=pm.eos_id, pad_id=pm.tokenizer.pad_token_id,
              components=[Component(1, 0), Component(2)], progress=False)  # fmt: skip
    dear = dataclasses.replace(CFG, max_kl=-1.0)  # nothing is cheap
    sub = smallest_subspace(pm.model, train, test, config=dear, **kw)
    first, second = sub.families["train_delta"].steps
    assert calls == [1] and sub.smallest_k is None  # k = 1's null, shared by the families
    assert first.effect.value == 1.0 and first.necessary is True and first.null is not None
    assert second.effect.value == 1.0 and second.necessary is None
    assert second.null is None and second.kl_null_mean is None and not second.cheap
    assert sub.families["component_writes"].steps[0].necessary is True
    json.dumps(sub.to_dict(), allow_nan=False)
    what, basis = _subspace_condition(sub)  # the generations' condition says why it is not k
    assert "k = 2; it removes the stops, but not cheaply: KL" in what and basis.shape[0] == 2
    calls.clear()
    full = smallest_subspace(
        pm.model, train, test, config=dataclasses.replace(dear, full_null=True), **kw
    )
    assert calls == [1, 2]
    assert all(s.necessary is True for s in full.families["train_delta"].steps)


def test_span_helpers():
    d = 16
    q = random_subspace(d, 3, seed=1)
    torch.testing.assert_close(q @ q.T, torch.eye(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(random_subspace(d, 3, seed=1), q)
    v = torch.stack([q[0], 2 * q[0], q[1] + 1e-9 * q[2], q[2]])
    basis, used, _ = independent_span(v, ["a", "b", "c", "d"], k=3)
    assert used == ("a", "c", "d") and basis.shape == (3, d)
    torch.testing.assert_close(basis @ basis.T, torch.eye(3), atol=1e-5, rtol=0)


def test_null_on_fewer_pairs_still_finds_the_single_direction(planted):
    """With the random null on 8 of the 24 TEST pairs (stratified by placement), k = 1 still
    removes the stops beyond the null; its drop is ranked on the same 8 pairs."""
    import dataclasses

    pm, train, test = planted
    sub = smallest_subspace(
        pm.model, train, test, layer=pm.residual_layer, eos_id=pm.eos_id,
        pad_id=pm.tokenizer.pad_token_id, config=dataclasses.replace(CFG, null_prompts=8),
        progress=False,
    )  # fmt: skip
    step = sub.families["train_delta"].steps[0]
    assert sub.smallest_k == 1 and step.null.n_prompts == 8 and step.null.observed == 1.0
    assert step.null.p_value == 1 / 20 and step.effect.n == 24
    with pytest.raises(ValueError, match="null_prompts"):
        SubspaceConfig(null_prompts=2)
