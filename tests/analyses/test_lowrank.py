"""Analysis 2 (low rank) on planted models: one direction, the planted one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stoplens.analyses.lowrank import LowrankConfig, loo_cosines, lowrank, top1_energy_share

pytestmark = pytest.mark.usefixtures("single_thread")


def _result(case):
    return case.result("lowrank", lambda: lowrank(case.ds))


def test_finds_the_planted_direction(case):
    r = _result(case)
    u = case.pm.direction.double().numpy()
    j = case.ds.layer_pos(case.answer)
    assert abs(float(r.top_direction[j] @ u)) > 0.9
    assert np.linalg.norm(r.top_direction[j]) == pytest.approx(1.0)
    assert r.cos_top_mean[j] > 0.99
    # the same direction from the accessor
    np.testing.assert_array_equal(r.direction(case.answer), r.top_direction[j])


def test_one_dominant_direction_far_above_the_null(case):
    r = _result(case)
    j = case.ds.layer_pos(case.answer)
    t, n = r.trigger, r.null
    assert t.energy[0, j] > 0.99
    assert t.energy_top1.lo[j] > n.energy_top1.hi[j]
    # the energy left outside the top direction is >= 10x smaller than in the null
    assert 1 - t.energy[0, j] < 0.1 * (1 - n.energy[0, j])
    # each Δ points along the others' mean; word swaps do not share a mean direction
    assert t.loo_cos.lo[j] > 0.95
    assert n.loo_cos.hi[j] < 0.5
    assert not r.n_too_small


def test_spectrum_numbers_are_consistent(qwen_case):
    r = _result(qwen_case)
    t = r.trigger
    ks = r.config.ks
    assert ks == (1, 3, 10)
    j = qwen_case.ds.layer_pos(qwen_case.answer)
    assert t.energy[0, j] <= t.energy[1, j] <= t.energy[2, j] <= 1 + 1e-12
    assert t.pca[0, j] <= t.pca[1, j] <= t.pca[2, j] <= 1 + 1e-12
    assert t.pc1.value[j] == pytest.approx(t.pca[0, j])
    assert 1 <= t.n_components[j] <= 64
    assert r.projections.shape == (len(r.layers), qwen_case.ds.n, 3)
    assert r.null_projections.shape == (len(r.layers), qwen_case.ds.n_null, 3)
    # Δ at the last position is exactly 0 at residual 0: no shares, no claim
    assert np.isnan(t.energy[0, 0])
    d = r.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["trigger"]["energy_top1"][0] is None
    assert {"energy_top1", "energy_top3", "energy_top10", "pca_top1", "loo_cos"} <= set(
        d["trigger"]
    )
    assert "top_direction" not in d and "top_direction" in r.to_dict(full=True)


def test_matches_streamed_spectrum(qwen_case):
    from streaming import DeltaStats  # benchmarks/streaming.py

    ds = qwen_case.ds
    r = _result(qwen_case)
    x = ds.delta("last")  # [n, k, 1, d]
    st = DeltaStats.empty(ds.layers, 1, ds.d_model)
    h = ds.control("last").norm(dim=-1)
    st.update(x[:40], h[:40], h[:40])
    st.update(x[40:], h[40:], h[40:])
    share = st.svd_energy_share()[:, 0]  # [k, r]
    j = ds.layer_pos(qwen_case.answer)
    assert float(share[j, 0]) == pytest.approx(r.trigger.energy[0, j], abs=1e-6)
    assert float(st.pca_explained_ratio()[j, 0, 0]) == pytest.approx(r.trigger.pca[0, j], abs=1e-6)
    top = st.top_directions(1)[j, 0, 0].numpy()
    assert abs(float(top @ r.top_direction[j])) > 0.9999


def test_n_too_small_is_flagged(qwen_case):
    small = qwen_case.ds.subset(range(16))
    r = lowrank(small, LowrankConfig(n_boot_spectrum=20, n_boot=50))
    assert r.n_too_small and r.n == 16
    assert r.to_dict()["n_too_small"] is True


def test_loo_cosines():
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    c = loo_cosines(x)
    assert c[0] == pytest.approx(1 / np.sqrt(2))
    assert c[2] == pytest.approx(0.0)
    # identical vectors: every LOO cosine is 1
    np.testing.assert_allclose(loo_cosines(np.ones((5, 3))), 1.0)


def _two_direction_deltas(n: int = 80, d: int = 24, seed: int = 0, two: bool = True):
    rng = np.random.default_rng(seed)
    e = np.eye(d)
    rows = [(e[0] if (i % 2 == 0 or not two) else e[1]) * 5 for i in range(n)]
    x = np.stack(rows) + 0.05 * rng.standard_normal((n, d))
    return x[:, None, :]  # [n, k=1, d]


def test_second_direction_ratio_separates_one_from_two_directions():
    """A mechanism that uses one direction on some prompts and an orthogonal one on the others
    shares its energy between two: top-1 ≈ 1/2 and σ₂²/σ₁² ≈ 1; one direction: ≈ 0."""
    from stoplens.analyses.lowrank import spectrum_stats

    cfg = LowrankConfig(n_boot_spectrum=50, n_boot=50)
    two, _ = spectrum_stats(_two_direction_deltas(two=True), cfg)
    one, _ = spectrum_stats(_two_direction_deltas(two=False), cfg)
    assert two.energy_top1.value[0] == pytest.approx(0.5, abs=0.05)
    assert two.second_ratio is not None and two.second_ratio.lo[0] > 0.5
    assert one.second_ratio is not None and one.second_ratio.hi[0] < 0.01
    assert two.energy_ci is not None and two.energy_ci[3].lo[0] > 0.95
    for s in (two, one):
        for k, est in (s.energy_ci or {}).items():
            assert np.all(est.lo <= est.hi) and np.all((est.lo >= 0) & (est.hi <= 1 + 1e-9)), k


def test_spectral_intervals_cover_their_estimate_on_diffuse_deltas():
    """Resampling rows repeats them, which concentrates the spectrum: on diffuse Δs every
    bootstrap top-k share exceeds the estimate, so the plain percentile interval misses it.
    The reported interval is shifted by the bootstrap's bias and covers the estimate."""
    from stoplens.analyses.lowrank import spectrum_stats
    from stoplens.analyses.spectrum_bootstrap import _boot_spectrum
    from stoplens.analyses.stats import percentile_interval, resample_weights

    x = np.random.default_rng(0).standard_normal((40, 1, 64))
    cfg = LowrankConfig(n_boot_spectrum=100, n_boot=50, ks=(1, 3))
    s, _ = spectrum_stats(x, cfg)
    be, _ = _boot_spectrum(x[:, 0], resample_weights(40, 100, cfg.seed), 3)
    plain_lo, _ = percentile_interval(be[:, 0])
    assert plain_lo > s.energy_top1.value[0]  # the defect this guards against
    assert s.energy_ci is not None
    for est in (s.energy_top1, s.energy_ci[3], s.pc1):
        assert est.lo[0] <= est.value[0] <= est.hi[0]
        assert est.lo[0] >= 0 and est.hi[0] <= 1


def test_iterative_bootstrap_eigenvalues_match_the_exact_ones(monkeypatch):
    """Above EXACT_MAX the resampled spectra come from warm-started subspace iteration; its
    top-q eigenvalues equal the exact ones (forced here by lowering EXACT_MAX)."""
    import stoplens.analyses.spectrum_bootstrap as lr

    x = _two_direction_deltas(n=40, d=24)[:, 0]
    x = x + 0.3 * np.random.default_rng(1).standard_normal(x.shape)
    w = lr.resample_weights(40, 16, 0)
    exact_e, exact_p = lr._boot_spectrum(x, w, q=10)
    monkeypatch.setattr(lr, "EXACT_MAX", 4)
    iter_e, iter_p = lr._boot_spectrum(x, w, q=10)
    np.testing.assert_allclose(iter_e, exact_e, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(iter_p, exact_p, rtol=1e-6, atol=1e-9)


def test_top1_energy_share_is_the_spectrum_value_at_one_layer(case):
    r = _result(case)
    for layer in (0, case.answer, case.ds.n_layers):
        j = case.ds.layer_pos(layer)
        x = case.ds.delta("last")[:, j, 0].double().numpy()
        want = r.trigger.energy_top1.value[j]  # NaN where Δ = 0 (residual 0 at the last position)
        np.testing.assert_allclose(top1_energy_share(x), want, rtol=0, atol=1e-12, equal_nan=True)
    assert np.isnan(top1_energy_share(np.zeros((4, 8))))
