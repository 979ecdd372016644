"""Numeric tracks as a Solar8000 monitor and an Orchestra pump would record them.

Arterial numerics are computed from the recorded waveform (artifacts included) the way a bedside
monitor does: over the last 4 s, systolic = mean of the 2 s block maxima, diastolic = mean of the
block minima, mean = mean pressure; reported every 2 s as whole mmHg; nothing is reported while
more than half of the window is missing. Heart rate comes from the (simulated) ECG, SpO2 and pulse
rate from the pleth, NIBP from an oscillometric cuff cycled every few minutes, read from the clean
pressure with cuff-like errors. Times are seconds from the case start.
"""

from __future__ import annotations

import numpy as np

from training.simulator.physiology import Course
from training.simulator.timeline import ou_noise
from training.simulator.waveform import Waveform

ART_PERIOD_S = 2.0
NIBP_PERIODS_MIN = (2.5, 3.0, 5.0)

Numerics = dict[str, tuple[np.ndarray, np.ndarray]]   # track -> (t_s (k,), values (k,))


def art_numerics(abp_mmhg: np.ndarray, fs_hz: float) -> Numerics:
    """``Solar8000/ART_SBP|DBP|MBP`` from a waveform ``(n,)`` (NaN = missing)."""
    block = int(round(ART_PERIOD_S * fs_hz))
    nb = len(abp_mmhg) // block
    x = abp_mmhg[: nb * block].reshape(nb, block)                 # (nb, block)
    valid = np.isfinite(x)
    frac = valid.mean(axis=1)
    filled_hi = np.where(valid, x, -np.inf).max(axis=1)
    filled_lo = np.where(valid, x, np.inf).min(axis=1)
    sums = np.where(valid, x, 0.0).sum(axis=1)
    counts = valid.sum(axis=1)
    # window = this block and the previous one (4 s)
    ok = (frac >= 0.5)
    ok2 = ok[1:] & ok[:-1]
    hi = (filled_hi[1:] + filled_hi[:-1]) / 2
    lo = (filled_lo[1:] + filled_lo[:-1]) / 2
    mean = (sums[1:] + sums[:-1]) / np.maximum(counts[1:] + counts[:-1], 1)
    t_s = (np.arange(1, nb) + 1) * ART_PERIOD_S
    keep = ok2
    return {
        "Solar8000/ART_SBP": (t_s[keep], np.round(hi[keep])),
        "Solar8000/ART_DBP": (t_s[keep], np.round(lo[keep])),
        "Solar8000/ART_MBP": (t_s[keep], np.round(mean[keep])),
    }


def vital_numerics(course: Course, rng: np.random.Generator) -> Numerics:
    """``Solar8000/HR``, ``PLETH_HR``, ``PLETH_SPO2`` every 2 s."""
    n = len(course.t_s)
    t_s = np.arange(ART_PERIOD_S, n, ART_PERIOD_S)
    idx = t_s.astype(int)
    hr = course.hr_bpm[idx]
    spo2 = 99.0 + ou_noise(rng, len(t_s), tau_s=60.0, sd=0.8) - 2.0 * (1.0 - course.blood_volume_rel[idx])
    return {
        "Solar8000/HR": (t_s, np.round(hr + rng.normal(0.0, 0.7, len(t_s)))),
        "Solar8000/PLETH_HR": (t_s + 1.0, np.round(hr + rng.normal(0.0, 1.2, len(t_s)))),
        "Solar8000/PLETH_SPO2": (t_s + 1.0, np.clip(np.round(spo2), 88.0, 100.0)),
    }


def nibp_numerics(course: Course, wave: Waveform, fs_hz: float, rng: np.random.Generator) -> Numerics:
    """``Solar8000/NIBP_SBP|DBP|MBP`` from the clean beats, a cuff cycle every 2.5-5 min."""
    period_s = 60.0 * NIBP_PERIODS_MIN[int(rng.integers(len(NIBP_PERIODS_MIN)))]
    n = len(course.t_s)
    first = rng.uniform(20.0, 60.0)
    t_s = np.arange(first, n - 1, period_s)
    beat_t = wave.onset_idx / fs_hz
    sbp, dbp, mbp = [], [], []
    for t in t_s:   # a measurement averages the beats of its ~25 s deflation
        sel = (beat_t > t - 25.0) & (beat_t <= t)
        sbp.append(np.mean(wave.sbp_mmhg[sel]) if sel.any() else np.nan)
        dbp.append(np.mean(wave.dbp_mmhg[sel]) if sel.any() else np.nan)
        mbp.append(np.mean(wave.map_mmhg[sel]) if sel.any() else np.nan)
    k = len(t_s)
    sbp = np.round(np.array(sbp) + rng.normal(2.0, 5.0, k))
    dbp = np.round(np.array(dbp) + rng.normal(2.0, 4.0, k))
    mbp = np.round(np.array(mbp) + rng.normal(0.0, 3.0, k))
    return {"Solar8000/NIBP_SBP": (t_s, sbp), "Solar8000/NIBP_DBP": (t_s, dbp),
            "Solar8000/NIBP_MBP": (t_s, mbp)}


def pump_numerics(course: Course) -> Numerics:
    """``Orchestra/PPF20_RATE`` (mL/h of propofol 2 %) and ``Orchestra/PPF20_CE`` (ug/mL), every 10 s
    and whenever the rate changes, from the first second the pump runs."""
    rate = np.round(course.ppf_rate_ml_h, 1)
    n = len(rate)
    change = np.flatnonzero(np.diff(rate) != 0) + 1
    running = np.flatnonzero(rate > 0)
    if len(running) == 0:
        return {}
    start = running[0]
    idx = np.union1d(np.arange(start, n, 10), change[change >= start])
    t_s = idx.astype(float)
    return {"Orchestra/PPF20_RATE": (t_s, rate[idx]),
            "Orchestra/PPF20_CE": (t_s, np.round(course.ce_ug_ml[idx], 2))}
