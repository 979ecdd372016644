"""``iohwatch demo``: everything on one machine, live in the terminal.

embedded broker (Tansu) ─> simulated beds ─> ``iohwatch replay`` (subprocess) ─> Kafka
                                            ``iohwatch run`` (subprocess, the agent) ─> ioh.forecasts / ioh.alerts
this process follows both topics and draws a live table of beds and the alert log.
Every process the demo starts, it stops (also on Ctrl-C).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from agent.commands._common import load_settings, setup_logging


def _spawn(args: list[str], env: dict, log_path: Path) -> subprocess.Popen:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "agent.cli", *args], env=env, stdin=subprocess.DEVNULL,
                            stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen | None, timeout_s: float = 20.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def _wait_ready(port: int, proc: subprocess.Popen, log_path: Path, timeout_s: float = 90.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
            raise click.ClickException(f"the agent exited with code {proc.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise click.ClickException(f"the agent did not become ready within {timeout_s:.0f} s; see {log_path}")


class LiveView:
    """Latest forecast per bed and the alert log, drawn with rich (plain lines without a TTY)."""

    def __init__(self, plain: bool, total_event_s: float):
        self.plain = plain
        self.total_event_s = total_event_s
        self.beds: dict[str, dict] = {}
        self.alerts: list[str] = []
        self.seen: set[str] = set()
        self.n_forecasts = 0
        self.n_alerts = 0
        self.first_t: dict[str, int] = {}
        self.last_print = 0.0

    def on_forecast(self, fc: dict) -> None:
        self.n_forecasts += 1
        self.first_t.setdefault(fc["bed_id"], fc["t_ns"])
        self.beds[fc["bed_id"]] = fc
        if self.plain and time.monotonic() - self.last_print > 5:
            self.last_print = time.monotonic()
            for bed, f in sorted(self.beds.items()):
                click.echo(self._line(bed, f))

    def on_alert(self, alert) -> None:
        from agent.alerts import format_alert

        if alert.event_id in self.seen:
            return
        self.seen.add(alert.event_id)
        self.n_alerts += 1
        line = format_alert(alert)
        self.alerts.append(line)
        if self.plain:
            click.echo(line)

    def progress(self) -> float:
        done = [(f["t_ns"] - self.first_t[b]) / 1e9 for b, f in self.beds.items()]
        return min(1.0, (min(done) if done else 0.0) / max(self.total_event_s, 1.0))

    @staticmethod
    def _line(bed: str, f: dict) -> str:
        risk = f.get("risk") or {}
        r = " ".join(f"{h}m {risk[h]:.2f}" if h in risk else f"{h}m  -  " for h in ("5", "10", "15"))
        m = f.get("map_now_mmhg")
        sl = f.get("map_slope_mmhg_per_min")
        return (f"{bed:>6}  MAP {m if m is not None else float('nan'):5.1f}  "
                f"trend {sl if sl is not None else float('nan'):+5.2f}/min  risk {r}  [{f['signal_quality']}]")

    def render(self):
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        t = Table(title="iohwatch demo: live forecasts", expand=True)
        for col in ("bed", "event time", "MAP mmHg", "trend mmHg/min", "risk 5 min", "risk 10 min",
                    "risk 15 min", "signal", "model"):
            t.add_column(col)
        for bed, f in sorted(self.beds.items()):
            risk = f.get("risk") or {}

            def cell(h):
                if h not in risk:
                    return Text("-")
                p = risk[h]
                return Text(f"{p:.2f}", style="bold red" if p >= 0.5 else ("yellow" if p >= 0.3 else "green"))

            m, sl = f.get("map_now_mmhg"), f.get("map_slope_mmhg_per_min")
            t.add_row(bed, time.strftime("%H:%M:%S", time.gmtime(f["t_ns"] / 1e9)),
                      f"{m:.0f}" if m is not None else "-", f"{sl:+.2f}" if sl is not None else "-",
                      cell("5"), cell("10"), cell("15"),
                      Text(f["signal_quality"], style="green" if f["signal_quality"] == "ok" else "magenta"),
                      f["model"])
        log = Text("\n".join(self.alerts[-12:]) or "no alerts yet")
        bar = ProgressBar(total=1.0, completed=self.progress())
        return Group(t, Text(f"replay progress {self.progress():.0%}  forecasts {self.n_forecasts}  "
                             f"alert events {self.n_alerts}"), bar, Text("alerts:", style="bold"), log)


async def _follow(bootstrap_kwargs: dict, view: LiveView, stop: asyncio.Event, live=None) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from streams.contracts import Alert, ContractError, decode
    from streams.topics import ALERTS, FORECASTS

    consumer = AIOKafkaConsumer(**bootstrap_kwargs, enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=20)  # Tansu holds a fetch for the full wait
    await consumer.start()
    try:
        tps = []
        for topic in (FORECASTS.name, ALERTS.name):
            parts = consumer.partitions_for_topic(topic) or set()
            if not parts:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(topic) or {0}
            tps += [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=300, max_records=2000)
            for tp, records in batches.items():
                for r in records:
                    try:
                        if tp.topic == ALERTS.name:
                            view.on_alert(decode(Alert, r.value))
                        else:
                            view.on_forecast(json.loads(r.value))
                    except (ContractError, ValueError) as exc:
                        click.echo(f"skipping malformed message on {tp.topic}: {exc}", err=True)
            if live is not None:
                live.update(view.render())
    finally:
        await consumer.stop()


@click.command()
@click.option("--beds", type=click.IntRange(1, 500), default=3, show_default=True, help="Simulated beds.")
@click.option("--speed", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Event time runs this many times faster than wall time.")
@click.option("--minutes", type=click.FloatRange(min=14), default=20.0, show_default=True,
              help="Length of each simulated case (event time; the episode scenario needs 14 min).")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--engine", "engine_path", default=None, help="Engine directory; 'none' runs the baseline.")
@click.option("--plain", is_flag=True, help="Print lines instead of a live table (automatic without a terminal).")
def demo(beds, speed, minutes, seed, engine_path, plain) -> None:
    """Run everything on this machine: the embedded broker, BEDS simulated beds replayed SPEED times
    faster than real time, the agent, and a live view of forecasts and alerts. The first bed (and
    every other one) follows a scenario with a hypotension episode and an earlier line flush."""
    settings = load_settings(engine_path=engine_path)
    setup_logging("warning")
    from streams.broker import EmbeddedBroker, free_port, kafka_client_kwargs, port_open
    from training.simulator import write_cohort

    plain = plain or not sys.stdout.isatty()
    work = settings.data_dir / "demo"
    rec_dir = work / f"beds{beds}-min{minutes:g}-seed{seed}"
    if not (rec_dir / "clinical.csv").exists():
        click.echo(f"simulating {beds} bed(s) of {minutes:g} min into {rec_dir} ...", err=True)
        demo_dir, other_dir = rec_dir / "_demo", rec_dir / "_default"
        n_demo = (beds + 1) // 2
        write_cohort(demo_dir, cases=n_demo, seed=seed, minutes=minutes, scenario="demo", progress=not plain)
        if beds - n_demo:
            write_cohort(other_dir, cases=beds - n_demo, seed=seed + 1, minutes=minutes, scenario="default",
                         progress=not plain)
        _merge_cohorts(rec_dir, [demo_dir, other_dir], interleave=True)
    files = sorted(rec_dir.glob("*.vital"))[:beds]

    port = settings.embedded_broker_port
    if port_open("127.0.0.1", port):
        port = free_port()
    web_port = free_port()
    agent = replay = None
    with EmbeddedBroker(port=port, log_path=work / "broker.log") as broker:
        env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap, IOHWATCH_WEB_PORT=str(web_port),
                   IOHWATCH_DATA_DIR=str(settings.data_dir), PYTHONUNBUFFERED="1",
                   # The demo/bench agent may run the named baseline when no engine loads; it says so
                   # in every forecast. A production deployment decides this itself.
                   IOHWATCH_ALLOW_BASELINE_FALLBACK="true")
        if settings.engine_path is not None:
            env["IOHWATCH_ENGINE_PATH"] = str(settings.engine_path)
        try:
            click.echo(f"broker on {broker.bootstrap}; starting the agent (log: {work / 'agent.log'}) ...", err=True)
            agent = _spawn(["run"], env, work / "agent.log")
            _wait_ready(web_port, agent, work / "agent.log")
            click.echo(f"agent ready; replaying {len(files)} bed(s) at {speed:g}x ...", err=True)
            replay = _spawn(["replay", *map(str, files), "--speed", str(speed), "--start", "now",
                             "--no-progress"], env, work / "replay.log")
            view = LiveView(plain, minutes * 60)
            asyncio.run(_watch(kafka_client_kwargs(settings.model_copy(
                update={"kafka_bootstrap_servers": broker.bootstrap})), view, replay, plain))
        except KeyboardInterrupt:
            click.echo("stopping ...", err=True)
        finally:
            _stop(replay)
            _stop(agent)
    if replay is not None and replay.returncode not in (0, -signal.SIGTERM):
        click.echo(f"replay exited with code {replay.returncode}; see {work / 'replay.log'}", err=True)
    click.echo(f"demo finished: {view.n_forecasts} forecasts, {view.n_alerts} alert events "
               f"for {len(files)} bed(s).")


async def _watch(client_kwargs: dict, view: LiveView, replay: subprocess.Popen, plain: bool) -> None:
    stop = asyncio.Event()

    async def until_done():
        # Done when the replay has finished and no forecast arrived for a few seconds.
        last, last_n = time.monotonic(), -1
        while True:
            await asyncio.sleep(0.5)
            if view.n_forecasts != last_n:
                last, last_n = time.monotonic(), view.n_forecasts
            if replay.poll() is not None and time.monotonic() - last > 6.0:
                stop.set()
                return

    if plain:
        await asyncio.gather(_follow(client_kwargs, view, stop), until_done())
    else:
        from rich.live import Live

        with Live(view.render(), refresh_per_second=4) as live:
            await asyncio.gather(_follow(client_kwargs, view, stop, live), until_done())


def _merge_cohorts(out: Path, parts: list[Path], interleave: bool) -> None:
    """Put the cases of several simulated cohorts in one folder with one clinical.csv,
    renumbered 1..N (demo and default cases alternating), so each file maps to one bed."""
    import csv
    import shutil

    rows_by_part = []
    for p in parts:
        if not (p / "clinical.csv").exists():
            continue
        with open(p / "clinical.csv", newline="") as f:
            rows_by_part.append([(p, r) for r in csv.DictReader(f)])
    order = []
    while any(rows_by_part):
        for rows in rows_by_part:
            if rows:
                order.append(rows.pop(0))
    header = None
    out_rows = []
    for i, (p, r) in enumerate(order, start=1):
        old = int(float(r["caseid"]))
        for suffix in (".vital", ".truth.json"):
            src = p / f"{old:04d}{suffix}"
            if src.exists():
                shutil.move(str(src), out / f"{i:04d}{suffix}")
        r = dict(r, caseid=str(i), subjectid=str(i))
        header = header or list(r)
        out_rows.append(r)
    with open(out / "clinical.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        w.writerows(out_rows)
    for p in parts:
        shutil.rmtree(p, ignore_errors=True)

