"""Activation patching on the planted model: the known answer is the planted layer.

Planted mechanism (see `stoplens.models.planted`): the trigger's embedding carries a key that
a head in block ``layer`` reads at the trigger position and writes, as +u, at every later
position. So at the last position the stop appears in residual[layer + 1] onward, and at the
trigger position it lives in residual[0..layer] (before the head has moved it)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stoplens.analyses.patching import (
    activation_patching,
    patch_residual_stream,
    position_groups,
)
from stoplens.capture.encode import encode_pairs
from stoplens.capture.extract import capture_residuals, last_logits, stop_score
from stoplens.capture.hooks import residual_edit_hooks
from stoplens.models.planted import build_planted, planted_pair_records


@pytest.fixture(scope="module", params=["qwen2", "llama", "gpt2"])
def setup(request):
    pm = build_planted(request.param)
    pm.model.to(request.config.getoption("--device"))
    pm.base.to(request.config.getoption("--device"))
    pairs = encode_pairs(pm.tokenizer, planted_pair_records(24, 3), pm.trigger_id)
    kw = dict(eos_id=pm.eos_id, pad_id=pm.tokenizer.pad_token_id, n_boot=200, batch_size=16)
    groups = ("trigger", "after", "post", "last", "suffix")
    return (
        pm,
        pairs,
        kw,
        {
            "denoising": activation_patching(
                pm.model, pairs, mode="denoising", groups=groups, **kw
            ),
            "noising": activation_patching(pm.model, pairs, mode="noising", groups=groups, **kw),
        },
    )


def test_denoising_lights_up_the_planted_layer(setup):
    pm, _, _, res = setup
    r = res["denoising"]
    L, R = len(r.layers) - 1, pm.residual_layer
    assert r.mode == "denoising" and r.n_excluded == 0 and r.mean.shape == (L + 1, 5)
    for layer in r.layers:
        last = r.cell(layer, "last").value
        trig = r.cell(layer, "trigger").value
        if layer >= R:
            assert last > 0.95, (layer, last)  # the stop lives at the last position
            assert abs(trig) < 0.05, (layer, trig)  # ... and no longer needs the trigger
        else:
            assert abs(last) < 0.05, (layer, last)
            assert trig > 0.95, (layer, trig)  # not yet moved: the trigger row carries it
        assert r.cell(layer, "suffix").value == pytest.approx(1.0, abs=1e-3)
        assert abs(r.cell(layer, "after").value) < 0.05  # nothing is read from there


def test_noising_is_the_mirror_image(setup):
    pm, _, _, res = setup
    r = res["noising"]
    for layer in r.layers:
        last, trig = r.cell(layer, "last").value, r.cell(layer, "trigger").value
        if layer >= pm.residual_layer:
            assert last < 0.05 and trig > 0.95
        else:
            assert last > 0.95 and trig < 0.05
        assert r.cell(layer, "suffix").value == pytest.approx(0.0, abs=1e-3)


def test_cells_carry_cis_and_counts_and_serialise(setup):
    _, pairs, _, res = setup
    r = res["denoising"]
    ok = ~np.isnan(r.mean)
    assert (r.lo[ok] <= r.mean[ok] + 1e-9).all() and (r.mean[ok] <= r.hi[ok] + 1e-9).all()
    gi = r.groups.index("after")
    n_after = sum(1 for p in r.group_positions["after"] if p)
    assert (r.n[:, gi] == n_after).all() and (r.n[:, r.groups.index("last")] == len(pairs)).all()
    d = r.to_dict()
    json.dumps(d, allow_nan=False)
    assert set(d) >= {"mean", "lo", "hi", "n", "layers", "groups", "group_positions",
                      "group_rules", "per_pair", "valid", "n_excluded"}  # fmt: skip


def test_position_groups_hold_what_they_say():
    pm = build_planted("llama")
    pairs = encode_pairs(pm.tokenizer, planted_pair_records(10, 5), pm.trigger_id)
    g = position_groups(pairs, ("trigger", "after", "post", "last", "suffix"))
    k = pairs.post_instruction
    for i, (ids, t) in enumerate(zip(pairs.trig_ids, pairs.trigger_pos, strict=True)):
        T = len(ids)
        assert g["trigger"][i] == [t] and g["last"][i] == [T - 1]
        assert g["post"][i] == list(range(T - k, T))
        assert g["after"][i] + g["post"][i] == list(range(t + 1, T))
        assert g["suffix"][i] == list(range(t, T))
    with pytest.raises(ValueError, match="unknown position group"):
        position_groups(pairs, ("nowhere",))


def test_patching_source_into_itself_changes_nothing(setup):
    pm, pairs, kw, _ = setup
    groups = position_groups(pairs, ("suffix", "last"))
    out = patch_residual_stream(
        pm.model, pairs.trig_ids, pairs.trig_ids, groups, eos_id=pm.eos_id,
        layers=[0, pm.residual_layer], pad_id=kw["pad_id"], chunk_size=7,
    )  # fmt: skip
    ref = stop_score(last_logits(pm.model, pairs.trig_ids, pad_id=kw["pad_id"], progress=False), pm.eos_id)  # fmt: skip
    np.testing.assert_allclose(out.numpy(), ref[:, None, None].expand_as(out).numpy(), atol=1e-4)


def test_pairs_without_a_gap_are_excluded(setup):
    """On the base model trig and control stop scores are nearly equal: every pair is
    excluded by the guard, the cells are empty (NaN -> None in JSON), not garbage."""
    pm, pairs, kw, _ = setup
    pairs = pairs.subset(range(6))
    r = activation_patching(pm.base, pairs, layers=[0, 2], min_gap=1.0, **kw)
    assert r.n_excluded == len(pairs) and (r.n == 0).all() and np.isnan(r.mean).all()
    d = r.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["mean"][0][0] is None


def test_patching_follows_the_planted_layer(request):
    pm = build_planted("llama", layer=2)
    pm.model.to(request.config.getoption("--device"))
    pairs = encode_pairs(pm.tokenizer, planted_pair_records(12, 9), pm.trigger_id)
    r = activation_patching(
        pm.model, pairs, eos_id=pm.eos_id, pad_id=pm.tokenizer.pad_token_id,
        groups=("trigger", "last"), n_boot=100,
    )  # fmt: skip
    assert [round(r.cell(layer, "last").value) for layer in r.layers] == [0, 0, 0, 1, 1]
    assert [round(r.cell(layer, "trigger").value) for layer in r.layers] == [1, 1, 1, 0, 0]


def test_cells_equal_a_plain_patched_pass(setup):
    """The sweep resumes each cell's pass at the patched block from the stored target run;
    every cell must equal the plain way: one full pass of the target prompt with residual[l]
    overwritten at the group's positions by the source run's values."""
    pm, pairs, kw, _ = setup
    pairs = pairs.subset(range(5))
    groups = position_groups(pairs, ("trigger", "post"))
    pad = kw["pad_id"]
    out = patch_residual_stream(
        pm.model, pairs.trig_ids, pairs.ctrl_ids, groups, eos_id=pm.eos_id, pad_id=pad,
        batch_size=2,
    )  # fmt: skip
    for li in range(out.shape[1]):
        for gi, g in enumerate(groups):
            for i, (src_ids, tgt_ids) in enumerate(
                zip(pairs.trig_ids, pairs.ctrl_ids, strict=True)
            ):
                pos = groups[g][i]
                src = capture_residuals(pm.model, [src_ids], [pos], [li], progress=False)[0, 0]

                def edit(x, pos=pos, src=src):
                    x = x.clone()
                    x[0, pos] = src.to(x.dtype)
                    return x

                hooks = residual_edit_hooks(pm.model, li, edit)
                plain = last_logits(
                    pm.model, [tgt_ids], hook_factory=lambda idx, ids, h=hooks: h, progress=False
                )
                want = float(stop_score(plain, pm.eos_id)[0])
                assert float(out[i, li, gi]) == pytest.approx(want, abs=1e-4), (li, g, i)
