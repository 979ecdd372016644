"""Beat-level arterial-pressure waveform at 500 Hz from the 1 s physiological course.

Each beat is an analytic pressure pulse on a time axis measured from the beat onset: a sharp
upstroke to the systolic peak, a reflected-wave shoulder (larger with age), the dicrotic notch at
the end of ejection followed by the dicrotic wave, and an exponential diastolic run-off that
reaches the next beat's foot. Per beat the pulse is scaled so that its mean is the beat's MAP and
its peak-to-foot height is the beat's pulse pressure. Heart rate carries respiratory sinus
arrhythmia and slow variability; pulse pressure and MAP swing with ventilation (pulse-pressure
variation taken from the course). Everything is vectorised over samples and beats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.simulator.timeline import ou_noise


@dataclass(frozen=True)
class Waveform:
    abp_mmhg: np.ndarray        # (n,) float64, artifact-free
    onset_idx: np.ndarray       # (n_beats,) sample index of each beat foot
    sbp_mmhg: np.ndarray        # (n_beats,) per-beat systolic
    dbp_mmhg: np.ndarray        # (n_beats,) per-beat diastolic (foot)
    map_mmhg: np.ndarray        # (n_beats,) per-beat mean


def _gauss(x: np.ndarray, mu, sd) -> np.ndarray:
    return np.exp(-0.5 * np.square((x - mu) / sd))


def beat_shape(tau_s: np.ndarray, beat: np.ndarray, rr_s: np.ndarray, augmentation: float,
               diastolic_tau_s: float) -> np.ndarray:
    """Un-normalised pulse shape at time ``tau_s`` (n,) after the foot of beat ``beat`` (n,),
    the beats lasting ``rr_s`` (n_beats,).

    Zero at the foot and again at the next foot, so consecutive beats join there.
    """
    rr_s = rr_s.astype(np.float32)
    t_peak_b = 0.075 + 0.045 * np.sqrt(rr_s)          # upstroke time (s)
    t_es_b = 0.20 + 0.12 * np.sqrt(rr_s)              # end of ejection: dicrotic notch (s)
    e_end_b = np.exp(-(rr_s - t_peak_b) / diastolic_tau_s)
    tail_end_b = (_gauss(rr_s, t_peak_b, 0.075) + augmentation * _gauss(rr_s, t_es_b - 0.085, 0.045)
                  + 0.15 * _gauss(rr_s, t_es_b + 0.045, 0.026))
    tau = tau_s.astype(np.float32)
    t_peak, t_es = t_peak_b[beat], t_es_b[beat]
    shape = _gauss(tau, t_peak, np.where(tau < t_peak, np.float32(0.032), np.float32(0.075)))
    shape += augmentation * _gauss(tau, t_es - 0.085, 0.045)        # reflected-wave shoulder
    shape += 0.15 * _gauss(tau, t_es + 0.045, 0.026)                 # dicrotic wave after the notch
    # diastolic run-off, gated in with the upstroke, shifted so it reaches 0 at the next foot
    gate = 1.0 / (1.0 + np.exp(-(tau - 0.8 * t_peak) / 0.012))
    e_end = e_end_b[beat]
    runoff = 0.55 * (np.exp(-(tau - t_peak) / diastolic_tau_s) - e_end) / (1.0 - e_end)
    shape += gate * runoff
    # the systolic components must vanish at the next foot too
    shape -= tail_end_b[beat] * (tau / rr_s[beat])
    return shape


def synthesise(t1_s: np.ndarray, map_1s: np.ndarray, pp_1s: np.ndarray, hr_1s: np.ndarray,
               ppv_1s: np.ndarray, resp_rate_1s: np.ndarray, augmentation: float,
               diastolic_tau_s: float, fs_hz: float, rng: np.random.Generator,
               chunk_beats: int = 400) -> Waveform:
    """Waveform for the span of the 1 s course: ``len(t1_s) * fs_hz`` samples (mmHg).

    Beat feet come from integrating the heart rate on a 50 Hz grid; samples are then written a
    group of ``chunk_beats`` whole beats at a time, so memory stays flat however long the case.
    """
    n = int(round(len(t1_s) * fs_hz))
    pad_s = 2.0                 # whole beats beyond both ends: the kept samples hold no partial beat
    dt_c = 0.02
    t_c = np.arange(-pad_s, len(t1_s) + pad_s + dt_c, dt_c)               # (m,) 50 Hz grid
    # respiration phase (ventilator or spontaneous), continuous across rate changes
    resp_c = 2 * np.pi * np.cumsum(np.interp(t_c, t1_s, resp_rate_1s) / 60.0) * dt_c
    slow = np.interp(t_c, t1_s, ou_noise(rng, len(t1_s), tau_s=8.0, sd=0.012))
    hr_c = np.interp(t_c, t1_s, hr_1s) * (1.0 + 0.012 * np.sin(resp_c) + slow)   # RSA + variability
    phase_c = rng.random() + np.cumsum(hr_c / 60.0) * dt_c                 # beats, increasing
    k = np.arange(np.ceil(phase_c[0]), np.floor(phase_c[-1]) + 1)
    t_on = np.interp(k, phase_c, t_c)                                      # (n_beats + 1,) feet (s)
    onset = np.ceil(t_on * fs_hz).astype(np.int64)                         # sample index of each foot
    onset = np.unique(onset)
    t_on = onset / fs_hz
    rr = np.diff(onset) / fs_hz                                            # (n_beats,)
    onset = onset[:-1]                                                     # beats with a next foot
    t_on = t_on[:-1]

    # beat-level targets at each foot
    map_b = np.interp(t_on, t1_s, map_1s)
    pp_b = np.interp(t_on, t1_s, pp_1s)
    ppv_b = np.interp(t_on, t1_s, ppv_1s)
    swing = np.sin(np.interp(t_on, t_c, resp_c))
    pp_b = pp_b * (1.0 + 0.5 * ppv_b * swing)
    map_b = map_b + 0.25 * ppv_b * pp_b * swing
    pp_b = pp_b * rng.lognormal(0.0, 0.015, len(onset))
    dbp_b = np.empty(len(onset))

    abp = np.full(n, np.nan)
    counts = np.round(rr * fs_hz).astype(np.int64)
    for g0 in range(0, len(onset), chunk_beats):
        g1 = min(len(onset), g0 + chunk_beats)
        s0, s1 = onset[g0], onset[g1 - 1] + counts[g1 - 1]
        if s1 <= 0 or s0 >= n:
            continue
        cnt = counts[g0:g1]
        beat = np.repeat(np.arange(g1 - g0), cnt)                         # (s1 - s0,) local beat id
        starts = np.cumsum(np.r_[0, cnt[:-1]])
        tau = (np.arange(s1 - s0) - starts[beat]) / fs_hz                  # time since foot (s)
        shape = beat_shape(tau, beat, rr[g0:g1], augmentation, diastolic_tau_s)
        peak = np.maximum.reduceat(shape, starts)
        peak = np.where(peak > 0.2, peak, 1.0)
        shape = shape / peak[beat]
        mean_shape = np.bincount(beat, weights=shape, minlength=g1 - g0) / cnt
        dbp_b[g0:g1] = map_b[g0:g1] - pp_b[g0:g1] * mean_shape
        x = dbp_b[g0:g1][beat] + pp_b[g0:g1][beat] * shape
        lo, hi = max(s0, 0), min(s1, n)
        abp[lo:hi] = x[lo - s0: hi - s0]
    if np.isnan(abp).any():
        raise RuntimeError(f"waveform: {int(np.isnan(abp).sum())} of {n} samples not covered by beats")
    abp += rng.normal(0.0, 0.3, n)
    inside = (onset >= 0) & (onset < n)
    return Waveform(abp_mmhg=abp, onset_idx=onset[inside], sbp_mmhg=(dbp_b + pp_b)[inside],
                    dbp_mmhg=dbp_b[inside], map_mmhg=map_b[inside])
