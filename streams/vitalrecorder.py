"""A VitalServer-compatible Socket.IO endpoint for Vital Recorder streams.

Protocol, as the reference client (PyPI ``vitalrecorder``, ``vitalrecorder/server.py``) speaks
it: the client connects over Socket.IO (websocket transport), emits ``join_vr`` with its
recorder code, then every second emits ``send_data`` with a gzip-compressed HL7 v2.6 payload:
one ORU^R01 per bed, messages concatenated with CR segment terminators and no separator
between them (``MSH|^~\\&|VitalRecorder|<vrcode>|||<now>||ORU^R01|<seq>|P|2.6``, ``PV1||I|BED-<n>``,
``OBR`` with the interval, ``OBX`` per track: NM numerics, NA waveforms
``<montype>^<device>/<track>@<Hz>`` with ``^``-separated samples, ST ``EVENT`` strings).

Each message goes through the same ``HL7Ingest.handle`` as MLLP messages (validation,
de-duplication, write to ``hl7.raw`` keyed by bed, only then counted as accepted), so Vital
Recorder waveforms reach ``waveform.abp`` through the same parse stage. Events of one client
are handled in order (``async_handlers=False``): a slow broker slows that client's socket.
The ``send_data`` handler returns a summary (accepted, rejected) as the Socket.IO ack.
"""

from __future__ import annotations

import logging
import zlib

from streams.hl7.build import ack_code
from streams.hl7.fast import split_messages
from streams.hl7.ingest import HL7Ingest

log = logging.getLogger(__name__)


def gunzip_bounded(data: bytes, max_bytes: int) -> bytes:
    """Decompress gzip (or zlib) data; ValueError if corrupt or larger than ``max_bytes``."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS if data[:2] == b"\x1f\x8b" else zlib.MAX_WBITS)
    try:
        out = d.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise ValueError(f"payload is not gzip data: {exc}") from None
    if len(out) > max_bytes or d.unconsumed_tail:
        raise ValueError(f"decompressed payload exceeds {max_bytes} bytes")
    return out


class VitalRecorderServer:
    """Socket.IO (aiohttp) server on ``host:port``; ``async with`` or ``start``/``close``."""

    def __init__(self, ingest: HL7Ingest, host: str = "127.0.0.1", port: int = 0,
                 max_payload_bytes: int = 16 * 1024 * 1024):
        self.ingest = ingest
        self.host, self.port = host, port
        self.max_payload_bytes = max_payload_bytes
        self.recorders: dict[str, str] = {}  # sid -> recorder code
        self.payloads = 0
        self.bad_payloads = 0
        self._runner = None

    def build(self):
        import socketio
        from aiohttp import web

        sio = socketio.AsyncServer(async_mode="aiohttp", async_handlers=False,
                                   max_http_buffer_size=self.max_payload_bytes)
        app = web.Application()
        sio.attach(app)

        @sio.event
        async def connect(sid, environ, auth=None):
            log.info("Vital Recorder connected: %s", sid)

        @sio.event
        async def disconnect(sid, *args):
            log.info("Vital Recorder %s (%s) disconnected", self.recorders.pop(sid, "?"), sid)

        @sio.on("join_vr")
        async def join_vr(sid, vrcode=None):
            self.recorders[sid] = str(vrcode or "")
            await sio.enter_room(sid, str(vrcode or ""))
            log.info("Vital Recorder %s joined as %r", sid, vrcode)

        @sio.on("send_data")
        async def send_data(sid, data=None):
            return await self.handle_payload(data, self.recorders.get(sid, ""))

        self.sio = sio
        return app

    async def handle_payload(self, data, vrcode: str = "") -> dict:
        """Decompress a ``send_data`` payload and ingest each HL7 message in it."""
        self.payloads += 1
        if isinstance(data, str):
            data = data.encode("latin-1", "replace")
        if not isinstance(data, (bytes, bytearray)):
            self.bad_payloads += 1
            self.ingest.metrics.dead_letter("decode")
            return {"accepted": 0, "rejected": 0, "error": f"payload is {type(data).__name__}, not bytes"}
        try:
            text = gunzip_bounded(bytes(data), self.max_payload_bytes)
        except ValueError as exc:
            self.bad_payloads += 1
            self.ingest.metrics.dead_letter("decode")
            log.warning("Vital Recorder %r: %s", vrcode, exc)
            return {"accepted": 0, "rejected": 0, "error": str(exc)}
        accepted = rejected = 0
        for message in split_messages(text):
            code, _ = ack_code(await self.ingest.handle(message))
            if code == "AA":
                accepted += 1
            else:
                rejected += 1
        return {"accepted": accepted, "rejected": rejected}

    async def start(self) -> "VitalRecorderServer":
        from aiohttp import web

        self._runner = web.AppRunner(self.build())
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        log.info("Vital Recorder endpoint listening on http://%s:%d", self.host, self.port)
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "VitalRecorderServer":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()
