"""A deterministic arterial-pressure waveform with known beats, for tests and benchmarks.

Each beat is a sigmoid upstroke, an exponential systolic decay and a dicrotic wave (which
leaves a notch between them), made continuous with the next beat's foot, then scaled so the
beat's foot is DBP and its maximum SBP. Heart rate and pulse pressure vary with a 4 s
respiratory cycle. This is not the cohort simulator (``training.simulator``); it only gives
the signal code a waveform whose beat times and pressures are known exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SyntheticAbp:
    x_mmhg: np.ndarray      # (n,) float32
    fs_hz: float
    onset_s: np.ndarray     # (n_beats,) beat start times (s from the first sample)
    sbp_mmhg: np.ndarray    # (n_beats,) target SBP of each beat
    dbp_mmhg: np.ndarray    # (n_beats,) target DBP (the foot) of each beat


def _beat_shape(t_s: np.ndarray, period_s: np.ndarray) -> np.ndarray:
    """Unit beat: 0 at the foot of this and the next beat, maximum 1. Arrays broadcast."""

    def raw(t):
        up = 1.0 / (1.0 + np.exp(-(t - 0.06) / 0.012))
        decay = np.exp(-np.maximum(t - 0.11, 0.0) / 0.32)
        dicrotic = 0.16 * np.exp(-(((t - 0.37) / 0.04) ** 2))
        return up * decay + dicrotic

    r0 = raw(np.zeros_like(period_s))
    r_end = raw(period_s)
    s = raw(t_s) - r0 - (r_end - r0) * (t_s / period_s)
    peak = 0.75  # close to max of raw - ramp for periods 0.4-1.5 s; rescaled per beat below
    return s / peak


def synthetic_abp(duration_s: float, fs_hz: float = 500.0, *, hr_bpm: float = 72.0,
                  sbp_mmhg: float = 120.0, dbp_mmhg: float = 70.0, noise_mmhg: float = 0.3,
                  seed: int = 0) -> SyntheticAbp:
    rng = np.random.default_rng(seed)
    onsets = [0.37 * 60.0 / hr_bpm]
    while onsets[-1] < duration_s + 3.0:
        t = onsets[-1]
        period = 60.0 / hr_bpm * (1.0 + 0.03 * np.sin(2 * np.pi * t / 4.0) + 0.01 * rng.standard_normal())
        onsets.append(t + period)
    onset_s = np.asarray(onsets)
    resp = np.sin(2 * np.pi * onset_s / 4.0)
    pp = (sbp_mmhg - dbp_mmhg) * (1.0 + 0.08 * resp)
    dbp = dbp_mmhg + 1.5 * resp

    n = int(round(duration_s * fs_hz))
    t = np.arange(n) / fs_hz
    beat = np.searchsorted(onset_s, t, side="right") - 1
    inside = beat >= 0
    x = np.full(n, dbp_mmhg, dtype=np.float64)
    b = beat[inside]
    period = onset_s[b + 1] - onset_s[b]
    tb = t[inside] - onset_s[b]
    # scale each beat so that its maximum is exactly its pp above the foot
    fine = np.linspace(0.0, 1.0, 400)[None, :] * (onset_s[1:] - onset_s[:-1])[:, None]
    peak = _beat_shape(fine, (onset_s[1:] - onset_s[:-1])[:, None]).max(axis=1)
    shape = _beat_shape(tb, period) / peak[b]
    # the foot level moves from this beat's dbp to the next one's along the beat
    foot = dbp[b] + (dbp[b + 1] - dbp[b]) * (tb / period)
    x[inside] = foot + pp[b] * shape
    x += noise_mmhg * rng.standard_normal(n)
    keep = onset_s < duration_s
    return SyntheticAbp(x_mmhg=x.astype(np.float32), fs_hz=fs_hz, onset_s=onset_s[keep],
                        sbp_mmhg=(dbp + pp)[keep], dbp_mmhg=dbp[keep])
