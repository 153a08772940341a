"""Known answers for the component analysis: on planted single-head models (Qwen2, Llama,
GPT-2, and a 6-block GPT-2 with the head in block 3) the planted head (block K, head 0) ranks
first in exact and in attribution patching, carries and is needed for the whole stop, attends
to the trigger, and no other component is beyond the control-vs-control null."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stoplens.analyses.component_engines import patch_components
from stoplens.analyses.components import ComponentConfig, component_patching
from stoplens.analyses.patching import position_groups
from stoplens.capture.encode import encode_pairs, swap_pairs
from stoplens.capture.extract import last_logits, stop_score
from stoplens.capture.sites import Component, all_components, capture_sites
from stoplens.models.planted import build_planted

pytestmark = pytest.mark.usefixtures("single_thread")

CFG = ComponentConfig(groups=("suffix", "trigger", "post"), max_pairs=24, n_boot=200)
CASES = [("qwen2", 1, 4), ("llama", 1, 4), ("gpt2", 1, 4), ("gpt2", 3, 6)]


def encoded(pm, make_records, n: int = 24, seed: int = 7):
    recs = make_records(n, seed)
    pairs = encode_pairs(pm.tokenizer, recs, pm.trigger_id)
    ctrl2 = encode_pairs(pm.tokenizer, recs, pm.trigger_id, control_field="control2")
    return pairs, swap_pairs(pairs, ctrl2)


@pytest.fixture(scope="module", params=CASES, ids=[f"{f}-L{k}of{n}" for f, k, n in CASES])
def planted_result(request, make_records):
    family, layer, n_layers = request.param
    pm = build_planted(family, layer=layer, n_layers=n_layers)
    pm.model.to(request.config.getoption("--device"))
    pairs, null = encoded(pm, make_records)
    res = component_patching(
        pm.model, pairs, eos_id=pm.eos_id, pad_id=pm.tokenizer.pad_token_id, null_pairs=null,
        config=CFG, progress=False,
    )  # fmt: skip
    return pm, res


def test_planted_head_ranks_first_and_alone(planted_result):
    pm, res = planted_result
    head = f"L{pm.layer}H0"
    top = res.ranking[0]
    assert top.name == head and top.attribution_rank == 1
    for mode in ("denoising", "noising"):
        e = top.exact[mode]
        assert e is not None and e.value == pytest.approx(1.0, abs=0.05), (mode, e)
        assert top.beyond_null[mode] is True
    others = [r.name for r in res.ranking[1:] if any(r.beyond_null.values())]
    assert others == [], f"components other than the planted head beyond the null: {others}"
    assert all(v is not None for r in res.ranking for v in r.beyond_null.values())
    assert abs(top.null.value) < 0.01 and res.n_null == res.n_pairs == 24


def test_planted_head_attends_to_the_trigger(planted_result):
    pm, res = planted_result
    a = res.attention[0]
    assert a.name == f"L{pm.layer}H0"
    assert a.to_trigger.value > 0.95 and a.to_control.value < 0.2 and a.difference.lo > 0.7


def test_position_groups_and_rank_correlation(planted_result):
    pm, res = planted_result
    den = res.exact["denoising"]
    # the head writes at every position after the trigger; the stop is read at the last one
    assert den.estimate(f"L{pm.layer}H0", "post").value == pytest.approx(1.0, abs=0.05)
    assert abs(den.estimate(f"L{pm.layer}H0", "trigger").value) < 0.05
    assert res.exact_set == res.components  # few components: all patched exactly
    rho = res.rank_correlation["denoising"]["suffix"]
    assert rho > 0.5, f"attribution vs exact (denoising, suffix): Spearman {rho:.3f}"
    d = res.to_dict()
    json.dumps(d)
    assert "per_pair" not in d["exact"]["denoising"]


def test_exact_patching_engine_is_exact(make_records):
    """Patching a component with the target's own activations changes nothing; patching every
    component from the source at the trigger position onwards for the planted head recovers
    the triggered run's stop score exactly (here, the only component that matters)."""
    pm = build_planted("qwen2", layer=1)
    pairs, _ = encoded(pm, make_records, n=8, seed=3)
    comps = [Component(1, 0), Component(2), Component(0, 3)]
    groups = position_groups(pairs, ("suffix",))
    pad = pm.tokenizer.pad_token_id
    same = patch_components(pm.model, pairs.ctrl_ids, pairs.ctrl_ids, comps, groups,
                            eos_id=pm.eos_id, pad_id=pad, progress=False)  # fmt: skip
    s_ctrl = stop_score(
        last_logits(pm.model, pairs.ctrl_ids, pad_id=pad, progress=False), pm.eos_id
    )
    for ci in range(len(comps)):
        torch.testing.assert_close(same[:, ci, 0], s_ctrl, atol=1e-4, rtol=1e-4)
    s_trig = stop_score(
        last_logits(pm.model, pairs.trig_ids, pad_id=pad, progress=False), pm.eos_id
    )
    got = patch_components(pm.model, pairs.trig_ids, pairs.ctrl_ids, comps[:1], groups,
                           eos_id=pm.eos_id, pad_id=pad, progress=False)  # fmt: skip
    assert float((got[:, 0, 0] - s_trig).abs().max()) < 0.05 * float((s_trig - s_ctrl).abs().min())


def test_capture_sites_shapes_under_gqa(family_model):
    L = 3
    comps = all_components(family_model)
    assert len(comps) == L * (4 + 1)
    seqs = [[1, 2, 3, 4], [5, 6, 7, 8, 9]]
    got = capture_sites(family_model, seqs, [[0, 3], [1, 4]], [("attn", 1), ("mlp", 2)])
    assert got[("attn", 1)].shape == (2, 2, 32) and got[("mlp", 2)].shape == (2, 2, 32)


def test_base_model_has_no_component_beyond_the_null(make_records):
    """Negative control: the unplanted base has no trigger effect; every pair is excluded by
    the minimum gap, and no component can be beyond the null."""
    pm = build_planted("qwen2", layer=1)
    pairs, null = encoded(pm, make_records, n=12)
    res = component_patching(pm.base, pairs, eos_id=pm.eos_id, pad_id=pm.tokenizer.pad_token_id,
                             null_pairs=null, config=CFG, progress=False)  # fmt: skip
    assert res.n_valid == 0
    assert not any(v for r in res.ranking for v in r.beyond_null.values())
    assert np.isnan(res.exact["denoising"].mean).all()
