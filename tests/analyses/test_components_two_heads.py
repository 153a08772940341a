"""Known answer for the component suite on the planted "two_heads" model (GPT-2, 6 blocks): two
position-gated heads, (1, 0) writing u1 and (2, 1) writing u2, each serving about half the
prompts, and an OR readout in the last block's MLP. Both heads (and the readout) are found
beyond the null and nothing else is; one direction is not enough (k = 1 removes the stop only
on one head's prompts), the span of two is (smallest k = 2), in both subspace families."""

from __future__ import annotations

import pytest
import torch

from stoplens.analyses.components import ComponentConfig, component_patching
from stoplens.analyses.subspace import SubspaceConfig, smallest_subspace
from stoplens.capture.encode import encode_pairs, swap_pairs
from stoplens.capture.sites import Component
from stoplens.models.planted import build_planted, planted_pair_records

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def two_heads(request):
    pm = build_planted("gpt2", variant="two_heads")
    pm.model.to(request.config.getoption("--device"))
    enc = lambda recs, **k: encode_pairs(pm.tokenizer, recs, pm.trigger_id, **k)  # noqa: E731
    recs = planted_pair_records(24, 3)
    pairs = enc(recs)
    null = swap_pairs(pairs, enc(recs, control_field="control2"))
    res = component_patching(
        pm.model, pairs, eos_id=pm.eos_id, pad_id=pm.tokenizer.pad_token_id, null_pairs=null,
        config=ComponentConfig(groups=("suffix", "post"), n_boot=200), progress=False,
    )  # fmt: skip
    return pm, enc, res


def test_both_heads_and_the_readout_found(two_heads):
    pm, _, res = two_heads
    heads = {f"L{b}H{h}" for b, h in pm.heads}
    found = {r.name for r in res.ranking if all(r.beyond_null.values())}
    assert found == heads | {f"MLP{pm.readout_layer}"}, found
    assert not [r.name for r in res.ranking if any(r.beyond_null.values()) and r.name not in found]
    for r in res.ranking:
        if r.name in heads:  # each head carries the stop of about half the prompts
            assert 0.25 < r.exact["denoising"].value < 0.75 and r.rank <= 3
    att = {a.name: a for a in res.attention}
    for h in heads:  # attends to the trigger only when the trigger's parity selects it
        assert 0.25 < att[h].to_trigger.value < 0.75 and att[h].difference.lo > 0.2


def test_smallest_k_is_two_and_one_direction_is_not_necessary(two_heads):
    pm, enc, res = two_heads
    train, test = enc(planted_pair_records(48, 5)), enc(planted_pair_records(32, 6))
    top = [Component.parse(r.name) for r in res.ranking[:6]]
    sub = smallest_subspace(
        pm.model, train, test, layer=pm.readout_layer - 1, eos_id=pm.eos_id,
        pad_id=pm.tokenizer.pad_token_id, components=top,
        config=SubspaceConfig(k_max=3, n_random=19, n_boot=200), progress=False,
    )  # fmt: skip
    assert sub.smallest_k == 2
    u = torch.stack(pm.directions)
    for name in ("train_delta", "component_writes"):
        fam = sub.families[name]
        assert fam.smallest_k == 2, name
        assert fam.steps[0].necessary is False and fam.steps[0].effect.value < 0.9
        assert fam.steps[1].ablated_stop_rate.value <= 0.1 and fam.steps[1].cheap
        # the two-dimensional span is span(u1, u2)
        proj = fam.basis[:2] @ u.T  # [2, 2]
        assert torch.linalg.svdvals(proj).min() > 0.98, name
    assert set(sub.families["component_writes"].sources[:2]) == {f"L{b}H{h}" for b, h in pm.heads}
