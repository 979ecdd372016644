"""``iohwatch hl7``: inspect HL7 messages, send alerts out as IHE PCD-04, benchmark ingest."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click

from agent.commands._common import broker_for, load_settings, setup_logging


@click.group()
def hl7() -> None:
    """Inspect HL7 v2 messages; send alerts out as IHE PCD-04; benchmark HL7 ingest."""


def _record_json(kind: str, rec) -> dict:
    if kind == "waveform":
        import numpy as np

        x = rec.samples
        finite = x[np.isfinite(x)]
        return {"kind": kind, "bed_id": rec.bed_id, "t0_ns": rec.t0_ns, "fs_hz": rec.fs_hz, "n": rec.n,
                "track": rec.track, "seq": rec.seq,
                "min_mmhg": round(float(finite.min()), 2) if finite.size else None,
                "max_mmhg": round(float(finite.max()), 2) if finite.size else None,
                "first": [None if not np.isfinite(v) else round(float(v), 2) for v in x[:5]]}
    if kind == "dead_letter":
        return {"kind": kind, "reason_class": rec.reason_class, "reason": rec.reason,
                "raw": rec.raw.decode("utf-8", "replace")[:200]}
    return {"kind": kind, **rec.model_dump()}


def _record_line(kind: str, rec) -> str:
    from datetime import datetime, timezone

    def t(ns):
        return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat(timespec="milliseconds")

    if kind == "observation":
        dev = f" device {rec.device_id}" if rec.device_id else ""
        return f"  observation {t(rec.t_ns)} {rec.code} {rec.label} = {rec.value:g} {rec.unit}{dev}"
    if kind == "waveform":
        d = _record_json(kind, rec)
        return (f"  waveform    {t(rec.t0_ns)} {rec.track} {rec.n} samples at {rec.fs_hz:g} Hz "
                f"({d['min_mmhg']}..{d['max_mmhg']} mmHg)")
    if kind == "context":
        return (f"  context     {t(rec.t_ns)} {rec.status} episode {rec.episode_id} age {rec.age} sex {rec.sex} "
                f"height {rec.height} weight {rec.weight}")
    if kind == "event":
        return f"  event       {t(rec.t_ns)} {rec.kind} {rec.name} {rec.value if rec.value is not None else ''} " \
               f"{rec.unit or ''} ({rec.text})"
    return f"  DEAD LETTER [{rec.reason_class}] {rec.reason}"


@hl7.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message.")
@click.option("--skipped/--no-skipped", default=False, help="Also list recognised but unused content.")
@click.option("--strict", is_flag=True, help="Also validate each message against the standard (hl7apy; slow).")
def parse(files, as_json: bool, skipped: bool, strict: bool) -> None:
    """Print the normalised records of each message in FILES (MLLP-framed, or CR/LF separated;
    several messages per file)."""
    settings = load_settings()
    from agent.hl7_stage import default_tz
    from streams.hl7.fast import split_messages
    from streams.hl7.normalise import normalise
    from streams.hl7.strict import validate

    tz = default_tz(settings)
    n_msgs = n_dead = 0
    for path in files:
        messages = split_messages(path.read_bytes())
        if not messages:
            click.echo(f"{path}: no HL7 message (no MSH segment) found", err=True)
            n_dead += 1
        for raw in messages:
            n = normalise(raw, tz)
            n_msgs += 1
            n_dead += len(n.dead_letters)
            problems = validate(raw) if strict else []
            if as_json:
                obj = {"file": str(path), "control_id": n.control_id, "message_type": n.message_type,
                       "bed_id": n.bed_id, "source": n.source,
                       "records": [_record_json(k, r) for k, r in n.records()]}
                if skipped:
                    obj["skipped"] = n.skipped
                if strict:
                    obj["strict"] = problems
                click.echo(json.dumps(obj))
            else:
                click.echo(f"{path.name}: {n.message_type or '?'} {n.control_id or '?'} bed {n.bed_id} ({n.source})")
                for k, r in n.records():
                    click.echo(_record_line(k, r))
                if skipped:
                    for s in n.skipped:
                        click.echo(f"  skipped     {s}")
                if strict:
                    click.echo("  strict      " + ("; ".join(problems) if problems else "valid"))
    if not as_json:
        click.echo(f"{n_msgs} message(s), {n_dead} dead letter(s)", err=True)


@hl7.command()
@click.option("--mllp", "target", required=True, metavar="HOST:PORT", help="MLLP receiver of the alerts.")
@click.option("--from-beginning", is_flag=True,
              help="Send every alert on ioh.alerts, not only those issued after the command started.")
@click.option("--group", default="iohwatch-hl7-out", show_default=True, help="Consumer group (resumes after a restart).")
def out(target: str, from_beginning: bool, group: str) -> None:
    """Send each alert lifecycle event from ioh.alerts as an IHE PCD-04 ORU^R40 message over
    MLLP, retrying with backoff until the receiver acknowledges; AE/AR go to dlq.hl7."""
    settings = load_settings()
    setup_logging(settings.log_level)
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"{target!r} is not HOST:PORT", param_hint="--mllp")
    from streams.broker import kafka_client_kwargs
    from streams.hl7.alerts_out import run_alerts_out

    def report(alert, outcome):
        click.echo(f"{outcome}: {alert.bed_id} {alert.kind} {alert.action} ({alert.alert_id})", err=True)

    with broker_for(settings, start_if_missing=False) as s:
        try:
            asyncio.run(run_alerts_out(kafka_client_kwargs(s), host, int(port), from_beginning=from_beginning,
                                       group_id=group, session_timeout_s=s.session_timeout_s,
                                       heartbeat_s=s.heartbeat_s, on_result=report))
        except KeyboardInterrupt:
            pass


@hl7.command()
@click.option("--messages", type=int, default=20_000, show_default=True, help="ORU^R01 messages to process.")
@click.option("--wave-samples", type=int, default=100, show_default=True, help="Samples in each waveform OBX.")
@click.option("--broker", is_flag=True,
              help="Also send over loopback MLLP to hl7.raw (acks=all): KAFKA_BOOTSTRAP_SERVERS, else a private "
                   "embedded broker on a free port.")
@click.option("--connections", type=int, default=8, show_default=True, help="MLLP connections with --broker.")
@click.option("--repeats", type=int, default=3, show_default=True, help="Runs per stage; the fastest counts.")
@click.option("--json", "as_json", is_flag=True)
def bench(messages: int, wave_samples: int, broker: bool, connections: int, repeats: int, as_json: bool) -> None:
    """Messages per second per core from MLLP framing through normalisation (target 2,000)."""
    settings = load_settings()
    from streams.hl7.bench import bench_ingest

    if broker and settings.uses_embedded_broker:
        # A private broker on a free port: benchmark data never lands in a running deployment.
        from streams.broker import EmbeddedBroker

        with EmbeddedBroker() as b:
            result = bench_ingest(messages, wave_samples, broker=b.bootstrap, connections=connections,
                                  repeats=repeats)
    elif broker:
        result = bench_ingest(messages, wave_samples, broker=settings.bootstrap(), connections=connections,
                              repeats=repeats)
    else:
        result = bench_ingest(messages, wave_samples, repeats=repeats)
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"HL7 ingest, {result['messages']} ORU^R01 of {result['mean_message_bytes']} bytes "
               f"({wave_samples}-sample waveform OBX each), one core, best of {repeats}:")
    click.echo(f"  MLLP framing           {result['framing_msgs_per_s']:>10,} msgs/s")
    click.echo(f"  ingest (validate+ACK)  {result['ingest_msgs_per_s']:>10,} msgs/s")
    click.echo(f"  parse stage (route)    {result['parse_stage_msgs_per_s']:>10,} msgs/s "
               f"({result['records_per_message']} records/msg)")
    click.echo(f"  all three, per core    {result['per_core_msgs_per_s']:>10,} msgs/s  (target 2,000)")
    if broker:
        click.echo(f"  via broker, {result['broker_connections']} MLLP connections: {result['broker_acked']} AA, "
                   f"{result['broker_msgs_per_wall_s']:,} msgs/s wall, {result['broker_msgs_per_cpu_s']:,} msgs/CPU-s")
