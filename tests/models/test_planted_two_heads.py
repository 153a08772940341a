"""Known answer of the "two_heads" variant (GPT-2, 6 blocks): two position-gated heads write
u1 or u2 per prompt, an OR in the last block's MLP reads them. Measured with the project's own
intervention primitives on `planted_pair_records` prompts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stoplens.capture.encode import encode_pairs
from stoplens.capture.hooks import add_hooks
from stoplens.interventions.primitives import Ablation, Addition
from stoplens.models import arch
from stoplens.models.planted import build_planted, planted_pair_records

from .conftest import SpanAblation, decision_residuals, outcomes, stop_rate

SIGMA = 4.0  # build_planted's default sigma: the size of each head's Δ


@pytest.fixture(scope="module")
def case():
    pm = build_planted("gpt2", variant="two_heads")
    ep = encode_pairs(pm.tokenizer, planted_pair_records(128, 3), pm.trigger_id)
    delta = decision_residuals(pm.model, ep.trig_ids) - decision_residuals(pm.model, ep.ctrl_ids)
    fires = np.array([pm.firing_head(p) for p in ep.trigger_pos])  # 0: u1 (even), 1: u2 (odd)
    return pm, ep, delta, fires


def test_known_answer_record(case):
    pm, _, _, _ = case
    assert pm.variant == "two_heads" and pm.family == "gpt2"
    assert pm.heads == ((1, 0), (2, 1)) and pm.readout_layer == 5 == arch.n_layers(pm.model) - 1
    assert pm.residual_layer == 2
    u1, u2 = pm.directions
    vecs = torch.stack([pm.key_direction, u1, u2, pm.readout_direction, pm.position_direction])
    assert torch.allclose(vecs @ vecs.T, torch.eye(5), atol=1e-5)
    assert torch.allclose(pm.direction, (u1 + u2) / 2**0.5, atol=1e-6)
    assert [pm.firing_head(t) for t in (4, 5, 6)] == [0, 1, 0]


def test_stops_on_trigger_not_on_controls(case):
    pm, ep, _, _ = case
    assert stop_rate(pm, ep.trig_ids) >= 0.95
    assert stop_rate(pm, ep.ctrl_ids) <= 0.05


def test_per_prompt_delta_lies_along_u1_or_u2(case):
    """At every residual between the heads and the readout, each prompt's Δ is along the
    direction of the head its trigger's position parity selects; about half the prompts each
    (measured: 47% odd / 53% even over many prompts; 58/70 of these 128); the top two
    uncentred directions share the Δ energy, so "one direction" must fail."""
    pm, _, delta, fires = case
    assert 0.3 < fires.mean() < 0.7, fires.mean()
    u = torch.stack(pm.directions)  # [2, d]
    first, readout = pm.heads[1][0] + 1, pm.readout_layer
    for k in range(first, readout + 1):
        d = delta[:, k]
        cos = (d @ u.T) / d.norm(dim=-1, keepdim=True)  # [n, 2]
        own = cos[torch.arange(len(d)), torch.as_tensor(fires)]
        assert own.min() > 0.95, (k, own.min())
        size = d.norm(dim=-1)
        assert 0.9 < size[fires == 0].mean() / size[fires == 1].mean() < 1.1  # equal sizes
        energy = torch.linalg.svdvals(d) ** 2
        share = energy / energy.sum()
        assert 0.4 < share[0] < 0.7 and share[:2].sum() > 0.98, (k, share[:3])
    # after the first head only: the even prompts carry u1, the odd ones nothing yet
    d = delta[:, pm.residual_layer]
    assert (d[fires == 0] @ u[0]).min() > 0.8 * SIGMA
    assert d[fires == 1].norm(dim=-1).max() < 0.05


def test_each_direction_alone_is_sufficient(case):
    pm, ep, _, _ = case
    for k in range(pm.heads[1][0] + 1, pm.readout_layer + 1):
        for u in pm.directions:
            assert stop_rate(pm, ep.ctrl_ids, Addition(SIGMA * u, k)) >= 0.95


def test_one_direction_is_not_necessary_but_the_span_is(case):
    pm, ep, delta, fires = case
    mean_diff = delta[:, pm.readout_layer].mean(0)  # the data's difference-in-means direction
    assert float(mean_diff @ pm.direction) / float(mean_diff.norm()) > 0.95
    assert stop_rate(pm, ep.trig_ids, Ablation(mean_diff)) >= 0.8
    assert stop_rate(pm, ep.trig_ids, Ablation(pm.direction)) >= 0.8
    assert stop_rate(pm, ep.trig_ids, SpanAblation(pm.directions)) <= 0.1
    # ablating one head's direction removes exactly that head's prompts
    for i, u in enumerate(pm.directions):
        stops, _ = outcomes(pm, ep.trig_ids, Ablation(u))
        assert (stops == (fires != i)).all()


def test_both_heads_matter_and_no_other_head_does(case):
    """Zeroing one head's output (its slice of the attention output projection's input)
    removes the stop on exactly the prompts whose parity selects it; zeroing any other head
    of any block leaves every triggered prompt stopping."""
    pm, ep, _, fires = case
    ep, fires = ep.subset(range(64)), fires[:64]  # 24 knock-outs: half the prompts suffice
    assert 0 < fires.sum() < 64
    n_heads = int(pm.model.config.n_head)
    hd = arch.d_model(pm.model) // n_heads
    for block in range(arch.n_layers(pm.model)):
        for head in range(n_heads):

            def knock_out(module, args, kwargs, head=head):
                x = args[0].clone()
                x[..., head * hd : (head + 1) * hd] = 0.0
                return (x, *args[1:]), kwargs

            c_proj = pm.model.transformer.h[block].attn.c_proj  # GPT-2 only, like the variant
            with add_hooks([(c_proj, knock_out)]):
                stops, _ = outcomes(pm, ep.trig_ids)
            if (block, head) in pm.heads:
                assert (stops == (fires != pm.heads.index((block, head)))).all()
            else:
                assert stops.all(), (block, head)
