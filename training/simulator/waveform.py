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
               diastolic_tau_s: float, fs_hz: float, rng: np.random.Generator) -> Waveform:
    """Waveform for the span of the 1 s course: ``len(t1_s) * fs_hz`` samples (mmHg)."""
    n = int(round(len(t1_s) * fs_hz))
    pad = int(2 * fs_hz)        # whole beats beyond both ends, so the kept samples hold no partial beat
    t = np.arange(-pad, n + pad) / fs_hz                                   # (n + 2 pad,)
    # respiration phase (ventilator or spontaneous), continuous across rate changes
    resp_phase = 2 * np.pi * np.cumsum(np.interp(t, t1_s, resp_rate_1s) / 60.0) / fs_hz
    hr = np.interp(t, t1_s, hr_1s)
    slow = np.interp(t, t1_s, ou_noise(rng, len(t1_s), tau_s=8.0, sd=0.012))
    hr = hr * (1.0 + 0.012 * np.sin(resp_phase) + slow)                   # RSA + variability
    phase = rng.random() + np.cumsum(hr / 60.0) / fs_hz
    beat = np.floor(phase).astype(np.int64)
    beat -= beat[0]
    onset = np.flatnonzero(np.diff(beat)) + 1                             # (n_beats - 1,)
    onset = np.r_[0, onset]
    counts = np.diff(np.r_[onset, len(t)])
    rr = counts / fs_hz                                                   # (n_beats,)
    # the partial first and last beats (inside the padding) take the local cycle length
    rr[0] = max(rr[0], 60.0 / hr[0])
    rr[-1] = max(rr[-1], 60.0 / hr[-1])
    frac = phase - np.floor(phase)
    tau = frac * rr[beat]                                                 # time since foot (s)

    # beat-level targets at each foot
    t_on = t[onset]
    map_b = np.interp(t_on, t1_s, map_1s)
    pp_b = np.interp(t_on, t1_s, pp_1s)
    ppv_b = np.interp(t_on, t1_s, ppv_1s)
    swing = np.sin(resp_phase[onset])
    pp_b = pp_b * (1.0 + 0.5 * ppv_b * swing)
    map_b = map_b + 0.25 * ppv_b * pp_b * swing
    pp_b = pp_b * rng.lognormal(0.0, 0.015, len(onset))

    shape = beat_shape(tau, beat, rr, augmentation, diastolic_tau_s)       # (n,)
    peak = np.maximum.reduceat(shape, onset)                              # (n_beats,)
    peak = np.where(peak > 0.2, peak, 1.0)
    shape = shape / peak[beat]
    mean_shape = np.bincount(beat, weights=shape, minlength=len(onset)) / np.maximum(counts, 1)
    dbp_b = map_b - pp_b * mean_shape
    abp = dbp_b[beat] + pp_b[beat] * shape
    abp = abp[pad: pad + n] + rng.normal(0.0, 0.3, n)
    inside = (onset >= pad) & (onset < pad + n)
    return Waveform(abp_mmhg=abp, onset_idx=onset[inside] - pad, sbp_mmhg=(dbp_b + pp_b)[inside],
                    dbp_mmhg=dbp_b[inside], map_mmhg=map_b[inside])
