"""Difference-in-means directions and their selection on the planted model: the selected
direction must be the planted one (|cos| > 0.9 with ``direction``), taken at a layer at or
after the planted block's output, never layer 0 or the last 20% of depth."""

from __future__ import annotations

import json

import pytest
import torch

from stoplens.analyses.directions import (
    SelectionCriteria,
    allowed_layers,
    mean_diff_directions,
    select_direction,
)
from stoplens.capture.encode import encode_pairs, swap_pairs
from stoplens.interventions.readout import Readout
from stoplens.models.planted import build_planted, planted_pair_records


@pytest.fixture(scope="module", params=["qwen2", "llama", "gpt2"])
def setup(request):
    pm = build_planted(request.param)
    pm.model.to(request.config.getoption("--device"))
    pm.base.to(request.config.getoption("--device"))
    enc = lambda recs, **k: encode_pairs(pm.tokenizer, recs, pm.trigger_id, **k)  # noqa: E731
    train, val = enc(planted_pair_records(40, 11)), enc(planted_pair_records(24, 12))
    pad = pm.tokenizer.pad_token_id
    dirs = mean_diff_directions(pm.model, train, pad_id=pad, batch_size=16)
    sel = select_direction(Readout(pm.model, pm.eos_id, pad, batch_size=16), dirs, val)
    return pm, train, dirs, sel


def test_mean_difference_is_the_planted_direction(setup):
    pm, _, dirs, _ = setup
    u = pm.direction.double()
    assert dirs.layers == tuple(range(5)) and dirs.directions.shape == (5, 64)
    assert dirs.norms[0] == 0.0  # the last position's embedding is the same in both prompts
    for layer in dirs.layers:
        r = dirs.get(layer).double()
        if layer >= pm.residual_layer:
            assert abs(float(r @ u / r.norm())) > 0.99
            assert dirs.norms[layer] > 100 * dirs.norms[pm.layer]
    json.dumps(dirs.to_dict(), allow_nan=False)


def test_selected_direction_matches_the_planted_one(setup):
    pm, _, _, sel = setup
    cos = float(sel.unit.double() @ pm.direction.double())
    assert abs(cos) > 0.9, cos
    assert sel.passed and sel.layer >= pm.residual_layer
    assert sel.layer in allowed_layers(4, 0.2) and sel.alpha in (0.5, 1.0, 2.0, 4.0)
    assert str(sel.layer) in sel.reason


def test_sweep_reports_every_layer_and_its_filters(setup):
    pm, _, _, sel = setup
    by_layer = {c.layer: c for c in sel.candidates}
    assert sorted(by_layer) == [0, 1, 2, 3, 4]
    assert by_layer[0].filters == {"layer": False, "nonzero": False}  # Δ = 0 exactly
    assert not by_layer[4].filters["layer"]  # last 20% of depth
    early = by_layer[pm.layer]  # before the head has written u: ablating it does nothing
    assert not early.filters["ablation"] and early.ablation_stop_rate == 1.0
    chosen = by_layer[sel.layer]
    assert chosen.passed and chosen.ablation_stop_rate == 0.0 and chosen.addition_stop_rate == 1.0
    assert chosen.kl <= 0.1 and len(chosen.addition) == 4
    assert sel.baseline["triggered_stop_rate"] == 1.0 and sel.baseline["clean_stop_rate"] == 0.0
    d = sel.to_dict()
    json.dumps(d, allow_nan=False)
    assert {"layer", "alpha", "passed", "reason", "candidates", "baseline", "thresholds",
            "directions", "direction_norm"} <= set(d)  # fmt: skip
    assert "direction" not in d  # the raw vector stays out of results.json


def test_accumulation_is_chunk_invariant_and_float64(setup):
    pm, train, dirs, _ = setup
    pad = pm.tokenizer.pad_token_id
    again = mean_diff_directions(pm.model, train, pad_id=pad, batch_size=5, chunk_size=7)
    torch.testing.assert_close(again.directions, dirs.directions, atol=1e-6, rtol=1e-5)
    one = mean_diff_directions(pm.model, train, layers=[3], pad_id=pad)
    torch.testing.assert_close(one.get(3), dirs.get(3), atol=1e-6, rtol=1e-5)


def test_control_vs_control_direction_is_small(setup):
    pm, train, dirs, _ = setup
    recs = planted_pair_records(40, 11)
    c2 = encode_pairs(pm.tokenizer, recs, pm.trigger_id, control_field="control2")
    null = mean_diff_directions(pm.model, swap_pairs(train, c2), pad_id=pm.tokenizer.pad_token_id)
    R = pm.residual_layer
    assert null.norms[R] < 0.1 * dirs.norms[R]


def test_selection_refuses_a_model_without_eligible_layers(setup):
    pm, train, dirs, _ = setup
    with pytest.raises(ValueError, match="no eligible layer"):
        select_direction(
            Readout(pm.model, pm.eos_id), dirs, train,
            criteria=SelectionCriteria(prune_last_fraction=0.9, alphas=(1.0,)),
        )  # fmt: skip


@pytest.mark.parametrize("planted_layer", [0, 2])
def test_selection_follows_the_planted_layer(planted_layer, request):
    pm = build_planted("llama", layer=planted_layer)
    pm.model.to(request.config.getoption("--device"))
    pad = pm.tokenizer.pad_token_id
    train = encode_pairs(pm.tokenizer, planted_pair_records(24, 13), pm.trigger_id)
    val = encode_pairs(pm.tokenizer, planted_pair_records(16, 14), pm.trigger_id)
    dirs = mean_diff_directions(pm.model, train, pad_id=pad)
    sel = select_direction(
        Readout(pm.model, pm.eos_id, pad), dirs, val, criteria=SelectionCriteria(alphas=(1.0,))
    )
    assert sel.passed and sel.layer >= pm.residual_layer
    assert abs(float(sel.unit @ pm.direction)) > 0.9
    # before the planted block's output the mean difference carries no stop signal
    for c in sel.candidates:
        if c.layer < pm.residual_layer and c.filters["nonzero"]:
            assert not c.filters["ablation"] and not c.filters["addition"]
