"""Arterial-line artifacts: where they happen (the ground truth) and what they do to the samples.

Kinds (durations drawn uniformly in the ranges below):

* ``flush``: the line is flushed from the pressure bag, a square plateau at 220-300 mmHg, 3-10 s;
* ``zeroing``: the transducer is opened to air, pressure near 0 mmHg, 10-30 s;
* ``damping``: air bubble or kinked line, a low-pass filter (cut-off 0.7-1.8 Hz) that keeps the mean
  and shrinks the pulse pressure, 1-5 min;
* ``disconnection``: the line is off, flat near 0 mmHg with noise, 15-90 s;
* ``gap``: samples missing (NaN; absent in the .vital file), 5-60 s.

Artifacts never overlap (at least ``MIN_SEPARATION_S`` apart) and avoid the first and last 30 s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, sosfilt, sosfilt_zi

KINDS = ("flush", "zeroing", "damping", "disconnection", "gap")
DURATION_S = {"flush": (3.0, 10.0), "zeroing": (10.0, 30.0), "damping": (60.0, 300.0),
              "disconnection": (15.0, 90.0), "gap": (5.0, 60.0)}
DEFAULT_RATES_PER_H = {"flush": 1.5, "zeroing": 0.7, "damping": 0.6, "disconnection": 0.4, "gap": 0.6}
MIN_SEPARATION_S = 20.0
_EDGE_S = 30.0


@dataclass(frozen=True)
class Artifact:
    kind: str
    start_s: float
    end_s: float
    level_mmhg: float | None = None    # flush plateau / zero offset / disconnection level
    cutoff_hz: float | None = None     # damping

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3)}
        if self.level_mmhg is not None:
            d["level_mmhg"] = round(self.level_mmhg, 2)
        if self.cutoff_hz is not None:
            d["cutoff_hz"] = round(self.cutoff_hz, 3)
        return d


def _make(rng: np.random.Generator, kind: str, start_s: float, duration_s: float) -> Artifact:
    end = start_s + duration_s
    if kind == "flush":
        return Artifact(kind, start_s, end, level_mmhg=float(rng.uniform(220.0, 300.0)))
    if kind == "zeroing":
        return Artifact(kind, start_s, end, level_mmhg=float(rng.uniform(-1.0, 1.0)))
    if kind == "disconnection":
        return Artifact(kind, start_s, end, level_mmhg=float(rng.uniform(-2.0, 4.0)))
    if kind == "damping":
        return Artifact(kind, start_s, end, cutoff_hz=float(rng.uniform(0.7, 1.8)))
    return Artifact(kind, start_s, end)


def _free(placed: list[Artifact], start: float, end: float) -> bool:
    return all(end + MIN_SEPARATION_S <= a.start_s or start >= a.end_s + MIN_SEPARATION_S
               for a in placed)


def schedule(rng: np.random.Generator, duration_s: float, rates_per_h: dict[str, float] | None = None,
             fixed: tuple[Artifact, ...] = ()) -> list[Artifact]:
    """Artifact intervals for one case: ``fixed`` ones plus Poisson counts at ``rates_per_h``."""
    rates = DEFAULT_RATES_PER_H if rates_per_h is None else rates_per_h
    unknown = set(rates) - set(KINDS)
    if unknown:
        raise ValueError(f"artifacts: unknown kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    requests = []
    for kind in KINDS:
        rate = float(rates.get(kind, 0.0))
        if rate < 0:
            raise ValueError(f"artifacts: rate of {kind} is negative ({rate})")
        requests += [(float(rng.uniform(*DURATION_S[kind])), kind)
                     for _ in range(rng.poisson(rate * duration_s / 3600.0))]
    placed = list(fixed)
    lo, hi = _EDGE_S, duration_s - _EDGE_S
    for dur, kind in sorted(requests, reverse=True):     # longest first packs best
        for _try in range(20):
            if hi - dur <= lo:
                break
            start = float(rng.uniform(lo, hi - dur))
            if _free(placed, start, start + dur):
                placed.append(_make(rng, kind, start, dur))
                break
    return sorted(placed, key=lambda a: a.start_s)


def apply(abp_mmhg: np.ndarray, fs_hz: float, artifacts: list[Artifact],
          rng: np.random.Generator) -> np.ndarray:
    """A copy of the clean waveform ``(n,)`` with the artifacts written in (NaN for gaps)."""
    out = np.array(abp_mmhg, dtype=np.float64, copy=True)
    n = len(out)
    for a in artifacts:
        i0, i1 = int(round(a.start_s * fs_hz)), min(n, int(round(a.end_s * fs_hz)))
        if i1 <= i0:
            continue
        m = i1 - i0
        if a.kind == "flush":
            ramp = min(m // 2, int(0.04 * fs_hz))
            seg = np.full(m, a.level_mmhg) + rng.normal(0.0, 0.8, m)
            w = np.linspace(0.0, 1.0, ramp, endpoint=False)
            seg[:ramp] = out[i0:i0 + ramp] * (1 - w) + seg[:ramp] * w
            out[i0:i1] = seg
            # square-wave test ringing as the flush valve closes (~0.5 s)
            k = np.arange(min(int(0.5 * fs_hz), n - i1)) / fs_hz
            out[i1:i1 + len(k)] += 25.0 * np.exp(-k / 0.06) * np.cos(2 * np.pi * 12.0 * k)
        elif a.kind == "zeroing":
            out[i0:i1] = a.level_mmhg + rng.normal(0.0, 0.3, m)
        elif a.kind == "disconnection":
            drift = np.cumsum(rng.normal(0.0, 0.02, m))
            out[i0:i1] = a.level_mmhg + drift + rng.normal(0.0, 1.0, m)
        elif a.kind == "damping":
            sos = butter(2, a.cutoff_hz, fs=fs_hz, output="sos")
            zi = sosfilt_zi(sos) * np.nanmean(out[max(0, i0 - int(fs_hz)):i0 + 1])
            out[i0:i1], _ = sosfilt(sos, out[i0:i1], zi=zi)
        elif a.kind == "gap":
            out[i0:i1] = np.nan
        else:
            raise ValueError(f"artifacts: unknown kind {a.kind!r}")
    return out
