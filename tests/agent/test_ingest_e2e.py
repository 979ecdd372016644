"""PCD-01 over MLLP to forecasts: `iohwatch ingest mllp` and `iohwatch run` against the embedded broker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

from streams.broker import EmbeddedBroker, ensure_topics_async, free_port, port_open
from streams.contracts import Forecast, decode
from streams.hl7 import samples
from streams.hl7.build import ack_code
from streams.mllp import send_and_wait_ack
from tests.agent.test_ingest_mllp import read_topic

pytestmark = pytest.mark.broker


def test_mllp_feed_reaches_forecasts(tmp_path):
    with EmbeddedBroker() as broker:
        env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap, IOHWATCH_WEB_PORT="0",
                   IOHWATCH_DATA_DIR=str(tmp_path), IOHWATCH_APP_ID="hl7e2e", IOHWATCH_TOPIC_PARTITIONS="2")
        asyncio.run(ensure_topics_async({"bootstrap_servers": broker.bootstrap}, 2))
        port = free_port()
        procs = [subprocess.Popen([sys.executable, "-m", "agent.cli", *args], env=env,
                                  stdout=open(tmp_path / f"{args[0]}.log", "w"), stderr=subprocess.STDOUT)
                 for args in (["ingest", "mllp", "--port", str(port)], ["run", "--engine", "none"])]
        try:
            deadline = time.monotonic() + 60
            while not port_open("127.0.0.1", port) and time.monotonic() < deadline:
                time.sleep(0.2)
            t0 = time.time_ns() - 120 * 10**9
            msgs = [samples.adt("A01", "OR^8", t0)]
            for i in range(120):  # two minutes of 1-s messages, MAP drifting down
                map_mmhg = 80 - i * 0.1
                msgs.append(samples.pcd01_oru("OR^8", t0 + i * 10**9, control_id=f"E{i}", map_mmhg=map_mmhg,
                                              wave_mmhg=samples.abp_wave(100, phase_s=i, map_mmhg=map_mmhg)))
            acks = asyncio.run(send_and_wait_ack("127.0.0.1", port, msgs, timeout_s=30))
            assert [ack_code(a)[0] for a in acks] == ["AA"] * len(msgs)
            forecasts = asyncio.run(read_topic(broker.bootstrap, "ioh.forecasts", 1, timeout_s=60))
            assert forecasts, (tmp_path / "run.log").read_text()[-2000:]
            f = decode(Forecast, forecasts[0][1])
            assert f.bed_id == "OR-8" and t0 <= f.t_ns <= t0 + 121 * 10**9
            chunks = asyncio.run(read_topic(broker.bootstrap, "waveform.abp", 120, timeout_s=10))
            assert len(chunks) == 120 and {k for k, _ in chunks} == {b"OR-8"}
        finally:
            for p in procs:  # one after another (Tansu group limits)
                p.terminate()
                p.wait(timeout=30)
