"""Every Kafka topic the code uses, in one list.

The agent, the replayer, the ingest services and the Kubernetes manifests (``deploy/``) all read
this list; a deploy test checks that every topic here is declared as a ``KafkaTopic``.
All topics are keyed by bed id.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str
    purpose: str
    compacted: bool = False
    retention_h: float = 24.0


HL7_RAW = Topic("hl7.raw", "raw HL7 v2 messages as received (bytes), keyed by bed", retention_h=24)
OBSERVATIONS = Topic("observations", "normalised numeric observations (JSON)", retention_h=24)
WAVEFORM_ABP = Topic("waveform.abp", "arterial-pressure waveform chunks (binary codec)", retention_h=6)
PATIENTS = Topic("patients", "patient context per bed (ADT), latest wins", compacted=True)
EVENTS = Topic("events", "clinical events: drugs, phases, NIBP (JSON)", retention_h=72)
FORECASTS = Topic("ioh.forecasts", "IOH risk per horizon per bed (JSON)", retention_h=72)
BELIEFS = Topic("ioh.beliefs", "per-event belief updates (JSON)", retention_h=72)
ALERTS = Topic("ioh.alerts", "alert lifecycle events (JSON), at least once, deterministic ids",
               retention_h=168)
DLQ_HL7 = Topic("dlq.hl7", "HL7 messages that could not be parsed, with the reason", retention_h=168)
DLQ_WAVEFORM = Topic("dlq.waveform.abp", "waveform chunks that could not be used, with the reason",
                     retention_h=168)
DLQ_OBSERVATIONS = Topic("dlq.observations", "observations/events/context that could not be used",
                         retention_h=168)

ALL_TOPICS: tuple[Topic, ...] = (
    HL7_RAW, OBSERVATIONS, WAVEFORM_ABP, PATIENTS, EVENTS, FORECASTS, BELIEFS, ALERTS,
    DLQ_HL7, DLQ_WAVEFORM, DLQ_OBSERVATIONS,
)


def dlq_for(topic: str) -> str:
    """Dead-letter topic of ``topic`` (HL7 stages share ``dlq.hl7``)."""
    if topic.startswith("hl7"):
        return DLQ_HL7.name
    name = f"dlq.{topic}"
    if name not in {t.name for t in ALL_TOPICS}:
        return DLQ_OBSERVATIONS.name
    return name
