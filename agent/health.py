"""Liveness, readiness and metrics over HTTP, served from inside the agent's event loop.

Routes (all GET, on ``settings.web_host:settings.web_port``):

- ``/healthz``: liveness. Answered by the same event loop that consumes Kafka, so an answer at
  all means the loop is responsive; a heartbeat task also ticks every ``HEARTBEAT_S`` and the
  route answers 503 when it has not ticked for ``STALL_S`` (the loop was blocked, or the task died).
- ``/readyz``: readiness. 200 when ``ServiceState.ready()`` holds, else 503 with the reason, as JSON.
  Ready means the worker joined its consumer group *and* a model engine is loaded, or the baseline
  forecaster runs by explicit choice (``IOHWATCH_ENGINE_PATH=none`` or
  ``IOHWATCH_ALLOW_BASELINE_FALLBACK=true``).
- ``/metrics``: the Prometheus text exposition of the service's ``Metrics`` registry.

``settings.web_port == 0`` disables the server (``start`` does nothing and ``port`` stays ``None``).
Tests pass ``port=0`` to the constructor instead, which binds a free loopback port and exposes it
as ``port`` after ``start``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from agent.metrics import CONTENT_TYPE, Metrics

if TYPE_CHECKING:  # pragma: no cover
    from agent.settings import Settings

log = logging.getLogger(__name__)

HEARTBEAT_S = 1.0
STALL_S = 10.0


@dataclass
class ServiceState:
    """Mutable state of the running service that health answers from; the service owns it."""

    engine_loaded: bool = False
    engine_name: str = ""
    fallback_reason: str | None = None
    group_joined: bool = False
    broker_reachable: bool = False
    baseline_allowed: bool = False
    started_wall_ns: int = field(default_factory=time.time_ns)
    last_event_wall_ns: int | None = None

    @classmethod
    def from_settings(cls, settings: "Settings") -> "ServiceState":
        """Fresh state; the baseline counts as ready only when the settings ask for it."""
        explicit_baseline = settings.engine_path is not None and str(settings.engine_path).lower() == "none"
        allowed = settings.allow_baseline_fallback or explicit_baseline
        return cls(baseline_allowed=allowed)

    def ready(self) -> tuple[bool, str]:
        """(ready, reason). The reason says what is missing when not ready."""
        if not self.group_joined:
            why = "consumer group not joined"
            if not self.broker_reachable:
                why += " (broker not reachable)"
            return False, why
        if self.engine_loaded:
            return True, f"engine {self.engine_name or '?'} loaded"
        if self.baseline_allowed:
            return True, f"baseline forecaster by configuration ({self.fallback_reason or 'no engine'})"
        return False, ("no engine loaded" + (f": {self.fallback_reason}" if self.fallback_reason else "")
                       + "; set IOHWATCH_ALLOW_BASELINE_FALLBACK=true to serve the baseline")

    def snapshot(self, now_wall_ns: int | None = None) -> dict:
        now = time.time_ns() if now_wall_ns is None else now_wall_ns
        ok, reason = self.ready()
        return {
            "ready": ok,
            "reason": reason,
            "engine_loaded": self.engine_loaded,
            "engine": self.engine_name,
            "fallback_reason": self.fallback_reason,
            "group_joined": self.group_joined,
            "broker_reachable": self.broker_reachable,
            "uptime_s": round((now - self.started_wall_ns) / 1e9, 3),
            "last_event_age_s": (None if self.last_event_wall_ns is None
                                 else round((now - self.last_event_wall_ns) / 1e9, 3)),
        }


class HealthServer:
    """aiohttp server for /healthz, /readyz and /metrics inside the running event loop."""

    def __init__(self, settings: "Settings", state: ServiceState, metrics: Metrics,
                 *, port: int | None = None):
        self.settings = settings
        self.state = state
        self.metrics = metrics
        self.host = settings.web_host
        self._want_port = settings.web_port if port is None else port
        self._disabled = port is None and settings.web_port == 0
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self._heartbeat: asyncio.Task | None = None
        self._last_beat = time.monotonic()
        self._max_lag_s = 0.0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        return app

    async def start(self) -> None:
        if self._disabled:
            log.info("health server disabled (IOHWATCH_WEB_PORT=0)")
            return
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._want_port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise OSError(exc.errno, f"health server: cannot bind {self.host}:{self._want_port}: "
                                     f"{exc.strerror}; set IOHWATCH_WEB_PORT") from exc
        # (host, port) of each bound socket; with port 0 the OS picked the port.
        self.port = int(self._runner.addresses[0][1])
        self._last_beat = time.monotonic()
        self._heartbeat = asyncio.create_task(self._beat(), name="health-heartbeat")
        log.info("health and metrics on http://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            try:
                await self._heartbeat
            except asyncio.CancelledError:
                pass
            self._heartbeat = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.port = None

    async def __aenter__(self) -> "HealthServer":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def _beat(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(HEARTBEAT_S)
            now = time.monotonic()
            self._max_lag_s = max(self._max_lag_s, now - before - HEARTBEAT_S)
            self._last_beat = now

    async def _healthz(self, request: web.Request) -> web.Response:
        since_beat_s = time.monotonic() - self._last_beat
        alive = since_beat_s < STALL_S
        body = {"alive": alive, "since_heartbeat_s": round(since_beat_s, 3),
                "max_loop_lag_s": round(self._max_lag_s, 3),
                "uptime_s": round((time.time_ns() - self.state.started_wall_ns) / 1e9, 3)}
        if not alive:
            body["reason"] = f"event-loop heartbeat stalled for {since_beat_s:.1f} s (limit {STALL_S} s)"
        return web.json_response(body, status=200 if alive else 503)

    async def _readyz(self, request: web.Request) -> web.Response:
        body = self.state.snapshot()
        return web.json_response(body, status=200 if body["ready"] else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        self.metrics.engine_loaded.set(1 if self.state.engine_loaded else 0)
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})
