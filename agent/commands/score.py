"""``iohwatch score``: the agent's pipeline over one recording, without Kafka."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import click

from agent.commands._common import load_settings, setup_logging


def score_records(path: Path, settings, bed_id: str = "OR-1", abp_track: str | None = None,
                  clinical: Path | None = None, start_ns: int | None = None, forecaster=None):
    """Forecasts and alerts of one recording, in order (the same code path as the agent)."""
    from agent.app import load_runtime
    from agent.pipeline import score_chunks
    from streams.recording import read_recording
    from streams.replay import find_context, iter_chunks, observation_messages

    rec = read_recording(path, abp_track=abp_track, start_ns=start_ns)
    if forecaster is None:
        forecaster = load_runtime(settings).forecaster
    ctx = find_context(path, rec, bed_id, clinical)
    from streams import chunk_codec

    # Through the wire codec, so offline scoring sees exactly the samples the agent receives.
    chunks = (chunk_codec.decode(chunk_codec.encode(c))
              for c in iter_chunks(rec.abp_mmhg, rec.abp_fs_hz, rec.start_ns, bed_id, track=rec.abp_track))
    obs = list(observation_messages(rec, bed_id))
    return forecaster, score_chunks(bed_id, chunks, settings, forecaster, ctx, obs)


def as_record(msg) -> dict:
    from streams.contracts import Alert

    kind = "alert" if isinstance(msg, Alert) else "forecast"
    return {"type": kind, **json.loads(msg.model_dump_json())}


@click.command()
@click.argument("recording", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print every forecast and alert as a JSON line.")
@click.option("--bed", default="OR-1", show_default=True, help="Bed id to stamp on the output.")
@click.option("--abp-track", default=None, help="ABP track name (default: auto-detect).")
@click.option("--clinical", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="VitalDB clinical table (default: clinical.csv beside the recording).")
@click.option("--engine", "engine_path", default=None, help="Engine directory; 'none' runs the baseline.")
@click.option("--wfdb-start", default=None, type=int, help="Start time (ns) for WFDB records without one.")
def score(recording, as_json, bed, abp_track, clinical, engine_path, wfdb_start) -> None:
    """Score RECORDING (.vital or WFDB .hea) offline with exactly the agent's windowing, gating,
    forecasting and alert code, and print the forecasts and alerts."""
    settings = load_settings(engine_path=engine_path)
    setup_logging("warning")
    from streams.recording import RecordingError

    try:
        forecaster, out = score_records(recording, settings, bed, abp_track, clinical, wfdb_start)
        counts: Counter = Counter()
        for msg in out:
            rec = as_record(msg)
            if as_json:
                click.echo(json.dumps(rec, separators=(",", ":")))
            elif rec["type"] == "alert":
                from agent.alerts import format_alert
                click.echo(format_alert(msg))
            counts[rec["type"] if rec["type"] == "alert" else f"forecast:{rec['signal_quality']}"] += 1
    except RecordingError as exc:
        raise click.ClickException(str(exc)) from None
    if not as_json:
        total = sum(v for k, v in counts.items() if k.startswith("forecast"))
        parts = ", ".join(f"{k.split(':')[1]} {v}" for k, v in sorted(counts.items()) if k.startswith("forecast"))
        click.echo(f"{total} forecasts ({parts}), {counts['alert']} alert events; "
                   f"forecaster {forecaster.name} {forecaster.version} on {forecaster.backend}"
                   + (f" (fallback: {forecaster.fallback_reason})" if forecaster.fallback_reason else ""))
