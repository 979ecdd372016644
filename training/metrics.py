"""Evaluation metrics for IOH forecasts (numpy only; checked against scikit-learn in tests).

Definitions used throughout (per horizon ``h``):

* samples are the eligible time points of the evaluated recordings (``training.labels``), one
  every ``stride_s`` seconds; ``y`` is 1 when an IOH event begins within ``h`` after the point;
* **alarm**: ``score >= threshold`` at a sample; an **alarm onset** is an alarming sample whose
  previous sample of the same case (``stride_s`` earlier) is missing (excluded) or not alarming;
* **alarm firing**: an alarm onset, and again every ``rearm_s`` (default: the horizon) while the
  alarm stays on, as a monitor re-alerts; without re-arming an alarm left on all the time would
  count as one false alarm per recording;
* **false alarm**: a firing at a negative sample (no event begins within ``h`` after it);
  **false alarms per hour** = false firings / monitored hours, where monitored hours =
  number of eligible samples x ``stride_s`` / 3600;
* the operating **threshold** is chosen on the development split as the lowest threshold whose
  false alarms per hour do not exceed the target; it is then applied unchanged to the test split;
* **event-level sensitivity**: share of events with at least one eligible sample in the
  ``h`` before onset (after the previous event ended) that have an alarm in that window;
* **lead time** of a detected event: onset time minus the time of its first alarm in that window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.stats import rankdata


def _check(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(np.int64).ravel()
    s = np.asarray(s, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"metrics: labels ({y.size}) and scores ({s.size}) differ in length")
    if not np.isfinite(s).all():
        raise ValueError(f"metrics: {int((~np.isfinite(s)).sum())} scores are not finite")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("metrics: labels must be 0 or 1 (drop excluded samples first)")
    return y, s


def auroc(y, s) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); NaN with one class."""
    y, s = _check(y, s)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(s)
    return float((r[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(y, s) -> float:
    """AUPRC as average precision: sum over thresholds of (R_n - R_{n-1}) * P_n."""
    y, s = _check(y, s)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    tp = np.cumsum(y_sorted)
    fp = np.cumsum(1 - y_sorted)
    # keep the last index of each distinct score (thresholds)
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], y.size - 1]
    tp, fp = tp[last], fp[last]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    d_recall = np.diff(np.r_[0.0, recall])
    return float((d_recall * precision).sum())


def brier(y, p) -> float:
    y, p = _check(y, p)
    return float(np.mean((p - y) ** 2))


def roc_curve(y, s) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold (descending)."""
    y, s = _check(y, s)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], y.size - 1]
    tp = np.cumsum(y_sorted)[last]
    fp = np.cumsum(1 - y_sorted)[last]
    return np.r_[0.0, fp / max(1, fp[-1])], np.r_[0.0, tp / max(1, tp[-1])]


def pr_curve(y, s) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision at every distinct threshold (descending)."""
    y, s = _check(y, s)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], y.size - 1]
    tp = np.cumsum(y_sorted)[last]
    fp = np.cumsum(1 - y_sorted)[last]
    return tp / max(1, int(y.sum())), tp / (tp + fp)


def calibration_bins(y, p, n_bins: int = 10) -> list[dict]:
    """Equal-width probability bins: count, mean predicted, observed positive share."""
    y, p = _check(y, p)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
    out = []
    for b in range(n_bins):
        m = idx == b
        out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": int(m.sum()),
                    "mean_pred": float(p[m].mean()) if m.any() else None,
                    "frac_pos": float(y[m].mean()) if m.any() else None})
    return out


# --- alarms -------------------------------------------------------------------------------------

def alarm_onsets(alarm: np.ndarray, case: np.ndarray, t_ns: np.ndarray, stride_s: float) -> np.ndarray:
    """Alarm onsets (bool per sample). Samples must be sorted by (case, t_ns)."""
    alarm = np.asarray(alarm, dtype=bool)
    prev_alarm = np.r_[False, alarm[:-1]]
    contiguous = np.r_[False, (case[1:] == case[:-1])
                       & (np.abs((t_ns[1:] - t_ns[:-1]) - stride_s * 1e9) < 0.5 * stride_s * 1e9)]
    return alarm & ~(prev_alarm & contiguous)


def alarm_firings(alarm: np.ndarray, case: np.ndarray, t_ns: np.ndarray, stride_s: float,
                  rearm_s: float) -> np.ndarray:
    """Onsets plus one firing every ``rearm_s`` of a continuing alarm (bool per sample)."""
    alarm = np.asarray(alarm, dtype=bool)
    onsets = alarm_onsets(alarm, case, t_ns, stride_s)
    if not onsets.any():
        return onsets
    run = np.cumsum(onsets) - 1                      # index of the alarm run each sample is in
    start = np.nonzero(onsets)[0]
    pos = np.arange(alarm.size) - start[np.maximum(run, 0)]
    every = max(1, int(round(rearm_s / stride_s)))
    return alarm & (run >= 0) & (pos % every == 0)


def false_alarms_per_hour(y, alarm, case, t_ns, stride_s: float, rearm_s: float) -> float:
    hours = len(y) * stride_s / 3600.0
    if hours == 0:
        return float("nan")
    fired = alarm_firings(alarm, case, t_ns, stride_s, rearm_s)
    return float((fired & (np.asarray(y) == 0)).sum() / hours)


def threshold_at_fa_rate(y, s, case, t_ns, stride_s: float, target_per_h: float, rearm_s: float,
                         n_candidates: int = 200) -> float:
    """Lowest score threshold whose false alarms per hour stay within ``target_per_h``."""
    y, s = _check(y, s)
    cands = np.unique(np.quantile(s, np.linspace(0.0, 1.0, n_candidates)))
    best = float(np.nextafter(s.max(), np.inf))  # alarms never: 0 false alarms
    for thr in cands[::-1]:
        if false_alarms_per_hour(y, s >= thr, case, t_ns, stride_s, rearm_s) <= target_per_h:
            best = float(thr)
        else:
            break  # the rate only grows as the threshold falls further (up to run merging)
    return best


@dataclass(frozen=True)
class EventTable:
    """IOH events of the evaluated recordings (one row each)."""

    case: np.ndarray        # (n_events,) caseid
    onset_ns: np.ndarray    # (n_events,) start of the first low cell
    end_ns: np.ndarray      # (n_events,) end of the last low cell


def event_alarms(events: EventTable, y, alarm, case, t_ns, horizon_s: float, decision_delay_s: float = 0.0) -> dict:
    """Event-level sensitivity and lead times (minutes) for one horizon.

    ``decision_delay_s``: how long after the end of its last cell a sample is decided (the agent
    waits for the lead-out of the cell); a sample belongs to an event when its last cell ended
    at or before the onset. Lead time = onset - decision time, floored at 0.
    """
    y = np.asarray(y)
    alarm = np.asarray(alarm, dtype=bool)
    leads, n_eligible, n_detected = [], 0, 0
    h_ns = horizon_s * 1e9
    for c in np.unique(events.case):
        ev = np.nonzero(events.case == c)[0]
        ev = ev[np.argsort(events.onset_ns[ev])]
        m_case = case == c
        tc, yc, ac = t_ns[m_case], y[m_case], alarm[m_case]
        prev_end = -np.inf
        for e in ev:
            on = events.onset_ns[e]
            t_obs = tc - decision_delay_s * 1e9
            w = (t_obs >= max(on - h_ns, prev_end)) & (t_obs <= on) & (yc == 1)
            prev_end = events.end_ns[e]
            if not w.any():
                continue
            n_eligible += 1
            if (ac & w).any():
                n_detected += 1
                leads.append(max(0.0, (on - tc[ac & w].min()) / 60e9))
    leads_a = np.asarray(leads, dtype=np.float64)
    return {
        "events": int(n_eligible),
        "detected": int(n_detected),
        "event_sensitivity": float(n_detected / n_eligible) if n_eligible else float("nan"),
        "lead_time_median_min": float(np.median(leads_a)) if leads_a.size else float("nan"),
        "lead_time_share_ge_5min": float((leads_a >= 5.0 - 1e-9).mean()) if leads_a.size else float("nan"),
        "lead_times_min": [float(v) for v in leads_a],
    }


def operating_point(y, s, thr: float, case, t_ns, stride_s: float, rearm_s: float) -> dict:
    y, s = _check(y, s)
    a = s >= thr
    tp = int((a & (y == 1)).sum())
    fp = int((a & (y == 0)).sum())
    fn = int((~a & (y == 1)).sum())
    tn = int((~a & (y == 0)).sum())
    return {
        "threshold": float(thr),
        "sensitivity": tp / (tp + fn) if tp + fn else float("nan"),
        "specificity": tn / (tn + fp) if tn + fp else float("nan"),
        "ppv": tp / (tp + fp) if tp + fp else float("nan"),
        "alarm_share": float(a.mean()),
        "false_alarms_per_h": false_alarms_per_hour(y, a, case, t_ns, stride_s, rearm_s),
    }


# --- subject-clustered bootstrap ----------------------------------------------------------------

def bootstrap_ci(stat: Callable[[np.ndarray, np.ndarray], float], y, s, subject,
                 n_boot: int = 200, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile interval of ``stat`` over resamples of subjects with replacement.

    Every resample draws as many subjects as there are, with replacement, and takes all samples
    of each drawn subject (as often as drawn). Resamples with a single class are skipped.
    """
    y, s = _check(y, s)
    subject = np.asarray(subject)
    uniq, inv = np.unique(subject, return_inverse=True)
    order = np.argsort(inv, kind="mergesort")
    bounds = np.r_[0, np.cumsum(np.bincount(inv, minlength=uniq.size))]
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        pick = rng.integers(0, uniq.size, uniq.size)
        idx = np.concatenate([order[bounds[p]:bounds[p + 1]] for p in pick])
        yb = y[idx]
        if yb.min() == yb.max():
            continue
        v = stat(yb, s[idx])
        if np.isfinite(v):
            vals.append(v)
    if not vals:
        return float("nan"), float("nan")
    lo, hi = np.quantile(vals, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)
