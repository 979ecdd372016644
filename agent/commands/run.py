"""``iohwatch run``: one agent worker (Faust) against Kafka or the embedded broker."""

from __future__ import annotations

import click

from agent.commands._common import broker_for, load_settings, setup_logging
from agent.settings import env_table


def _env_help() -> str:
    width = max(len(v) for v, _, _ in env_table())
    rows = [f"  {v.ljust(width)}  {d}" + (f" [default: {dflt}]" if dflt else "") for v, dflt, d in env_table()]
    return "\b\nEnvironment (every setting):\n" + "\n".join(rows)


@click.command(epilog=_env_help())
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None,
              help="Overrides IOHWATCH_LOG_LEVEL.")
@click.option("--engine", "engine_path", type=click.Path(path_type=str), default=None,
              help="Engine directory (overrides IOHWATCH_ENGINE_PATH); 'none' runs the baseline.")
def run(log_level: str | None, engine_path: str | None) -> None:
    """Start the agent worker: window each bed's waveform by event time, forecast IOH at
    5/10/15 min, run the alert state machine, publish to ioh.forecasts and ioh.alerts.

    Without KAFKA_BOOTSTRAP_SERVERS it uses (or starts) the embedded broker on loopback.
    Stop with Ctrl-C or SIGTERM.
    """
    settings = load_settings(log_level=log_level, engine_path=engine_path)
    setup_logging(settings.log_level)
    from agent.app import run_worker
    from streams.broker import BrokerError, ensure_topics

    with broker_for(settings, start_if_missing=True) as s:
        try:
            ensure_topics(s)
        except BrokerError as exc:
            raise click.ClickException(str(exc)) from None
        run_worker(s)
