"""MLLP framing and the MLLP server with the HL7 ingest handler (in-memory sink, loopback)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.hl7 import samples
from streams.hl7.build import ack_code
from streams.hl7.ingest import HL7Ingest
from streams.mllp import MLLPFramer, MLLPServer, frame, send_and_wait_ack


def msg(i: int, bed: str = "OR^1") -> bytes:
    return samples.pcd01_oru(bed, control_id=f"C{i:06d}")


# --- framer ------------------------------------------------------------------------------------

def frames_of(events):
    return [e.data for e in events if e.kind == "frame"]


def test_framer_partial_reads_and_several_per_read():
    msgs = [msg(i) for i in range(3)]
    stream = b"".join(frame(m) for m in msgs)
    f = MLLPFramer()
    got = []
    for k in range(len(stream)):  # one byte per read
        got += frames_of(f.feed(stream[k:k + 1]))
    assert got == msgs and f.pending_bytes == 0
    assert frames_of(MLLPFramer().feed(stream)) == msgs


def test_framer_garbage_oversize_truncated_and_resync():
    f = MLLPFramer(max_frame_bytes=2000)
    big = b"MSH|^~\\&|A|B|||20250101||ORU^R01|BIG|P|2.6\r" + b"X" * 5000
    stream = (b"junk\r\n" + frame(msg(1)) + b"\r\n" + frame(big) + b"\x0bMSH|^~\\&|half"
              + frame(msg(2)) + b"zz")
    evs = f.feed(stream)
    kinds = [e.kind for e in evs]
    assert kinds == ["garbage", "frame", "oversize", "truncated", "frame", "garbage"]
    assert evs[0].size == 4 and evs[-1].size == 2
    assert evs[2].size == len(big) and b"|BIG|" in evs[2].data and len(evs[2].data) <= 4096
    assert evs[3].data.startswith(b"MSH|^~\\&|half")
    assert frames_of(evs) == [msg(1), msg(2)]


def test_framer_end_block_without_cr_and_cr_in_next_read():
    f = MLLPFramer()
    assert frames_of(f.feed(b"\x0babc\x1c")) == [b"abc"]
    assert f.feed(b"\r") == []  # the CR of the end block, not garbage
    assert frames_of(f.feed(b"\x0bdef\x1c\x0bghi\x1c\r")) == [b"def", b"ghi"]


@settings(deadline=500, max_examples=200)
@given(st.lists(st.binary(min_size=0, max_size=300), max_size=8),
       st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=20))
def test_framer_roundtrip_property(payloads, cuts):
    payloads = [p.replace(b"\x0b", b"").replace(b"\x1c", b"") for p in payloads]
    stream = b"".join(frame(p) for p in payloads)
    f, got, i, k = MLLPFramer(), [], 0, 0
    while i < len(stream):
        step = cuts[k % len(cuts)]
        got += frames_of(f.feed(stream[i:i + step]))
        i, k = i + step, k + 1
    assert got == payloads


@settings(deadline=500, max_examples=300)
@given(st.binary(max_size=3000), st.integers(min_value=16, max_value=512))
def test_framer_never_raises_and_stays_bounded(data, limit):
    f = MLLPFramer(max_frame_bytes=limit)
    for i in range(0, len(data), 97):
        for ev in f.feed(data[i:i + 97]):
            assert ev.kind in ("frame", "garbage", "oversize", "truncated")
            if ev.kind == "frame":
                assert len(ev.data) <= limit
            else:
                assert len(ev.data) <= 4096
        assert len(f._buf) <= limit


# --- server ------------------------------------------------------------------------------------

class MemorySink:
    def __init__(self, delay_s: float = 0.0):
        self.records: list[tuple[str, bytes, bytes]] = []
        self.delay_s = delay_s
        self.inflight = 0
        self.max_inflight = 0
        self.gate: asyncio.Event | None = None

    async def send(self, topic, key, value):
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            self.records.append((topic, key, value))
        finally:
            self.inflight -= 1


def raw_records(sink):
    return [r for r in sink.records if r[0] == "hl7.raw"]


async def _serve(sink, **kw):
    ingest = HL7Ingest(sink.send, write_timeout_s=kw.pop("write_timeout_s", 5.0))
    server = MLLPServer(ingest.handle, "127.0.0.1", 0, on_bad_frame=ingest.bad_frame, **kw)
    await server.start()
    return ingest, server


def test_many_persistent_clients_pipelined():
    async def main():
        sink = MemorySink(delay_s=0.001)
        ingest, server = await _serve(sink)
        try:
            async def client(c):
                beds = f"OR^{c}"
                batches = []
                for b in range(3):  # three rounds on one persistent connection
                    batches.append([msg(c * 1000 + b * 10 + i, beds) for i in range(10)])
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                framer, acks = MLLPFramer(), []
                for batch in batches:
                    writer.write(b"".join(frame(m) for m in batch))
                    await writer.drain()
                    want = len(acks) + len(batch)
                    while len(acks) < want:
                        acks += frames_of(framer.feed(await asyncio.wait_for(reader.read(65536), 10)))
                writer.close()
                return [ack_code(a) for a in acks]

            results = await asyncio.gather(*(client(c) for c in range(20)))
            for c, acks in enumerate(results):
                assert [code for code, _ in acks] == ["AA"] * 30
                assert [cid for _, cid in acks][:3] == [f"C{c * 1000 + i:06d}" for i in range(3)]
            raw = raw_records(sink)
            assert len(raw) == 600
            assert {k for _, k, _ in raw} == {f"OR-{c}".encode() for c in range(20)}
            assert server.stats.connections == 20 and ingest.metrics.counts.messages == {"accepted": 600}
        finally:
            await server.close()

    asyncio.run(main())


def test_rejects_duplicates_and_bad_frames():
    async def main():
        sink = MemorySink()
        ingest, server = await _serve(sink, max_frame_bytes=20_000)
        try:
            no_ctrl = msg(1).replace(b"|C000001|", b"||")
            no_type = msg(2).replace(b"ORU^R01^ORU_R01", b"")
            no_bed = samples.pcd01_oru(bed="", control_id="C000003")
            big = samples.pcd01_oru(control_id="BIG", wave_mmhg=samples.abp_wave(5000))
            good = msg(4)
            acks = await send_and_wait_ack("127.0.0.1", server.port,
                                           [no_ctrl, no_type, no_bed, good, good, big, msg(5)])
            codes = [ack_code(a) for a in acks]
            assert codes == [("AR", ""), ("AR", "C000002"), ("AE", "C000003"), ("AA", "C000004"),
                             ("AA", "C000004"), ("AR", "BIG"), ("AA", "C000005")]
            assert b"ERR|||101^Required field missing^HL70357" in acks[0] and b"MSH-10" in acks[0]
            assert b"PV1-3" in acks[2] and b"larger than the limit" in acks[5]
            assert len(raw_records(sink)) == 2  # the duplicate was not written again
            assert len([r for r in sink.records if r[0] == "dlq.hl7"]) == 4
            assert ingest.metrics.counts.messages == {"rejected": 4, "accepted": 2, "duplicate": 1}
        finally:
            await server.close()

    asyncio.run(main())


def test_disconnect_mid_message_does_not_affect_others():
    async def main():
        sink = MemorySink()
        ingest, server = await _serve(sink)
        try:
            r1, w1 = await asyncio.open_connection("127.0.0.1", server.port)
            w1.write(b"garbage" + frame(msg(1)) + b"\x0b" + msg(2)[:50])
            await w1.drain()
            other = asyncio.create_task(send_and_wait_ack("127.0.0.1", server.port, [msg(3), msg(4)]))
            framer = MLLPFramer()
            first = frames_of(framer.feed(await asyncio.wait_for(r1.read(65536), 5)))
            assert ack_code(first[0]) == ("AA", "C000001")
            w1.close()
            acks = await other
            assert [ack_code(a)[0] for a in acks] == ["AA", "AA"]
            for _ in range(100):
                if server.stats.disconnects_mid_frame:
                    break
                await asyncio.sleep(0.01)
            assert server.stats.disconnects_mid_frame == 1 and server.stats.garbage_bytes == 7
            assert [r[2] for r in raw_records(sink)] == [msg(1), msg(3), msg(4)]
        finally:
            await server.close()

    asyncio.run(main())


def test_backpressure_bounds_inflight_and_never_acks_before_write():
    async def main():
        sink = MemorySink()
        sink.gate = asyncio.Event()
        ingest, server = await _serve(sink, max_inflight_per_connection=8, max_inflight=8)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"".join(frame(msg(i)) for i in range(200)))
            await asyncio.sleep(0.3)
            assert 1 <= sink.max_inflight <= 9  # bounded, not 200 buffered sends
            with pytest.raises(asyncio.TimeoutError):  # nothing acknowledged while the broker stalls
                await asyncio.wait_for(reader.read(1), 0.2)
            sink.gate.set()
            framer, acks = MLLPFramer(), []
            while len(acks) < 200:
                acks += frames_of(framer.feed(await asyncio.wait_for(reader.read(65536), 10)))
            assert all(ack_code(a)[0] == "AA" for a in acks) and len(raw_records(sink)) == 200
            assert sink.max_inflight <= 9
            writer.close()
        finally:
            await server.close()

    asyncio.run(main())


def test_write_failure_answers_ae_and_retry_is_written():
    async def main():
        calls = []

        async def flaky(topic, key, value):
            calls.append(topic)
            if len(calls) == 1:
                raise ConnectionError("broker unreachable")

        ingest = HL7Ingest(flaky)
        first = await ingest.handle(msg(9))
        assert ack_code(first) == ("AE", "C000009") and b"broker did not acknowledge" in first
        second = await ingest.handle(msg(9))  # the sender retries: written, not treated as duplicate
        assert ack_code(second) == ("AA", "C000009") and calls == ["hl7.raw", "hl7.raw"]

    asyncio.run(main())


def test_adt_without_bed_is_dead_lettered_and_acknowledged():
    async def main():
        sink = MemorySink()
        ingest, server = await _serve(sink)
        try:
            adt = samples.adt("A08", bed="", control_id="ADTX")
            acks = await send_and_wait_ack("127.0.0.1", server.port, [adt, adt])
            assert [ack_code(a) for a in acks] == [("AA", "ADTX"), ("AA", "ADTX")]
            assert raw_records(sink) == []
            dlq = [r for r in sink.records if r[0] == "dlq.hl7"]
            assert len(dlq) == 1 and b"PV1-3" in dlq[0][2]
            assert ingest.metrics.counts.messages == {"rejected": 1, "duplicate": 1}
        finally:
            await server.close()

    asyncio.run(main())


def test_client_reset_with_a_full_pipeline_frees_the_connection():
    import socket
    import struct

    async def main():
        sink = MemorySink()
        sink.gate = asyncio.Event()
        ingest, server = await _serve(sink, max_inflight_per_connection=4, max_inflight=64)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"".join(frame(msg(i)) for i in range(100)))
            await writer.drain()
            await asyncio.sleep(0.2)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
            writer.close()
            await asyncio.sleep(0.1)
            sink.gate.set()
            for _ in range(200):
                if server.stats.open_connections == 0:
                    break
                await asyncio.sleep(0.02)
            assert server.stats.open_connections == 0
            acks = await send_and_wait_ack("127.0.0.1", server.port, [msg(1000)])
            assert ack_code(acks[0])[0] == "AA"
        finally:
            await server.close()

    asyncio.run(main())
