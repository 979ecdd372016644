"""Helpers shared by the subcommands: settings at the entry point, logging, broker resolution."""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Iterator

import click
from pydantic import ValidationError

from agent.settings import Settings


def load_settings(**overrides) -> Settings:
    """Build the one Settings object (environment + CLI overrides) or exit with a clear error."""
    try:
        base = Settings()
        clean = {k: v for k, v in overrides.items() if v is not None}
        return Settings(**{**base.model_dump(), **clean}) if clean else base
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()]
        raise click.UsageError("invalid settings:\n" + "\n".join(lines)) from None


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("aiokafka", "faust", "mode", "kafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


@contextlib.contextmanager
def broker_for(settings: Settings, start_if_missing: bool) -> Iterator[Settings]:
    """Yield settings pointing at a reachable broker.

    With KAFKA_BOOTSTRAP_SERVERS set, that cluster is used as it is. Without it, the embedded
    broker on 127.0.0.1:IOHWATCH_EMBEDDED_BROKER_PORT is used if one is listening; otherwise it
    is started here (``start_if_missing``) and stopped on exit, or a clear error is raised.
    """
    from streams.broker import EmbeddedBroker, port_open

    if not settings.uses_embedded_broker:
        yield settings
        return
    if port_open("127.0.0.1", settings.embedded_broker_port):
        yield settings
        return
    if not start_if_missing:
        raise click.ClickException(
            f"no Kafka broker at 127.0.0.1:{settings.embedded_broker_port}. Start one with "
            f"`iohwatch run` (it starts the embedded broker) or set KAFKA_BOOTSTRAP_SERVERS.")
    with EmbeddedBroker(port=settings.embedded_broker_port,
                        log_path=settings.data_dir / "broker.log") as broker:
        click.echo(f"embedded broker (Tansu) on {broker.bootstrap}", err=True)
        yield settings.model_copy(update={"kafka_bootstrap_servers": broker.bootstrap})
