"""`iohwatch hl7 parse` and `iohwatch hl7 out` (the latter against the embedded broker)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from click.testing import CliRunner

from agent.cli import main
from streams.broker import EmbeddedBroker, ensure_topics_async
from streams.contracts import Alert, DeadLetter, decode
from streams.hl7 import build, samples
from streams.hl7.alerts_out import run_alerts_out
from streams.hl7.fast import parse
from streams.mllp import MLLPServer, frame


def test_parse_prints_each_message_of_framed_and_plain_files(tmp_path):
    framed = tmp_path / "feed.mllp"
    framed.write_bytes(frame(samples.adt()) + b"junk" + frame(samples.pcd01_oru(wave_mmhg=samples.abp_wave(100))))
    plain = tmp_path / "feed.hl7"
    plain.write_bytes(samples.ras().replace(b"\r", b"\r\n") + samples.pcd01_oru().replace(b"|81|", b"|x|"))
    result = CliRunner().invoke(main, ["hl7", "parse", str(framed), str(plain)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "ADT^A01 ADT00001 bed OR-3" in out and "context" in out and "sex F" in out
    assert "150039 MDC_PRESS_BLD_ART_ABP_MEAN = 81 mm[Hg]" in out
    assert "waveform" in out and "100 samples at 100 Hz" in out
    assert "event" in out and "phenylephrine" in out
    assert "DEAD LETTER [value]" in out and "'x'" in out
    assert "4 message(s), 1 dead letter(s)" in out

    js = CliRunner().invoke(main, ["hl7", "parse", "--json", str(framed)])
    lines = [json.loads(line) for line in js.output.splitlines() if line.startswith("{")]
    assert [m["message_type"] for m in lines] == ["ADT^A01", "ORU^R01"]
    kinds = [r["kind"] for r in lines[1]["records"]]
    assert kinds.count("observation") == 5 and kinds.count("waveform") == 1


def test_parse_strict_validates_with_hl7apy(tmp_path):
    good = tmp_path / "good.hl7"
    good.write_bytes(samples.adt() + samples.pcd01_oru() + samples.ras())
    bad = tmp_path / "bad.hl7"
    bad.write_bytes(samples.ras().replace(b"RXA|0|1|", b"RXA|0|1|notadate"))
    result = CliRunner().invoke(main, ["hl7", "parse", "--strict", str(good), str(bad)])
    lines = [line for line in result.output.splitlines() if "strict" in line]
    assert lines[:3] == ["  strict      valid"] * 3
    assert len(lines) == 4 and "valid" != lines[3].split()[-1] and "Error" in lines[3]


def test_bench_prints_rates():
    result = CliRunner().invoke(main, ["hl7", "bench", "--messages", "300", "--json"])
    assert result.exit_code == 0, result.output
    r = json.loads(result.output)
    assert r["messages"] == 300 and r["records_per_message"] == 6.0
    assert r["per_core_msgs_per_s"] > 0 and r["parse_stage_msgs_per_s"] >= r["per_core_msgs_per_s"]


@pytest.mark.broker
def test_out_sends_alerts_from_the_topic_as_pcd04(tmp_path):
    from aiokafka import AIOKafkaProducer

    def alert(i: int, action: str, issued_wall_ns: int) -> Alert:
        return Alert(alert_id=f"a{i}", event_id=f"a{i}:{action}", bed_id="OR-3", episode=1, kind="ioh_predicted",
                     action=action, priority="high", t_ns=1_735_732_800_000_000_000 + i, message="IOH predicted",
                     evidence={"map_now_mmhg": 68.0}, issued_wall_ns=issued_wall_ns)

    async def main_(broker):
        kw = {"bootstrap_servers": broker.bootstrap}
        await ensure_topics_async(kw, partitions=1)
        received = []

        async def receiver(message):
            p = parse(message)
            received.append(p)
            code = "AR" if p.field_text(p.first("OBR"), 3) == "a3" else "AA"
            return build.ack(code, p.control_id, reason="unknown bed" if code == "AR" else "")

        results = []
        stop = asyncio.Event()
        async with MLLPServer(receiver) as server:
            producer = AIOKafkaProducer(**kw, acks="all", enable_idempotence=False)
            await producer.start()
            old = alert(0, "raised", time.time_ns() - 60 * 10**9)  # issued before `out` started
            await producer.send_and_wait("ioh.alerts", old.dumps(), key=b"OR-3")
            runner = asyncio.create_task(run_alerts_out(kw, "127.0.0.1", server.port, session_timeout_s=6,
                                                        heartbeat_s=1, stop=stop,
                                                        on_result=lambda a, o: results.append((a.alert_id, o))))
            await asyncio.sleep(0.5)
            for i, action in ((1, "raised"), (2, "resolved"), (3, "raised")):
                await producer.send_and_wait("ioh.alerts", alert(i, action, time.time_ns()).dumps(), key=b"OR-3")
            await producer.send_and_wait("ioh.alerts", b"{not an alert", key=b"OR-3")
            for _ in range(300):
                if len(results) >= 3:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)
            stop.set()
            await asyncio.wait_for(runner, 15)
            await producer.stop()
        from tests.agent.test_ingest_mllp import read_topic
        dlq = [decode(DeadLetter, v) for _, v in await read_topic(broker.bootstrap, "dlq.hl7", 2, timeout_s=10)]
        return received, results, dlq

    with EmbeddedBroker() as broker:
        received, results, dlq = asyncio.run(main_(broker))
    assert results == [("a1", "delivered"), ("a2", "delivered"), ("a3", "rejected")]
    assert [p.message_type for p in received] == [("ORU", "R40")] * 3
    reasons = sorted(d.reason for d in dlq)
    assert len(dlq) == 2 and any("unknown bed" in r for r in reasons)
    assert any("Alert" in r for r in reasons)  # the malformed record
