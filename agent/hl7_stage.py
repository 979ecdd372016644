"""Parse stage: ``hl7.raw`` -> observations, waveform.abp, patients, events, dlq.hl7.

``route(raw)`` does the work as a plain function (normalise, then serialise each record for its
topic, keyed by bed id), so tests need no Faust; ``register(app, settings, metrics)`` adds the
Faust agent ``hl7.parse`` that applies it to every record of ``hl7.raw``. Importing this module
starts nothing.
"""

from __future__ import annotations

import logging
from datetime import timezone, tzinfo
from zoneinfo import ZoneInfo

from streams import chunk_codec
from streams.contracts import DeadLetter
from streams.hl7.normalise import Normalised, normalise
from streams.topics import DLQ_HL7, EVENTS, HL7_RAW, OBSERVATIONS, PATIENTS, WAVEFORM_ABP

log = logging.getLogger(__name__)

STEP = "hl7.parse"
OUTPUT_TOPICS = (OBSERVATIONS.name, WAVEFORM_ABP.name, PATIENTS.name, EVENTS.name, DLQ_HL7.name)

Record = tuple[str, bytes, bytes]  # (topic, key, value)


def default_tz(settings) -> tzinfo:
    """Time zone for HL7 timestamps without an offset (``hl7_default_timezone``)."""
    name = getattr(settings, "hl7_default_timezone", "UTC") if settings is not None else "UTC"
    return timezone.utc if name.upper() == "UTC" else ZoneInfo(name)


def route_normalised(n: Normalised) -> list[Record]:
    """Serialise a normalised message for its topics, each record keyed by bed id."""
    key = (n.bed_id or "").encode()
    out: list[Record] = []
    for c in n.contexts:
        out.append((PATIENTS.name, key, c.dumps()))
    for o in n.observations:
        out.append((OBSERVATIONS.name, key, o.dumps()))
    for ch in n.chunks:
        out.append((WAVEFORM_ABP.name, key, chunk_codec.encode(ch)))
    for e in n.events:
        out.append((EVENTS.name, key, e.dumps()))
    for d in n.dead_letters:
        out.append((DLQ_HL7.name, key, DeadLetter.of(HL7_RAW.name, STEP, d.reason, d.raw, key=n.bed_id).dumps()))
    return out


def route(raw: bytes, tz: tzinfo = timezone.utc) -> list[Record]:
    """Everything one raw HL7 message becomes: [(topic, key, value)]."""
    return route_normalised(normalise(raw, tz))


def count(metrics, n: Normalised) -> None:
    if metrics is None:
        return
    for d in n.dead_letters:
        metrics.dead_letter(HL7_RAW.name, d.reason_class)


def register(app, settings, metrics=None):
    """Add the ``hl7.parse`` agent to a Faust app; returns the agent."""
    tz = default_tz(settings)
    partitions = getattr(settings, "topic_partitions", None)
    source = app.topic(HL7_RAW.name, key_serializer="raw", value_serializer="raw", partitions=partitions)
    sinks = {name: app.topic(name, key_serializer="raw", value_serializer="raw", partitions=partitions)
             for name in OUTPUT_TOPICS}

    async def hl7_parse(stream):
        async for value in stream:
            raw = value if isinstance(value, bytes) else bytes(value)
            n = normalise(raw, tz)
            count(metrics, n)
            for topic, key, payload in route_normalised(n):
                await sinks[topic].send(key=key, value=payload)
            yield n

    return app.agent(source, name=STEP)(hl7_parse)
