"""Beat synthesis against its inputs: rate, mean, pulse pressure, respiratory variation; monitor numerics."""

from __future__ import annotations

import numpy as np
import pytest

from training.simulator.monitor import art_numerics
from training.simulator.waveform import beat_shape, synthesise

FS = 500.0


def _constant(seconds: int, map_mmhg=80.0, pp_mmhg=45.0, hr_bpm=72.0, ppv=0.05, rr_min=12.0, seed=0):
    t = np.arange(seconds, dtype=float)
    full = lambda v: np.full(seconds, float(v))  # noqa: E731
    return synthesise(t, full(map_mmhg), full(pp_mmhg), full(hr_bpm), full(ppv), full(rr_min),
                      augmentation=0.4, diastolic_tau_s=1.2, fs_hz=FS,
                      rng=np.random.default_rng(seed))


def test_shape_is_zero_at_both_feet():
    rr = np.array([0.5, 0.8, 1.2])
    beat = np.arange(3)
    assert np.allclose(beat_shape(np.zeros(3), beat, rr, 0.4, 1.2), 0.0, atol=0.02)
    assert np.allclose(beat_shape(rr.copy(), beat, rr, 0.4, 1.2), 0.0, atol=1e-6)


@pytest.mark.parametrize("hr_bpm", [55.0, 72.0, 110.0])
def test_beats_carry_the_requested_rate_mean_and_pulse_pressure(hr_bpm):
    w = _constant(120, hr_bpm=hr_bpm)
    x = w.abp_mmhg
    assert len(x) == 120 * FS
    assert abs(len(w.onset_idx) - 2 * hr_bpm) <= 3                     # beats in 2 min
    assert abs(np.mean(x) - 80.0) < 0.5
    sbp, dbp = w.sbp_mmhg[1:-1], w.dbp_mmhg[1:-1]
    assert abs(np.median(sbp - dbp) - 45.0) < 1.5
    # the samples really reach the beat's systolic and diastolic values
    k = len(w.onset_idx) // 2
    seg = x[w.onset_idx[k]: w.onset_idx[k + 1]]
    assert abs(seg.max() - w.sbp_mmhg[k]) < 1.5 and abs(seg.min() - w.dbp_mmhg[k]) < 1.5


@pytest.mark.parametrize("ppv", [0.05, 0.12, 0.25])
def test_pulse_pressure_variation_follows_the_course(ppv):
    w = _constant(150, ppv=ppv)
    pp = (w.sbp_mmhg - w.dbp_mmhg)[1:-1]
    t = w.onset_idx[1:-1] / FS
    measured = []
    for t0 in np.arange(10, 140, 5.0):                                  # one ventilator cycle = 5 s
        sel = (t >= t0) & (t < t0 + 5.0)
        measured.append((pp[sel].max() - pp[sel].min()) / pp[sel].mean())
    assert abs(np.median(measured) - ppv) < 0.03 + 0.15 * ppv


def test_monitor_numerics_match_the_beats_and_go_quiet_in_gaps():
    w = _constant(60)
    x = w.abp_mmhg.copy()
    x[int(20 * FS): int(30 * FS)] = np.nan
    num = art_numerics(x, FS)
    t, mbp = num["Solar8000/ART_MBP"]
    _, sbp = num["Solar8000/ART_SBP"]
    _, dbp = num["Solar8000/ART_DBP"]
    assert np.all(np.diff(t) > 0) and t[0] == 4.0
    assert not np.any((t > 22) & (t < 30))                              # nothing while missing
    assert np.all(np.abs(mbp - 80) <= 3)
    assert np.all(np.abs(sbp - np.median(w.sbp_mmhg)) <= 4)
    assert np.all(np.abs(dbp - np.median(w.dbp_mmhg)) <= 4)
