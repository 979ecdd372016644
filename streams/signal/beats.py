"""Beat detection on an arterial-pressure segment: onsets, systolic peaks, dicrotic notches.

Method (independent of any peak finder on the raw pressure): the slope-sum function
(Zong et al., Computers in Cardiology 2003) turns every systolic upstroke into one positive
bump; bumps above an amplitude threshold taken from the segment itself mark upstrokes; the
onset (foot) is the pressure minimum just before the upstroke, the systolic peak the maximum
after it, and a beat runs from one onset to the next. Beats never span a NaN sample: every
finite run is processed on its own and a beat needs both of its onsets inside one run.

All indices are relative to the input array. The function is pure: the same samples and
``fs_hz`` always give the same beats, which is what lets the streaming and batch paths agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import find_peaks

HR_MIN_BPM = 30.0            # slower than this a "beat" is a pause or a missed upstroke
HR_MAX_BPM = 220.0           # faster than this is noise or the dicrotic wave counted twice
SSF_WINDOW_S = 0.128         # slope-sum window, about one systolic upstroke (Zong 2003)
SSF_REL_THRESHOLD = 0.3      # an upstroke must reach 30% of the typical upstroke in the segment
SSF_FLOOR_MMHG = 4.0         # and rise at least 4 mmHg: below that it is noise on a flat line
ONSET_SEARCH_S = 0.30        # the foot lies at most this long before the end of the upstroke
PEAK_SEARCH_S = 0.45         # the systolic peak lies at most this long after the foot
MIN_RUN_S = 1.0              # finite runs shorter than this cannot hold a complete beat
SMOOTH_S = 0.030             # moving average before derivatives (quantisation noise of 1 mmHg)
NOTCH_MIN_PROM_REL = 0.5     # derivative bump of a notch, as a fraction of pulse pressure per s


@dataclass(frozen=True)
class Beats:
    """One entry per complete beat; indices relative to the analysed segment.

    onset:  (n,) int64, foot of the upstroke (start of the beat)
    end:    (n,) int64, onset of the next beat (exclusive end of this beat)
    peak:   (n,) int64, systolic peak
    notch:  (n,) int64, dicrotic notch, -1 where none was found
    sbp, dbp, map, pp: (n,) float64 mmHg; map is the mean pressure from onset to end
    hr_bpm: (n,) float64, 60 / beat duration
    rise_s: (n,) float64, onset-to-peak time (slow upstroke suggests damping)
    """

    onset: np.ndarray
    end: np.ndarray
    peak: np.ndarray
    notch: np.ndarray
    sbp: np.ndarray
    dbp: np.ndarray
    map: np.ndarray
    pp: np.ndarray
    hr_bpm: np.ndarray
    rise_s: np.ndarray

    def __len__(self) -> int:
        return int(self.onset.size)

    def select(self, mask: np.ndarray) -> "Beats":
        return Beats(**{name: getattr(self, name)[mask] for name in _FIELDS})

    @staticmethod
    def empty() -> "Beats":
        ints = {"onset", "end", "peak", "notch"}
        return Beats(**{name: np.zeros(0, np.int64 if name in ints else np.float64) for name in _FIELDS})


_FIELDS = ("onset", "end", "peak", "notch", "sbp", "dbp", "map", "pp", "hr_bpm", "rise_s")


def finite_runs(x: np.ndarray) -> list[tuple[int, int]]:
    """Half-open index ranges [lo, hi) of consecutive finite samples."""
    finite = np.isfinite(x)
    if finite.all():
        return [(0, int(x.size))] if x.size else []
    edges = np.diff(np.concatenate(([0], finite.view(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)
    return [(int(a), int(b)) for a, b in zip(starts, stops)]


def _moving_sum(v: np.ndarray, w: int) -> np.ndarray:
    """Trailing moving sum over w samples (shorter at the start)."""
    cs = np.cumsum(v)
    out = cs.copy()
    out[w:] = cs[w:] - cs[:-w]
    return out


def _centred_mean(x: np.ndarray, k: int) -> np.ndarray:
    """Moving average over k samples centred on each sample, edges padded with edge values."""
    if k <= 1:
        return x
    h = k // 2
    cs = np.concatenate(([0.0], np.cumsum(np.pad(x, (h, k - 1 - h), mode="edge"))))
    return (cs[k:] - cs[:-k]) / k


def _detect_run(x: np.ndarray, fs_hz: float) -> list[tuple[int, int, int, int]]:
    """(onset, end, peak, notch) of each complete beat in a finite run."""
    w = max(2, int(round(SSF_WINDOW_S * fs_hz)))
    dp = np.diff(x, prepend=x[0])
    np.maximum(dp, 0.0, out=dp)
    ssf = _moving_sum(dp, w)
    min_dist = max(1, int(math.ceil(fs_hz * 60.0 / HR_MAX_BPM)))
    cand, props = find_peaks(ssf, distance=min_dist, height=SSF_FLOOR_MMHG)
    if cand.size < 2:
        return []
    heights = props["peak_heights"]
    top = np.sort(heights)[-max(1, int(math.ceil(heights.size / 3))):]
    threshold = max(SSF_FLOOR_MMHG, SSF_REL_THRESHOLD * float(np.median(top)))
    ups = cand[heights >= threshold]
    if ups.size < 2:
        return []

    onset_n = max(1, int(round(ONSET_SEARCH_S * fs_hz)))
    onsets: list[int] = []
    prev = -1
    for p in ups:
        lo = max(prev + 1, int(p) - onset_n)
        o = lo + int(np.argmin(x[lo:p + 1]))
        if onsets and o - onsets[-1] < min_dist:
            continue
        onsets.append(o)
        prev = o

    k = max(1, int(round(SMOOTH_S * fs_hz)))
    xs = _centred_mean(x, k)
    dxs = np.gradient(xs) * fs_hz  # mmHg/s
    peak_n = max(2, int(round(PEAK_SEARCH_S * fs_hz)))
    max_len = fs_hz * 60.0 / HR_MIN_BPM
    beats = []
    for o, e in zip(onsets[:-1], onsets[1:]):
        if e - o > max_len or e - o < min_dist:
            continue
        hi = min(e, o + peak_n)
        p = o + int(np.argmax(x[o:hi]))
        beats.append((o, e, p, _find_notch(x, dxs, o, p, e, fs_hz)))
    return beats


def _find_notch(x: np.ndarray, dxs: np.ndarray, o: int, p: int, e: int, fs_hz: float) -> int:
    """Dicrotic notch between the systolic peak and 65% of the beat: the point where the
    falling pressure re-accelerates upward (a local maximum of the smoothed derivative with
    enough prominence); -1 when the descent is a smooth decay (no notch, e.g. damping)."""
    lo = p + max(1, int(round(0.04 * fs_hz)))
    hi = o + int(0.65 * (e - o))
    if hi - lo < 3:
        return -1
    seg = dxs[lo:hi]
    pp = float(x[p] - x[o])
    if pp <= 0:
        return -1
    # interior local maxima of the derivative and how far each rises above the lower of the
    # minima on its two sides (a prominence bounded by the search window)
    bumps = np.flatnonzero((seg[1:-1] > seg[:-2]) & (seg[1:-1] >= seg[2:])) + 1
    if bumps.size == 0:
        return -1
    left_min = np.minimum.accumulate(seg)[bumps - 1]
    right_min = np.minimum.accumulate(seg[::-1])[::-1][bumps + 1]
    prominence = seg[bumps] - np.maximum(left_min, right_min)
    best = int(np.argmax(prominence))
    if prominence[best] < NOTCH_MIN_PROM_REL * pp:
        return -1
    b = int(bumps[best])
    # the notch is the lowest pressure between the steepest fall and the re-acceleration
    fall = int(np.argmin(seg[:b + 1]))
    return lo + fall + int(np.argmin(x[lo + fall:lo + b + 1]))


def detect_beats(x: np.ndarray, fs_hz: float) -> Beats:
    """Detect complete beats in ``x`` (mmHg, NaN = missing) sampled at ``fs_hz``.

    Heart rates 30-220 bpm; a beat's onset and end are both in one finite run, so no beat
    spans a gap. Returns beats sorted by onset; indices relative to ``x``.
    """
    if fs_hz <= 0:
        raise ValueError(f"detect_beats: fs_hz must be > 0, got {fs_hz}")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"detect_beats: expected a 1-D segment, got shape {x.shape}")
    min_run = int(math.ceil(MIN_RUN_S * fs_hz))
    rows: list[tuple[int, int, int, int]] = []
    for lo, hi in finite_runs(x):
        if hi - lo < min_run:
            continue
        rows.extend((o + lo, e + lo, p + lo, (nt + lo) if nt >= 0 else -1)
                    for o, e, p, nt in _detect_run(x[lo:hi], fs_hz))
    if not rows:
        return Beats.empty()
    idx = np.asarray(rows, dtype=np.int64)  # (n, 4)
    onset, end, peak, notch = idx[:, 0], idx[:, 1], idx[:, 2], idx[:, 3]
    span = x[onset[0]:end[-1]]
    cs = np.concatenate(([0.0], np.cumsum(np.where(np.isfinite(span), span, 0.0))))  # beats hold no NaN
    base = onset[0]
    mean = (cs[end - base] - cs[onset - base]) / (end - onset)
    sbp = x[peak]
    dbp = x[onset]
    return Beats(onset=onset, end=end, peak=peak, notch=notch, sbp=sbp, dbp=dbp, map=mean,
                 pp=sbp - dbp, hr_bpm=60.0 * fs_hz / (end - onset), rise_s=(peak - onset) / fs_hz)
