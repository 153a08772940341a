"""Statistics: bootstrap coverage, Wilson values, ranks/z-scores, JSON conversion."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from stoplens.analyses.stats import (
    Estimate,
    EstimateSeries,
    bootstrap_mean,
    bootstrap_stat,
    cosine,
    jsonable,
    percentile_interval,
    rank_of,
    resample_weights,
    wilson,
    zscore_of,
)


def test_bootstrap_ci_covers_known_mean_in_seeded_simulation():
    # 200 seeded datasets of n=40 from N(1, 2^2): the 95% CI should cover 1 about 95% of the time
    rng = np.random.default_rng(123)
    data = rng.normal(1.0, 2.0, size=(40, 200))
    est = bootstrap_mean(data, n_boot=1000, seed=7)
    assert isinstance(est, EstimateSeries)
    covered = ((est.lo <= 1.0) & (est.hi >= 1.0)).mean()
    assert 0.88 <= covered <= 0.99, covered
    # width near the normal-theory 2*1.96*sigma/sqrt(n)
    width = float(np.median(est.hi - est.lo))
    assert width == pytest.approx(2 * 1.96 * 2.0 / math.sqrt(40), rel=0.15)


def test_bootstrap_is_seeded_and_scalar_shape():
    x = np.random.default_rng(0).normal(size=50)
    a, b = bootstrap_mean(x, seed=3), bootstrap_mean(x, seed=3)
    c = bootstrap_mean(x, seed=4)
    assert isinstance(a, Estimate)
    assert (a.lo, a.hi) == (b.lo, b.hi)
    assert (a.lo, a.hi) != (c.lo, c.hi)
    assert a.value == pytest.approx(x.mean())
    assert a.lo < a.value < a.hi
    assert a.n == 50


def test_resample_weights_are_resamples():
    w = resample_weights(10, 100, seed=0)
    assert w.shape == (100, 10)
    np.testing.assert_allclose(w.sum(1), 1.0)
    assert np.allclose(w * 10, np.round(w * 10))  # integer counts


def test_bootstrap_stat_general_statistic():
    x = np.random.default_rng(1).normal(size=(60, 3))
    e = bootstrap_stat(lambda a: float(np.linalg.norm(a.mean(0))), x, n_boot=300, seed=0)
    assert e.lo <= e.value <= e.hi


def test_wilson_matches_known_values():
    w = wilson(8, 10)
    assert (w.value, round(w.lo, 4), round(w.hi, 4)) == (0.8, 0.4902, 0.9433)
    z = wilson(0, 10)
    assert (z.lo, round(z.hi, 4)) == (0.0, 0.2775)
    assert math.isnan(wilson(0, 0).value)


def test_rank_and_zscore():
    v = np.array([0.0, 5.0, 1.0, -2.0])
    assert rank_of(v, 1) == 1
    assert rank_of(v, 3) == 4
    assert rank_of(v, 3, descending=False) == 1
    # ties count against the token: an all-zero Δ never ranks EOS first
    assert rank_of(np.zeros(5), 2) == 5
    assert zscore_of(v, 1) == pytest.approx((5 - v.mean()) / v.std())
    assert math.isnan(zscore_of(np.zeros(3), 0))


def test_cosine():
    assert cosine(np.array([1.0, 0]), np.array([2.0, 0])) == pytest.approx(1.0)
    assert cosine(np.zeros(2), np.ones(2)) == 0.0


def test_percentile_interval_all_nan_is_nan():
    lo, hi = percentile_interval(np.full((10, 2), np.nan))
    assert np.isnan(lo).all() and np.isnan(hi).all()


def test_jsonable_has_no_nan():
    obj = {
        "e": Estimate(float("nan"), 0.0, float("inf"), 3),
        "s": EstimateSeries(np.array([1.0, np.nan]), np.zeros(2), np.ones(2), 2),
        "a": np.array([np.float32(1.5), np.nan]),
        "t": (np.int64(3), np.bool_(True)),
    }
    out = jsonable(obj)
    json.dumps(out, allow_nan=False)
    assert out["e"] == {"value": None, "lo": 0.0, "hi": None, "n": 3}
    assert out["s"]["value"] == [1.0, None]
    assert out["t"] == [3, True]


def test_clustered_wilson_widens_for_correlated_records():
    """100 prompts x 3 placements: when a prompt's three records share their outcome the
    interval is that of 100 observations, not 300; independent records keep n."""
    from stoplens.analyses.stats import clustered_wilson, wilson

    clusters = [i // 3 for i in range(300)]
    shared = [i // 3 < 10 for i in range(300)]  # 10 whole prompts stop: 30 / 300
    est, n_eff, c = clustered_wilson(shared, clusters)
    assert c == 100 and est.value == pytest.approx(0.1)
    assert n_eff == pytest.approx(100, rel=0.05)
    naive = wilson(30, 300)
    assert est.hi - est.lo > 1.5 * (naive.hi - naive.lo)
    # 0 of 300: the design effect is unknown, so the conservative n_eff = number of prompts
    est0, n0, _ = clustered_wilson([False] * 300, clusters)
    assert n0 == 100 and est0.hi == pytest.approx(wilson(0, 100).hi)
    # one record per cluster: plain Wilson
    est1, n1, _ = clustered_wilson(shared[:50], list(range(50)))
    assert n1 == 50 and est1.hi == pytest.approx(wilson(sum(shared[:50]), 50).hi)
