"""The alert state machine over hand-made tick sequences, plus properties over random ones."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from agent.alerts import (IN_PROGRESS, PREDICTED, SIGNAL, AlertInput, AlertStateMachine, alert_id_of,
                          alert_input)
from agent.settings import Settings
from streams.contracts import Alert, Forecast, decode

S = Settings(alert_raise_risk=0.5, alert_clear_risk=0.3, alert_escalate_risk=0.8, alert_confirm_updates=2,
             alert_clear_updates=3, ioh_map_mmhg=65.0, ioh_min_duration_s=60.0, alert_near_map_mmhg=5.0,
             alert_falling_mmhg_per_min=0.5, alert_quality_after_s=30.0, horizons_min=(5, 10, 15))
TICK_S = 2


def tick(i: int, r10: float, *, r5: float | None = None, r15: float | None = None, map_mmhg: float = 80.0,
         slope: float = 0.0, quality: str = "ok", below_s: float = 0.0, reasons=()) -> AlertInput:
    """Tick ``i`` (2 s apart); the 5- and 15-min risks default to the 10-min one."""
    return AlertInput(t_ns=1_700_000_000_000_000_000 + i * TICK_S * 10**9,
                      risk={5: r10 if r5 is None else r5, 10: r10, 15: r10 if r15 is None else r15},
                      map_now_mmhg=map_mmhg, map_slope_mmhg_per_min=slope, signal_quality=quality,
                      gate_reasons=list(reasons), map_below_s=below_s,
                      drivers={"map_level_mmhg": map_mmhg, "map_trend_mmhg_per_min": slope})


def run(xs, sm: AlertStateMachine | None = None) -> list[Alert]:
    sm = sm or AlertStateMachine("OR-3", S, "case-1")
    return [a for x in xs for a in sm.step(x)]


def acts(events: list[Alert]) -> list[tuple[str, str, str]]:
    return [(a.kind, a.action, a.priority) for a in events]


def strip(events: list[Alert]) -> list[dict]:
    return [a.model_dump(exclude={"issued_wall_ns"}) for a in events]


def risks(values, **kw) -> list[AlertInput]:
    return [tick(i, r, **kw) for i, r in enumerate(values)]


# --- confirmation, hysteresis, escalation, resolution -------------------------------------------

def test_one_high_tick_does_not_raise():
    assert run(risks([0.1, 0.9, 0.1, 0.9, 0.1, 0.6, 0.2])) == []


def test_raise_after_confirmation_at_medium_with_evidence_and_message():
    ev = run(risks([0.1, 0.72, 0.72], map_mmhg=71.0, slope=-1.8))
    assert acts(ev) == [(PREDICTED, "raised", "medium")]
    a = ev[0]
    assert a.t_ns == tick(2, 0).t_ns and a.bed_id == "OR-3" and a.episode == 1
    assert a.message == "OR-3: IOH predicted within 5 min (risk 0.72), MAP 71 mmHg falling 1.8 mmHg/min"
    assert a.evidence["risk_5"] == 0.72 and a.evidence["risk_10"] == 0.72 and a.evidence["risk_15"] == 0.72
    assert a.evidence["map_now_mmhg"] == 71.0 and a.evidence["map_slope_mmhg_per_min"] == -1.8
    assert a.evidence["signal_quality"] == "ok" and a.evidence["top_driver"] == "map_level_mmhg"


def test_message_names_shortest_horizon_over_the_raise_level():
    ev = run([tick(i, 0.72, r5=0.2, r15=0.9) for i in range(2)])
    assert "within 10 min (risk 0.72)" in ev[0].message


def test_hysteresis_oscillation_between_thresholds_does_not_flap():
    # raised, then risk wanders between clear (0.3) and raise (0.5), dipping below clear for
    # fewer than alert_clear_updates ticks at a time: stays raised, no further events
    seq = [0.6, 0.6] + [0.45, 0.35, 0.25, 0.25, 0.4, 0.49, 0.2, 0.31, 0.28, 0.29, 0.45] * 5
    ev = run(risks(seq))
    assert acts(ev) == [(PREDICTED, "raised", "medium")]
    # and before raising, oscillation around the raise level without two in a row never raises
    assert run(risks([0.55, 0.45] * 20)) == []


def test_resolution_after_clear_updates_consecutive_ticks():
    seq = [0.6, 0.6, 0.2, 0.2, 0.4, 0.2, 0.2, 0.2, 0.1]
    ev = run(risks(seq))
    assert acts(ev) == [(PREDICTED, "raised", "medium"), (PREDICTED, "resolved", "medium")]
    assert ev[1].t_ns == tick(7, 0).t_ns and ev[1].alert_id == ev[0].alert_id
    assert ev[1].message.startswith("OR-3: IOH prediction resolved (max risk 0.20)")


def test_escalation_on_confirmed_5_min_risk():
    seq = [tick(0, 0.6, r5=0.4), tick(1, 0.6, r5=0.4), tick(2, 0.9, r5=0.85), tick(3, 0.9, r5=0.7),
           tick(4, 0.9, r5=0.85), tick(5, 0.9, r5=0.9), tick(6, 0.9, r5=0.95)]
    ev = run(seq)
    assert acts(ev) == [(PREDICTED, "raised", "medium"), (PREDICTED, "escalated", "high")]
    assert ev[1].t_ns == seq[5].t_ns and ev[1].alert_id == ev[0].alert_id
    assert "escalated to high" in ev[1].message


def test_escalation_when_map_near_threshold_and_falling():
    seq = [tick(i, 0.6, r5=0.3, map_mmhg=75, slope=-1.0) for i in range(3)]
    seq += [tick(3 + i, 0.6, r5=0.3, map_mmhg=69.0, slope=-1.0) for i in range(2)]
    ev = run(seq)
    assert acts(ev) == [(PREDICTED, "raised", "medium"), (PREDICTED, "escalated", "high")]
    # near the threshold but steady does not escalate
    steady = [tick(i, 0.6, r5=0.3, map_mmhg=69.0, slope=-0.2) for i in range(6)]
    assert acts(run(steady)) == [(PREDICTED, "raised", "medium")]


def test_raised_directly_at_high_when_escalation_is_already_confirmed():
    ev = run([tick(i, 0.9) for i in range(2)])
    assert acts(ev) == [(PREDICTED, "raised", "high")]


def test_priority_does_not_step_down_while_active():
    seq = [tick(i, 0.9) for i in range(2)] + [tick(2 + i, 0.45, r5=0.45) for i in range(10)]
    assert acts(run(seq)) == [(PREDICTED, "raised", "high")]


# --- hypotension in progress -------------------------------------------------------------------

def test_in_progress_supersedes_predicted_and_resolves_after_recovery():
    seq = risks([0.7, 0.7, 0.8], map_mmhg=68, slope=-1.0)
    seq += [tick(3, 0.9, map_mmhg=63, below_s=30), tick(4, 0.9, map_mmhg=62, below_s=58),
            tick(5, 0.95, map_mmhg=61, below_s=60), tick(6, 0.95, map_mmhg=60, below_s=62),
            tick(7, 0.9, map_mmhg=64, below_s=64)]
    seq += [tick(8 + i, 0.6, map_mmhg=70, below_s=0) for i in range(2)]
    seq += [tick(10, 0.6, map_mmhg=64, below_s=2)]       # dips again: clear count restarts
    seq += [tick(11 + i, 0.2, map_mmhg=72, below_s=0) for i in range(3)]
    ev = run(seq)
    assert acts(ev) == [(PREDICTED, "raised", "high"), (PREDICTED, "resolved", "high"),
                        (IN_PROGRESS, "raised", "high"), (IN_PROGRESS, "resolved", "high")]
    assert ev[1].t_ns == ev[2].t_ns == seq[5].t_ns
    assert ev[1].evidence["reason"] == "superseded by ioh_in_progress"
    assert ev[2].message == "OR-3: hypotension in progress, MAP 61 mmHg below 65 mmHg for 60 s"
    assert ev[3].t_ns == seq[-1].t_ns
    assert ev[2].alert_id != ev[0].alert_id and ev[2].episode == 2


def test_no_predicted_alert_while_hypotension_is_in_progress():
    seq = [tick(i, 0.99, map_mmhg=60, below_s=60 + 2 * i) for i in range(20)]
    assert acts(run(seq)) == [(IN_PROGRESS, "raised", "high")]


# --- suppression and signal quality ------------------------------------------------------------

def test_no_raise_while_artifact_even_with_high_risk():
    seq = [tick(i, 0.99, quality="artifact", reasons=["flush"]) for i in range(10)]
    seq += [tick(10 + i, 0.99, quality="insufficient") for i in range(5)]
    assert run(seq) == []


def test_confirmation_does_not_span_artifact():
    seq = [tick(0, 0.9), tick(1, 0.9, quality="artifact"), tick(2, 0.9), tick(3, 0.9)]
    ev = run(seq)
    assert acts(ev) == [(PREDICTED, "raised", "high")] and ev[0].t_ns == seq[3].t_ns


def test_active_alert_gets_exactly_one_suppressed_then_resumes():
    seq = [tick(i, 0.6) for i in range(2)]
    seq += [tick(2 + i, 0.1, quality="artifact", reasons=["flush"]) for i in range(8)]
    seq += [tick(10 + i, 0.6) for i in range(3)]
    ev = run(seq)
    assert acts(ev) == [(PREDICTED, "raised", "medium"), (PREDICTED, "suppressed", "medium"),
                        (PREDICTED, "raised", "medium")]
    assert len({a.alert_id for a in ev}) == 1
    assert ev[1].t_ns == seq[2].t_ns and "flush" in ev[1].message
    assert ev[2].t_ns == seq[10].t_ns and ev[2].evidence["resumed"] == "true"
    # low risks during the artifact did not count toward resolution
    assert not any(a.action == "resolved" for a in ev)


def test_signal_quality_alert_after_persistent_artifact_resolves_when_quality_returns():
    seq = [tick(i, 0.1, quality="artifact", reasons=["flush"]) for i in range(20)]   # 0..38 s
    seq += [tick(20, 0.1, quality="insufficient"), tick(21, 0.1)]
    ev = run(seq)
    assert acts(ev) == [(SIGNAL, "raised", "low"), (SIGNAL, "resolved", "low")]
    assert ev[0].t_ns == seq[15].t_ns          # 30 s of event time after the first artifact tick
    assert ev[1].t_ns == seq[21].t_ns
    # short artifact runs never raise it
    short = [tick(i, 0.1, quality="artifact" if i % 10 < 9 else "ok") for i in range(60)]
    assert run(short) == []


# --- NaN ------------------------------------------------------------------------------------------

def test_nan_risks_hold_state():
    nan = math.nan
    # NaN neither confirms a raise ...
    assert run([tick(0, 0.9), tick(1, nan, r5=nan, r15=nan), tick(2, nan, r5=0.9, r15=nan)]) == []
    ev = run([tick(0, 0.6), tick(1, 0.6, r5=nan, r15=nan)])
    assert acts(ev) == [(PREDICTED, "raised", "medium")]          # 0.6 at 10 min still counts
    assert run([tick(0, 0.6), tick(1, nan, r5=nan, r15=nan), tick(2, 0.4)]) == []
    # ... nor resolves: an active alert with NaN risks stays active
    seq = [tick(0, 0.6), tick(1, 0.6)] + [tick(2 + i, 0.1, r15=nan) for i in range(10)]
    assert acts(run(seq)) == [(PREDICTED, "raised", "medium")]
    # NaN MAP never counts as recovered from hypotension
    seq = [tick(0, 0.9, map_mmhg=60, below_s=60)] + [tick(1 + i, 0.1, map_mmhg=nan) for i in range(10)]
    ev = run(seq)
    assert acts(ev) == [(IN_PROGRESS, "raised", "high")]
    assert ev[0].evidence["map_now_mmhg"] == 60.0
    # evidence stays JSON-able: NaN becomes None
    last = run([tick(0, nan, r5=0.9, map_mmhg=nan, slope=nan), tick(1, nan, r5=0.9, map_mmhg=nan, slope=nan)])
    assert last[0].evidence["risk_10"] is None and last[0].evidence["map_now_mmhg"] is None
    assert "MAP n/a" in last[0].message
    assert decode(Alert, last[0].dumps()) == last[0]


def test_nan_only_tick_interrupts_confirmation():
    nan = math.nan
    assert run([tick(0, 0.9), tick(1, nan, r5=nan, r15=nan), tick(2, 0.9)]) == []


# --- ids, snapshot, reset -------------------------------------------------------------------------

def scenario() -> list[AlertInput]:
    seq = [tick(i, 0.1) for i in range(3)] + [tick(3 + i, 0.7, map_mmhg=72, slope=-1.5) for i in range(4)]
    seq += [tick(7 + i, 0.9, quality="artifact", reasons=["flush"]) for i in range(18)]
    seq += [tick(25 + i, 0.9, map_mmhg=62, below_s=60 + 2 * i) for i in range(5)]
    seq += [tick(30 + i, 0.2, map_mmhg=75) for i in range(4)]
    seq += [tick(34 + i, 0.7) for i in range(3)] + [tick(37 + i, 0.1) for i in range(4)]
    return seq


def test_same_sequence_gives_identical_events_and_ids():
    a, b = run(scenario()), run(scenario())
    assert len(a) >= 8
    assert strip(a) == strip(b)
    kinds = {x.kind for x in a}
    assert kinds == {PREDICTED, IN_PROGRESS, SIGNAL}
    assert len({x.event_id for x in a}) == len(a)
    assert a[0].alert_id == alert_id_of("OR-3", "case-1", 1, PREDICTED)


@pytest.mark.parametrize("cut", [1, 4, 6, 10, 24, 26, 31, 36])
def test_snapshot_restore_mid_sequence_continues_identically(cut):
    seq = scenario()
    whole = run(seq)
    sm = AlertStateMachine("OR-3", S, "case-1")
    first = run(seq[:cut], sm)
    snap = json.loads(json.dumps(sm.snapshot()))       # through JSON, as a table stores it
    sm2 = AlertStateMachine.restore("OR-3", S, snap)
    assert strip(first + run(seq[cut:], sm2)) == strip(whole)


def test_restore_refuses_a_foreign_snapshot():
    snap = AlertStateMachine("OR-3", S).snapshot()
    with pytest.raises(ValueError, match="belongs to bed 'OR-3'"):
        AlertStateMachine.restore("OR-4", S, snap)
    with pytest.raises(ValueError, match="version"):
        AlertStateMachine.restore("OR-3", S, dict(snap, version=99))


def test_redelivered_tick_is_ignored_and_counted():
    sm = AlertStateMachine("OR-3", S, "case-1")
    seq = risks([0.6, 0.6])
    ev = run(seq, sm)
    assert run([seq[1], seq[0]], sm) == [] and sm.stale_ticks == 2
    assert acts(ev) == [(PREDICTED, "raised", "medium")]


def test_episode_reset_resolves_active_alerts_and_restarts_ids():
    sm = AlertStateMachine("OR-3", S, "case-1")
    ev = run([tick(i, 0.6) for i in range(2)] + [tick(2 + i, 0.1, quality="artifact") for i in range(16)], sm)
    assert acts(ev) == [(PREDICTED, "raised", "medium"), (PREDICTED, "suppressed", "medium"),
                        (SIGNAL, "raised", "low")]
    t_adt = tick(20, 0).t_ns
    out = sm.reset("case-2", t_adt)
    assert sorted(acts(out)) == [(PREDICTED, "resolved", "medium"), (SIGNAL, "resolved", "low")]
    assert all(a.t_ns == t_adt and a.evidence["reason"] == "patient episode ended" for a in out)
    assert sm.active == {} and sm.reset("case-2") == []
    # the new patient's first alert: counter restarted, id from the new episode
    new = run([tick(100 + i, 0.6) for i in range(2)], sm)
    assert new[0].episode == 1 and new[0].alert_id == alert_id_of("OR-3", "case-2", 1, PREDICTED)
    # a new episode starts fresh: a lower device time is accepted (another recording on this bed)
    sm.reset("case-3")
    assert acts(run([tick(i, 0.6) for i in range(2)], sm)) == [(PREDICTED, "raised", "medium")]


def test_alert_input_from_forecast():
    f = Forecast(bed_id="OR-3", t_ns=5, risk={"5": 0.2, "10": 0.7, "15": float("nan")}, map_now_mmhg=None,
                 map_slope_mmhg_per_min=-1.0, signal_quality="ok", valid_fraction=1.0, model="m",
                 model_version="1", backend="numpy", gate_reasons=["flush"])
    x = alert_input(f, map_below_s=12.0)
    assert x.risk[10] == 0.7 and math.isnan(x.risk[15]) and math.isnan(x.map_now_mmhg)
    assert x.map_slope_mmhg_per_min == -1.0 and x.map_below_s == 12.0 and x.gate_reasons == ["flush"]


# --- properties over random sequences -------------------------------------------------------------

risk_value = st.one_of(st.floats(0, 1), st.just(math.nan), st.sampled_from([0.29, 0.31, 0.49, 0.5, 0.81]))
tick_strategy = st.tuples(
    st.integers(1, 5),                                       # advance in ticks
    st.tuples(risk_value, risk_value, risk_value),
    st.one_of(st.floats(40, 120), st.just(math.nan)),        # MAP
    st.one_of(st.floats(-5, 5), st.just(math.nan)),          # slope
    st.sampled_from(["ok", "ok", "ok", "artifact", "insufficient"]),
    st.sampled_from([0.0, 0.0, 10.0, 59.0, 60.0, 120.0]),    # map_below_s
)


EVIDENCE_KEYS = {"map_now_mmhg", "map_slope_mmhg_per_min", "risk_5", "risk_10", "risk_15", "signal_quality",
                 "top_driver"}


def build(raw) -> list[AlertInput]:
    xs, i = [], 0
    for adv, (r5, r10, r15), m, sl, q, below in raw:
        i += adv
        xs.append(AlertInput(t_ns=i * TICK_S * 10**9, risk={5: r5, 10: r10, 15: r15}, map_now_mmhg=m,
                             map_slope_mmhg_per_min=sl, signal_quality=q, map_below_s=below,
                             gate_reasons=[] if q == "ok" else ["flush"], drivers={"x": 1.0}))
    return xs


@hsettings(max_examples=150, deadline=None)
@given(st.lists(tick_strategy, max_size=80), st.integers(0, 80))
def test_properties_over_random_sequences(raw, cut):
    xs = build(raw)
    sm = AlertStateMachine("OR-7", S, "ep")
    events_by_tick = [sm.step(x) for x in xs]
    raised: set[str] = set()
    active: dict[str, str] = {}       # kind -> alert_id
    for x, events in zip(xs, events_by_tick):
        for a in events:
            assert a.t_ns == x.t_ns
            assert EVIDENCE_KEYS <= set(a.evidence) and a.message.startswith("OR-7: ")
            if x.signal_quality != "ok" and a.kind != SIGNAL:
                # no IOH alert is raised or escalated on an artifact or insufficient tick
                assert a.action == "suppressed"
            if a.kind == SIGNAL and a.action == "raised":
                assert x.signal_quality == "artifact"
            if a.action == "raised":
                assert active.get(a.kind) in (None, a.alert_id)
                raised.add(a.alert_id)
                active[a.kind] = a.alert_id
            else:
                assert a.alert_id in raised and active.get(a.kind) == a.alert_id
                if a.action == "resolved":
                    del active[a.kind]
        assert not (PREDICTED in active and IN_PROGRESS in active)
    flat = [a for ev in events_by_tick for a in ev]
    assert len({a.event_id for a in flat}) == len(flat)
    # same input again, and restored from a snapshot at a random point: identical events
    cut = min(cut, len(xs))
    sm2 = AlertStateMachine("OR-7", S, "ep")
    part = [a for x in xs[:cut] for a in sm2.step(x)]
    sm3 = AlertStateMachine.restore("OR-7", S, json.loads(json.dumps(sm2.snapshot())))
    part += [a for x in xs[cut:] for a in sm3.step(x)]
    assert strip(part) == strip(flat)
