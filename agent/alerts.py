"""The alert state machine of one bed: forecasts in, alert lifecycle events out.

Pure and deterministic: no I/O, no clock (except the ``issued_wall_ns`` stamp the ``Alert``
contract adds), so the same sequence of ``AlertInput`` always gives the same events with the
same ids, whether it runs live, in ``iohwatch score`` or after a restore from ``snapshot()``.

Three kinds of alert, each with at most one active alert per bed:

``ioh_predicted``
    Raised at medium priority when the largest risk over the horizons reaches
    ``alert_raise_risk`` on ``alert_confirm_updates`` consecutive ok-quality ticks; raised or
    escalated to high when the shortest-horizon risk reaches ``alert_escalate_risk``, or MAP is
    within ``alert_near_map_mmhg`` of the threshold and falling by ``alert_falling_mmhg_per_min``
    or more, on as many consecutive ticks; resolved when every risk is below
    ``alert_clear_risk`` on ``alert_clear_updates`` consecutive ticks. Risks between the clear and
    the raise level hold the current state (hysteresis). Priority never steps down while the
    alert is active.
``ioh_in_progress``
    Raised at high priority when the valid MAP has been below ``ioh_map_mmhg`` for at least
    ``ioh_min_duration_s``; it supersedes the predicted alert (which is resolved in the same tick
    and not raised again while hypotension is under way). Resolved when MAP is above the threshold
    on ``alert_clear_updates`` consecutive ticks.
``signal_quality``
    Raised at low priority when the gate has reported artifact continuously for
    ``alert_quality_after_s`` of event time; resolved at the next ok tick.

Suppression: on a tick whose quality is not ``ok`` no IOH alert is raised or escalated and the
confirmation counters restart. An active IOH alert gets exactly one ``suppressed`` event when
artifact starts (it stays active); at the first ok tick after that it is announced again as
``raised`` with the same ``alert_id`` and ``evidence["resumed"] == "true"``, so a display that
greyed it out shows it again.

NaN risks or MAP count neither toward raising nor toward resolving: they hold the state.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Literal

from agent.settings import Settings
from streams.contracts import Alert, Forecast

log = logging.getLogger(__name__)

PREDICTED = "ioh_predicted"
IN_PROGRESS = "ioh_in_progress"
SIGNAL = "signal_quality"
KINDS = (PREDICTED, IN_PROGRESS, SIGNAL)

SNAPSHOT_VERSION = 1


@dataclass
class AlertInput:
    """What the state machine sees of one bed at one forecast tick."""

    t_ns: int                                 # event time of the forecast
    risk: dict[int, float]                    # horizon (min) -> probability; NaN possible
    map_now_mmhg: float                       # NaN when unknown
    map_slope_mmhg_per_min: float             # NaN when unknown
    signal_quality: Literal["ok", "artifact", "insufficient"]
    gate_reasons: list[str] = field(default_factory=list)
    map_below_s: float = 0.0                  # valid MAP continuously below ioh_map_mmhg up to t_ns (s)
    drivers: dict[str, float] = field(default_factory=dict)


def alert_input(forecast: Forecast, map_below_s: float) -> AlertInput:
    """The ``AlertInput`` of a published ``Forecast`` (risk keys are minutes as strings there)."""
    return AlertInput(
        t_ns=forecast.t_ns,
        risk={int(h): float(v) for h, v in forecast.risk.items()},
        map_now_mmhg=_nan_if_none(forecast.map_now_mmhg),
        map_slope_mmhg_per_min=_nan_if_none(forecast.map_slope_mmhg_per_min),
        signal_quality=forecast.signal_quality,
        gate_reasons=list(forecast.gate_reasons),
        map_below_s=float(map_below_s),
        drivers=dict(forecast.drivers),
    )


def alert_id_of(bed_id: str, episode_id: str, counter: int, kind: str) -> str:
    """Deterministic id of one alert: the same bed, stay, counter and kind give the same id."""
    return _hash(bed_id, episode_id, str(counter), kind)


def event_id_of(alert_id: str, action: str, t_ns: int) -> str:
    """Deterministic id of one lifecycle event of one alert, for de-duplication."""
    return _hash(alert_id, action, str(t_ns))


def _hash(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:16]


def _nan_if_none(v: float | None) -> float:
    return math.nan if v is None else float(v)


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def _num(v: float | None) -> float | None:
    """Evidence value: NaN becomes None so evidence survives JSON unchanged."""
    return float(v) if _finite(v) else None


@dataclass
class _Active:
    alert_id: str
    episode: int
    kind: str
    priority: Literal["low", "medium", "high"]
    raised_t_ns: int
    suppressed: bool = False


class AlertStateMachine:
    """Alert lifecycle of one bed. ``step`` once per forecast tick, in event-time order."""

    def __init__(self, bed_id: str, settings: Settings, episode_id: str = "",
                 raise_risk_by_h: dict[int, float] | None = None):
        self.bed_id = bed_id
        self.settings = settings
        # Per-horizon raise levels chosen on a development split for a target false-alarm rate
        # (the engine's ``alerting.json``). Without them every horizon uses alert_raise_risk.
        # Clear and escalate levels keep the configured ratios to the raise level.
        self.raise_risk_by_h = dict(raise_risk_by_h or {})
        self.episode_id = episode_id
        self.counter = 0                       # alerts raised in this episode (all kinds)
        self.active: dict[str, _Active] = {}
        self.raise_n = 0                       # consecutive ok ticks with a risk >= raise level
        self.escalate_n = 0                    # consecutive ok ticks meeting the escalation rule
        self.clear_n = 0                       # consecutive ok ticks with every risk < clear level
        self.above_n = 0                       # consecutive ok ticks with MAP above the threshold
        self.artifact_since_t_ns: int | None = None
        self.last_t_ns: int | None = None
        self.last_evidence: dict[str, float | str | None] = {}
        self.stale_ticks = 0                   # ticks ignored because t_ns did not advance
        self._escalate_h = min(settings.horizons_min)

    # --- public -------------------------------------------------------------------------------
    def step(self, x: AlertInput) -> list[Alert]:
        """Advance by one tick; returns the lifecycle events of this tick (usually none).

        A tick whose ``t_ns`` is not after the previous one (a re-delivered forecast after a
        restart) changes nothing and is counted in ``stale_ticks``.
        """
        if self.last_t_ns is not None and x.t_ns <= self.last_t_ns:
            self.stale_ticks += 1
            log.debug("%s: alert tick at %d ignored, not after %d", self.bed_id, x.t_ns, self.last_t_ns)
            return []
        self.last_t_ns = x.t_ns
        ev = self._evidence(x)
        self.last_evidence = ev
        out = self._step_signal(x, ev)
        if x.signal_quality != "ok":
            self.raise_n = self.escalate_n = self.clear_n = self.above_n = 0
            for kind in (IN_PROGRESS, PREDICTED):
                a = self.active.get(kind)
                if a is not None and not a.suppressed:
                    a.suppressed = True
                    out.append(self._event(a, "suppressed", x.t_ns, ev, self._msg_suppressed(a, x)))
            return out
        out += self._step_in_progress(x, ev)
        out += self._step_predicted(x, ev)
        return out

    def reset(self, episode_id: str, t_ns: int | None = None,
              reason: str = "patient episode ended") -> list[Alert]:
        """A patient episode begins or ends on this bed: resolve every active alert.

        ``t_ns`` is the event time of the ADT message (default: the last tick). The alert
        counter restarts when ``episode_id`` differs from the current one.
        """
        t = t_ns if t_ns is not None else (self.last_t_ns or 0)
        out = []
        for kind in KINDS:
            a = self.active.pop(kind, None)
            if a is not None:
                ev = dict(self.last_evidence, reason=reason)
                out.append(self._event(a, "resolved", t, ev,
                                       f"{self.bed_id}: {_KIND_TEXT[kind]} resolved, {reason}"))
        if episode_id != self.episode_id:
            self.episode_id = episode_id
            self.counter = 0
        self.raise_n = self.escalate_n = self.clear_n = self.above_n = 0
        self.artifact_since_t_ns = None
        self.last_t_ns = None
        self.last_evidence = {}
        return out

    def snapshot(self) -> dict:
        """JSON-able state; ``restore`` continues exactly where this left off."""
        return {
            "version": SNAPSHOT_VERSION,
            "bed_id": self.bed_id,
            "episode_id": self.episode_id,
            "counter": self.counter,
            "active": {k: asdict(a) for k, a in self.active.items()},
            "raise_n": self.raise_n,
            "escalate_n": self.escalate_n,
            "clear_n": self.clear_n,
            "above_n": self.above_n,
            "artifact_since_t_ns": self.artifact_since_t_ns,
            "last_t_ns": self.last_t_ns,
            "last_evidence": dict(self.last_evidence),
            "stale_ticks": self.stale_ticks,
            "raise_risk_by_h": {str(h): v for h, v in self.raise_risk_by_h.items()},
        }

    @classmethod
    def restore(cls, bed_id: str, settings: Settings, snapshot: dict) -> "AlertStateMachine":
        version = snapshot.get("version")
        if version != SNAPSHOT_VERSION:
            raise ValueError(f"alert state of {bed_id}: snapshot version {version!r} not supported "
                             f"(expected {SNAPSHOT_VERSION})")
        if snapshot.get("bed_id") != bed_id:
            raise ValueError(f"alert state of {bed_id}: snapshot belongs to bed {snapshot.get('bed_id')!r}")
        sm = cls(bed_id, settings, snapshot["episode_id"],
                 {int(h): float(v) for h, v in snapshot.get("raise_risk_by_h", {}).items()})
        sm.counter = int(snapshot["counter"])
        sm.active = {k: _Active(**a) for k, a in snapshot["active"].items()}
        unknown = set(sm.active) - set(KINDS)
        if unknown:
            raise ValueError(f"alert state of {bed_id}: unknown alert kinds {sorted(unknown)} in snapshot")
        for name in ("raise_n", "escalate_n", "clear_n", "above_n", "stale_ticks"):
            setattr(sm, name, int(snapshot[name]))
        sm.artifact_since_t_ns = snapshot["artifact_since_t_ns"]
        sm.last_t_ns = snapshot["last_t_ns"]
        sm.last_evidence = dict(snapshot["last_evidence"])
        return sm

    # --- the three kinds -----------------------------------------------------------------------
    def _step_signal(self, x: AlertInput, ev: dict) -> list[Alert]:
        a = self.active.get(SIGNAL)
        if x.signal_quality == "artifact":
            if self.artifact_since_t_ns is None:
                self.artifact_since_t_ns = x.t_ns
            dur_s = (x.t_ns - self.artifact_since_t_ns) / 1e9
            if a is None and dur_s >= self.settings.alert_quality_after_s:
                a = self._new(SIGNAL, "low", x.t_ns)
                reasons = ", ".join(x.gate_reasons) or "artifact"
                return [self._event(a, "raised", x.t_ns, dict(ev, artifact_s=dur_s),
                                    f"{self.bed_id}: arterial signal artifact for {dur_s:.0f} s ({reasons}); "
                                    f"IOH alerts paused")]
            return []
        self.artifact_since_t_ns = None
        if a is not None and x.signal_quality == "ok":
            del self.active[SIGNAL]
            return [self._event(a, "resolved", x.t_ns, ev, f"{self.bed_id}: arterial signal quality restored")]
        return []

    def _step_in_progress(self, x: AlertInput, ev: dict) -> list[Alert]:
        s = self.settings
        thr = s.ioh_map_mmhg
        a = self.active.get(IN_PROGRESS)
        if a is None:
            self.above_n = 0
            if not (_finite(x.map_below_s) and x.map_below_s >= s.ioh_min_duration_s):
                return []
            out = []
            p = self.active.pop(PREDICTED, None)
            if p is not None:
                out.append(self._event(p, "resolved", x.t_ns, dict(ev, reason="superseded by ioh_in_progress"),
                                       f"{self.bed_id}: IOH prediction superseded, hypotension in progress"))
            self.raise_n = self.escalate_n = self.clear_n = 0
            a = self._new(IN_PROGRESS, "high", x.t_ns)
            out.append(self._event(a, "raised", x.t_ns, ev,
                                   f"{self.bed_id}: hypotension in progress, MAP {_fmt_mmhg(x.map_now_mmhg)} "
                                   f"below {thr:.0f} mmHg for {x.map_below_s:.0f} s"))
            return out
        above = _finite(x.map_now_mmhg) and x.map_now_mmhg > thr and x.map_below_s <= 0
        self.above_n = self.above_n + 1 if above else 0
        if self.above_n >= s.alert_clear_updates:
            del self.active[IN_PROGRESS]
            self.above_n = 0
            return [self._event(a, "resolved", x.t_ns, ev,
                                f"{self.bed_id}: hypotension resolved, MAP {_fmt_mmhg(x.map_now_mmhg)} "
                                f"above {thr:.0f} mmHg")]
        if a.suppressed:
            a.suppressed = False
            return [self._event(a, "raised", x.t_ns, dict(ev, resumed="true"),
                                f"{self.bed_id}: signal restored, hypotension in progress, MAP "
                                f"{_fmt_mmhg(x.map_now_mmhg)}")]
        return []

    def _step_predicted(self, x: AlertInput, ev: dict) -> list[Alert]:
        s = self.settings
        if IN_PROGRESS in self.active:
            self.raise_n = self.escalate_n = self.clear_n = 0
            return []
        values = list(x.risk.values())
        finite = [v for v in values if _finite(v)]
        fin = [(h, v) for h, v in x.risk.items() if _finite(v)]
        above = any(v >= self._raise_level(h) for h, v in fin)
        below = (bool(values) and len(finite) == len(values)
                 and all(v < self._raise_level(h) * s.alert_clear_risk / s.alert_raise_risk for h, v in fin))
        r_esc = x.risk.get(self._escalate_h, math.nan)
        near_falling = (_finite(x.map_now_mmhg) and _finite(x.map_slope_mmhg_per_min)
                        and x.map_now_mmhg <= s.ioh_map_mmhg + s.alert_near_map_mmhg
                        and x.map_slope_mmhg_per_min <= -s.alert_falling_mmhg_per_min)
        esc_level = min(0.99, self._raise_level(self._escalate_h) * s.alert_escalate_risk / s.alert_raise_risk)
        escalate = (_finite(r_esc) and r_esc >= esc_level) or near_falling
        self.raise_n = self.raise_n + 1 if above else 0
        self.clear_n = self.clear_n + 1 if below else 0
        self.escalate_n = self.escalate_n + 1 if escalate else 0
        confirmed_high = self.escalate_n >= s.alert_confirm_updates

        a = self.active.get(PREDICTED)
        if a is None:
            if self.raise_n < s.alert_confirm_updates:
                return []
            a = self._new(PREDICTED, "high" if confirmed_high else "medium", x.t_ns)
            self.clear_n = 0
            return [self._event(a, "raised", x.t_ns, ev, f"{self.bed_id}: {self._predicted_text(x)}")]
        if self.clear_n >= s.alert_clear_updates:
            del self.active[PREDICTED]
            self.raise_n = self.escalate_n = self.clear_n = 0
            top = max(finite) if finite else math.nan
            return [self._event(a, "resolved", x.t_ns, ev,
                                f"{self.bed_id}: IOH prediction resolved (max risk {_fmt_p(top)}), "
                                f"{_describe_map(x)}")]
        out = []
        if a.suppressed:
            a.suppressed = False
            out.append(self._event(a, "raised", x.t_ns, dict(ev, resumed="true"),
                                   f"{self.bed_id}: signal restored, {self._predicted_text(x)}"))
        if a.priority != "high" and confirmed_high:
            a.priority = "high"
            out.append(self._event(a, "escalated", x.t_ns, ev,
                                   f"{self.bed_id}: escalated to high, {self._predicted_text(x)}"))
        return out

    # --- helpers ------------------------------------------------------------------------------
    def _new(self, kind: str, priority: str, t_ns: int) -> _Active:
        self.counter += 1
        a = _Active(alert_id=alert_id_of(self.bed_id, self.episode_id, self.counter, kind),
                    episode=self.counter, kind=kind, priority=priority, raised_t_ns=t_ns)
        self.active[kind] = a
        return a

    def _event(self, a: _Active, action: str, t_ns: int, evidence: dict, message: str) -> Alert:
        return Alert(alert_id=a.alert_id, event_id=event_id_of(a.alert_id, action, t_ns), bed_id=self.bed_id,
                     episode=a.episode, kind=a.kind, action=action, priority=a.priority, t_ns=t_ns,
                     message=message, evidence=evidence)

    def _evidence(self, x: AlertInput) -> dict[str, float | str | None]:
        ev: dict[str, float | str | None] = {
            "map_now_mmhg": _num(x.map_now_mmhg),
            "map_slope_mmhg_per_min": _num(x.map_slope_mmhg_per_min),
            "map_below_s": _num(x.map_below_s),
        }
        for h in self.settings.horizons_min:
            ev[f"risk_{h}"] = _num(x.risk.get(h))
        ev["signal_quality"] = x.signal_quality
        ev["gate_reasons"] = ",".join(x.gate_reasons) or None
        drivers = [(k, v) for k, v in sorted(x.drivers.items()) if _finite(v)]
        if drivers:
            name, value = max(drivers, key=lambda kv: abs(kv[1]))
            ev["top_driver"] = name
            ev["top_driver_value"] = float(value)
        else:
            ev["top_driver"] = None
        return ev

    def _raise_level(self, h: int) -> float:
        return self.raise_risk_by_h.get(h, self.settings.alert_raise_risk)

    def _predicted_text(self, x: AlertInput) -> str:
        """'IOH predicted within 10 min (risk 0.72), MAP 71 mmHg falling 1.8 mmHg/min'."""
        finite = sorted((h, v) for h, v in x.risk.items() if _finite(v))
        hit = [(h, v) for h, v in finite if v >= self._raise_level(h)]
        if hit:
            h, v = hit[0]
        elif finite:
            h, v = max(finite, key=lambda hv: hv[1])
        else:
            return f"IOH predicted (risk n/a), {_describe_map(x)}"
        return f"IOH predicted within {h} min (risk {v:.2f}), {_describe_map(x)}"

    def _msg_suppressed(self, a: _Active, x: AlertInput) -> str:
        reasons = ", ".join(x.gate_reasons) or x.signal_quality
        return f"{self.bed_id}: {_KIND_TEXT[a.kind]} alert suppressed, signal {x.signal_quality} ({reasons})"


_KIND_TEXT = {PREDICTED: "IOH predicted", IN_PROGRESS: "hypotension in progress", SIGNAL: "signal quality"}


def _fmt_p(v: float) -> str:
    return f"{v:.2f}" if _finite(v) else "n/a"


def _fmt_mmhg(v: float) -> str:
    return f"{v:.0f} mmHg" if _finite(v) else "n/a"


def _describe_map(x: AlertInput) -> str:
    """'MAP 71 mmHg falling 1.8 mmHg/min'."""
    if not _finite(x.map_now_mmhg):
        return "MAP n/a"
    text = f"MAP {x.map_now_mmhg:.0f} mmHg"
    slope = x.map_slope_mmhg_per_min
    if not _finite(slope):
        return text
    if abs(slope) < 0.05:
        return text + " steady"
    return text + f" {'falling' if slope < 0 else 'rising'} {abs(slope):.1f} mmHg/min"


# --- display ------------------------------------------------------------------------------------

_STYLE = {
    ("raised", "high"): "bold red", ("escalated", "high"): "bold red",
    ("raised", "medium"): "yellow", ("escalated", "medium"): "yellow",
    ("raised", "low"): "cyan", ("escalated", "low"): "cyan",
}


def format_alert(alert: Alert) -> str:
    """One readable line: event time (UTC), priority, action, kind, message."""
    t = datetime.fromtimestamp(alert.t_ns / 1e9, tz=timezone.utc).strftime("%H:%M:%SZ")
    return f"{t}  {alert.priority.upper():<6}  {alert.action:<10}  {alert.kind:<15}  {alert.message}"


def alert_style(alert: Alert) -> str:
    """rich style of an alert line: red high, yellow medium, cyan low, green resolved, dim suppressed."""
    if alert.action == "resolved":
        return "green"
    if alert.action == "suppressed":
        return "dim"
    return _STYLE.get((alert.action, alert.priority), "")
