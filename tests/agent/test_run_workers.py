"""`iohwatch run --workers 2`: two worker processes share the beds of one consumer group, and
stopping the parent stops both."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import psutil
import pytest

from agent.settings import Settings
from streams.broker import EmbeddedBroker, ensure_topics, free_port, kafka_client_kwargs
from streams.topics import FORECASTS
from tests.kafka_tools import read_records, wait_ready

pytestmark = pytest.mark.broker


def test_two_workers_share_beds_and_stop_together(real_abp_record, tmp_path):
    web_port = free_port()
    beds = ["OR-1", "OR-2", "OR-3", "OR-4"]
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        s = Settings(kafka_bootstrap_servers=broker.bootstrap)
        ensure_topics(s)
        env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap, IOHWATCH_WEB_PORT=str(web_port),
                   IOHWATCH_ENGINE_PATH="none", IOHWATCH_DATA_DIR=str(tmp_path))
        parent = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--workers", "2"], env=env,
                                  stdout=open(tmp_path / "run.log", "wb"), stderr=subprocess.STDOUT)
        try:
            wait_ready(web_port, parent)
            wait_ready(web_port + 1, parent)
            children = psutil.Process(parent.pid).children()
            assert len(children) == 2
            rc = subprocess.run([sys.executable, "-m", "agent.cli", "replay", *[str(real_abp_record)] * 4,
                                 "--beds", ",".join(beds), "--speed", "0", "--no-progress",
                                 "--wfdb-start", str(1_790_000_000 * 10**9)],
                                env=env, timeout=120, capture_output=True)
            assert rc.returncode == 0, rc.stderr.decode()

            def done(recs):
                return {json.loads(v)["bed_id"] for _, _, v in recs} >= set(beds) and len(recs) >= 4 * 150

            recs = asyncio.run(read_records(kafka_client_kwargs(s), [FORECASTS.name], done, idle_s=2.0,
                                            timeout_s=120))
        finally:
            parent.send_signal(signal.SIGTERM)
            parent.wait(timeout=90)
        per_bed = {b: sum(json.loads(v)["bed_id"] == b for _, _, v in recs) for b in beds}
        # 300 s of signal at a 2 s cadence: every bed gets all of its 150 forecasts exactly once.
        assert per_bed == {b: 150 for b in beds}
        assert not any(c.is_running() for c in children), "a worker outlived its parent"
