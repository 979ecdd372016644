"""``iohwatch ingest``: receive HL7 v2 over MLLP or the Vital Recorder stream into ``hl7.raw``.

Both services write each message to ``hl7.raw`` keyed by bed and acknowledge it only after the
broker did; the parse stage of ``iohwatch run`` (``agent.hl7_stage``) turns ``hl7.raw`` into
observations, waveform chunks, patient context and events.
"""

from __future__ import annotations

import asyncio

import click

from agent.commands._common import broker_for, load_settings, setup_logging


def _metrics_server(settings, metrics):
    """Expose /metrics on web_host:web_port when a port is set (0 disables)."""
    if not settings.web_port or metrics is None:
        return None
    from prometheus_client import start_http_server

    try:
        start_http_server(settings.web_port, addr=settings.web_host, registry=metrics.registry)
        click.echo(f"metrics on http://{settings.web_host}:{settings.web_port}/metrics", err=True)
    except OSError as exc:
        click.echo(f"metrics not exposed: {exc}", err=True)


def _make_metrics():
    try:
        from agent.metrics import Metrics
    except ImportError:
        return None
    return Metrics()


async def _serve(settings, make_server) -> None:
    from streams.broker import ensure_topics_async, kafka_client_kwargs
    from streams.hl7.ingest import HL7Ingest, KafkaSink

    kw = kafka_client_kwargs(settings)
    await ensure_topics_async(kw, settings.topic_partitions)
    metrics = _make_metrics()
    _metrics_server(settings, metrics)
    async with KafkaSink(kw, request_timeout_s=settings.hl7_write_timeout_s) as sink:
        ingest = HL7Ingest(sink.send, metrics, dedup_window=settings.hl7_dedup_window,
                           write_timeout_s=settings.hl7_write_timeout_s)
        server = make_server(ingest)
        await server.start()
        click.echo(f"listening on {server.host}:{server.port}; writing to hl7.raw at {settings.bootstrap()}",
                   err=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.close()


def _run(settings, make_server, start_broker: bool) -> None:
    with broker_for(settings, start_if_missing=start_broker) as s:
        try:
            asyncio.run(_serve(s, make_server))
        except KeyboardInterrupt:
            pass


@click.group()
def ingest() -> None:
    """Receive HL7 v2 over MLLP or the Vital Recorder stream into hl7.raw."""


@ingest.command()
@click.option("--port", type=int, default=2575, show_default=True, help="TCP port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0 for all).")
@click.option("--start-broker/--no-start-broker", default=False, show_default=True,
              help="Start the embedded broker when none is reachable.")
def mllp(port: int, host: str, start_broker: bool) -> None:
    """HL7 v2 over MLLP (PCD-01 gateways, ADT and medication feeds): persistent connections,
    AA only after Kafka acknowledged the write, AE/AR with an ERR segment otherwise."""
    settings = load_settings()
    setup_logging(settings.log_level)
    from streams.mllp import MLLPServer

    def make(ingest_handler):
        return MLLPServer(ingest_handler.handle, host, port, max_frame_bytes=settings.hl7_max_frame_bytes,
                          max_inflight=settings.hl7_max_inflight,
                          max_inflight_per_connection=settings.hl7_max_inflight_per_connection,
                          on_bad_frame=ingest_handler.bad_frame, on_ack=ingest_handler.metrics.ack)

    _run(settings, make, start_broker)


@ingest.command()
@click.option("--port", type=int, default=3000, show_default=True, help="HTTP/Socket.IO port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0 for all).")
@click.option("--start-broker/--no-start-broker", default=False, show_default=True,
              help="Start the embedded broker when none is reachable.")
def vitalrecorder(port: int, host: str, start_broker: bool) -> None:
    """VitalServer-compatible Socket.IO endpoint: point Vital Recorder (or `vitaldemo
    http://HOST:PORT`) here; every HL7 message it sends goes to hl7.raw."""
    settings = load_settings()
    setup_logging(settings.log_level)
    from streams.vitalrecorder import VitalRecorderServer

    def make(ingest_handler):
        return VitalRecorderServer(ingest_handler, host, port, max_payload_bytes=settings.hl7_max_frame_bytes * 4)

    _run(settings, make, start_broker)
