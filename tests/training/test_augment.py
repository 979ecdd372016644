"""MTRDA: decomposition and residual statistics of the diffusion model."""

import numpy as np
import pytest

from training.augment import ResidualDiffusion, augment_windows, decompose, residual_stats


def _ioh_like_windows(n=400, T=300, seed=0):
    """MAP windows drifting down into hypotension with AR(1) wander (phi 0.8) plus a 12-cell
    (36 s, respiratory-to-Mayer scale) oscillation of random phase."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)
    out = []
    for _ in range(n):
        trend = 85 - rng.uniform(10, 30) / (1 + np.exp(-(t - rng.uniform(120, 260)) / 20))
        e = np.zeros(T)
        for i in range(1, T):
            e[i] = 0.8 * e[i - 1] + rng.normal(0, 1.0)
        osc = rng.uniform(0.5, 1.5) * np.sin(2 * np.pi * t / 12 + rng.uniform(0, 2 * np.pi))
        out.append(trend + e + osc)
    return np.array(out, np.float32)


def test_decompose_adds_back_and_trend_is_smooth():
    x = _ioh_like_windows(20)
    v = np.ones_like(x, bool)
    v[:, 100:110] = False
    trend, resid = decompose(x, v, 25)
    filled = np.where(v, x, trend + resid)
    assert np.allclose(trend + resid, filled, atol=1e-4)
    assert np.allclose((trend + resid)[v], x[v], atol=1e-4)
    assert np.abs(np.diff(trend, 2)).mean() < 0.1 * np.abs(np.diff(x, 2)).mean()
    assert abs(resid.mean()) < 0.3


@pytest.fixture(scope="module")
def fitted():
    # 120-cell (6 min) windows keep this under a minute on 2 cores; training uses 300 cells
    x = _ioh_like_windows(400, T=120)
    v = np.ones_like(x, bool)
    _, resid = decompose(x, v, 25)
    model = ResidualDiffusion(seed=0)
    model.fit(resid, steps=400)
    return x, v, resid, model


@pytest.mark.slow
def test_generated_residuals_match_real_statistics(fitted):
    x, v, resid, model = fitted
    real = residual_stats(resid)
    gen = residual_stats(model.sample(200, seed=1))
    # tolerances: mean within 0.15 real std; std within 20 %; lag-1 autocorrelation within 0.1;
    # share of spectral energy in each third of the band within 0.1
    assert abs(gen["mean"] - real["mean"]) < 0.15 * real["std"], (gen, real)
    assert abs(gen["std"] / real["std"] - 1) < 0.2, (gen, real)
    assert abs(gen["lag1"] - real["lag1"]) < 0.1, (gen, real)
    for band in ("band_low", "band_mid", "band_high"):
        assert abs(gen[band] - real[band]) < 0.1, (band, gen, real)
    # and they are not white noise: an untrained model's samples fail the lag-1 check
    white = residual_stats(np.random.default_rng(0).normal(0, real["std"], (300, 120)))
    assert abs(white["lag1"] - real["lag1"]) > 0.3


@pytest.mark.slow
def test_augmented_windows_keep_trend_and_validity(fitted):
    x, v, _, model = fitted
    v2 = v.copy()
    v2[:, :30] = False
    new, nv, src = augment_windows(x, v2, model, 50, seed=2)
    assert new.shape == (50, 120) and (nv == v2[src]).all()
    assert np.isnan(new[:, :30]).all() and np.isfinite(new[:, 30:]).all()
    trend_src, _ = decompose(x[src], v2[src], 25)
    trend_new, _ = decompose(np.nan_to_num(new), nv, 25)
    assert np.abs(trend_new[:, 40:-20] - trend_src[:, 40:-20]).mean() < 1.5
    assert not np.allclose(new[:, 30:], x[src][:, 30:])
