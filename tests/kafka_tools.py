"""Helpers for tests that run the agent against the embedded broker."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from typing import Callable

Record = tuple[str, bytes | None, bytes]  # (topic, key, value)


def wait_ready(port: int, proc: subprocess.Popen, timeout_s: float = 120.0) -> None:
    """Poll the agent's /readyz until 200; fail fast if the process exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"agent exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"agent on port {port} never became ready")


async def read_records(client_kwargs: dict, topics: list[str], done: Callable[[list[Record]], bool],
                       idle_s: float = 0.0, timeout_s: float = 60.0) -> list[Record]:
    """Every record of ``topics`` from the beginning (all partitions, no consumer group), until
    ``done(records)`` holds and nothing new arrived for ``idle_s``, or ``timeout_s`` passed."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**client_kwargs, enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=50)
    await consumer.start()
    out: list[Record] = []
    try:
        if not all(consumer.partitions_for_topic(t) for t in topics):
            await consumer._client.force_metadata_update()
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or {0})]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        last = time.monotonic()
        while time.monotonic() < deadline:
            for tp, records in (await consumer.getmany(timeout_ms=300)).items():
                out += [(tp.topic, r.key, r.value) for r in records]
                last = time.monotonic() if records else last
            if done(out) and time.monotonic() - last >= idle_s:
                break
    finally:
        await consumer.stop()
    return out
