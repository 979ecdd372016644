"""Messages on the JSON topics (pydantic, versioned).

Times are integers in nanoseconds since the Unix epoch, named ``*_ns``; event time always
comes from the device, never from arrival. Every message carries ``schema_version``; a
reader refuses a major version it does not know (``decode``) and routes the bytes to a
dead-letter topic with the reason.
"""

from __future__ import annotations

import base64
import time
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SCHEMA_VERSION = 1

Horizon = int  # minutes


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_version: int = SCHEMA_VERSION

    def dumps(self) -> bytes:
        return self.model_dump_json().encode()


class Observation(Message):
    """One numeric observation (e.g. MAP from the monitor, SpO2, NIBP), normalised."""

    bed_id: str
    t_ns: int = Field(description="device time of the observation")
    code: str = Field(description="IEEE 11073 MDC code (e.g. '150039') or a VitalDB track name")
    label: str = Field(description="MDC reference id or human label, e.g. MDC_PRESS_BLD_ART_ABP_MEAN")
    value: float
    unit: str = Field(description="UCUM unit, e.g. mm[Hg], /min, %")
    device_id: str | None = None
    source: str = "unknown"


class PatientContext(Message):
    """Static patient context, VitalDB clinical-table column names where one exists."""

    bed_id: str
    t_ns: int
    episode_id: str = Field(description="stable id of this bed's current stay (caseid or visit)")
    status: Literal["admitted", "updated", "discharged"] = "admitted"
    caseid: int | None = None
    subjectid: int | None = None
    age: float | None = None
    sex: Literal["M", "F"] | None = None
    height: float | None = None
    weight: float | None = None
    bmi: float | None = None
    asa: int | None = None
    emop: int | None = None
    department: str | None = None
    optype: str | None = None
    approach: str | None = None
    position: str | None = None
    ane_type: str | None = None
    preop_htn: int | None = None
    preop_dm: int | None = None


class ClinicalEvent(Message):
    """A clinical event: drug bolus or infusion change, phase change, NIBP reading, note."""

    bed_id: str
    t_ns: int
    kind: Literal["drug", "infusion", "phase", "nibp", "fluid", "note"]
    name: str = Field(description="drug or phase name, e.g. 'phenylephrine', 'induction'")
    value: float | None = None
    unit: str | None = None
    text: str | None = Field(None, description="original event text")
    source: str = "unknown"


SignalQuality = Literal["ok", "artifact", "insufficient"]


class Forecast(Message):
    """IOH forecast of one bed at one event time."""

    bed_id: str
    t_ns: int = Field(description="event time the forecast refers to (end of the window)")
    risk: dict[str, float] = Field(description="IOH probability per horizon, keys are minutes as strings")
    map_now_mmhg: float | None = None
    map_slope_mmhg_per_min: float | None = None
    map_trajectory_mmhg: list[float] | None = Field(
        None, description="predicted MAP on the grid after t_ns, when the model gives one")
    signal_quality: SignalQuality
    gate_reasons: list[str] = Field(default_factory=list)
    valid_fraction: float = Field(description="share of the MAP window that passed the gate")
    drivers: dict[str, float] = Field(default_factory=dict,
                                      description="what drove the risk (trend, morphology, event, context)")
    model: str
    model_version: str
    backend: str
    fallback_reason: str | None = Field(None, description="why the baseline runs instead of a model")
    inference_ms: float | None = None
    source_wall_ns: int | None = Field(None, description="wall time the newest sample was published")
    issued_wall_ns: int = Field(default_factory=time.time_ns)


AlertKind = Literal["ioh_predicted", "ioh_in_progress", "signal_quality"]
AlertAction = Literal["raised", "escalated", "resolved", "suppressed"]
AlertPriority = Literal["low", "medium", "high"]


class Alert(Message):
    """One alert lifecycle event. ``alert_id`` is the same for every event of one alert."""

    alert_id: str = Field(description="deterministic: hash of (bed, episode, kind)")
    event_id: str = Field(description="deterministic id of this lifecycle event, for de-duplication")
    bed_id: str
    episode: int
    kind: AlertKind
    action: AlertAction
    priority: AlertPriority
    t_ns: int
    message: str
    evidence: dict[str, float | str | None] = Field(default_factory=dict)
    issued_wall_ns: int = Field(default_factory=time.time_ns)


class Belief(Message):
    """IOH belief of one bed after one clinical event (belief decoder)."""

    bed_id: str
    t_ns: int
    event_kind: str
    belief: dict[str, float]
    model: str
    model_version: str


class DeadLetter(Message):
    """Anything that could not be parsed or used: where, why, and the original bytes."""

    source_topic: str
    step: str
    reason: str
    key: str | None = None
    original_b64: str
    t_wall_ns: int = Field(default_factory=time.time_ns)

    @classmethod
    def of(cls, source_topic: str, step: str, reason: str, original: bytes,
           key: str | bytes | None = None) -> "DeadLetter":
        if isinstance(key, bytes):
            key = key.decode("utf-8", "replace")
        return cls(source_topic=source_topic, step=step, reason=reason, key=key,
                   original_b64=base64.b64encode(original).decode())

    def original(self) -> bytes:
        return base64.b64decode(self.original_b64)


M = TypeVar("M", bound=Message)


class ContractError(ValueError):
    """A message that does not match its contract; the reason is fit for a dead-letter record."""


def decode(model: type[M], raw: bytes) -> M:
    """Parse ``raw`` as ``model`` or raise ContractError with a readable reason."""
    try:
        msg = model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "<root>"
        raise ContractError(f"{model.__name__}: {where}: {first.get('msg')}") from None
    if msg.schema_version != SCHEMA_VERSION:
        raise ContractError(
            f"{model.__name__}: schema_version {msg.schema_version} not supported (expected {SCHEMA_VERSION})")
    return msg
