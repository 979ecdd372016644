"""The agent end to end on the embedded broker with a tiny exported engine (ONNX Runtime on CPU):
forecasts come from the engine (not the baseline) and beliefs flow for clinical events."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.settings import Settings
from streams.broker import EmbeddedBroker, ensure_topics, free_port, kafka_client_kwargs
from streams.topics import BELIEFS, FORECASTS
from tests.kafka_tools import read_records, wait_ready

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
    def done(recs):
        n_ok = sum(t == FORECASTS.name and json.loads(v)["signal_quality"] == "ok" for t, _, v in recs)
        return n_ok >= min_ok and any(t == BELIEFS.name for t, _, _ in recs)

    recs = await read_records(client_kwargs, [FORECASTS.name, BELIEFS.name], done, idle_s=10.0,
                              timeout_s=timeout_s)
    out: dict[str, list[dict]] = {FORECASTS.name: [], BELIEFS.name: []}
    for t, _, v in recs:
        out[t].append(json.loads(v))
    return out


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
            wait_ready(web_port, agent)
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
