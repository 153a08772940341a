"""Analysis 1 (layerwise Δ) on planted models: it must find the planted layer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stoplens.analyses.layerwise import ShapeConfig, classify_shape, layerwise_delta

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
    assert d["shape"] in ("early spike", "ramp", "mid peak", "late spike", "flat")
    assert set(d["profiles"]) == {"last", "post", "trigger"}
    assert set(d["profiles"]["last"]) == {"trigger", "null", "base_trigger", "base_null"}
    assert "NaN" not in text


def test_shape_names_the_band_of_the_step(case):
    r = _result(case)
    band = {"early": "early spike", "mid": "mid peak", "late": "late spike"}
    depth = case.answer / case.ds.n_layers
    expected = band["early" if depth < 1 / 3 else "mid" if depth < 2 / 3 else "late"]
    assert r.shape == expected
    assert case.answer in r.bands[{"early spike": "early", "mid peak": "mid"}.get(r.shape, "late")]


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
