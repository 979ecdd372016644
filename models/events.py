"""Tokenisation of a bed's clinical events for the belief decoder.

One event becomes one event token: a kind id, a name id and ``EVENT_FEATURES`` values with a
presence mask (a feature that the event does not carry is absent, and the decoder substitutes
its learned missing token). Inputs accepted by ``tokenize``:

- ``ClinicalEvent`` (drug, infusion, fluid, phase, nibp, note);
- a batch of ``Observation``s (numerics: MAP, SBP, DBP, HR, SpO2 from the monitor; NIBP codes
  make it an ``nibp`` event when nothing else is in the batch);
- ``Forecast`` (the forecaster's summary: risks and MAP level).

Values are scaled by fixed clinical constants (below), not by fitted statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from streams.contracts import ClinicalEvent, Forecast, Observation

EVENT_KINDS: tuple[str, ...] = ("numerics", "nibp", "drug", "infusion", "fluid", "phase", "note", "forecast")
EVENT_NAMES: tuple[str, ...] = (
    "none", "other",
    # vasoactive and anaesthetic drugs
    "phenylephrine", "ephedrine", "norepinephrine", "epinephrine", "vasopressin", "dopamine",
    "dobutamine", "atropine", "glycopyrrolate", "propofol", "remifentanil", "fentanyl", "sufentanil",
    "sevoflurane", "desflurane", "ketamine", "midazolam", "etomidate", "rocuronium", "labetalol",
    "esmolol", "nicardipine", "nitroglycerin", "hydralazine",
    # fluids and blood
    "crystalloid", "colloid", "albumin", "rbc", "ffp",
    # phases
    "induction", "intubation", "incision", "positioning", "pneumoperitoneum", "extubation",
    "emergence", "surgery_end", "anesthesia_end",
)
EVENT_FEATURES: tuple[str, ...] = ("dt_log_s", "dose", "map_mmhg", "sbp_mmhg", "dbp_mmhg", "hr_bpm",
                                   "spo2_pct", "risk_5", "risk_10", "risk_15")
_CENTRE_SCALE = {"map_mmhg": (80.0, 15.0), "sbp_mmhg": (120.0, 25.0), "dbp_mmhg": (65.0, 15.0),
                 "hr_bpm": (75.0, 20.0), "spo2_pct": (97.0, 3.0)}
_KIND_ID = {k: i for i, k in enumerate(EVENT_KINDS)}
_NAME_ID = {n: i for i, n in enumerate(EVENT_NAMES)}

# IEEE 11073 MDC codes (see DESIGN.md) -> feature slot
_MDC_SLOT = {
    "150039": "map_mmhg", "150035": "map_mmhg", "150019": "map_mmhg",
    "150037": "sbp_mmhg", "150033": "sbp_mmhg", "150017": "sbp_mmhg",
    "150038": "dbp_mmhg", "150034": "dbp_mmhg", "150018": "dbp_mmhg",
    "147842": "hr_bpm", "149530": "hr_bpm", "150456": "spo2_pct",
}
_MDC_NIBP = {"150021": "sbp_mmhg", "150022": "dbp_mmhg", "150023": "map_mmhg"}
# VitalDB track suffixes and plain labels -> slot
_LABEL_SLOT = {"ART_MBP": "map_mmhg", "ART_SBP": "sbp_mmhg", "ART_DBP": "dbp_mmhg", "HR": "hr_bpm",
               "PLETH_SPO2": "spo2_pct", "SPO2": "spo2_pct", "MAP": "map_mmhg", "ABP_MEAN": "map_mmhg"}
_LABEL_NIBP = {"NIBP_SBP": "sbp_mmhg", "NIBP_DBP": "dbp_mmhg", "NIBP_MBP": "map_mmhg"}

Event = Union[ClinicalEvent, Forecast, Observation, Sequence[Observation]]


@dataclass(frozen=True)
class EventToken:
    t_ns: int
    kind: str
    kind_id: int
    name_id: int
    values: np.ndarray     # (F,) float32, scaled
    mask: np.ndarray       # (F,) float32, 1 = present


def _scale(slot: str, v: float) -> float:
    if slot in _CENTRE_SCALE:
        c, s = _CENTRE_SCALE[slot]
        return (v - c) / s
    if slot == "dose":
        return math.copysign(math.log1p(abs(v)), v) / 5.0
    if slot.startswith("risk_"):
        return 2.0 * v - 1.0
    raise KeyError(slot)


scale_feature = _scale   # public name (training scales features the same way)


def name_id(name: str | None) -> int:
    if not name:
        return _NAME_ID["none"]
    key = name.strip().lower().replace(" ", "_").replace("-", "_")
    return _NAME_ID.get(key, _NAME_ID["other"])


def _obs_slot(obs: Observation) -> tuple[str | None, bool]:
    """-> (slot, is_nibp) for one observation, or (None, False) when the model does not use it."""
    if obs.code in _MDC_SLOT:
        return _MDC_SLOT[obs.code], False
    if obs.code in _MDC_NIBP:
        return _MDC_NIBP[obs.code], True
    label = obs.label.upper().split("/")[-1]
    if label in _LABEL_NIBP:
        return _LABEL_NIBP[label], True
    return _LABEL_SLOT.get(label), False


def tokenize(event: Event, prev_t_ns: int | None) -> EventToken:
    """One event -> one token. ``prev_t_ns`` is the time of the bed's previous event (None: first)."""
    feats: dict[str, float] = {}
    if isinstance(event, ClinicalEvent):
        kind, t_ns, nid = event.kind, event.t_ns, name_id(event.name)
        if event.value is not None and math.isfinite(event.value):
            feats["map_mmhg" if kind == "nibp" else "dose"] = float(event.value)
    elif isinstance(event, Forecast):
        kind, t_ns, nid = "forecast", event.t_ns, name_id(None)
        for h in (5, 10, 15):
            r = event.risk.get(str(h))
            if r is not None and math.isfinite(r):
                feats[f"risk_{h}"] = float(r)
        if event.map_now_mmhg is not None and math.isfinite(event.map_now_mmhg):
            feats["map_mmhg"] = float(event.map_now_mmhg)
    else:
        obs = [event] if isinstance(event, Observation) else list(event)
        if not all(isinstance(o, Observation) for o in obs):
            raise TypeError(f"tokenize: expected ClinicalEvent, Forecast or Observation(s), got {type(event).__name__}")
        if not obs:
            raise ValueError("tokenize: empty observation batch")
        t_ns, nid = max(o.t_ns for o in obs), name_id(None)
        nibp_only = True
        for o in sorted(obs, key=lambda o: o.t_ns):        # latest value per slot wins
            slot, is_nibp = _obs_slot(o)
            if slot is not None and math.isfinite(o.value):
                feats[slot] = float(o.value)
                nibp_only &= is_nibp
        kind = "nibp" if feats and nibp_only else "numerics"
    if kind not in _KIND_ID:
        raise ValueError(f"tokenize: unknown event kind {kind!r}")
    values = np.zeros(len(EVENT_FEATURES), np.float32)
    mask = np.zeros(len(EVENT_FEATURES), np.float32)
    if prev_t_ns is not None:
        dt_s = max(0.0, (t_ns - prev_t_ns) / 1e9)
        values[0], mask[0] = math.log1p(dt_s) / 5.0, 1.0
    for slot, v in feats.items():
        i = EVENT_FEATURES.index(slot)
        values[i], mask[i] = _scale(slot, v), 1.0
    return EventToken(t_ns=t_ns, kind=kind, kind_id=_KIND_ID[kind], name_id=nid, values=values, mask=mask)


def stack(tokens: Sequence[EventToken]) -> dict[str, np.ndarray]:
    """S tokens -> decoder inputs with batch 1: kind/name (1, S) int64, values/mask (1, S, F)."""
    return {
        "event_kind": np.array([[t.kind_id for t in tokens]], np.int64),
        "event_name": np.array([[t.name_id for t in tokens]], np.int64),
        "event_values": np.stack([t.values for t in tokens])[None],
        "event_mask": np.stack([t.mask for t in tokens])[None],
    }
