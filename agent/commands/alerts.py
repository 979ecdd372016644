"""``iohwatch alerts``: print alert lifecycle events from ``ioh.alerts``.

Reads without a consumer group: the client assigns itself every partition of the topic, so
any number of followers each see every alert and none waits for a group join. Events are de-duplicated by
``event_id`` (delivery is at least once). Malformed messages are reported on stderr, counted
and skipped.

"Caught up" is detected by silence (``--idle-exit-s``), not by the high watermark, which the
embedded Tansu broker can understate.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import click

from agent.alerts import KINDS, alert_style, format_alert  # format_alert re-exported for callers
from agent.commands._common import load_settings
from streams.contracts import Alert
from streams.topics import ALERTS

# Alerts issued up to this long before `--follow` started still count as new (clock skew
# between the worker and this machine).
CLOCK_SKEW_S = 5.0
DEDUP_CAPACITY = 100_000          # event ids remembered; the oldest are forgotten first


class _RateLimit(logging.Filter):
    """Lets one record per message template through every ``period_s``; a lost broker makes the
    Kafka client log the same connection error several times a second."""

    def __init__(self, period_s: float = 30.0):
        super().__init__()
        self.period_s = period_s
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        key = str(record.msg)
        if now - self._last.get(key, -math.inf) < self.period_s:
            return False
        self._last[key] = now
        return True


def _quiet_client_logs() -> None:
    """Kafka client warnings go to stderr as one 'kafka:' line per kind of problem per 30 s."""
    log = logging.getLogger("aiokafka")
    for old in [h for h in log.handlers if getattr(h, "iohwatch_alerts", False)]:
        log.removeHandler(old)         # its stream may be a stderr that was since replaced
    handler = logging.StreamHandler()
    handler.iohwatch_alerts = True
    handler.setFormatter(logging.Formatter("warning: kafka: %(message)s"))
    handler.addFilter(_RateLimit())
    log.addHandler(handler)
    log.setLevel(logging.WARNING)
    log.propagate = False


class Deduplicator:
    """Remembers the last ``capacity`` event ids; ``seen`` is True for a repeat."""

    def __init__(self, capacity: int = DEDUP_CAPACITY):
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def seen(self, event_id: str) -> bool:
        if event_id in self._ids:
            self._ids.move_to_end(event_id)
            return True
        self._ids[event_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return False


@dataclass
class Counts:
    printed: int = 0
    duplicates: int = 0
    malformed: int = 0
    filtered: int = 0
    older: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"{self.printed} alerts, {self.duplicates} duplicates dropped, "
                f"{self.malformed} malformed skipped")
        if self.filtered:
            text += f", {self.filtered} filtered out"
        if self.older:
            text += f", {self.older} issued before start skipped"
        return text


@click.command()
@click.option("--follow", "-f", is_flag=True, help="Keep printing new alerts until Ctrl-C.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per line (the Alert contract), for other programs.")
@click.option("--from-beginning", is_flag=True,
              help="With --follow, first print the alerts already on the topic "
                   "(without --follow they are always printed).")
@click.option("--bed", "beds", multiple=True, metavar="BED", help="Only this bed (repeatable).")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(KINDS), help="Only this kind (repeatable).")
@click.option("--idle-exit-s", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="Without --follow: exit after this long with no new message. Catching up is "
                   "detected by silence because the embedded broker can understate the high watermark.")
@click.option("--topic", default=ALERTS.name, show_default=True, help="Topic to read.")
def alerts(follow: bool, as_json: bool, from_beginning: bool, beds: tuple[str, ...], kinds: tuple[str, ...],
           idle_exit_s: float, topic: str) -> None:
    """Print alerts from ioh.alerts, de-duplicated by event id.

    Without --follow, prints the alerts on the topic and exits when caught up. With --follow,
    prints alerts issued from now on (all of them with --from-beginning) until interrupted.
    Connects to KAFKA_BOOTSTRAP_SERVERS, or to the embedded broker on loopback when unset.
    """
    settings = load_settings()
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False, soft_wrap=True)

    def emit(alert: Alert) -> None:
        if as_json:
            click.echo(alert.model_dump_json())
        else:
            console.print(Text(format_alert(alert), style=alert_style(alert)))

    counts = Counts()
    _quiet_client_logs()
    try:
        asyncio.run(_consume(settings, topic, emit, counts, follow=follow, from_beginning=from_beginning,
                             beds=set(beds), kinds=set(kinds), idle_exit_s=idle_exit_s))
    except KeyboardInterrupt:
        pass
    if counts.errors:
        raise click.ClickException(counts.errors[0])
    click.echo(counts.summary(), err=True)


async def _consume(settings, topic: str, emit, counts: Counts, *, follow: bool, from_beginning: bool,
                   beds: set[str], kinds: set[str], idle_exit_s: float) -> None:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.errors import KafkaError

    from streams.broker import kafka_client_kwargs
    from streams.contracts import ContractError, decode

    address = settings.bootstrap()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Also when started in the background, where a shell leaves SIGINT ignored.
        loop.add_signal_handler(sig, stop.set)
    only_new = follow and not from_beginning
    # No group: the client assigns itself every partition of the subscribed topic, and picks up
    # partitions added later (starting them at the reset policy).
    consumer = AIOKafkaConsumer(**kafka_client_kwargs(settings), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="latest" if only_new else "earliest",
                                request_timeout_ms=10_000)
    try:
        await consumer.start()
    except KafkaError as exc:
        if settings.uses_embedded_broker:
            hint = ("KAFKA_BOOTSTRAP_SERVERS is unset, so this is the embedded broker's address: start it "
                    "with `iohwatch run` or `iohwatch demo`, or set KAFKA_BOOTSTRAP_SERVERS to your cluster")
        else:
            hint = "the address comes from KAFKA_BOOTSTRAP_SERVERS; check it and that the cluster is up"
        counts.errors.append(f"cannot reach Kafka at {address} ({exc}); {hint}")
        await consumer.stop()
        return
    try:
        start_wall_ns = time.time_ns()
        if not await _topic_exists(consumer, topic, wait=follow, stop=stop):
            if not stop.is_set():
                click.echo(f"topic {topic} does not exist on {address} yet; no alerts", err=True)
            return
        consumer.subscribe([topic])
        tps = await _assignment(consumer, stop)
        if not tps:
            return
        if only_new:
            await consumer.seek_to_end(*tps)
        else:
            await consumer.seek_to_beginning(*tps)
        if follow:
            click.echo(f"following {topic} on {address} ({len(tps)} partitions); Ctrl-C to stop", err=True)
        dedup = Deduplicator()
        last_msg = time.monotonic()
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            records = [r for tp in sorted(batch, key=lambda tp: tp.partition) for r in batch[tp]]
            if records:
                last_msg = time.monotonic()
            elif not follow and time.monotonic() - last_msg >= idle_exit_s:
                return
            for rec in records:
                try:
                    if rec.value is None:
                        raise ContractError("Alert: empty message")
                    alert = decode(Alert, rec.value)
                except ContractError as exc:
                    counts.malformed += 1
                    click.echo(f"warning: skipped malformed message {topic}[{rec.partition}]@{rec.offset}: "
                               f"{exc}", err=True)
                    continue
                if dedup.seen(alert.event_id):
                    counts.duplicates += 1
                    continue
                if only_new and alert.issued_wall_ns < start_wall_ns - int(CLOCK_SKEW_S * 1e9):
                    counts.older += 1      # an understated end offset let an older alert through
                    continue
                if (beds and alert.bed_id not in beds) or (kinds and alert.kind not in kinds):
                    counts.filtered += 1
                    continue
                emit(alert)
                counts.printed += 1
    finally:
        await _stop_quietly(consumer)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _stop_quietly(consumer) -> None:
    """Stop the client; when the broker has gone away, aiokafka's pending fetch ends in an error
    or a CancelledError of its own, which must not turn a clean exit into a traceback."""
    from aiokafka.errors import KafkaError

    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise                       # this task itself is being cancelled
    except KafkaError:
        pass


async def _topic_exists(consumer, topic: str, wait: bool, stop: asyncio.Event) -> bool:
    """Whether ``topic`` exists; with ``wait``, polls until it does (or until stopped)."""
    noted = False
    while not stop.is_set():
        if topic in await consumer.topics():
            return True
        if not wait:
            return False
        if not noted:
            click.echo(f"waiting for topic {topic} to be created ...", err=True)
            noted = True
        await _sleep_unless(stop, 1.0)
    return False


async def _assignment(consumer, stop: asyncio.Event, timeout_s: float = 30.0) -> list:
    """The partitions the client assigned itself after ``subscribe`` (it needs one metadata round)."""
    deadline = time.monotonic() + timeout_s
    while not stop.is_set():
        tps = sorted(consumer.assignment(), key=lambda tp: tp.partition)
        if tps:
            return tps
        if time.monotonic() > deadline:
            raise RuntimeError(f"alerts: no partitions assigned within {timeout_s:.0f} s of subscribing")
        await _sleep_unless(stop, 0.05)
    return []


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except asyncio.TimeoutError:
        pass


if __name__ == "__main__":  # pragma: no cover
    alerts()
