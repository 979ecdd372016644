"""``iohwatch bench``: N live beds through the broker and the agent, measured.

Phases: (1) backlog: every bed gets ``--warmup-s`` of history as fast as possible, so windows
are full; (2) live: for ``--seconds`` of wall time, every bed sends one 1-s chunk of 500 Hz ABP
and three 1 Hz numerics each second, with event time = wall time. Only the live phase is scored.

Latency is measured per forecast from the broker timestamp of the chunk that completed its tick
(``source_wall_ns``) to (a) the agent building the forecast and (b) this process receiving it
from Kafka. A bed is "kept in real time" when its newest forecast at the end of the run is no
older than ``cadence + LEAD_OUT + 2 s`` of event time.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import click
import numpy as np

from agent.commands._common import load_settings, setup_logging
from agent.commands.demo import _spawn, _stop, _wait_ready


def _pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    return float(np.percentile(np.asarray(xs), q))


def _proc_stats(pid: int) -> tuple[float, int]:
    """(cpu seconds, rss bytes) of a process and its children."""
    import psutil

    p = psutil.Process(pid)
    procs = [p] + p.children(recursive=True)
    cpu = sum(sum(q.cpu_times()[:2]) for q in procs)
    rss = sum(q.memory_info().rss for q in procs)
    return cpu, rss


async def _run_load(client_kwargs: dict, waves: list[np.ndarray], beds: int, warmup_s: int, seconds: int,
                    fs_hz: float, echo) -> dict:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    from streams import chunk_codec
    from streams.chunk_codec import WaveformChunk
    from streams.contracts import Observation
    from streams.topics import FORECASTS, OBSERVATIONS, WAVEFORM_ABP

    n = int(fs_hz)
    producer = AIOKafkaProducer(**client_kwargs, acks="all", linger_ms=5, enable_idempotence=False)
    consumer = AIOKafkaConsumer(**client_kwargs, enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=20)  # Tansu holds a fetch for the full wait
    await producer.start()
    await consumer.start()
    parts = consumer.partitions_for_topic(FORECASTS.name) or {0}
    tps = [TopicPartition(FORECASTS.name, p) for p in sorted(parts)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)

    now_s = int(time.time())
    t_start_s = now_s - warmup_s  # event time of each bed's first sample
    names = [f"BENCH-{i + 1:03d}" for i in range(beds)]
    seq = [0] * beds
    live_from_wall_ns: list[int] = [0]
    lat_agent: list[float] = []
    lat_e2e: list[float] = []
    newest: dict[str, int] = {}
    counts = {"forecasts": 0}
    stop = asyncio.Event()

    async def consume():
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            now = time.time_ns()
            for records in batches.values():
                for r in records:
                    fc = json.loads(r.value)
                    newest[fc["bed_id"]] = max(newest.get(fc["bed_id"], 0), fc["t_ns"])
                    src = fc.get("source_wall_ns")
                    if live_from_wall_ns[0] and src and src >= live_from_wall_ns[0]:
                        counts["forecasts"] += 1
                        lat_agent.append((fc["issued_wall_ns"] - src) / 1e6)
                        lat_e2e.append((now - src) / 1e6)

    # Monitors are not phase-locked: bed b's chunks start at a fixed offset within the second,
    # and each chunk is sent once its last sample exists (event time follows wall time).
    phase = [(b * 0.6180339887) % 1.0 for b in range(beds)]
    order = sorted(range(beds), key=lambda b: phase[b])

    async def send_chunk(b: int, sec: int) -> list:
        w = waves[b % len(waves)]
        off = ((b * 7919) % max(1, (w.shape[0] // n) - warmup_s - seconds - 2)) * n
        lo = off + sec * n
        seq[b] += 1
        t0_ns = int((t_start_s + sec + phase[b]) * 1e9)
        ch = WaveformChunk(names[b], t0_ns, fs_hz, w[lo:lo + n], seq[b], "SNUADC/ART")
        futs = [await producer.send(WAVEFORM_ABP.name, chunk_codec.encode(ch), key=names[b].encode())]
        for label, val in (("HR", 70.0 + b % 20), ("PLETH_SPO2", 98.0), ("ART_MBP", 80.0)):
            obs = Observation(bed_id=names[b], t_ns=t0_ns + 10**9, code=f"Solar8000/{label}", label=label,
                              value=val, unit="", source="bench")
            futs.append(await producer.send(OBSERVATIONS.name, obs.dumps(), key=names[b].encode()))
        return futs

    cons_task = asyncio.create_task(consume())
    try:
        echo(f"backlog: {warmup_s} s of history for {beds} beds ...")
        for sec in range(warmup_s):
            futs = []
            for b in order:
                futs += await send_chunk(b, sec)
            await asyncio.gather(*futs)
        # Let the agent drain the backlog before the live phase starts.
        target = (t_start_s + warmup_s - 6) * 10**9
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and (len(newest) < beds or min(newest.values()) < target):
            await asyncio.sleep(0.5)
        echo(f"live: {seconds} s at real time ...")
        # Event time of the live phase is anchored to wall time now.
        lag_s = time.time() - (t_start_s + warmup_s)
        live_from_wall_ns[0] = time.time_ns()
        wall0 = time.monotonic()
        late_sends = 0
        pending: list = []
        for i in range(seconds):
            sec = warmup_s + i
            for b in order:
                due = wall0 + i + phase[b] + 1.0
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -0.05:
                    late_sends += 1
                pending += await send_chunk(b, sec)
            await asyncio.gather(*pending)
            pending.clear()
        live_wall_s = time.monotonic() - wall0
        await asyncio.sleep(3.0)
        end_event_ns = (t_start_s + warmup_s + seconds) * 10**9
    finally:
        stop.set()
        await cons_task
        await producer.stop()
        await consumer.stop()
    return {"lat_agent_ms": lat_agent, "lat_e2e_ms": lat_e2e, "newest": newest, "names": names,
            "end_event_ns": end_event_ns, "live_wall_s": live_wall_s, "late_sends": late_sends,
            "forecasts_live": counts["forecasts"], "event_lag_s": lag_s}


@click.command()
@click.option("--beds", type=click.IntRange(1, 2000), default=200, show_default=True)
@click.option("--seconds", type=click.IntRange(5, 3600), default=60, show_default=True,
              help="Length of the live (measured) phase, wall time.")
@click.option("--warmup-s", type=click.IntRange(60, 1800), default=90, show_default=True,
              help="History sent to every bed before the live phase.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the results here as JSON.")
@click.option("--engine", "engine_path", default=None, help="Engine directory; 'none' runs the baseline.")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Agent worker processes (`iohwatch run --workers`).")
def bench(beds, seconds, warmup_s, json_out, engine_path, workers) -> None:
    """Drive BEDS beds of 500 Hz ABP plus 1 Hz numerics through the broker and the agent; report
    beds kept in real time, sample-to-forecast latency p50/p99, CPU and memory per bed."""
    settings = load_settings(engine_path=engine_path)
    setup_logging("warning")
    from streams.broker import EmbeddedBroker, ensure_topics, free_port, kafka_client_kwargs
    from streams.signal.cells import LEAD_OUT_S
    from training.simulator import simulate_case

    def echo(msg: str) -> None:
        click.echo(msg, err=True)

    fs_hz = 500.0
    n_waves = min(beds, 8)
    echo(f"simulating {n_waves} distinct waveforms ...")
    minutes = (warmup_s + seconds) / 60.0 + 3.0
    waves = []
    for i in range(n_waves):
        x = simulate_case(caseid=9000 + i, seed=1234, minutes=minutes).abp_mmhg.astype(np.float32)
        waves.append(np.where(np.isfinite(x), x, 80.0).astype(np.float32))  # gaps would drop chunks

    work = settings.data_dir / "bench"
    web_port = free_port()
    with EmbeddedBroker(port=free_port(), log_path=work / "broker.log") as broker:
        s = settings.model_copy(update={"kafka_bootstrap_servers": broker.bootstrap})
        ensure_topics(s)
        env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap, IOHWATCH_WEB_PORT=str(web_port),
                   IOHWATCH_DATA_DIR=str(settings.data_dir), PYTHONUNBUFFERED="1",
                   # The demo/bench agent may run the named baseline when no engine loads; it says so
                   # in every forecast. A production deployment decides this itself.
                   IOHWATCH_ALLOW_BASELINE_FALLBACK="true",
                   IOHWATCH_APP_ID=f"iohwatch-bench-{os.getpid()}")
        if settings.engine_path is not None:
            env["IOHWATCH_ENGINE_PATH"] = str(settings.engine_path)
        agent = _spawn(["run", "--workers", str(workers)], env, work / "agent.log")
        try:
            for i in range(workers):
                _wait_ready(web_port + i, agent, work / "agent.log")
            cpu0, rss0 = _proc_stats(agent.pid)
            bcpu0, _ = _proc_stats(broker._proc.pid)
            wall0 = time.monotonic()
            r = asyncio.run(_run_load(kafka_client_kwargs(s), waves, beds, warmup_s, seconds, fs_hz, echo))
            cpu1, rss1 = _proc_stats(agent.pid)
            bcpu1, _ = _proc_stats(broker._proc.pid)
            wall = time.monotonic() - wall0
        finally:
            _stop(agent)

    bound_ns = int((settings.forecast_cadence_s + LEAD_OUT_S + 2.0) * 1e9)
    kept = sum(1 for b in r["names"] if r["end_event_ns"] - r["newest"].get(b, 0) <= bound_ns)
    res = {
        "beds": beds, "workers": workers, "live_seconds": seconds, "warmup_seconds": warmup_s, "fs_hz": fs_hz,
        "beds_kept_real_time": kept,
        "forecasts_live": r["forecasts_live"],
        "forecasts_per_s": round(r["forecasts_live"] / max(r["live_wall_s"], 1e-9), 1),
        "latency_agent_ms": {"p50": _pct(r["lat_agent_ms"], 50), "p99": _pct(r["lat_agent_ms"], 99)},
        "latency_e2e_ms": {"p50": _pct(r["lat_e2e_ms"], 50), "p99": _pct(r["lat_e2e_ms"], 99)},
        "agent_cpu_cores": round((cpu1 - cpu0) / wall, 3),
        "agent_cpu_ms_per_bed_s": round((cpu1 - cpu0) / wall / beds * 1e3, 3),
        "broker_cpu_cores": round((bcpu1 - bcpu0) / wall, 3),
        "agent_rss_mb": round(rss1 / 2**20, 1),
        "agent_rss_per_bed_kb": round((rss1 - rss0) / beds / 1024, 1),
        "producer_late_chunks": r["late_sends"],
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "note": "CPU covers the whole run (backlog + live); latency and kept beds the live phase only",
    }
    click.echo(f"beds kept in real time: {kept}/{beds}")
    la, le = res["latency_agent_ms"], res["latency_e2e_ms"]
    if la["p50"] is not None:
        click.echo(f"sample-to-forecast latency (agent)   p50 {la['p50']:.1f} ms  p99 {la['p99']:.1f} ms")
        click.echo(f"sample-to-forecast latency (via Kafka) p50 {le['p50']:.1f} ms  p99 {le['p99']:.1f} ms")
    else:
        click.echo("no forecasts in the live phase: the agent did not keep up (see the agent log)")
    click.echo(f"agent CPU {res['agent_cpu_cores']:.2f} cores ({res['agent_cpu_ms_per_bed_s']:.2f} ms per bed-second), "
               f"broker CPU {res['broker_cpu_cores']:.2f} cores, agent RSS {res['agent_rss_mb']:.0f} MB "
               f"({res['agent_rss_per_bed_kb']:.0f} kB per bed)")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(res, indent=2))
        click.echo(f"wrote {json_out}")
