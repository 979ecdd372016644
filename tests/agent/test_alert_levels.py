"""Alert raise levels per horizon from an engine's dev-chosen operating point (alerting.json)."""

from __future__ import annotations

import json

import pytest

from agent.alerts import AlertInput, AlertStateMachine
from agent.settings import Settings
from models.forecaster import load_alert_thresholds

T0 = 1_790_000_000 * 10**9
LEVELS = {5: 0.22, 10: 0.27, 15: 0.29}


def tick(i: int, r5: float, r10: float = 0.0, r15: float = 0.0) -> AlertInput:
    return AlertInput(t_ns=T0 + i * 2 * 10**9, risk={5: r5, 10: r10, 15: r15}, map_now_mmhg=75.0,
                      map_slope_mmhg_per_min=-0.5, signal_quality="ok")


def run(sm: AlertStateMachine, ticks: list[AlertInput]) -> list[str]:
    return [f"{a.kind}:{a.action}:{a.priority}" for x in ticks for a in sm.step(x)]


def test_levels_from_the_engine_raise_where_the_default_would_not():
    seq = [tick(i, 0.25) for i in range(3)]
    assert run(AlertStateMachine("OR-1", Settings()), seq) == []
    assert run(AlertStateMachine("OR-1", Settings(), raise_risk_by_h=LEVELS), seq) == \
        ["ioh_predicted:raised:medium"]


def test_each_horizon_uses_its_own_level_and_clear_keeps_the_ratio():
    sm = AlertStateMachine("OR-1", Settings(), raise_risk_by_h=LEVELS)
    # 0.25 is above the 5-min level but below the 10- and 15-min levels.
    assert run(sm, [tick(i, 0.0, 0.25, 0.25) for i in range(3)]) == []
    assert run(sm, [tick(3 + i, 0.0, 0.28) for i in range(2)]) == ["ioh_predicted:raised:medium"]
    # Clear level = raise level * 0.3 / 0.5: 0.15 is below 0.6 * 0.27 = 0.162 at 10 min but
    # 0.2 at 15 min is not below 0.6 * 0.29 = 0.174, so the alert holds.
    assert run(sm, [tick(5 + i, 0.0, 0.15, 0.2) for i in range(5)]) == []
    assert run(sm, [tick(10 + i, 0.0, 0.15, 0.1) for i in range(3)]) == ["ioh_predicted:resolved:medium"]


def test_escalation_scales_with_the_5_min_level():
    sm = AlertStateMachine("OR-1", Settings(), raise_risk_by_h=LEVELS)
    # escalate level = 0.22 * 0.8 / 0.5 = 0.352
    events = run(sm, [tick(i, 0.30) for i in range(2)] + [tick(2 + i, 0.36) for i in range(2)])
    assert events == ["ioh_predicted:raised:medium", "ioh_predicted:escalated:high"]


def test_snapshot_keeps_the_levels():
    sm = AlertStateMachine("OR-1", Settings(), raise_risk_by_h=LEVELS)
    back = AlertStateMachine.restore("OR-1", Settings(), json.loads(json.dumps(sm.snapshot())))
    assert back.raise_risk_by_h == LEVELS


def test_alerting_file_is_read_and_checked(tmp_path):
    assert load_alert_thresholds(tmp_path, (5, 10, 15)) is None
    (tmp_path / "alerting.json").write_text(json.dumps({"raise_risk": {"5": 0.2, "10": 0.3, "15": 0.4}}))
    assert load_alert_thresholds(tmp_path, (5, 10, 15)) == {5: 0.2, 10: 0.3, 15: 0.4}
    (tmp_path / "alerting.json").write_text(json.dumps({"raise_risk": {"5": 0.2, "10": 1.3}}))
    with pytest.raises(ValueError, match="raise_risk"):
        load_alert_thresholds(tmp_path, (5, 10, 15))


def test_shipped_engine_has_dev_chosen_levels():
    from models.forecaster import DEFAULT_ENGINE_DIR

    levels = load_alert_thresholds(DEFAULT_ENGINE_DIR, (5, 10, 15))
    report = json.loads((DEFAULT_ENGINE_DIR / "report.json").read_text())
    for h, v in levels.items():
        assert v == pytest.approx(report["horizons"][str(h)]["methods"]["model"]["operating_point"]["threshold"],
                                  abs=1e-4)
