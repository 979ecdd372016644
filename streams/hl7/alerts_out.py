"""Send alert lifecycle events to an MLLP receiver as IHE PCD-04 ORU^R40, until acknowledged.

``PCD04Sender.deliver(alert)`` builds the message (``streams.hl7.build.pcd04``), sends it on a
persistent MLLP connection and waits for the ACK:

* AA (or CA): delivered;
* AE/AR (or CE/CR): the receiver understood and refused; logged, returned as ``rejected`` and
  dead-lettered by the caller (retrying a refused message would refuse again);
* no answer within ``ack_timeout_s``, connection refused or dropped: reconnect and retry with
  exponential backoff (``backoff_s`` doubling up to ``max_backoff_s``) until the receiver
  answers, so an alarm manager that is down receives the alert when it comes back.

``run_alerts_out`` consumes ``ioh.alerts`` with a consumer group and commits an alert's offset
only after it was delivered or dead-lettered (at least once; the PCD-04 control id is derived
from the alert's event id, so a receiver can drop a copy).
"""

from __future__ import annotations

import asyncio
import logging
import time

from streams.hl7.build import ack_code, pcd04
from streams.mllp import MLLPFramer, frame

log = logging.getLogger(__name__)


class PCD04Sender:
    def __init__(self, host: str, port: int, *, ack_timeout_s: float = 10.0, backoff_s: float = 0.5,
                 max_backoff_s: float = 30.0, sending_app: str = "IOHWATCH"):
        self.host, self.port = host, port
        self.ack_timeout_s = ack_timeout_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.sending_app = sending_app
        self.attempts = 0
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._framer = MLLPFramer()

    async def close(self) -> None:
        if self._conn is not None:
            _, writer = self._conn
            self._conn = None
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def _send_once(self, message: bytes) -> bytes:
        if self._conn is None:
            self._conn = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.ack_timeout_s)
            self._framer = MLLPFramer()
        reader, writer = self._conn
        writer.write(frame(message))
        await writer.drain()
        deadline = time.monotonic() + self.ack_timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError(f"no ACK within {self.ack_timeout_s} s")
            data = await asyncio.wait_for(reader.read(65536), left)
            if not data:
                raise ConnectionError("receiver closed the connection before acknowledging")
            for ev in self._framer.feed(data):
                if ev.kind == "frame":
                    return ev.data

    async def deliver(self, alert) -> tuple[str, bytes, bytes]:
        """Send until the receiver answers; (outcome 'delivered'|'rejected', message, ack)."""
        message = pcd04(alert, sending_app=self.sending_app)
        want = message.split(b"|", 10)[9]
        delay = self.backoff_s
        while True:
            self.attempts += 1
            try:
                reply = await self._send_once(message)
                code, ref = ack_code(reply)
                if ref.encode() != want:
                    raise ConnectionError(f"ACK refers to {ref!r}, not {want.decode()!r}")
                if code in ("AA", "CA"):
                    return "delivered", message, reply
                if code in ("AE", "AR", "CE", "CR"):
                    log.warning("PCD-04 for alert %s (%s) refused with %s: %s", alert.alert_id, alert.action,
                                code, reply.decode(errors="replace").replace("\r", " | "))
                    return "rejected", message, reply
                raise ConnectionError(f"answer without a usable MSA: {reply[:80]!r}")
            except (OSError, ConnectionError, asyncio.TimeoutError) as exc:
                await self.close()
                log.warning("PCD-04 for alert %s not acknowledged (%s); retrying in %.1f s",
                            alert.alert_id, exc or type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)


async def run_alerts_out(client_kwargs: dict, host: str, port: int, *, from_beginning: bool = False,
                         group_id: str = "iohwatch-hl7-out", session_timeout_s: float = 6.0,
                         heartbeat_s: float = 1.0, stop: asyncio.Event | None = None, metrics=None,
                         on_result=None) -> None:
    """Consume ``ioh.alerts`` and deliver each event as PCD-04 (see the module docstring).

    Without ``from_beginning``, alerts issued before this call started are skipped (decided on
    the alert's ``issued_wall_ns``, not on the broker's high watermark).
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from streams.contracts import Alert, ContractError, DeadLetter, decode
    from streams.topics import ALERTS, DLQ_HL7

    started_ns = time.time_ns()
    consumer = AIOKafkaConsumer(ALERTS.name, **client_kwargs, group_id=group_id, enable_auto_commit=False,
                                auto_offset_reset="earliest",
                                session_timeout_ms=int(session_timeout_s * 1000),
                                heartbeat_interval_ms=int(heartbeat_s * 1000))
    producer = AIOKafkaProducer(**client_kwargs, acks="all", enable_idempotence=False)
    sender = PCD04Sender(host, port)
    await consumer.start()
    await producer.start()
    stop = stop or asyncio.Event()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                for rec in records:
                    try:
                        alert = decode(Alert, rec.value)
                    except ContractError as exc:
                        dl = DeadLetter.of(ALERTS.name, "hl7.out", str(exc), rec.value, key=rec.key)
                        await producer.send_and_wait(DLQ_HL7.name, dl.dumps(), key=rec.key)
                        if metrics is not None:
                            metrics.dead_letter(ALERTS.name, "contract")
                        continue
                    if not from_beginning and alert.issued_wall_ns < started_ns:
                        continue
                    outcome, message, reply = await sender.deliver(alert)
                    if outcome == "rejected":
                        reason = f"PCD-04 receiver refused alert {alert.alert_id} ({alert.action}): " + \
                            reply.decode(errors="replace").replace("\r", " | ")[:400]
                        dl = DeadLetter.of(ALERTS.name, "hl7.out", reason, message, key=alert.bed_id)
                        await producer.send_and_wait(DLQ_HL7.name, dl.dumps(), key=alert.bed_id.encode())
                        if metrics is not None:
                            metrics.dead_letter(ALERTS.name, "other")
                    if on_result is not None:
                        on_result(alert, outcome)
                    await consumer.commit({tp: rec.offset + 1})
    finally:
        await sender.close()
        await consumer.stop()
        await producer.stop()
