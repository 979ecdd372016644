"""IOH events and forecast labels on the MAP grid (pure functions of arrays).

Protocol (DESIGN.md, "Training and honest evaluation"):

* **Low cell**: a cell that passed the artifact gate (``valid``) with MAP < ``threshold_mmhg``.
* **IOH event**: a run of low cells whose *valid low* cells add up to at least
  ``min_duration_s`` (60 s = 20 cells of 3 s; 19 cells = 57 s is not an event). Inside a run,
  a stretch of invalid cells (artifact or gap) no longer than ``max_bridge_s`` that is followed
  by another low cell is bridged: it neither ends the event nor counts toward its duration.
  A valid cell at or above the threshold, or a longer invalid stretch, ends the run.
  The event occupies cells ``[onset, end]`` (first to last low cell, bridged gaps included).
* **Time points**: point ``k`` is the end of cell ``k``; everything up to and including cell ``k``
  has been observed. For horizon ``h`` (``H = h / grid_s`` cells) the point is
  - *excluded* when an event is under way at ``k`` (``onset <= k <= end``);
  - *excluded* when the window at ``k`` is artifact: fewer than ``min_valid_frac`` of the
    cells in the last ``artifact_window_s`` passed the gate, or cell ``k`` itself did not;
  - *excluded* before ``min_history_s`` of recording;
  - *positive* when an event begins in ``(k, k + H]`` (its first low cell lies in the next
    ``H`` cells, i.e. its onset time is within ``h`` after the point);
  - *excluded* when no event begins before the end of the recording but the horizon runs past
    it (``k + H > n - 1``): the future is not fully observed;
  - *negative* otherwise.

Labels are ``1`` (positive), ``0`` (negative) and ``-1`` (excluded); ``EXCLUDE_*`` codes say why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

POSITIVE, NEGATIVE, EXCLUDED = 1, 0, -1

# why a point is excluded (0 = eligible)
ELIGIBLE = 0
EXCLUDE_IN_EVENT = 1
EXCLUDE_ARTIFACT = 2
EXCLUDE_HISTORY = 3
EXCLUDE_FUTURE = 4


@dataclass(frozen=True)
class LabelProtocol:
    grid_s: float = 3.0
    threshold_mmhg: float = 65.0
    min_duration_s: float = 60.0
    max_bridge_s: float = 30.0
    artifact_window_s: float = 30.0
    min_valid_frac: float = 0.5
    min_history_s: float = 60.0
    horizons_min: tuple[int, ...] = (5, 10, 15)

    def cells(self, seconds: float) -> int:
        return int(round(seconds / self.grid_s))


@dataclass(frozen=True)
class Event:
    onset: int      # index of the first low cell
    end: int        # index of the last low cell (inclusive)
    low_cells: int  # valid low cells (duration = low_cells * grid_s)


def find_events(map_mmhg: np.ndarray, valid: np.ndarray, proto: LabelProtocol = LabelProtocol()) -> list[Event]:
    """IOH events in a MAP series. ``map_mmhg`` (n,) float, ``valid`` (n,) bool."""
    map_mmhg = np.asarray(map_mmhg, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    if map_mmhg.shape != valid.shape or map_mmhg.ndim != 1:
        raise ValueError(f"labels: map_mmhg {map_mmhg.shape} and valid {valid.shape} must be equal 1-D shapes")
    ok = valid & np.isfinite(map_mmhg)
    low = ok & (map_mmhg < proto.threshold_mmhg)
    max_bridge = proto.cells(proto.max_bridge_s)
    need = proto.cells(proto.min_duration_s)
    events: list[Event] = []
    n = map_mmhg.size
    i = 0
    while i < n:
        if not low[i]:
            i += 1
            continue
        onset, last, count = i, i, 0
        j = i
        while j < n:
            if low[j]:
                last, count = j, count + 1
                j += 1
            elif not ok[j]:
                # invalid stretch: bridge it only if short and followed by a low cell
                g = j
                while g < n and not ok[g]:
                    g += 1
                if g - j <= max_bridge and g < n and low[g]:
                    j = g
                else:
                    break
            else:
                break
        if count >= need:
            events.append(Event(onset, last, count))
        i = last + 1
    return events


def point_labels(map_mmhg: np.ndarray, valid: np.ndarray, proto: LabelProtocol = LabelProtocol()
                 ) -> tuple[np.ndarray, np.ndarray, list[Event]]:
    """Labels for every cell end.

    Returns ``labels`` (n, n_horizons) int8 in {1, 0, -1}, ``reason`` (n, n_horizons) int8
    (``ELIGIBLE`` or an ``EXCLUDE_*`` code) and the events.
    """
    valid = np.asarray(valid, dtype=bool) & np.isfinite(np.asarray(map_mmhg, dtype=np.float64))
    n = valid.size
    events = find_events(map_mmhg, valid, proto)
    nh = len(proto.horizons_min)
    labels = np.zeros((n, nh), dtype=np.int8)
    reason = np.zeros((n, nh), dtype=np.int8)
    if n == 0:
        return labels, reason, events

    # next event onset strictly after k (a huge sentinel when there is none)
    next_onset = np.full(n, np.iinfo(np.int64).max // 2, dtype=np.int64)
    in_event = np.zeros(n, dtype=bool)
    for ev in events:
        in_event[ev.onset:ev.end + 1] = True
    onsets = np.array([ev.onset for ev in events], dtype=np.int64)
    if onsets.size:
        pos = np.searchsorted(onsets, np.arange(n), side="right")  # first onset > k
        has = pos < onsets.size
        next_onset[has] = onsets[pos[has]]

    # artifact window: share of valid cells among the last w cells (fewer at the start)
    w = max(1, proto.cells(proto.artifact_window_s))
    csum = np.concatenate([[0], np.cumsum(valid)])
    k = np.arange(n)
    lo = np.maximum(0, k + 1 - w)
    frac = (csum[k + 1] - csum[lo]) / (k + 1 - lo)
    artifact = (~valid) | (frac < proto.min_valid_frac)
    early = (k + 1) < proto.cells(proto.min_history_s)

    for j, h_min in enumerate(proto.horizons_min):
        H = proto.cells(h_min * 60.0)
        pos = next_onset <= k + H                      # next onset in (k, k+H]; next_onset > k always
        future_cut = (k + H > n - 1) & ~pos
        lab = np.where(pos, POSITIVE, NEGATIVE).astype(np.int8)
        why = np.full(n, ELIGIBLE, dtype=np.int8)
        why[future_cut] = EXCLUDE_FUTURE
        why[early] = EXCLUDE_HISTORY
        why[artifact] = EXCLUDE_ARTIFACT
        why[in_event] = EXCLUDE_IN_EVENT
        lab[why != ELIGIBLE] = EXCLUDED
        labels[:, j] = lab
        reason[:, j] = why
    return labels, reason, events
