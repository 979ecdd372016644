"""MLLP (HL7 minimal lower layer protocol) framing and an asyncio server.

Frame: ``0x0B <message> 0x1C 0x0D``. ``MLLPFramer`` is a pure, incremental framer: feed it
whatever a socket read returned (partial frames, several frames, garbage) and it returns
``FrameEvent``s:

* ``frame``: a complete message (without the framing bytes);
* ``garbage``: bytes outside any frame (CR/LF between frames are not garbage), skipped;
* ``oversize``: a frame longer than ``max_frame_bytes``; its body is discarded as it streams in
  (memory stays bounded) and the first 4 KiB are kept so the NAK can name the control id;
* ``truncated``: a start block arrived before the end block of the previous frame.

``MLLPServer`` keeps persistent connections. Per connection, frames are handed to
``handler(frame) -> ack bytes`` as they arrive and the ACKs are written back in arrival order,
so a sender may pipeline. Back-pressure: at most ``max_inflight_per_connection`` frames per
connection and ``max_inflight`` over all connections wait for their handler (that is, for the
broker); beyond that the server stops reading the socket, so a slow broker slows senders
instead of filling memory. A client that disconnects mid-frame loses only its partial frame.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

SB, EB, CR = 0x0B, 0x1C, 0x0D
HEAD_BYTES = 4096
_WHITESPACE = frozenset(b"\r\n \t")


def frame(message: bytes) -> bytes:
    """Wrap one message in MLLP start and end blocks."""
    return b"\x0b" + message + b"\x1c\x0d"


@dataclass(frozen=True)
class FrameEvent:
    kind: str  # "frame" | "garbage" | "oversize" | "truncated"
    data: bytes = b""  # the message (frame) or its first bytes (oversize, truncated)
    size: int = 0  # bytes concerned


class MLLPFramer:
    """Incremental MLLP framer with bounded memory (see the module docstring)."""

    def __init__(self, max_frame_bytes: int = 4 * 1024 * 1024):
        if max_frame_bytes < 16:
            raise ValueError(f"max_frame_bytes must be at least 16, got {max_frame_bytes}")
        self.max_frame_bytes = max_frame_bytes
        self._in_frame = False
        self._buf = bytearray()
        self._discarding = False
        self._head = b""
        self._size = 0  # bytes of the current frame, kept or discarded
        self._skip_cr = False

    @property
    def pending_bytes(self) -> int:
        """Bytes of an unfinished frame (lost if the connection closes now)."""
        return self._size if self._in_frame else 0

    def feed(self, data: bytes) -> list[FrameEvent]:
        events: list[FrameEvent] = []
        i, n = 0, len(data)
        if self._skip_cr and n and data[0] == CR:
            i = 1
        self._skip_cr = False
        while i < n:
            if not self._in_frame:
                j = data.find(b"\x0b", i)
                stop = n if j < 0 else j
                junk = sum(1 for b in data[i:stop] if b not in _WHITESPACE)
                if junk:
                    events.append(FrameEvent("garbage", size=junk))
                if j < 0:
                    break
                self._start()
                i = j + 1
                continue
            j_end = data.find(b"\x1c", i)
            j_start = data.find(b"\x0b", i)
            if j_start >= 0 and (j_end < 0 or j_start < j_end):
                self._append(data[i:j_start])
                events.append(FrameEvent("truncated", self._head_bytes(), self._size))
                self._start()
                i = j_start + 1
                continue
            if j_end < 0:
                self._append(data[i:])
                break
            self._append(data[i:j_end])
            events.append(self._finish())
            i = j_end + 1
            if i < n and data[i] == CR:
                i += 1
            elif i == n:
                self._skip_cr = True
        return events

    def _start(self) -> None:
        self._in_frame = True
        self._buf = bytearray()
        self._discarding = False
        self._head = b""
        self._size = 0

    def _append(self, chunk: bytes) -> None:
        if not chunk:
            return
        self._size += len(chunk)
        if self._discarding:
            return
        self._buf += chunk
        if len(self._buf) > self.max_frame_bytes:
            self._head = bytes(self._buf[:HEAD_BYTES])
            self._buf = bytearray()
            self._discarding = True

    def _head_bytes(self) -> bytes:
        return self._head if self._discarding else bytes(self._buf[:HEAD_BYTES])

    def _finish(self) -> FrameEvent:
        self._in_frame = False
        if self._discarding:
            ev = FrameEvent("oversize", self._head, self._size)
        else:
            ev = FrameEvent("frame", bytes(self._buf), self._size)
        self._buf = bytearray()
        self._discarding = False
        self._head = b""
        return ev


def _drain(q: asyncio.Queue) -> None:
    while not q.empty():
        q.get_nowait()


Handler = Callable[[bytes], Awaitable[bytes]]
Reject = Callable[[FrameEvent], Awaitable[bytes | None]]


@dataclass
class ServerStats:
    connections: int = 0
    open_connections: int = 0
    frames: int = 0
    garbage_bytes: int = 0
    oversize: int = 0
    truncated: int = 0
    disconnects_mid_frame: int = 0
    handler_errors: int = 0
    ack_seconds: list[float] = field(default_factory=list, repr=False)


class MLLPServer:
    """Asyncio MLLP server: ``handler(frame)`` returns the ACK to write back.

    ``on_bad_frame(event)`` answers oversize/truncated frames (return the NAK or None) and is
    where the caller counts garbage. Use ``async with MLLPServer(...)`` or ``start``/``close``.
    """

    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0, *,
                 max_frame_bytes: int = 4 * 1024 * 1024, max_inflight: int = 2048,
                 max_inflight_per_connection: int = 256, on_bad_frame: Reject | None = None,
                 on_ack: Callable[[float], None] | None = None, read_bytes: int = 65536):
        self.handler = handler
        self.host, self.port = host, port
        self.max_frame_bytes = max_frame_bytes
        self.max_inflight_per_connection = max_inflight_per_connection
        self.on_bad_frame = on_bad_frame
        self.on_ack = on_ack
        self.read_bytes = read_bytes
        self.stats = ServerStats()
        self._global = asyncio.Semaphore(max_inflight)
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> "MLLPServer":
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("MLLP listening on %s:%d", self.host, self.port)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> "MLLPServer":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        async with self._server:
            await self._server.serve_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        self.stats.connections += 1
        self.stats.open_connections += 1
        peer = writer.get_extra_info("peername")
        framer = MLLPFramer(self.max_frame_bytes)
        acks: asyncio.Queue = asyncio.Queue(maxsize=self.max_inflight_per_connection)
        ack_writer = asyncio.create_task(self._write_acks(acks, writer))
        # If writing fails (the client reset the connection), empty the queue so a read loop
        # blocked on a full queue wakes up and ends; queued handlers still run to completion.
        ack_writer.add_done_callback(lambda _t: _drain(acks))
        try:
            while not ack_writer.done():
                data = await reader.read(self.read_bytes)
                if not data:
                    break
                for ev in framer.feed(data):
                    if ack_writer.done():
                        break
                    await self._dispatch(ev, acks)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.info("MLLP client %s: %s", peer, exc)
        except asyncio.CancelledError:
            pass
        finally:
            if framer.pending_bytes:
                self.stats.disconnects_mid_frame += 1
                log.warning("MLLP client %s disconnected mid-frame (%d bytes dropped, never acknowledged)",
                            peer, framer.pending_bytes)
            try:
                if not ack_writer.done():
                    await acks.put(None)
                await ack_writer
            except (asyncio.CancelledError, Exception):  # the client is gone; handlers still finish
                ack_writer.cancel()
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, asyncio.CancelledError, OSError):
                pass
            self.stats.open_connections -= 1
            self._tasks.discard(task)

    async def _dispatch(self, ev: FrameEvent, acks: asyncio.Queue) -> None:
        t_frame = time.perf_counter()
        if ev.kind == "frame":
            self.stats.frames += 1
            await self._global.acquire()
            fut = asyncio.ensure_future(self._run(ev.data))
            await acks.put((fut, t_frame))
            return
        if ev.kind == "garbage":
            self.stats.garbage_bytes += ev.size
        elif ev.kind == "oversize":
            self.stats.oversize += 1
        elif ev.kind == "truncated":
            self.stats.truncated += 1
        if self.on_bad_frame is not None:
            fut = asyncio.ensure_future(self.on_bad_frame(ev))
            await acks.put((fut, t_frame))

    async def _run(self, data: bytes) -> bytes | None:
        try:
            return await self.handler(data)
        except Exception:  # a handler bug must not take the connection down
            self.stats.handler_errors += 1
            log.exception("MLLP handler failed; no ACK sent, the sender will retry")
            return None
        finally:
            self._global.release()

    async def _write_acks(self, acks: asyncio.Queue, writer: asyncio.StreamWriter) -> None:
        while True:
            item = await acks.get()
            if item is None:
                return
            fut, t_frame = item
            reply = await fut
            if reply is None:
                continue
            writer.write(frame(reply))
            await writer.drain()
            dt = time.perf_counter() - t_frame
            if self.on_ack is not None:
                self.on_ack(dt)


async def send_and_wait_ack(host: str, port: int, messages: list[bytes], timeout_s: float = 10.0) -> list[bytes]:
    """Client helper: send messages on one connection (pipelined), return their ACKs in order."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    try:
        writer.write(b"".join(frame(m) for m in messages))
        await writer.drain()
        framer = MLLPFramer()
        out: list[bytes] = []
        while len(out) < len(messages):
            data = await asyncio.wait_for(reader.read(65536), timeout_s)
            if not data:
                break
            out += [ev.data for ev in framer.feed(data) if ev.kind == "frame"]
        return out
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass
