"""Baselines: MAP level, threshold, extrapolation and VitalDB's HPI CNN."""

import numpy as np
import pytest
import wfdb
from scipy.signal import resample_poly

from training import baselines as B


def _windows():
    t = np.arange(300)
    falling = 90 - 0.1 * t          # 1 mmHg per 30 s
    flat = np.full(300, 70.0)
    rising = 60 + 0.1 * t
    m = np.stack([falling, flat, rising])
    return m, np.ones_like(m, dtype=bool)


def test_current_map_threshold_and_extrapolation():
    m, v = _windows()
    lvl = B.current_map(m, v)
    assert lvl == pytest.approx([90 - 0.1 * 294.5, 70, 60 + 0.1 * 294.5], abs=0.06)
    assert B.map_threshold_score(m, v).tolist() == [1.0, 1.0, 0.0]
    proj = B.linear_extrapolation(m, v, horizon_min=5)
    # slope 2 mmHg/min, 5 min ahead of the last cell
    assert proj[0] == pytest.approx(m[0, -1] - 10, abs=1e-6)
    assert proj[1] == pytest.approx(70)
    assert proj[2] == pytest.approx(m[2, -1] + 10, abs=1e-6)
    # gated cells are ignored
    v2 = v.copy()
    m2 = m.copy()
    m2[0, -20:] = 0.0
    v2[0, -20:] = False
    assert B.linear_extrapolation(m2, v2, 5)[0] == pytest.approx(m[0, -21] - 2 * (5 + 1.0), abs=1e-6)


def _beat_wave(map_mmhg, pp=40.0, hr=70.0, n=2000, fs=100.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fs
    ph = (t * hr / 60.0) % 1.0
    w = np.where(ph < 0.3, np.sin(np.pi * ph / 0.3), 0.0) * 0.8 + np.exp(-3 * ph) * 0.2
    w = (w - w.mean()) / (w.max() - w.min())
    return map_mmhg + pp * w + rng.normal(0, 0.5, n)


@pytest.fixture(scope="module")
def hpi():
    ref = np.stack([_beat_wave(m, pp=p, hr=h, seed=i) for i, (m, p, h) in enumerate(
        (m, p, h) for m in (55, 65, 75, 85, 95, 105) for p in (35, 45) for h in (60, 80))])
    return B.HPIBaseline().calibrate(ref)


def test_hpi_scores_hypotensive_waves_higher(hpi):
    lows = hpi.score(np.stack([_beat_wave(m, seed=100 + m) for m in (52, 56, 60)]))
    highs = hpi.score(np.stack([_beat_wave(m, seed=200 + m) for m in (90, 100, 110)]))
    assert np.isfinite(lows).all() and np.isfinite(highs).all()
    assert lows.min() > highs.max()
    assert ((0 <= lows) & (lows <= 1)).all()


def test_hpi_scores_real_abp_and_rejects_artifact(hpi, real_abp_record):
    rec = wfdb.rdrecord(str(real_abp_record.with_suffix("")))
    abp = rec.p_signal[:, rec.sig_name.index("ABP")]
    abp100 = resample_poly(abp, 4, 5)           # 125 Hz -> 100 Hz
    segs = np.stack([abp100[i * 2000:(i + 1) * 2000] for i in range(14)])
    s = hpi.score(segs)
    ok = B.hpi_segment_ok(segs)
    assert ok.sum() >= 5                         # most of the record is clean
    assert np.isfinite(s[ok]).all() and np.isnan(s[~ok]).all()
    flush = segs[:1].copy()
    flush[0, 500:700] = 280.0                    # flush plateau above 200 mmHg
    assert np.isnan(hpi.score(flush)).all()
    # deterministic, independent of the batch it is scored in
    assert hpi.score(segs[ok][:2]) == pytest.approx(s[ok][:2], abs=1e-6)


def test_carry_forward_stays_within_case():
    s = np.array([np.nan, 0.2, np.nan, 0.7, np.nan, np.nan])
    case = np.array([1, 1, 1, 2, 2, 3])
    assert B.carry_forward(s, case).tolist() == [0.5, 0.2, 0.2, 0.7, 0.7, 0.5]
