"""MLLP ingest against the embedded broker: AA only after a durable write, and the CLI end to end."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import pytest

from agent.hl7_stage import route
from streams.broker import EmbeddedBroker, ensure_topics_async, free_port, port_open
from streams.hl7 import samples
from streams.hl7.build import ack_code
from streams.hl7.ingest import HL7Ingest, KafkaSink
from streams.mllp import MLLPServer, send_and_wait_ack

pytestmark = pytest.mark.broker


async def read_topic(bootstrap: str, topic: str, want: int, timeout_s: float = 20.0):
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or [])]
        if not parts:
            await consumer._client.force_metadata_update()
            parts = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or [])]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        out, deadline = [], time.monotonic() + timeout_s
        while len(out) < want and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out += [(r.key, r.value) for r in records]
        return out
    finally:
        await consumer.stop()


def test_acks_after_durable_write_and_ae_when_broker_stops(tmp_path):
    async def main(broker):
        kw = {"bootstrap_servers": broker.bootstrap}
        await ensure_topics_async(kw, partitions=2)
        async with KafkaSink(kw, request_timeout_s=3.0) as sink:
            calls = {"n": 0}

            async def send(topic, key, value):
                calls["n"] += 1
                if topic == "hl7.raw" and b"|STOP|" in value:
                    # The broker dies after the message was received and before it is written.
                    await asyncio.to_thread(broker.stop)
                await sink.send(topic, key, value)

            ingest = HL7Ingest(send, write_timeout_s=4.0)
            async with MLLPServer(ingest.handle, on_bad_frame=ingest.bad_frame) as server:
                beds = [f"OR^{b}" for b in range(5)]
                batches = [[samples.pcd01_oru(bed, control_id=f"B{b}M{i}", wave_mmhg=samples.abp_wave(100))
                            for i in range(10)] for b, bed in enumerate(beds)]
                results = await asyncio.gather(*(send_and_wait_ack("127.0.0.1", server.port, batch)
                                                 for batch in batches))
                assert all(ack_code(a)[0] == "AA" for acks in results for a in acks)
                stored = await read_topic(broker.bootstrap, "hl7.raw", 50)
                assert len(stored) == 50
                assert {k for k, _ in stored} == {f"OR-{b}".encode() for b in range(5)}
                topics = {t for _, v in stored[:3] for t, _, _ in route(v)}
                assert topics == {"observations", "waveform.abp"}

                stop = samples.pcd01_oru("OR^9", control_id="STOP")
                try:
                    acks = await send_and_wait_ack("127.0.0.1", server.port, [stop], timeout_s=15.0)
                except (asyncio.TimeoutError, ConnectionError):
                    acks = []
                codes = [ack_code(a)[0] for a in acks]
                print("broker-stop answer:", codes)
                assert "AA" not in codes
                assert codes in ([], ["AE"])
                assert ingest.metrics.counts.messages.get("error", 0) == (1 if codes else 0)

    with EmbeddedBroker() as broker:
        asyncio.run(main(broker))


def test_ingest_mllp_command_end_to_end():
    with EmbeddedBroker() as broker:
        port = free_port()
        env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap, IOHWATCH_WEB_PORT="0",
                   IOHWATCH_TOPIC_PARTITIONS="2")
        proc = subprocess.Popen([sys.executable, "-m", "agent.cli", "ingest", "mllp", "--port", str(port)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while not port_open("127.0.0.1", port) and time.monotonic() < deadline:
                assert proc.poll() is None, proc.stdout.read().decode()
                time.sleep(0.1)
            msgs = [samples.adt("A01", "OR^4"), samples.ras("OR^4"), samples.pcd01_oru("OR^4")]
            acks = asyncio.run(send_and_wait_ack("127.0.0.1", port, msgs))
            assert [ack_code(a) for a in acks] == [("AA", "ADT00001"), ("AA", "RAS00001"), ("AA", "MSG00001")]
            stored = asyncio.run(read_topic(broker.bootstrap, "hl7.raw", 3))
            assert sorted(v for _, v in stored) == sorted(msgs) and {k for k, _ in stored} == {b"OR-4"}
        finally:
            proc.terminate()
            proc.wait(timeout=10)
