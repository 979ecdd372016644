"""End to end on the embedded broker: replay a simulated case with a known episode through
Kafka and the agent (real subprocesses), and compare with offline scoring of the same file."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.commands.score import as_record, score_records
from agent.settings import Settings
from streams.broker import EmbeddedBroker, ensure_topics, free_port, kafka_client_kwargs
from streams.topics import ALERTS, FORECASTS
from tests.kafka_tools import read_records, wait_ready

pytestmark = pytest.mark.broker

WALL_FIELDS = {"issued_wall_ns", "source_wall_ns", "inference_ms"}


@pytest.fixture(scope="module")
def demo_case(tmp_path_factory) -> Path:
    from training.simulator import write_cohort

    out = tmp_path_factory.mktemp("cohort")
    write_cohort(out, cases=1, seed=11, minutes=14.0, scenario="demo", progress=False)
    return out / "0001.vital"


def _strip(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k not in WALL_FIELDS}


async def _collect(client_kwargs: dict, idle_s: float, min_forecasts: int, timeout_s: float) -> list[dict]:
    """Forecasts and alerts as records tagged with their type."""
    def done(recs):
        return sum(t == FORECASTS.name for t, _, _ in recs) >= min_forecasts

    recs = await read_records(client_kwargs, [FORECASTS.name, ALERTS.name], done, idle_s, timeout_s)
    return [{"type": "alert" if t == ALERTS.name else "forecast", **json.loads(v)} for t, _, v in recs]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The embedded broker and one agent worker (baseline forecaster), shared by the module."""
    tmp = tmp_path_factory.mktemp("stack")
    web_port = free_port()
    with EmbeddedBroker(log_path=tmp / "broker.log") as broker:
        s = Settings(engine_path=Path("none"), kafka_bootstrap_servers=broker.bootstrap)
        ensure_topics(s)
        env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap, IOHWATCH_WEB_PORT=str(web_port),
                   IOHWATCH_ENGINE_PATH="none", IOHWATCH_DATA_DIR=str(tmp))
        agent = subprocess.Popen([sys.executable, "-m", "agent.cli", "run"], env=env,
                                 stdout=open(tmp / "agent.log", "wb"), stderr=subprocess.STDOUT)
        try:
            wait_ready(web_port, agent)
            yield {"settings": s, "env": env, "web_port": web_port, "agent": agent}
        finally:
            agent.terminate()
            agent.wait(timeout=30)


def _replay(stack, *args: str) -> None:
    rc = subprocess.run([sys.executable, "-m", "agent.cli", "replay", *args, "--start", "original",
                         "--speed", "0", "--no-progress"], env=stack["env"], timeout=120, capture_output=True)
    assert rc.returncode == 0, rc.stderr.decode()


def test_replay_through_broker_equals_offline_and_alerts_in_time(demo_case, stack):
    settings = Settings(engine_path=Path("none"))
    _, offline_iter = score_records(demo_case, settings, bed_id="OR-1")
    offline = [as_record(m) for m in offline_iter]
    truth = json.loads(demo_case.with_name("0001.truth.json").read_text())

    _replay(stack, str(demo_case), "--beds", "OR-1")
    n_offline_fc = sum(r["type"] == "forecast" for r in offline)
    streamed = [r for r in asyncio.run(_collect(kafka_client_kwargs(stack["settings"]), idle_s=4.0,
                                                min_forecasts=n_offline_fc, timeout_s=120))
                if r["bed_id"] == "OR-1"]

    # Identical forecasts and alerts, in the same order per type.
    for kind in ("forecast", "alert"):
        a = [_strip(r) for r in offline if r["type"] == kind]
        b = [_strip(r) for r in streamed if r["type"] == kind]
        assert len(a) == len(b), f"{kind}: offline {len(a)} vs streamed {len(b)}"
        assert a == b, f"{kind}s differ between offline scoring and streaming"

    start_ns = truth["start_ns"]
    episode = truth["ioh_episodes"][0]
    onset_ns = start_ns + int(episode["start_s"] * 1e9)
    end_ns = start_ns + int(episode["end_s"] * 1e9)
    alerts = [r for r in streamed if r["type"] == "alert"]
    raised = [a for a in alerts if a["kind"] == "ioh_predicted" and a["action"] == "raised"]
    assert raised and raised[0]["t_ns"] < onset_ns, "no predictive alert before the episode began"
    resolved = [a for a in alerts if a["kind"] == "ioh_in_progress" and a["action"] == "resolved"]
    assert resolved and resolved[-1]["t_ns"] > end_ns, "hypotension-in-progress did not resolve after recovery"
    for art in truth["artifacts"]:
        lo = start_ns + int(art["start_s"] * 1e9)
        hi = start_ns + int((art["end_s"] + 20) * 1e9)
        during = [a for a in alerts if lo <= a["t_ns"] <= hi and a["action"] in ("raised", "escalated")
                  and a["kind"] != "signal_quality"]
        assert not during, f"alert raised during the {art['kind']} artifact: {during}"
        flagged = [r for r in streamed if r["type"] == "forecast" and lo <= r["t_ns"] <= hi
                   and r["signal_quality"] == "artifact"]
        assert flagged, f"the {art['kind']} artifact was not flagged by the gate"


def test_bad_input_goes_to_dead_letters_and_other_beds_keep_running(stack, real_abp_record):
    """Garbage and truncated chunks, a chunk at another rate, a malformed observation: each is a
    dead-letter record with the reason and the original bytes, and a healthy bed still gets
    forecasts afterwards."""
    import numpy as np
    from aiokafka import AIOKafkaProducer

    from streams import chunk_codec
    from streams.chunk_codec import WaveformChunk
    from streams.contracts import DeadLetter, decode

    good = chunk_codec.encode(WaveformChunk("OR-7", 1_790_000_000 * 10**9, 500.0,
                                            np.full(500, 80.0, np.float32), 1))
    wrong_rate = chunk_codec.encode(WaveformChunk("OR-7", 1_790_000_001 * 10**9, 125.0,
                                                  np.full(125, 80.0, np.float32), 2))
    bad = [("waveform.abp", b"not a chunk at all"), ("waveform.abp", good[:-7]),
           ("waveform.abp", good), ("waveform.abp", wrong_rate),
           ("observations", b'{"bed_id": "OR-7", "value": "high"}')]
    kw = kafka_client_kwargs(stack["settings"])

    async def send_and_read():
        producer = AIOKafkaProducer(**kw, acks="all", enable_idempotence=False)
        await producer.start()
        try:
            for topic, value in bad:
                await (await producer.send(topic, value, key=b"OR-7"))
        finally:
            await producer.stop()
        recs = await read_records(kw, ["dlq.waveform.abp", "dlq.observations"],
                                  lambda r: len(r) >= 4, timeout_s=60)
        found = [decode(DeadLetter, v) for _, _, v in recs]
        return found

    found = asyncio.run(send_and_read())
    reasons = sorted(d.reason.split(":")[0] for d in found)
    assert reasons == ["contract", "decode", "decode", "rate_changed"], [d.reason for d in found]
    assert {d.original() for d in found} == {b"not a chunk at all", good[:-7], wrong_rate,
                                             b'{"bed_id": "OR-7", "value": "high"}'}
    assert all(d.step in ("window", "numerics") and d.key == "OR-7" for d in found)

    # The worker is still alive and serves other beds.
    _replay(stack, str(real_abp_record), "--beds", "OR-9", "--wfdb-start", str(1_790_000_000 * 10**9))
    after = asyncio.run(_collect(kw, idle_s=3.0, min_forecasts=1, timeout_s=60))
    assert any(r["bed_id"] == "OR-9" and r["type"] == "forecast" for r in after)
    assert stack["agent"].poll() is None
    import urllib.request
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{stack['web_port']}/metrics").read().decode()
    assert 'iohwatch_dead_letters_total{reason="decode",topic="waveform.abp"} 2.0' in metrics
