"""Labels against hand-made MAP traces on the 3 s grid."""

import numpy as np
import pytest

from training.labels import (EXCLUDE_ARTIFACT, EXCLUDE_FUTURE, EXCLUDE_HISTORY, EXCLUDE_IN_EVENT,
                             LabelProtocol, find_events, point_labels)

P = LabelProtocol()  # 3 s grid, 65 mmHg, 60 s, horizons 5/10/15 min


def trace(n=800, level=80.0):
    return np.full(n, level), np.ones(n, dtype=bool)


def test_exactly_60_s_is_an_event_57_s_is_not():
    m, v = trace()
    m[100:120] = 60.0  # 20 cells = 60 s
    m[300:319] = 60.0  # 19 cells = 57 s
    ev = find_events(m, v, P)
    assert [(e.onset, e.end, e.low_cells) for e in ev] == [(100, 119, 20)]


def test_threshold_is_strict():
    m, v = trace()
    m[100:140] = 65.0  # at the threshold is not hypotension
    assert find_events(m, v, P) == []
    m[100:140] = 64.99
    assert len(find_events(m, v, P)) == 1


def test_short_gap_is_bridged_but_not_counted_long_gap_splits():
    m, v = trace()
    m[100:110] = 60.0
    v[110:115] = False  # 15 s of artifact inside the dip: bridged
    m[115:125] = 60.0
    ev = find_events(m, v, P)
    assert [(e.onset, e.end, e.low_cells) for e in ev] == [(100, 124, 20)]
    # the bridged cells alone do not make up the duration
    m2, v2 = trace()
    m2[100:110] = 60.0
    v2[110:115] = False
    m2[115:124] = 60.0  # 10 + 9 = 19 low cells
    assert find_events(m2, v2, P) == []
    # a gap longer than 30 s ends the run
    m3, v3 = trace()
    m3[100:115] = 60.0
    v3[115:126] = False  # 33 s
    m3[126:141] = 60.0
    assert find_events(m3, v3, P) == []
    # a gap not followed by a low cell ends the run where the low cells end
    m4, v4 = trace()
    m4[100:125] = 60.0
    v4[125:130] = False
    ev = find_events(m4, v4, P)
    assert [(e.onset, e.end) for e in ev] == [(100, 124)]


def test_invalid_low_cells_are_not_hypotension():
    m, v = trace()
    m[100:140] = 20.0
    v[100:140] = False  # zeroing artifact
    assert find_events(m, v, P) == []


def test_horizons_and_exclusions():
    m, v = trace()
    onset = 400
    m[onset:onset + 30] = 55.0
    lab, why, ev = point_labels(m, v, P)
    assert len(ev) == 1
    h5, h10, h15 = 100, 200, 300  # cells per horizon
    # positive for horizon h exactly when onset in (k, k+H]
    for j, H in enumerate((h5, h10, h15)):
        assert lab[onset - H, j] == 1
        assert lab[onset - 1, j] == 1
        assert lab[onset - H - 1, j] == 0
    # during the event: excluded for every horizon
    assert (lab[onset:onset + 30] == -1).all()
    assert (why[onset:onset + 30] == EXCLUDE_IN_EVENT).all()
    # right after the event ends: eligible again (negative: no further event; future observed)
    assert lab[onset + 30, 0] == 0


def test_artifact_window_and_history_excluded():
    m, v = trace()
    v[500:520] = False
    lab, why, _ = point_labels(m, v, P)
    assert (why[500:520, 0] == EXCLUDE_ARTIFACT).all()
    # 30 s window = 10 cells; at k=524, 5 of the last 10 cells are valid -> eligible
    assert why[524, 0] == 0 and why[523, 0] == EXCLUDE_ARTIFACT
    # first minute has too little history
    assert (why[:19, 0] == EXCLUDE_HISTORY).all() and why[19, 0] == 0


def test_unobserved_future_excluded_unless_event_starts_before_end():
    m, v = trace(n=500)
    lab, why, _ = point_labels(m, v, P)
    # 5 min horizon = 100 cells; the last point with a fully observed future is k = n-1-100
    assert lab[399, 0] == 0 and why[400, 0] == EXCLUDE_FUTURE
    assert why[200, 2] == EXCLUDE_FUTURE and lab[199, 2] == 0
    m[470:495] = 58.0
    lab, why, _ = point_labels(m, v, P)
    assert lab[450, 2] == 1 and lab[469, 0] == 1  # event begins before the end: positive
    assert (lab[495:, :] == -1).all()             # after it, the future is cut short again


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="labels"):
        find_events(np.zeros(5), np.ones(4, dtype=bool))
