"""Property tests: the parser and normaliser never raise out of their boundary and never hang."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.hl7 import samples
from streams.hl7.build import ack_code
from streams.hl7.fast import HL7ParseError, parse, split_messages
from streams.hl7.ingest import HL7Ingest
from streams.hl7.normalise import normalise
from streams.mllp import MLLPServer, frame, send_and_wait_ack

BASE = [samples.pcd01_oru(wave_mmhg=samples.abp_wave(30)), samples.adt(), samples.ras(),
        samples.adt("A03"), samples.pcd01_oru(version="2.3", terminator="\n")]
SEPARATORS = list("|^~\\&#!$*:\r\n")


@st.composite
def mutated(draw):
    msg = bytearray(draw(st.sampled_from(BASE)))
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "sep"]))
        i = draw(st.integers(min_value=0, max_value=max(len(msg) - 1, 0)))
        if op == "flip" and msg:
            msg[i] = draw(st.integers(min_value=0, max_value=255))
        elif op == "insert":
            msg[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del msg[i:i + draw(st.integers(min_value=1, max_value=20))]
        elif op == "truncate":
            del msg[i:]
        elif msg:
            msg[i] = ord(draw(st.sampled_from(SEPARATORS)))
    return bytes(msg)


@settings(deadline=500, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mutated(), st.binary(max_size=600),
                 st.text(alphabet="MSHPV1OBXR|^~\\&\r\n0123456789.-@", max_size=400).map(str.encode)))
def test_parser_and_normaliser_never_raise(raw):
    try:
        p = parse(raw)
        assert p.segments[0][0] == "MSH"
    except HL7ParseError:
        pass
    n = normalise(raw)  # never raises
    for o in n.observations:
        assert o.bed_id and o.t_ns > 0
    for c in n.chunks:
        assert c.fs_hz > 0 and c.samples.ndim == 1
    for d in n.dead_letters:
        assert d.reason and isinstance(d.raw, bytes)
    split_messages(raw)


@settings(deadline=2000, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(mutated(), st.binary(max_size=200)), min_size=1, max_size=6))
def test_server_answers_or_skips_mutated_frames_and_keeps_serving(frames_):
    async def main():
        async def sink(topic, key, value):
            return None

        ingest = HL7Ingest(sink)
        async with MLLPServer(ingest.handle, on_bad_frame=ingest.bad_frame) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"".join(frame(f.replace(b"\x0b", b"").replace(b"\x1c", b"")) for f in frames_))
            await writer.drain()
            writer.close()
            # the server still serves a well-formed message on a new connection
            acks = await send_and_wait_ack("127.0.0.1", server.port, [samples.pcd01_oru()], timeout_s=5)
            assert [ack_code(a)[0] for a in acks] == ["AA"]
            assert server.stats.handler_errors == 0

    asyncio.run(main())
