"""What the ingest services do with one received HL7 message, and the Kafka sink they write to.

``HL7Ingest.handle(message) -> ACK bytes`` (the MLLP handler):

1. light validation on the hot-path parser: an MSH with usable encoding characters, MSH-9
   (message type), MSH-10 (control id), a v2 version in MSH-12, and a bed in PV1-3; a failure
   answers AR/AE with an ERR segment and the reason, and writes a dead letter to ``dlq.hl7``.
   Exception: an ADT message without a bed (a hospital-wide feed also carries patients who
   are in no OR bed) is written to ``dlq.hl7`` and answered AA once that write is acknowledged,
   so the feed never stalls on it; message types the parse stage does not use are accepted
   and dead-lettered there, for the same reason;
2. duplicates: a message whose (MSH-3, MSH-4, MSH-10, MSH-7) was written recently (bounded LRU of
   ``hl7_dedup_window`` ids) is answered AA again without writing it a second time; an id is
   remembered only after the broker acknowledged it, and a copy that arrives while the first is
   still being written waits for that write's outcome (AA if it succeeded, else it is written);
3. the raw bytes are produced to ``hl7.raw`` keyed by bed id and the broker's acknowledgement
   (``acks=all``) is awaited; only then is AA returned. If the broker does not acknowledge within
   ``hl7_write_timeout_s`` or the write fails, the answer is AE and nothing is remembered, so the
   sender's retry is written again (at least once, never acknowledged-and-lost).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from streams.contracts import DeadLetter
from streams.hl7 import build
from streams.hl7.fast import HL7ParseError, parse
from streams.hl7.normalise import bed_id_of
from streams.mllp import FrameEvent
from streams.topics import DLQ_HL7, HL7_RAW

log = logging.getLogger(__name__)

STEP = "hl7.ingest"
_HEADER_SEGMENTS = frozenset({"PV1"})  # all the ingest step reads besides MSH
Send = Callable[[str, bytes, bytes], Awaitable[None]]


class _Counters:
    """Fallback when no ``agent.metrics.Metrics`` is given: plain counts, same method names."""

    def __init__(self):
        self.messages: dict[str, int] = {}
        self.dead: dict[tuple[str, str], int] = {}
        self.ack_s: list[float] = []

    def message(self, outcome: str) -> None:
        self.messages[outcome] = self.messages.get(outcome, 0) + 1

    def dead_letter(self, topic: str, reason: str) -> None:
        self.dead[(topic, reason)] = self.dead.get((topic, reason), 0) + 1

    def ack(self, seconds: float) -> None:
        self.ack_s.append(seconds)
        if len(self.ack_s) > 10_000:
            del self.ack_s[:5_000]


class IngestMetrics:
    """Adapter over ``agent.metrics.Metrics`` (or plain counters when none is given)."""

    def __init__(self, metrics=None):
        self.metrics = metrics
        self.counts = _Counters()

    def message(self, outcome: str) -> None:
        self.counts.message(outcome)
        if self.metrics is not None:
            self.metrics.hl7_messages_total.labels(outcome=outcome).inc()

    def dead_letter(self, reason: str) -> None:
        self.counts.dead_letter(HL7_RAW.name, reason)
        if self.metrics is not None:
            self.metrics.dead_letter(HL7_RAW.name, reason)

    def ack(self, seconds: float) -> None:
        self.counts.ack(seconds)
        if self.metrics is not None:
            self.metrics.hl7_ack_seconds.observe(seconds)


class HL7Ingest:
    def __init__(self, send: Send, metrics=None, *, dedup_window: int = 100_000, write_timeout_s: float = 10.0):
        self.send = send
        self.metrics = metrics if isinstance(metrics, IngestMetrics) else IngestMetrics(metrics)
        self.dedup_window = dedup_window
        self.write_timeout_s = write_timeout_s
        self._seen: OrderedDict[tuple[str, str, str, str], None] = OrderedDict()
        self._inflight: dict[tuple[str, str, str, str], asyncio.Future] = {}

    async def handle(self, message: bytes) -> bytes:
        """Validate, de-duplicate, write to ``hl7.raw``, and return the ACK to send back."""
        try:
            p = parse(message, only=_HEADER_SEGMENTS)
        except HL7ParseError as exc:
            return await self._reject("AR", "", {}, f"not an HL7 v2 message: {exc}", build.ERR_SEGMENT_SEQUENCE,
                                      message, "parse")
        hdr = {"sending_app": p.msh_field(3), "sending_facility": p.msh_field(4),
               "trigger": p.msh_field(9, 2), "version": p.version}
        control_id = p.control_id
        mtype, _ = p.message_type
        if not mtype:
            return await self._reject("AR", control_id, hdr, "MSH-9 (message type) is empty",
                                      build.ERR_REQUIRED_MISSING, message, "parse")
        if not control_id:
            return await self._reject("AR", control_id, hdr, "MSH-10 (message control id) is empty",
                                      build.ERR_REQUIRED_MISSING, message, "parse")
        if not p.version.startswith("2."):
            return await self._reject("AR", control_id, hdr, f"MSH-12 version {p.version!r} is not HL7 v2",
                                      build.ERR_UNSUPPORTED_VERSION, message, "unsupported")
        # MSH-7 is part of the key: Vital Recorder restarts its control ids at 1 with every run.
        key = (hdr["sending_app"], hdr["sending_facility"], control_id, p.msh_field(7))
        first = self._inflight.get(key)
        if first is not None:  # the same message is being written right now: share its outcome
            await asyncio.shield(first)
        if key in self._seen:
            self._seen.move_to_end(key)
            self.metrics.message("duplicate")
            return build.ack("AA", control_id, **hdr)
        bed = bed_id_of(p)
        if bed is None:
            reason = "PV1-3 (assigned patient location) is empty: no bed to key the message by"
            if mtype == "ADT":
                return await self._park(control_id, hdr, reason, message, key)
            return await self._reject("AE", control_id, hdr, reason, build.ERR_REQUIRED_MISSING, message,
                                      "unknown_bed")
        done = asyncio.get_running_loop().create_future()
        self._inflight[key] = done
        try:
            async with asyncio.timeout(self.write_timeout_s):
                await self.send(HL7_RAW.name, bed.encode(), message)
        except Exception as exc:  # broker down, timeout, auth: never acknowledge
            self.metrics.message("error")
            reason = f"broker did not acknowledge the write to {HL7_RAW.name}: {type(exc).__name__} {exc}".strip()
            log.warning("message %s: %s", control_id, reason)
            return build.ack("AE", control_id, reason=reason, error=build.ERR_INTERNAL, **hdr)
        else:
            if self.dedup_window:
                self._remember(key)
        finally:
            del self._inflight[key]
            done.set_result(None)
        self.metrics.message("accepted")
        return build.ack("AA", control_id, **hdr)

    async def bad_frame(self, ev: FrameEvent) -> bytes | None:
        """NAK for an oversize or truncated MLLP frame; count garbage (no answer)."""
        if ev.kind == "garbage":
            self.metrics.dead_letter("decode")
            return None
        what = (f"frame of {ev.size} bytes is larger than the limit" if ev.kind == "oversize"
                else f"truncated frame ({ev.size} bytes): a start block arrived before the end block")
        control_id, hdr = "", {}
        try:
            p = parse(ev.data)
            control_id = p.control_id
            hdr = {"sending_app": p.msh_field(3), "sending_facility": p.msh_field(4),
                   "trigger": p.msh_field(9, 2), "version": p.version}
        except HL7ParseError:
            pass
        return await self._reject("AR", control_id, hdr, what, build.ERR_INTERNAL, ev.data,
                                  "oversize" if ev.kind == "oversize" else "decode")

    async def _park(self, control_id, hdr, reason, raw, key) -> bytes:
        """ADT without a bed: dead-letter it durably, then AA (see the module docstring)."""
        dl = DeadLetter.of(HL7_RAW.name, STEP, reason, raw)
        try:
            async with asyncio.timeout(self.write_timeout_s):
                await self.send(DLQ_HL7.name, b"", dl.dumps())
        except Exception as exc:
            self.metrics.message("error")
            return build.ack("AE", control_id, reason=f"dead letter not written: {type(exc).__name__} {exc}",
                             error=build.ERR_INTERNAL, **hdr)
        self.metrics.message("rejected")
        self.metrics.dead_letter("unknown_bed")
        if self.dedup_window:
            self._remember(key)
        return build.ack("AA", control_id, **hdr)

    def _remember(self, key) -> None:
        self._seen[key] = None
        if len(self._seen) > self.dedup_window:
            self._seen.popitem(last=False)

    async def _reject(self, code, control_id, hdr, reason, error, raw, reason_class) -> bytes:
        self.metrics.message("rejected")
        self.metrics.dead_letter(reason_class)
        dl = DeadLetter.of(HL7_RAW.name, STEP, reason, raw)
        try:
            await asyncio.wait_for(self.send(DLQ_HL7.name, b"", dl.dumps()), self.write_timeout_s)
        except Exception as exc:
            log.warning("dead letter for message %r not written: %s", control_id, exc)
        return build.ack(code, control_id, reason=reason, error=error, **hdr)


class KafkaSink:
    """aiokafka producer with ``acks=all``; ``send`` returns once the broker acknowledged."""

    def __init__(self, client_kwargs: dict, *, linger_ms: int = 2, request_timeout_s: float = 10.0,
                 max_batch_bytes: int = 512 * 1024):
        self.client_kwargs = client_kwargs
        self.linger_ms = linger_ms
        self.request_timeout_s = request_timeout_s
        # aiokafka keeps one batch in flight per partition: batches far larger than its 16 KiB
        # default let thousands of ~2 KiB HL7 messages share one round trip.
        self.max_batch_bytes = max_batch_bytes
        self.producer = None

    async def start(self) -> "KafkaSink":
        from aiokafka import AIOKafkaProducer

        # Idempotent producers fail on the embedded broker; de-duplication is by control id.
        self.producer = AIOKafkaProducer(**self.client_kwargs, acks="all", enable_idempotence=False,
                                         linger_ms=self.linger_ms, max_batch_size=self.max_batch_bytes,
                                         request_timeout_ms=int(self.request_timeout_s * 1000))
        await self.producer.start()
        return self

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        fut = await self.producer.send(topic, value=value, key=key or None)
        await fut

    async def __aenter__(self) -> "KafkaSink":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()
