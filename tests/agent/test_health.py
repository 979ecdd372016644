"""Health, readiness and metrics served by a real aiohttp server on loopback."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

import agent.health as health
from agent.health import HealthServer, ServiceState
from agent.metrics import Metrics
from agent.settings import Settings


def _settings(**kw) -> Settings:
    return Settings(web_host="127.0.0.1", **kw)


async def _get(session: aiohttp.ClientSession, port: int, path: str) -> tuple[int, str, str]:
    async with session.get(f"http://127.0.0.1:{port}{path}") as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


# --- ServiceState.ready ---------------------------------------------------------------------

def test_not_ready_until_group_joined():
    state = ServiceState(engine_loaded=True, engine_name="fuse-v1")
    ok, reason = state.ready()
    assert not ok and "consumer group not joined" in reason and "broker not reachable" in reason
    state.broker_reachable = True
    ok, reason = state.ready()
    assert not ok and "broker not reachable" not in reason
    state.group_joined = True
    assert state.ready() == (True, "engine fuse-v1 loaded")


def test_baseline_is_ready_only_when_allowed():
    state = ServiceState(group_joined=True, fallback_reason="manifest horizons [5] != settings [5,10,15]")
    ok, reason = state.ready()
    assert not ok
    assert "no engine loaded: manifest horizons" in reason
    assert "IOHWATCH_ALLOW_BASELINE_FALLBACK" in reason
    state.baseline_allowed = True
    ok, reason = state.ready()
    assert ok and "baseline" in reason


def test_state_from_settings():
    assert not ServiceState.from_settings(_settings()).baseline_allowed
    assert ServiceState.from_settings(_settings(allow_baseline_fallback=True)).baseline_allowed
    assert ServiceState.from_settings(_settings(engine_path=Path("none"))).baseline_allowed
    assert not ServiceState.from_settings(_settings(engine_path=Path("/engines/x"))).baseline_allowed


# --- the server -------------------------------------------------------------------------------

def test_routes_follow_state_changes():
    async def main():
        state = ServiceState()
        metrics = Metrics()
        server = HealthServer(_settings(), state, metrics, port=0)
        await server.start()
        try:
            assert server.port and server.port > 0
            async with aiohttp.ClientSession() as s:
                status, ctype, body = await _get(s, server.port, "/healthz")
                assert status == 200 and ctype.startswith("application/json")
                assert '"alive": true' in body

                status, _, body = await _get(s, server.port, "/readyz")
                assert status == 503 and "consumer group not joined" in body

                state.group_joined = True
                state.broker_reachable = True
                status, _, body = await _get(s, server.port, "/readyz")
                assert status == 503 and "no engine loaded" in body

                state.engine_loaded, state.engine_name = True, "fuse-v1/onnxruntime"
                status, _, body = await _get(s, server.port, "/readyz")
                assert status == 200 and "fuse-v1/onnxruntime" in body

                metrics.chunks_total.labels(outcome="late").inc(3)
                metrics.dead_letter("waveform.abp", "decode")
                status, ctype, body = await _get(s, server.port, "/metrics")
                assert status == 200 and ctype.startswith("text/plain")
                assert 'iohwatch_waveform_chunks_total{outcome="late"} 3.0' in body
                assert 'iohwatch_dead_letters_total{reason="decode",topic="waveform.abp"} 1.0' in body
                assert "iohwatch_engine_loaded 1.0" in body

                status, _, _ = await _get(s, server.port, "/nope")
                assert status == 404
        finally:
            await server.stop()
        assert server.port is None
    asyncio.run(main())


def test_liveness_fails_when_heartbeat_stalls(monkeypatch):
    """A blocked loop cannot answer at all; a dead heartbeat task must still show as not alive."""
    monkeypatch.setattr(health, "STALL_S", 0.3)

    async def main():
        server = HealthServer(_settings(), ServiceState(), Metrics(), port=0)
        await server.start()
        try:
            server._heartbeat.cancel()
            await asyncio.sleep(0.4)
            async with aiohttp.ClientSession() as s:
                status, _, body = await _get(s, server.port, "/healthz")
            assert status == 503 and "heartbeat stalled" in body
        finally:
            await server.stop()
    asyncio.run(main())


def test_blocked_loop_shows_in_loop_lag(monkeypatch):
    monkeypatch.setattr(health, "HEARTBEAT_S", 0.05)

    async def main():
        server = HealthServer(_settings(), ServiceState(), Metrics(), port=0)
        await server.start()
        try:
            await asyncio.sleep(0.1)
            import time
            time.sleep(0.3)  # block the loop as a long synchronous inference would
            await asyncio.sleep(0.15)
            async with aiohttp.ClientSession() as s:
                status, _, body = await _get(s, server.port, "/healthz")
            assert status == 200
            lag = float(re.search(r'"max_loop_lag_s": ([0-9.]+)', body).group(1))
            assert lag >= 0.2
        finally:
            await server.stop()
    asyncio.run(main())


def test_web_port_zero_disables():
    async def main():
        server = HealthServer(_settings(web_port=0), ServiceState(), Metrics())
        await server.start()
        assert server.port is None
        await server.stop()
    asyncio.run(main())


def test_port_in_use_gives_clear_error():
    async def main():
        first = HealthServer(_settings(), ServiceState(), Metrics(), port=0)
        await first.start()
        try:
            second = HealthServer(_settings(web_port=first.port), ServiceState(), Metrics())
            with pytest.raises(OSError, match=rf"cannot bind 127.0.0.1:{first.port}.*IOHWATCH_WEB_PORT"):
                await second.start()
        finally:
            await first.stop()
    asyncio.run(main())


# --- metrics ------------------------------------------------------------------------------------

def _families(metrics: Metrics) -> dict:
    return {f.name: f for f in text_string_to_metric_families(metrics.exposition().decode())}


def test_metric_names_follow_conventions():
    m = Metrics()
    m.samples_total.inc(500)
    m.forecasts_total.labels(model="baseline", signal_quality="good").inc()
    m.alerts_total.labels(kind="ioh_risk", action="raised").inc()
    m.forecast_latency_seconds.observe(0.12)
    m.inference_seconds.labels(backend="onnxruntime").observe(0.004)
    m.batch_size.observe(17)
    m.beds_active.set(12)
    m.hl7_messages_total.labels(outcome="accepted").inc()
    m.hl7_ack_seconds.observe(0.002)
    m.engine_loaded.set(1)
    fams = _families(m)
    assert fams, "no metrics exposed"
    for name, fam in fams.items():
        assert name.startswith("iohwatch_"), name
        assert not re.search(r"_(ms|milliseconds|minutes|hours|percent)\b", name), name
        if fam.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in fam.samples), name
        if fam.type == "histogram" and "seconds" not in name:
            assert name.endswith("batch_size"), f"histogram {name} is neither _seconds nor a size"
        for sample in fam.samples:
            assert not {"bed", "bed_id", "patient", "patient_id", "mrn", "message_id"} & set(sample.labels)
    assert fams["iohwatch_waveform_samples"].samples[0].value == 500
    # every duration histogram is in seconds and reaches about 5 s for forecast latency
    lat = [s for s in fams["iohwatch_forecast_latency_seconds"].samples if s.name.endswith("_bucket")]
    assert max(float(s.labels["le"]) for s in lat if s.labels["le"] != "+Inf") >= 5.0


def test_registries_are_independent():
    a, b = Metrics(), Metrics()
    a.samples_total.inc(7)
    assert _families(a)["iohwatch_waveform_samples"].samples[0].value == 7
    assert _families(b)["iohwatch_waveform_samples"].samples[0].value == 0


def test_dead_letter_reason_classes_are_bounded():
    m = Metrics()
    m.dead_letter("hl7.raw", "parse")
    m.dead_letter("hl7.raw", "OBX-5 'abc' is not numeric in message 123")
    samples = {(s.labels["topic"], s.labels["reason"]): s.value
               for s in _families(m)["iohwatch_dead_letters"].samples if s.name.endswith("_total")}
    assert samples == {("hl7.raw", "parse"): 1.0, ("hl7.raw", "other"): 1.0}


def test_closed_outcome_sets_are_exposed_as_zero():
    fams = _families(Metrics())
    outcomes = {s.labels["outcome"] for s in fams["iohwatch_waveform_chunks"].samples
                if s.name.endswith("_total")}
    assert outcomes == {"accepted", "duplicate", "late", "out_of_order", "gap", "rejected"}
