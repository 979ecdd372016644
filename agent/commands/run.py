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
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes in this consumer group (one per core); beds are spread over them "
                   "by partition. Worker i serves health and metrics on IOHWATCH_WEB_PORT + i.")
def run(log_level: str | None, engine_path: str | None, workers: int) -> None:
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
        if workers == 1:
            run_worker(s)
        else:
            run_workers(s, workers)


def run_workers(settings, n: int) -> None:
    """N single-worker processes in one consumer group; stopped one after another, because a
    new group on the embedded broker can wedge when two members leave at the same instant."""
    import os
    import signal
    import subprocess
    import sys
    import time

    procs = []
    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True

    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    try:
        for i in range(n):
            env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=settings.bootstrap(),
                       IOHWATCH_WEB_PORT=str(settings.web_port + i if settings.web_port else 0))
            if settings.engine_path is not None:
                env["IOHWATCH_ENGINE_PATH"] = str(settings.engine_path)
            procs.append(subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--workers", "1"],
                                          env=env, stdin=subprocess.DEVNULL))
            click.echo(f"worker {i + 1}/{n}: pid {procs[-1].pid}, health on port "
                       f"{env['IOHWATCH_WEB_PORT']}", err=True)
        while not stop["now"] and all(p.poll() is None for p in procs):
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
    failed = [p.returncode for p in procs if p.returncode not in (0, -signal.SIGTERM)]
    if failed and not stop["now"]:
        raise click.ClickException(f"a worker exited with code {failed[0]}; the others were stopped")
