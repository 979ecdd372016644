"""Beat detection against known synthetic beats and against an independent reference on the
real MIMIC-II record (scipy peak finding on the raw pressure)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb
from scipy.signal import find_peaks

from streams.signal.beats import detect_beats
from streams.signal.synthetic import synthetic_abp


@pytest.fixture(scope="module")
def real_abp(real_abp_record: Path) -> tuple[np.ndarray, float]:
    rec = wfdb.rdrecord(str(real_abp_record.with_suffix("")), channel_names=["ABP"])
    return rec.p_signal[:, 0].astype(np.float32), float(rec.fs)


def _reference(x: np.ndarray, fs_hz: float) -> dict[str, np.ndarray | float]:
    """Independent reference: systolic peaks by scipy on the raw pressure, DBP as the minimum
    between peaks, mean pressure as the plain mean of the samples."""
    peaks, _ = find_peaks(x, distance=int(0.27 * fs_hz), prominence=20.0)
    dbp = np.array([x[a:b].min() for a, b in zip(peaks[:-1], peaks[1:])])
    return {"n": peaks.size, "sbp": x[peaks], "dbp": dbp, "mean": float(np.mean(x))}


def test_real_record_matches_independent_reference(real_abp):
    x, fs = real_abp
    # the record opens with ~8 s of zeroing and a flush to 270 mmHg; compare on the rest
    clean_from = int(np.flatnonzero(x > 200.0)[-1] + fs)
    xc = x[clean_from:].astype(np.float64)
    ref = _reference(xc, fs)
    beats = detect_beats(x, fs)
    mine = beats.select(beats.onset >= clean_from)
    assert abs(len(mine) - ref["n"]) <= 0.02 * ref["n"], (len(mine), ref["n"])
    assert abs(np.median(mine.sbp) - np.median(ref["sbp"])) <= 3.0
    assert abs(np.median(mine.dbp) - np.median(ref["dbp"])) <= 3.0
    assert abs(np.median(mine.map) - ref["mean"]) <= 3.0
    # documented values of the record: MAP ~97, SBP/DBP ~142/70, HR in a normal range
    assert 94.0 <= np.median(mine.map) <= 100.0
    assert 55.0 <= np.median(mine.hr_bpm) <= 70.0
    assert np.mean(mine.notch >= 0) > 0.8


def test_synthetic_beats_are_found_at_their_onsets():
    syn = synthetic_abp(120.0, 500.0, hr_bpm=72.0, sbp_mmhg=120.0, dbp_mmhg=70.0, seed=4)
    beats = detect_beats(syn.x_mmhg, syn.fs_hz)
    true_onsets = syn.onset_s * syn.fs_hz
    # every detected onset lies within 30 ms of a true one; all complete beats found
    idx = np.clip(np.searchsorted(true_onsets, beats.onset), 1, true_onsets.size - 1)
    err = np.minimum(np.abs(true_onsets[idx - 1] - beats.onset), np.abs(true_onsets[idx] - beats.onset))
    assert np.all(err <= 0.03 * syn.fs_hz)
    assert len(beats) >= syn.onset_s.size - 2
    assert np.median(np.abs(beats.sbp - np.interp(beats.onset / syn.fs_hz, syn.onset_s, syn.sbp_mmhg))) < 2.0
    assert np.median(np.abs(beats.dbp - np.interp(beats.onset / syn.fs_hz, syn.onset_s, syn.dbp_mmhg))) < 2.0
    assert abs(np.median(beats.hr_bpm) - 72.0) < 2.0
    assert np.all(beats.notch[beats.notch >= 0] > beats.peak[beats.notch >= 0])
    assert np.mean(beats.notch >= 0) > 0.9


@pytest.mark.parametrize("hr_bpm,fs_hz", [(35.0, 125.0), (150.0, 125.0), (190.0, 500.0)])
def test_heart_rate_range(hr_bpm, fs_hz):
    syn = synthetic_abp(60.0, fs_hz, hr_bpm=hr_bpm, sbp_mmhg=110.0, dbp_mmhg=65.0, seed=5)
    beats = detect_beats(syn.x_mmhg, fs_hz)
    expected = syn.onset_s.size - 1
    assert abs(len(beats) - expected) <= 2, (len(beats), expected)
    assert abs(np.median(beats.hr_bpm) - hr_bpm) < 0.05 * hr_bpm


def test_beats_never_span_nan():
    syn = synthetic_abp(30.0, 125.0, seed=6)
    x = syn.x_mmhg.copy()
    x[1000:1100] = np.nan
    x[2500] = np.nan
    beats = detect_beats(x, 125.0)
    assert len(beats) > 20
    nan_idx = np.flatnonzero(np.isnan(x))
    for o, e in zip(beats.onset, beats.end):
        assert not np.any((nan_idx >= o) & (nan_idx < e))
    assert np.all(np.isfinite(beats.map))


def test_no_beats_on_flat_empty_or_all_nan():
    assert len(detect_beats(np.full(1000, 80.0, np.float32), 125.0)) == 0
    assert len(detect_beats(np.zeros(0, np.float32), 125.0)) == 0
    assert len(detect_beats(np.full(1000, np.nan, np.float32), 125.0)) == 0
    with pytest.raises(ValueError, match="fs_hz"):
        detect_beats(np.zeros(10), 0.0)


def test_arbitrary_input_gives_consistent_beats():
    """Noise, spikes, steps, NaN islands: no exception, every beat well formed."""
    rng = np.random.default_rng(7)
    base = synthetic_abp(20.0, 125.0, seed=8).x_mmhg.astype(np.float64)
    signals = [
        rng.normal(80, 30, 2500),
        np.where(rng.random(2500) < 0.02, 300.0, base),
        np.concatenate([base[:1200], np.full(1300, 5.0)]),
        np.where(rng.random(2500) < 0.05, np.nan, base),
        base * 0.05 + 60.0,
    ]
    for x in signals:
        b = detect_beats(x, 125.0)
        assert np.all((0 <= b.onset) & (b.onset <= b.peak) & (b.peak < b.end) & (b.end <= x.size))
        assert np.all(np.diff(b.onset) > 0)
        assert np.all((b.notch == -1) | ((b.notch > b.peak) & (b.notch < b.end)))
        assert np.all((b.hr_bpm >= 30.0) & (b.hr_bpm <= 220.0))
        assert np.all(np.isfinite(b.map))
