"""Metrics against scikit-learn and hand-counted alarm sequences."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from training import metrics as M


@pytest.fixture(scope="module")
def fixed():
    rng = np.random.default_rng(7)
    y = (rng.random(2000) < 0.1).astype(int)
    s = rng.normal(size=2000) + 1.2 * y
    s_tied = np.round(s, 1)  # many ties
    p = 1 / (1 + np.exp(-s))
    return y, s, s_tied, p


def test_auroc_matches_sklearn(fixed):
    y, s, s_tied, _ = fixed
    assert M.auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert M.auroc(y, s_tied) == pytest.approx(roc_auc_score(y, s_tied), abs=1e-12)


def test_average_precision_matches_sklearn(fixed):
    y, s, s_tied, _ = fixed
    assert M.average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert M.average_precision(y, s_tied) == pytest.approx(average_precision_score(y, s_tied), abs=1e-12)


def test_brier_matches_sklearn(fixed):
    y, _, _, p = fixed
    assert M.brier(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-12)


def test_one_class_is_nan_and_bad_input_raises():
    assert np.isnan(M.auroc([0, 0, 0], [0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="not finite"):
        M.auroc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="differ"):
        M.auroc([0, 1, 1], [0.1, 0.2])


def test_calibration_bins_count_everything(fixed):
    y, _, _, p = fixed
    bins = M.calibration_bins(y, p, 10)
    assert sum(b["n"] for b in bins) == y.size
    for b in bins:
        if b["n"]:
            assert b["lo"] <= b["mean_pred"] <= b["hi"]


def test_alarm_onsets_and_false_alarms_per_hour():
    stride = 30.0
    t = (np.arange(10) * stride * 1e9).astype(np.int64)
    case = np.zeros(10, dtype=int)
    alarm = np.array([0, 1, 1, 0, 1, 1, 1, 0, 0, 1], dtype=bool)
    on = M.alarm_onsets(alarm, case, t, stride)
    assert on.tolist() == [False, True, False, False, True, False, False, False, False, True]
    # a gap (excluded samples) between alarming samples starts a new onset
    t_gap = t.copy()
    t_gap[2:] += int(60e9)
    assert M.alarm_onsets(alarm, case, t_gap, stride)[2]
    # a new case starts a new onset
    case2 = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    assert M.alarm_onsets(alarm, case2, t, stride)[2]
    # onset 1 is before an event (y=1), onsets 4 and 9 are false: 2 false alarms in 5 min
    y = np.array([0, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    assert M.false_alarms_per_hour(y, alarm, case, t, stride, rearm_s=600) == pytest.approx(2 / (300 / 3600))
    # re-arming every 60 s: the run 4-6 fires at 4 and 6
    fired = M.alarm_firings(alarm, case, t, stride, rearm_s=60)
    assert np.nonzero(fired)[0].tolist() == [1, 4, 6, 9]
    assert M.false_alarms_per_hour(y, alarm, case, t, stride, rearm_s=60) == pytest.approx(3 / (300 / 3600))
    # an alarm that is always on is not free: it re-fires every rearm_s
    always = np.ones(10, dtype=bool)
    assert M.alarm_firings(always, case, t, stride, rearm_s=90).sum() == 4


def test_threshold_at_fa_rate_is_within_target_and_lowest():
    rng = np.random.default_rng(3)
    n = 3000
    stride = 30.0
    case = np.repeat(np.arange(10), n // 10)
    t = np.tile(np.arange(n // 10) * int(stride * 1e9), 10)
    y = (rng.random(n) < 0.05).astype(int)
    s = rng.normal(size=n) + 2 * y
    thr = M.threshold_at_fa_rate(y, s, case, t, stride, target_per_h=1.0, rearm_s=600)
    assert M.false_alarms_per_hour(y, s >= thr, case, t, stride, 600) <= 1.0
    assert thr < s.max()  # some alarms are allowed
    # the next lower candidate threshold would exceed the target
    lower = np.quantile(s, np.linspace(0, 1, 200))
    lower = lower[lower < thr].max()
    assert M.false_alarms_per_hour(y, s >= lower, case, t, stride, 600) > 1.0


def test_event_level_sensitivity_and_lead_time():
    stride = 30.0
    t = (np.arange(100) * stride * 1e9).astype(np.int64)  # 50 min
    case = np.zeros(100, dtype=int)
    onset = int(40 * 60e9)  # event at 40 min
    events = M.EventTable(case=np.array([0]), onset_ns=np.array([onset]), end_ns=np.array([onset + int(120e9)]))
    h = 600.0
    keep = (t < onset) | (t > onset + 120e9)
    y = ((t >= onset - h * 1e9) & (t <= onset)).astype(int)
    alarm = (t >= onset - 7 * 60e9) & (t < onset)
    r = M.event_alarms(events, y[keep], alarm[keep], case[keep], t[keep], h)
    assert r["events"] == 1 and r["detected"] == 1
    assert r["lead_time_median_min"] == pytest.approx(7.0)
    assert r["lead_time_share_ge_5min"] == 1.0
    r0 = M.event_alarms(events, y[keep], np.zeros(keep.sum(), bool), case[keep], t[keep], h)
    assert r0["detected"] == 0 and r0["event_sensitivity"] == 0.0


def test_bootstrap_is_seeded_and_brackets_the_estimate(fixed):
    y, s, _, _ = fixed
    subject = np.arange(y.size) // 50
    a = M.bootstrap_ci(M.auroc, y, s, subject, n_boot=100, seed=1)
    b = M.bootstrap_ci(M.auroc, y, s, subject, n_boot=100, seed=1)
    assert a == b
    assert a[0] < M.auroc(y, s) < a[1]
    # clustered intervals are wider when subjects differ systematically
    s_cl = s + np.repeat(np.random.default_rng(0).normal(0, 1.0, 40), 50)
    w_cl = np.diff(M.bootstrap_ci(M.auroc, y, s_cl, subject, n_boot=100, seed=1))[0]
    w_iid = np.diff(M.bootstrap_ci(M.auroc, y, s_cl, np.arange(y.size), n_boot=100, seed=1))[0]
    assert w_cl > w_iid
