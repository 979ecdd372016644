"""`iohwatch run` start-up errors."""

from __future__ import annotations

import os
import subprocess
import sys

from streams.broker import free_port


def test_run_with_the_broker_down_fails_with_a_clear_error():
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}", IOHWATCH_BROKER_WAIT_S="2",
               IOHWATCH_ENGINE_PATH="none")
    r = subprocess.run([sys.executable, "-m", "agent.cli", "run"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0
    assert "cannot reach Kafka" in r.stderr and "KAFKA_BOOTSTRAP_SERVERS" in r.stderr
    assert r.stderr.count("Unable connect") <= 1  # one waiting line, not a traceback per retry
