"""The agent end to end on the embedded broker with a tiny exported engine (ONNX Runtime on CPU):
forecasts come from the engine (not the baseline) and beliefs flow for clinical events."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.settings import Settings
from streams.broker import EmbeddedBroker, ensure_topics, free_port, kafka_client_kwargs
from streams.topics import BELIEFS, FORECASTS

pytestmark = [pytest.mark.broker, pytest.mark.slow]


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> Path:
    from training.simulator import write_cohort
    out = tmp_path_factory.mktemp("cohort")
    write_cohort(out, cases=1, seed=11, minutes=17.0, scenario="demo", progress=False)
    return out / "0001.vital"


async def _collect(client_kwargs: dict, timeout_s: float, min_ok: int) -> dict[str, list[dict]]:
    """Read forecasts and beliefs until ``min_ok`` clean-window forecasts and a belief arrived,
    then until 10 s pass without a record (or ``timeout_s``)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    consumer = AIOKafkaConsumer(**client_kwargs, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    out: dict[str, list[dict]] = {FORECASTS.name: [], BELIEFS.name: []}
    try:
        tps = [TopicPartition(t, p) for t in out for p in sorted(consumer.partitions_for_topic(t) or {0})]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        last = time.monotonic()
        while time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                out[tp.topic].extend(json.loads(r.value) for r in records)
                last = time.monotonic() if records else last
            n_ok = sum(f["signal_quality"] == "ok" for f in out[FORECASTS.name])
            if n_ok >= min_ok and out[BELIEFS.name] and time.monotonic() - last > 10.0:
                break
    finally:
        await consumer.stop()
    return out


def _wait_ready(port: int, proc: subprocess.Popen, timeout_s: float = 120.0) -> None:
    import urllib.request
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"agent exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("agent never became ready")


def test_agent_runs_the_engine(case, tiny_engine_dir, tmp_path):
    web_port = free_port()
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        s = Settings(kafka_bootstrap_servers=broker.bootstrap)
        ensure_topics(s)
        env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap, IOHWATCH_WEB_PORT=str(web_port),
                   IOHWATCH_ENGINE_PATH=str(tiny_engine_dir), IOHWATCH_ENGINE_BACKEND="onnxruntime",
                   IOHWATCH_DATA_DIR=str(tmp_path))
        log_path = tmp_path / "agent.log"
        agent = subprocess.Popen([sys.executable, "-m", "agent.cli", "run"], env=env,
                                 stdout=open(log_path, "wb"), stderr=subprocess.STDOUT)
        try:
            _wait_ready(web_port, agent)
            rc = subprocess.run([sys.executable, "-m", "agent.cli", "replay", str(case), "--speed", "0",
                                 "--start", "original", "--no-progress"], env=env, timeout=180,
                                capture_output=True)
            assert rc.returncode == 0, rc.stderr.decode()
            got = asyncio.run(_collect(kafka_client_kwargs(s), timeout_s=300, min_ok=20))
        finally:
            agent.terminate()
            agent.wait(timeout=30)
    forecasts, beliefs = got[FORECASTS.name], got[BELIEFS.name]
    assert len(forecasts) >= 5, log_path.read_text()[-3000:]
    for f in forecasts:
        assert f["model"] == "iohwatch-gated_fusion" and f["model_version"] == "untrained-tiny"
        assert f["backend"] == "onnxruntime" and f["fallback_reason"] is None
    ok = [f for f in forecasts if f["signal_quality"] == "ok"]
    from collections import Counter
    assert ok, (f"no forecast from a clean window: {Counter(f['signal_quality'] for f in forecasts)} "
                f"{forecasts[-1]}\n{log_path.read_text()[-3000:]}")
    assert all(set(f["risk"]) == {"5", "10", "15"} for f in ok)
    assert all(f["inference_ms"] is not None for f in ok)
    assert all({"trend", "morphology", "numerics", "context"} <= set(f["drivers"]) for f in ok)
    assert any(f["map_trajectory_mmhg"] and len(f["map_trajectory_mmhg"]) == 300 for f in ok)
    assert beliefs, "no belief was published for the case's clinical events"
    for b in beliefs:
        assert b["model"] == "belief_decoder" and set(b["belief"]) == {"5", "10", "15"}
        assert all(0.0 < p < 1.0 for p in b["belief"].values())
