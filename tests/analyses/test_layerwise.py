"""Analysis 1 (layerwise Δ) on planted models: it must find the planted layer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stoplens.analyses.layerwise import (
    TOO_SHALLOW,
    ShapeConfig,
    classify_shape,
    layerwise_delta,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def _result(case):
    return case.result("layerwise", lambda: layerwise_delta(case.ds))


def test_locates_the_planted_layer(case):
    r = _result(case)
    s = r.summary["last"]
    assert s.largest_increase_layer == case.answer
    assert s.largest_increase_layer_abs == case.answer
    assert s.peak_layer >= case.answer and s.peak_layer_rel >= case.answer
    assert r.summary["post"].largest_increase_layer == case.answer


def test_effect_is_beyond_the_null_and_the_base(case):
    r = _result(case)
    j = case.ds.layer_pos(case.answer)
    for kind in ("last", "post"):
        p = r.profiles[kind]
        # the trigger's CI lies far above the null's and the base's
        assert p["trigger"].rel_norm.lo[j] > 10 * p["null"].rel_norm.hi[j]
        assert p["trigger"].rel_norm.lo[j] > 10 * p["base_trigger"].rel_norm.hi[j]
        assert p["trigger"].norm_mean_delta.lo[j] > 10 * p["null"].norm_mean_delta.hi[j]
        # before the planted layer the trigger's Δ is as small as a word swap
        before = [i for i, layer in enumerate(r.layers) if layer < case.answer]
        assert (p["trigger"].rel_norm.value[before] < 0.2).all()


def test_ci_brackets_the_value_and_json_is_clean(case):
    r = _result(case)
    p = r.profiles["last"]["trigger"]
    for s in (p.norm_mean_delta, p.mean_norm_delta, p.rel_norm, p.mean_norm_h):
        assert np.all(s.lo <= s.value + 1e-12) and np.all(s.value <= s.hi + 1e-12)
        assert s.n == case.ds.n
    d = r.to_dict()
    text = json.dumps(d, allow_nan=False)
    assert d["shape"] == TOO_SHALLOW  # 4 blocks: no shape is called
    assert d["summary"]["last"]["basis"] == "fixed-token null"
    assert set(d["profiles"]) == {"last", "post", "trigger"}
    assert set(d["profiles"]["last"]) == {
        "trigger", "null", "fixed", "base_trigger", "base_null", "base_fixed",
    }  # fmt: skip
    assert "NaN" not in text


@pytest.mark.parametrize("layer,expected", [(1, "early spike"), (4, "mid peak"), (6, "late spike")])
def test_shape_names_the_band_of_the_step_in_a_deep_model(planted_cases, layer, expected):
    """9 blocks: the planted step lands at residual layer + 1 (depth 2/9, 5/9, 7/9); the shape
    is read from the excess over the fixed-token null without residual 0 and is stable under
    prompt resampling."""
    case = planted_cases.get("qwen2", layer, n_layers=9)
    r = layerwise_delta(case.ds)
    s = r.summary["last"]
    assert s.largest_increase_layer == case.answer
    assert r.shape == expected
    assert s.shape_stability is not None and s.shape_stability >= 0.9
    assert 0 not in s.summary_layers
    assert case.answer in r.bands[{"early spike": "early", "mid peak": "mid"}.get(r.shape, "late")]
    # the excess over the fixed-token null is ~0 before the planted step, large after it
    j = case.ds.layer_pos(case.answer)
    assert s.excess_rel is not None and s.excess_rel.lo[j] > 0.5
    assert abs(s.excess_rel.value[case.ds.layer_pos(case.answer - 1)]) < 0.1


def test_fixed_token_null_is_a_real_token_swap(qwen_case):
    """The fixed-token null swaps one ordinary token against the same controls: its Δ is
    not zero (a token swap moves the stream) but carries no planted signal."""
    r = _result(qwen_case)
    j = qwen_case.ds.layer_pos(qwen_case.answer)
    p = r.profiles["last"]
    assert p["fixed"].rel_norm.value[j] > 0
    assert p["trigger"].rel_norm.lo[j] > 10 * p["fixed"].rel_norm.hi[j]
    assert qwen_case.ds.fixed_token is not None
    assert qwen_case.ds.fixed_token[0] != qwen_case.pm.trigger_id


def test_trigger_position_is_reported_separately(qwen_case):
    r = _result(qwen_case)
    p = r.profiles["trigger"]["trigger"]
    # at the trigger position the embedding itself differs (Δ at residual 0 is not zero)
    assert p.mean_norm_delta.value[0] > 0
    assert r.profiles["last"]["trigger"].mean_norm_delta.value[0] == 0.0


DEPTH = np.linspace(0, 1, 13)


@pytest.mark.parametrize(
    "profile,shape",
    [
        (np.full(13, 0.01), "flat"),
        (np.r_[0, 0, 2, np.full(10, 2.0)], "early spike"),
        (np.linspace(0, 2, 13), "ramp"),
        (np.r_[np.zeros(6), np.full(7, 2.0)], "mid peak"),
        (np.r_[0, 0.5, 1, 1.5, 2, 2.5, 3, 2.5, 2, 1.5, 1, 0.5, 0.2], "mid peak"),
        (np.r_[np.zeros(11), 2.0, 2.0], "late spike"),
    ],
)
def test_classify_shape(profile, shape):
    assert classify_shape(profile, DEPTH, ShapeConfig()) == shape
