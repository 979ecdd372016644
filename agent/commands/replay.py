"""``iohwatch replay``: publish recordings to Kafka as live beds."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import click

from agent.commands._common import broker_for, load_settings, setup_logging

RECORDING_SUFFIXES = (".vital", ".hea")


def expand_paths(paths: tuple[str, ...]) -> list[Path]:
    """Files as given; directories expand to their .vital and WFDB .hea files, sorted."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.suffix.lower() in RECORDING_SUFFIXES)
        elif p.exists():
            out.append(p)
        else:
            raise click.BadParameter(f"{p} does not exist", param_hint="PATH")
    if not out:
        raise click.BadParameter("no .vital or .hea recordings found", param_hint="PATH")
    return out


def bed_ids(n: int, given: str | None) -> list[str]:
    if not given:
        return [f"OR-{i + 1}" for i in range(n)]
    names = [b.strip() for b in given.split(",") if b.strip()]
    if len(names) != n:
        raise click.BadParameter(f"{len(names)} bed ids for {n} recordings", param_hint="--beds")
    return names


@click.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("--speed", type=float, default=1.0, show_default=True,
              help="Event time runs this many times faster than wall time; 0 = as fast as possible.")
@click.option("--abp-track", default=None, help="ABP track name (default: auto-detect SNUADC/ART, ABP, ART, ...).")
@click.option("--beds", default=None, help="Comma-separated bed ids, one per recording (default OR-1, OR-2, ...).")
@click.option("--clinical", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="VitalDB clinical table (default: clinical.csv beside each recording).")
@click.option("--start", "start_mode", type=click.Choice(["align", "now", "original"]), default="align",
              show_default=True,
              help="align: every bed starts at the earliest recording's start; now: at the current time; "
                   "original: keep each file's own times.")
@click.option("--wfdb-start", default=None, type=int,
              help="Start time (ns since epoch) for WFDB records, whose headers often carry none.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def replay(paths, speed, abp_track, beds, clinical, start_mode, wfdb_start, progress) -> None:
    """Publish .vital files (simulated or real VitalDB) and WFDB records (.hea) to Kafka:
    waveform chunks to waveform.abp, numerics to observations, patient context to patients,
    drug and phase events to events. Many beds at once, paced on one event clock."""
    settings = load_settings()
    setup_logging("warning")
    from streams.recording import RecordingError, read_recording
    from streams.replay import bed_messages, find_context, publish
    from streams.broker import kafka_client_kwargs

    files = expand_paths(paths)
    ids = bed_ids(len(files), beds)
    recs = []
    for f in files:
        try:
            recs.append(read_recording(f, abp_track=abp_track, start_ns=wfdb_start))
        except RecordingError as exc:
            raise click.ClickException(str(exc)) from None
    if start_mode == "now":
        base = time.time_ns()
    elif start_mode == "align":
        base = min(r.start_ns for r in recs)
    streams, total_s = [], 0.0
    for f, rec, bed in zip(files, recs, ids):
        shift = 0 if start_mode == "original" else base - rec.start_ns
        ctx = find_context(f, rec, bed, clinical, shift)
        streams.append(bed_messages(rec, bed, ctx, shift))
        total_s = max(total_s, rec.abp_mmhg.shape[0] / rec.abp_fs_hz)
        click.echo(f"{bed}: {f.name} ({rec.abp_track} {rec.abp_fs_hz:g} Hz, {rec.abp_mmhg.shape[0] / rec.abp_fs_hz / 60:.1f} min"
                   f"{', context ' + ctx.episode_id if ctx else ''})", err=True)

    with broker_for(settings, start_if_missing=False) as s:
        from streams.broker import ensure_topics
        ensure_topics(s)
        if progress:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
            with Progress(TextColumn("replay"), BarColumn(), TextColumn("{task.fields[info]}"),
                          TimeRemainingColumn(), transient=False) as bar:
                task = bar.add_task("replay", total=total_s, info="")

                def on_progress(st, _t):
                    bar.update(task, completed=min(st.event_span_s, total_s),
                               info=f"{st.event_span_s / 60:5.1f} min  {st.messages} msgs")
                stats = asyncio.run(publish(streams, kafka_client_kwargs(s), speed, on_progress))
        else:
            stats = asyncio.run(publish(streams, kafka_client_kwargs(s), speed))
    click.echo(f"replayed {len(files)} bed(s): {stats.messages} messages ({stats.chunks} waveform chunks), "
               f"{stats.event_span_s / 60:.1f} min of event time in {stats.wall_s:.1f} s", err=True)
