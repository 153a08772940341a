"""The whole causal suite (`run_causal`) on the planted Qwen2 model, and the combined
analyses: held-out placements, cross-model directions, checkpoint dynamics."""

from __future__ import annotations

import json

import pytest

from stoplens.analyses.causal import CausalConfig, run_causal
from stoplens.analyses.directions import mean_diff_directions, select_direction
from stoplens.analyses.dynamics import checkpoint_dynamics
from stoplens.analyses.generalization import cross_model, placement_generalization
from stoplens.analyses.results import Nulls
from stoplens.capture.encode import encode_pairs, swap_pairs
from stoplens.interventions.cache import OutcomeCache
from stoplens.interventions.primitives import Ablation, unit
from stoplens.interventions.readout import Readout
from stoplens.models.planted import build_planted, planted_pair_records

CFG = CausalConfig(
    n_random=20, n_random_heldout=20, n_boot=200, patch_max_pairs=16, batch_size=32,
    min_placement_pairs=6, n_examples=2, gen_tokens=2,
)  # fmt: skip


@pytest.fixture(scope="module")
def planted(request):
    pm = build_planted("qwen2")
    pm.model.to(request.config.getoption("--device"))
    pm.base.to(request.config.getoption("--device"))
    return pm


@pytest.fixture(scope="module")
def splits(planted):
    enc = lambda recs, **k: encode_pairs(planted.tokenizer, recs, planted.trigger_id, **k)  # noqa: E731
    train_recs = planted_pair_records(40, 31)
    train = enc(train_recs)
    ctrl = swap_pairs(train, enc(train_recs, control_field="control2"))
    return train, enc(planted_pair_records(24, 32)), enc(planted_pair_records(32, 33)), ctrl


@pytest.fixture(scope="module")
def result(planted, splits):
    train, val, test, ctrl = splits
    return run_causal(
        planted.model, train, val, test, eos_id=planted.eos_id,
        pad_id=planted.tokenizer.pad_token_id, config=CFG, base=planted.base,
        control_pairs=ctrl, tokenizer=planted.tokenizer,
    )  # fmt: skip


def test_run_causal_finds_the_planted_mechanism(planted, result):
    sel = result.selection
    assert abs(float(sel.unit @ planted.direction)) > 0.9 and sel.layer >= planted.residual_layer
    nec, suf = result.necessary, result.sufficient
    assert (
        nec.measured.value == 1.0 and nec.null_mean < 0.1 and nec.p_value == pytest.approx(1 / 21)
    )
    assert suf.measured.value == 1.0 and suf.null_p95 < 0.2 and suf.p_value <= CFG.p_threshold
    assert nec.thresholds == {"min_effect": 0.9, "p_value": 0.05}  # 0.9 x baseline stop rate 1
    assert result.base_control is not None and result.base_control.measured.value == 0.0
    # selection was guided by where patching finds the signal at the decision position
    assert nec.details["guided_by_patching"] is True
    assert planted.layer not in nec.details["candidate_layers"]  # before the head writes
    assert set(nec.details["candidate_layers"]) <= set(range(1, 4))  # never 0 or L
    assert result.cost is not None and result.cost.measured.value < CFG.max_kl
    p = result.patching
    assert p.cell(planted.residual_layer, "last").value > 0.95
    assert abs(p.cell(planted.layer, "last").value) < 0.05
    assert result.patching_noising is not None and result.n_pairs["patching"] == 16


def test_run_causal_general_and_serialisable(result):
    gens = result.generalization
    assert {g.test_placements for g in gens} == {("early",), ("late",)}
    for g in gens:
        assert not set(g.fit_placements) & set(g.test_placements)
        assert g.cos_to_reference > 0.99 and g.heldout.ablation_effect.value == 1.0
        # layer and α were chosen again on VAL pairs of the fit placements only
        assert g.selection is not None and g.selection.passed
        assert set(g.fit_placements) == {"early", "late"} - set(g.test_placements)
    assert result.general_necessary.measured.value == 1.0
    assert len(result.general_necessary.details["per_split"]) == 2
    d = result.to_dict()
    s = json.dumps(d, allow_nan=False)
    assert '"direction":' not in s.replace('"direction": null', "")  # no raw vectors
    assert set(d) == {
        "config", "n_pairs", "patching", "patching_noising", "directions", "control_directions",
        "selection", "effects", "generalization", "base", "necessary", "sufficient",
        "general_necessary", "general_sufficient", "base_control", "cost", "timings_s",
    }  # fmt: skip
    assert d["config"]["kl_threshold"] == CFG.kl_threshold


def test_explicit_placement_split(planted, splits, result):
    train, _, test, _ = splits
    readout = Readout(planted.model, planted.eos_id, planted.tokenizer.pad_token_id)
    g = placement_generalization(
        readout, train, test, fit_placements=["early"], test_placements=["late"],
        layer=result.selection.layer, alpha=result.selection.alpha, nulls=Nulls(16, n_boot=100),
    )  # fmt: skip
    assert g.heldout.ablated_stop_rate.value == 0.0 and g.heldout.added_stop_rate.value == 1.0
    assert g.in_distribution is not None and g.ablation_ratio == pytest.approx(1.0)
    with pytest.raises(ValueError, match="both fitted and held out"):
        placement_generalization(
            Readout(planted.model, planted.eos_id), train, test, fit_placements=["early"],
            test_placements=["early"], layer=2, alpha=1.0,
        )  # fmt: skip


def test_cross_model_direction_controls_the_other_model(planted, splits, result):
    """A second planted model with another seed (its own tokenizer, so its own pairs): its
    u' differs from u, so A's direction controls A but not B."""
    other = build_planted("qwen2", seed=1)
    other.model.to(next(planted.model.parameters()).device)
    _, _, test, _ = splits
    assert other.tokenizer.pad_token_id == planted.tokenizer.pad_token_id  # specials first
    train_b = encode_pairs(other.tokenizer, planted_pair_records(24, 34), other.trigger_id)
    pad = other.tokenizer.pad_token_id
    sel_b = select_direction(
        Readout(other.model, other.eos_id, pad),
        mean_diff_directions(other.model, train_b, pad_id=pad),
        encode_pairs(other.tokenizer, planted_pair_records(16, 35), other.trigger_id),
    )  # fmt: skip
    test_b = encode_pairs(other.tokenizer, planted_pair_records(12, 36), other.trigger_id)
    res = cross_model(
        Readout(planted.model, planted.eos_id, pad), Readout(other.model, planted.eos_id, pad),
        result.selection, sel_b, test.subset(range(12)), pairs_b=test_b,
        labels=("knowledge", "behavioral"), nulls=Nulls(16, n_boot=100),
    )  # fmt: skip
    e = res.effects
    assert set(e) == {"knowledge_on_knowledge", "knowledge_on_behavioral",
                      "behavioral_on_knowledge", "behavioral_on_behavioral"}  # fmt: skip
    assert e["knowledge_on_knowledge"].ablation_effect.value == 1.0
    assert e["behavioral_on_behavioral"].ablation_effect.value == 1.0
    assert e["knowledge_on_behavioral"].ablation_effect.value < 0.5
    assert abs(res.cos_selected) < 0.5 and set(res.cos_by_layer) == set(range(5))
    json.dumps(res.to_dict(), allow_nan=False)


def test_checkpoint_dynamics_series(planted, splits, result, capsys, monkeypatch):
    monkeypatch.setenv("STOPLENS_PROGRESS", "lines")
    train, _, test, _ = splits
    calls = []

    def peak(step, model):
        calls.append(step)
        return None if step == 0 else 1.5

    series = checkpoint_dynamics(
        [(10, planted.model), (0, lambda: planted.base)], test.subset(range(12)),
        eos_id=planted.eos_id, layer=result.selection.layer,
        pad_id=planted.tokenizer.pad_token_id, direction=result.selection.direction,
        fit_pairs=train.subset(range(16)), metrics={"layerwise_peak": peak}, progress=True,
    )  # fmt: skip
    assert "causal: checkpoints" in capsys.readouterr().err  # a long stage is never silent
    assert series.steps == (0, 10) and calls == [0, 10]
    assert [e.value for e in series.stop_rate] == [0.0, 1.0]
    assert series.ablation_effect_fixed == (0.0, 1.0)
    assert series.ablation_effect_own[1] == 1.0 and series.cos_own_to_fixed[1] > 0.99
    assert series.metrics == {"layerwise_peak": (None, 1.5)}
    json.dumps(series.to_dict(), allow_nan=False)


def test_checkpoint_dynamics_reads_a_cached_model_through_its_cache(planted, splits, result):
    """A checkpoint that is the final model itself reads the outcomes the causal suite already
    computed (same numbers, fewer forward passes); another model never uses that cache."""
    train, _, test, _ = splits
    kw = dict(
        eos_id=planted.eos_id, layer=result.selection.layer,
        pad_id=planted.tokenizer.pad_token_id, direction=result.selection.direction,
        fit_pairs=train.subset(range(16)),
    )  # fmt: skip
    pairs = test.subset(range(12))
    ckpts = [(10, planted.model), (0, lambda: planted.base)]
    plain = checkpoint_dynamics(ckpts, pairs, **kw)
    cache = OutcomeCache(planted.model, planted.eos_id)
    readout = Readout(planted.model, planted.eos_id, planted.tokenizer.pad_token_id)
    cache.read(readout, pairs.trig_ids, None)
    cache.read(readout, pairs.ctrl_ids, None)
    cache.read(readout, pairs.trig_ids, Ablation(unit(result.selection.direction)))
    before = cache.forwards
    cached = checkpoint_dynamics(ckpts, pairs, caches=(cache,), **kw)
    assert cached.to_dict() == plain.to_dict()
    assert cache.hits >= 3 * len(pairs)  # stop, false stop and the fixed ablation: all reused
    assert cache.forwards - before == len(pairs)  # only the own direction's ablation ran


def test_config_validation():
    with pytest.raises(ValueError, match=">= 16"):
        CausalConfig(n_random=8)
    with pytest.raises(ValueError, match="can never give"):
        CausalConfig(n_random=16)  # smallest empirical p = 1/17 > 0.05
    with pytest.raises(ValueError, match="alphas"):
        CausalConfig(alphas=())
    assert CausalConfig(n_random=16, p_threshold=0.1).n_random == 16


def test_patch_layers_grid_keeps_both_ends_on_deep_models():
    cfg = CausalConfig()
    assert cfg.patch_layers(4) == (0, 1, 2, 3, 4)  # shallow: every residual layer
    assert cfg.patch_layers(15) == tuple(range(16))
    assert cfg.patch_layers(30) == tuple(range(0, 31, 2))  # 30 blocks: every second layer
    deep = cfg.patch_layers(80)
    assert len(deep) == 16 and deep[0] == 0 and deep[-1] == 80
    assert CausalConfig(patch_max_layers=None).patch_layers(30) == tuple(range(31))
    with pytest.raises(ValueError, match="patch_max_layers"):
        CausalConfig(patch_max_layers=1)
