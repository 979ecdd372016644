"""``iohwatch alerts``: formatting, de-duplication, a missing broker, and a run against the
embedded broker with duplicates and garbage on the topic."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading

import pytest
from click.testing import CliRunner

from agent.alerts import AlertInput, AlertStateMachine, alert_style, format_alert
from agent.cli import main
from agent.commands.alerts import Deduplicator
from agent.settings import Settings
from streams.broker import EmbeddedBroker, ensure_topics, free_port, kafka_client_kwargs
from streams.contracts import Alert, decode
from streams.topics import ALERTS, Topic

T0_NS = 1_700_000_000_000_000_000


def make_alerts(bed_id: str, episode_id: str) -> list[Alert]:
    """Alerts from the state machine over a short made-up course: raise, escalate, resolve."""
    sm = AlertStateMachine(bed_id, Settings(), episode_id)
    risks = [0.6, 0.6, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1]
    out = []
    for i, r in enumerate(risks):
        x = AlertInput(t_ns=T0_NS + i * 2_000_000_000, risk={5: r, 10: r, 15: r}, map_now_mmhg=72.0,
                       map_slope_mmhg_per_min=-1.5, signal_quality="ok", drivers={"map_level_mmhg": 72.0})
        out += sm.step(x)
    assert [a.action for a in out] == ["raised", "escalated", "resolved"]
    return out


def test_format_alert_is_one_readable_line():
    a = make_alerts("OR-3", "case-1")[0]
    line = format_alert(a)
    assert "\n" not in line
    assert line.startswith("22:13:22Z  MEDIUM  raised      ioh_predicted    OR-3: IOH predicted within 5 min")
    assert alert_style(a) == "yellow"
    assert alert_style(a.model_copy(update={"action": "resolved"})) == "green"
    assert alert_style(a.model_copy(update={"priority": "high"})) == "bold red"


def test_deduplicator_is_bounded():
    d = Deduplicator(capacity=3)
    assert [d.seen(x) for x in "abca"] == [False, False, False, True]
    assert not d.seen("d") and not d.seen("e")     # 'b' and 'c' forgotten, 'a' was refreshed
    assert d.seen("a") and not d.seen("b")


def test_unreachable_broker_gives_a_clear_error():
    address = f"127.0.0.1:{free_port()}"
    result = CliRunner().invoke(main, ["alerts", "--json"], env={"KAFKA_BOOTSTRAP_SERVERS": address})
    assert result.exit_code == 1
    assert f"cannot reach Kafka at {address}" in result.stderr and "KAFKA_BOOTSTRAP_SERVERS" in result.stderr
    assert result.stdout == ""


async def _produce(settings: Settings, values: list[tuple[str, bytes]], topic: str = ALERTS.name) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**kafka_client_kwargs(settings))
    await producer.start()
    try:
        for key, value in values:
            await producer.send_and_wait(topic, value, key=key.encode())
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
def broker():
    with EmbeddedBroker() as b:
        settings = Settings(kafka_bootstrap_servers=b.bootstrap, topic_partitions=2)
        ensure_topics(settings, topics=(ALERTS,))
        yield b, settings


@pytest.mark.broker
def test_alerts_command_prints_each_alert_once_and_skips_garbage(broker):
    b, settings = broker
    or3, or5 = make_alerts("OR-3", "case-1"), make_alerts("OR-5", "case-9")
    values = [(a.bed_id, a.dumps()) for a in or3 + or5]
    values.insert(2, ("OR-3", or3[0].dumps()))                        # redelivered copy
    values.append(("OR-5", or5[1].model_copy(update={"issued_wall_ns": 1}).dumps()))  # re-issued copy
    values.append(("OR-3", b"\x00not json"))
    values.append(("OR-3", json.dumps({"schema_version": 1, "bed_id": "OR-3"}).encode()))
    asyncio.run(_produce(settings, values))

    env = {"KAFKA_BOOTSTRAP_SERVERS": b.bootstrap}
    runner = CliRunner()
    result = runner.invoke(main, ["alerts", "--json", "--idle-exit-s", "1.5"], env=env)
    assert result.exit_code == 0, result.output
    got = [decode(Alert, line.encode()) for line in result.stdout.splitlines()]
    strip = lambda xs: sorted((a.model_dump() for a in xs), key=lambda d: d["event_id"])  # noqa: E731
    assert strip(got) == strip(or3 + or5)
    # one bed's events keep their order (same key, same partition)
    assert [a.event_id for a in got if a.bed_id == "OR-3"] == [a.event_id for a in or3]
    assert result.stderr.count("warning: skipped malformed message ioh.alerts[") == 2
    assert "6 alerts, 2 duplicates dropped, 2 malformed skipped" in result.stderr

    # readable lines, filtered to one bed and kind
    result = runner.invoke(main, ["alerts", "--bed", "OR-5", "--kind", "ioh_predicted", "--idle-exit-s", "1"],
                           env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [format_alert(a) for a in or5]
    assert "3 filtered out" in result.stderr


@pytest.mark.broker
@pytest.mark.timeout(90)
def test_follow_prints_only_new_alerts_until_stopped(broker):
    b, settings = broker
    old = [a.model_copy(update={"issued_wall_ns": 1}) for a in make_alerts("OR-8", "old")]
    asyncio.run(_produce(settings, [(a.bed_id, a.dumps()) for a in old]))
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=b.bootstrap)
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "alerts", "--follow", "--json", "--bed", "OR-8"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        started = proc.stderr.readline()       # printed once positioned at the end of every partition
        assert started.startswith(f"following ioh.alerts on {b.bootstrap} (2 partitions)"), started
        new = make_alerts("OR-8", "new")
        asyncio.run(_produce(settings, [(a.bed_id, a.dumps()) for a in new + new[:1]]))
        out: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [out.put(ln) for ln in proc.stdout], daemon=True).start()
        lines = [out.get(timeout=20) for _ in new]
        assert [decode(Alert, ln.encode()).event_id for ln in lines] == [a.event_id for a in new]
    finally:
        proc.send_signal(signal.SIGTERM)        # a clean stop: summary on stderr, exit status 0
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        err = proc.stderr.read()
    assert proc.returncode == 0, err
    assert "3 alerts, 1 duplicates dropped" in err


@pytest.mark.broker
@pytest.mark.timeout(90)
def test_missing_topic(broker):
    b, settings = broker
    env = {"KAFKA_BOOTSTRAP_SERVERS": b.bootstrap}
    result = CliRunner().invoke(main, ["alerts", "--topic", "alerts.absent", "--idle-exit-s", "0.5"], env=env)
    assert result.exit_code == 0 and result.stdout == ""
    assert "topic alerts.absent does not exist" in result.stderr

    # a follower started before the topic exists waits for it, then prints what arrives
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=b.bootstrap)
    proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "alerts", "--follow", "--json", "--topic", "alerts.late"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stderr.readline().startswith("waiting for topic alerts.late")
        ensure_topics(settings, topics=(Topic("alerts.late", "test topic created after the follower"),))
        assert proc.stderr.readline().startswith(f"following alerts.late on {b.bootstrap} (2 partitions)")
        new = make_alerts("OR-9", "late")
        asyncio.run(_produce(settings, [(a.bed_id, a.dumps()) for a in new], topic="alerts.late"))
        out: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [out.put(ln) for ln in proc.stdout], daemon=True).start()
        assert [decode(Alert, out.get(timeout=20).encode()) for _ in new] == new
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    assert proc.returncode == 0


@pytest.mark.broker
@pytest.mark.timeout(90)
def test_follower_outlives_its_broker_and_stops_cleanly():
    with EmbeddedBroker() as b:
        settings = Settings(kafka_bootstrap_servers=b.bootstrap, topic_partitions=1)
        ensure_topics(settings, topics=(ALERTS,))
        env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=b.bootstrap)
        proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "alerts", "--follow", "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        try:
            assert proc.stderr.readline().startswith("following ioh.alerts")
            new = make_alerts("OR-2", "gone")
            asyncio.run(_produce(settings, [(a.bed_id, a.dumps()) for a in new]))
            out: queue.Queue[str] = queue.Queue()
            threading.Thread(target=lambda: [out.put(ln) for ln in proc.stdout], daemon=True).start()
            assert [decode(Alert, out.get(timeout=20).encode()) for _ in new] == new
            b.stop()                              # the broker goes away under the follower
            assert "warning: kafka:" in proc.stderr.readline()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    err = proc.stderr.read()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "3 alerts, 0 duplicates dropped" in err
