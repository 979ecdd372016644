"""Turn recordings into the messages a live bed would send, and publish them at a chosen speed.

``bed_messages`` is a pure generator (recording -> time-ordered messages); offline scoring
(`iohwatch score`) consumes the very same chunks, which is what makes streaming and offline
results identical. ``publish`` paces many beds on one event clock into Kafka.
"""

from __future__ import annotations

import asyncio
import csv
import heapq
import logging
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from streams import chunk_codec
from streams.chunk_codec import WaveformChunk
from streams.contracts import ClinicalEvent, Observation, PatientContext
from streams.recording import Recording
from streams.topics import EVENTS, OBSERVATIONS, PATIENTS, WAVEFORM_ABP

log = logging.getLogger(__name__)

CHUNK_S = 1.0  # one chunk per second per bed, as bedside gateways typically send

# Units of the VitalDB numeric tracks we forward (UCUM).
_UNITS = {"ART": "mm[Hg]", "NIBP": "mm[Hg]", "HR": "/min", "SPO2": "%", "PLETH_HR": "/min",
          "ETCO2": "mm[Hg]", "BT": "Cel", "CVP": "mm[Hg]", "RR": "/min"}


@dataclass(frozen=True, order=True)
class OutMessage:
    t_ns: int              # event time at which a live device would have sent it
    order: int             # tie-breaker: context first, then numerics/events, then chunks
    topic: str
    key: bytes
    value: bytes


def iter_chunks(abp_mmhg: np.ndarray, fs_hz: float, start_ns: int, bed_id: str,
                chunk_s: float = CHUNK_S, track: str = "ABP") -> Iterator[WaveformChunk]:
    """Cut a waveform into consecutive chunks of ``chunk_s``. Chunks that are all NaN are not
    sent (a disconnected line sends nothing), so the receiver sees a real gap."""
    n = int(round(chunk_s * fs_hz))
    if n <= 0:
        raise ValueError(f"chunk_s={chunk_s} at fs_hz={fs_hz} gives {n} samples per chunk")
    seq = 0
    for lo in range(0, abp_mmhg.shape[0], n):
        part = abp_mmhg[lo:lo + n]
        seq += 1
        if not np.isfinite(part).any():
            continue
        t0 = start_ns + int(round(lo * 1e9 / fs_hz))
        yield WaveformChunk(bed_id=bed_id, t0_ns=t0, fs_hz=fs_hz, samples=part.astype(np.float32),
                            seq=seq, track=track)


def _unit(track: str) -> str:
    name = track.split("/")[-1].upper()
    for prefix, unit in _UNITS.items():
        if name.startswith(prefix) or name.endswith(prefix):
            return unit
    return ""


_DRUGS = ("phenylephrine", "ephedrine", "norepinephrine", "noradrenaline", "epinephrine", "vasopressin",
          "propofol", "remifentanil", "fentanyl", "rocuronium", "ketamine", "etomidate", "midazolam",
          "atropine", "glycopyrrolate", "labetalol", "esmolol", "nicardipine", "sevoflurane", "desflurane")
_DOSE = re.compile(r"(?P<v>\d+(?:\.\d+)?)\s*(?P<u>mcg|ug|µg|mg|g|ml|mL|L|units?|U)\b", re.IGNORECASE)


def classify_event(text: str) -> tuple[str, str, float | None, str | None]:
    """(kind, name, value, unit) of a free-text event such as 'Phenylephrine 100 mcg'."""
    low = text.strip().lower()
    m = _DOSE.search(text)
    value = float(m.group("v")) if m else None
    unit = m.group("u") if m else None
    for drug in _DRUGS:
        if drug in low:
            return ("infusion" if "rate" in low or "infusion" in low else "drug"), drug, value, unit
    if "fluid" in low or "bolus" in low or "crystalloid" in low or "colloid" in low:
        return "fluid", "fluid", value, unit
    return "phase", low or "unknown", value, unit


def event_messages(rec: Recording, bed_id: str, shift_ns: int = 0) -> Iterator[ClinicalEvent]:
    """Clinical events in time order (recordings do not promise sorted event tracks)."""
    for t_s, text in sorted(rec.events, key=lambda e: e[0]):
        kind, name, value, unit = classify_event(str(text))
        yield ClinicalEvent(bed_id=bed_id, t_ns=rec.start_ns + shift_ns + int(round(t_s * 1e9)), kind=kind,
                            name=name, value=value, unit=unit, text=str(text), source="replay")


def _track_observations(rec: Recording, track: str, bed_id: str, shift_ns: int) -> Iterator[Observation]:
    t_s, values = rec.numerics[track]
    label = track.split("/")[-1]
    unit = _unit(track)
    for i in np.argsort(np.asarray(t_s), kind="stable"):
        v = float(values[i])
        if not np.isfinite(v):
            continue
        yield Observation(bed_id=bed_id, t_ns=rec.start_ns + shift_ns + int(round(float(t_s[i]) * 1e9)),
                          code=track, label=label, value=v, unit=unit, source="replay")


def observation_messages(rec: Recording, bed_id: str, shift_ns: int = 0) -> Iterator[Observation]:
    """Every numeric sample of every track, merged in time order."""
    return heapq.merge(*(_track_observations(rec, track, bed_id, shift_ns) for track in sorted(rec.numerics)),
                       key=lambda o: o.t_ns)


def bed_messages(rec: Recording, bed_id: str, context: PatientContext | None = None,
                 shift_ns: int = 0, chunk_s: float = CHUNK_S) -> Iterator[OutMessage]:
    """All messages of one bed in event-time order. A chunk is due at the end of its last
    sample; a numeric or event at its own time; the patient context before everything."""
    key = bed_id.encode()
    streams: list[Iterable[OutMessage]] = []
    if context is not None:
        streams.append([OutMessage(rec.start_ns + shift_ns - 1, 0, PATIENTS.name, key, context.dumps())])
    streams.append(OutMessage(o.t_ns, 1, OBSERVATIONS.name, key, o.dumps())
                   for o in observation_messages(rec, bed_id, shift_ns))
    streams.append(OutMessage(e.t_ns, 1, EVENTS.name, key, e.dumps())
                   for e in event_messages(rec, bed_id, shift_ns))
    streams.append(OutMessage(c.t_end_ns, 2, WAVEFORM_ABP.name, key, chunk_codec.encode(c))
                   for c in iter_chunks(rec.abp_mmhg, rec.abp_fs_hz, rec.start_ns + shift_ns, bed_id,
                                        chunk_s, rec.abp_track))
    return heapq.merge(*streams)


# --- patient context -------------------------------------------------------------------------

def _num(v: str | None) -> float | None:
    try:
        x = float(v) if v not in (None, "") else None
    except ValueError:
        return None
    return x if x is not None and math.isfinite(x) else None


def caseid_of(path: Path) -> int | None:
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else None


def load_clinical(path: Path) -> dict[int, dict[str, str]]:
    """VitalDB clinical table rows by caseid; rows whose caseid is not a number are skipped."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and "caseid" not in rows[0]:
        raise ValueError(f"{path} has no caseid column (columns: {list(rows[0])})")
    out = {}
    for r in rows:
        try:
            out[int(float(r["caseid"]))] = r
        except (TypeError, ValueError):
            continue
    return out


def context_from_clinical(row: dict[str, str], bed_id: str, t_ns: int) -> PatientContext:
    def i(name):
        v = _num(row.get(name))
        return int(v) if v is not None else None

    sex = row.get("sex") or None
    return PatientContext(
        bed_id=bed_id, t_ns=t_ns, episode_id=f"case-{row.get('caseid')}", caseid=i("caseid"),
        subjectid=i("subjectid"), age=_num(row.get("age")), sex=sex if sex in ("M", "F") else None,
        height=_num(row.get("height")), weight=_num(row.get("weight")), bmi=_num(row.get("bmi")),
        asa=i("asa"), emop=i("emop"), department=row.get("department") or None,
        optype=row.get("optype") or None, approach=row.get("approach") or None,
        position=row.get("position") or None, ane_type=row.get("ane_type") or None,
        preop_htn=i("preop_htn"), preop_dm=i("preop_dm"))


def find_context(path: Path, rec: Recording, bed_id: str, clinical: Path | None = None,
                 shift_ns: int = 0) -> PatientContext | None:
    """Context from ``clinical`` (or a ``clinical.csv`` beside the recording) by caseid."""
    table_path = clinical or path.parent / "clinical.csv"
    cid = caseid_of(path)
    if cid is None or not table_path.exists():
        return None
    row = load_clinical(table_path).get(cid)
    return None if row is None else context_from_clinical(row, bed_id, rec.start_ns + shift_ns)


# --- publishing --------------------------------------------------------------------------------

@dataclass
class ReplayStats:
    messages: int = 0
    chunks: int = 0
    bytes: int = 0
    event_span_s: float = 0.0
    wall_s: float = 0.0


async def publish(streams: list[Iterator[OutMessage]], client_kwargs: dict, speed: float,
                  on_progress: Callable[[ReplayStats, int], None] | None = None,
                  max_in_flight: int = 2000, stop: asyncio.Event | None = None) -> ReplayStats:
    """Send the merged messages of all beds, paced so that event time advances ``speed`` times
    faster than wall time (``speed`` <= 0: as fast as possible). At-least-once: every send
    future is awaited before returning; no idempotent producer (Tansu does not support it)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**client_kwargs, acks="all", linger_ms=5, enable_idempotence=False,
                                max_request_size=4 * 1024 * 1024)
    await producer.start()
    stats = ReplayStats()
    pending: list[asyncio.Future] = []
    t_first: int | None = None
    wall0 = time.monotonic()
    try:
        for msg in heapq.merge(*streams):
            if stop is not None and stop.is_set():
                break
            if t_first is None:
                t_first = msg.t_ns
            if speed > 0:
                due = wall0 + (msg.t_ns - t_first) / 1e9 / speed
                delay = due - time.monotonic()
                if delay > 0.002:
                    if pending:
                        await asyncio.gather(*pending)
                        pending.clear()
                    await asyncio.sleep(delay)
            pending.append(await producer.send(msg.topic, msg.value, key=msg.key))
            stats.messages += 1
            stats.bytes += len(msg.value)
            stats.chunks += msg.topic == WAVEFORM_ABP.name
            stats.event_span_s = (msg.t_ns - t_first) / 1e9
            if len(pending) >= max_in_flight:
                await asyncio.gather(*pending)
                pending.clear()
            if on_progress is not None and stats.messages % 200 == 0:
                on_progress(stats, msg.t_ns)
        if pending:
            await asyncio.gather(*pending)
    finally:
        await producer.stop()
    stats.wall_s = time.monotonic() - wall0
    if on_progress is not None:
        on_progress(stats, 0)
    return stats
