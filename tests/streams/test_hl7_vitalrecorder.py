"""The Socket.IO endpoint driven by the reference Vital Recorder client against a local .vital file."""

from __future__ import annotations

import asyncio
import gzip
import os
import sys
import textwrap

from agent.hl7_stage import route
from streams import chunk_codec
from streams.contracts import Observation
from streams.hl7 import samples
from streams.hl7.ingest import HL7Ingest
from streams.vitalrecorder import VitalRecorderServer, gunzip_bounded

CLIENT = textwrap.dedent("""
    import shutil, sys
    import vitalrecorder.server as vr
    local, url = sys.argv[1], sys.argv[2]
    vr.download_file = lambda u, dest: shutil.copy(local, dest)   # offline: no download
    vr.VITAL_URLS = ["local/1.vital", "local/2.vital"]
    sys.argv = ["vitaldemo", url, "--vrcode", "OR7"]
    vr.main()
""")


class MemorySink:
    def __init__(self):
        self.records = []

    async def send(self, topic, key, value):
        self.records.append((topic, key, value))


def test_reference_client_streams_into_hl7_raw_and_parse_stage(tmp_path):
    vital = samples.write_vital(tmp_path / "src.vital", seconds=20)

    async def main():
        sink = MemorySink()
        server = VitalRecorderServer(HL7Ingest(sink.send))
        await server.start()
        env = dict(os.environ, TZ="UTC", PYTHONUNBUFFERED="1")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CLIENT, str(vital), f"http://127.0.0.1:{server.port}",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            for _ in range(300):
                if sum(r[0] == "hl7.raw" for r in sink.records) >= 4:
                    break
                if proc.returncode is not None:
                    break
                await asyncio.sleep(0.1)
        finally:
            if proc.returncode is None:
                proc.terminate()
            out, _ = await proc.communicate()
            await server.close()
        return sink, server, out.decode(errors="replace")

    sink, server, client_log = asyncio.run(main())
    raw = [r for r in sink.records if r[0] == "hl7.raw"]
    assert len(raw) >= 4, client_log
    assert "Joined room as OR7" in client_log
    assert {k for _, k, _ in raw} == {b"OR7/BED-1", b"OR7/BED-2"}
    assert server.bad_payloads == 0
    chunks, maps = [], []
    for _, _, message in raw:
        for topic, key, value in route(message):
            assert topic != "dlq.hl7", value
            if topic == "waveform.abp":
                chunks.append(chunk_codec.decode(value))
            elif topic == "observations":
                o = Observation.model_validate_json(value)
                if o.code == "150039":
                    maps.append(o.value)
    assert chunks and all(c.fs_hz == 100.0 and c.track == "SNUADC/ART" for c in chunks)
    assert sum(c.n for c in chunks) >= 150  # about 100 samples per second per bed
    assert maps and set(maps) == {78.0}


def test_bad_payloads_are_counted_not_fatal():
    async def main():
        sink = MemorySink()
        server = VitalRecorderServer(HL7Ingest(sink.send), max_payload_bytes=10_000)
        ok = await server.handle_payload(gzip.compress(samples.pcd01_oru() + samples.adt()))
        not_gzip = await server.handle_payload(b"plain text")
        bomb = await server.handle_payload(gzip.compress(b"A" * 1_000_000))
        wrong_type = await server.handle_payload({"x": 1})
        return ok, not_gzip, bomb, wrong_type, server

    ok, not_gzip, bomb, wrong_type, server = asyncio.run(main())
    assert ok == {"accepted": 2, "rejected": 0}
    assert "not gzip" in not_gzip["error"] and "exceeds" in bomb["error"] and "dict" in wrong_type["error"]
    assert server.bad_payloads == 3
    assert gunzip_bounded(gzip.compress(b"abc"), 10) == b"abc"
