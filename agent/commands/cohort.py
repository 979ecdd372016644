"""``iohwatch cohort build``: recordings + clinical table -> labelled samples split by subject."""

from __future__ import annotations

import json
from pathlib import Path

import click

from agent.commands._common import load_settings, setup_logging


@click.group()
def cohort() -> None:
    """Build training cohorts from recordings."""


def _fractions(ctx, param, value: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected three numbers like 0.6,0.2,0.2, got {value!r}") from None
    if len(parts) != 3 or abs(sum(parts) - 1.0) > 1e-6 or min(parts) < 0:
        raise click.BadParameter(f"expected three non-negative fractions summing to 1, got {value!r}")
    return parts


@cohort.command("build")
@click.option("--recordings", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder of .vital recordings (simulated or VitalDB), named by caseid.")
@click.option("--clinical", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="VitalDB clinical table (caseid, subjectid, age, sex, ...).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Cohort folder to write.")
@click.option("--seed", default=0, show_default=True, help="Seed of the subject split.")
@click.option("--split", default="0.6,0.2,0.2", show_default=True, callback=_fractions,
              help="train,dev,test fractions of subjects.")
@click.option("--stride-s", default=30.0, show_default=True,
              help="Spacing of time points (s); every eligible point at this stride becomes a sample.")
@click.option("--workers", default=1, show_default=True, help="Processes over recordings.")
def build(recordings, clinical, out, seed, split, stride_s, workers) -> None:
    """Read every .vital in RECORDINGS through the agent's signal path, label every eligible time
    point for 5/10/15 min, split by subject and write memory-mapped arrays plus meta.json."""
    settings = load_settings()
    setup_logging(settings.log_level)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from training.cohort import CohortSpec, build_cohort

    spec = CohortSpec(grid_s=settings.map_grid_s, window_s=settings.map_window_s,
                      wave_window_s=settings.wave_window_s, wave_fs_hz=settings.model_fs_hz,
                      stride_s=stride_s, horizons_min=tuple(settings.horizons_min))
    with Progress(TextColumn("cohort"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("{task.description}")) as bar:
        task = bar.add_task("", total=None)

        def progress(done, total, name):
            bar.update(task, completed=done, total=total, description=name)

        meta = build_cohort(recordings, clinical, out, seed=seed, split=split, spec=spec,
                            workers=workers, progress=progress)
    s = meta["summary"]
    click.echo(f"{meta['recordings_used']} of {meta['recordings_found']} recordings used, "
               f"{meta['recordings_skipped']} skipped")
    for sk in s["skipped"]:
        click.echo(f"  skipped {sk['recording']}: {sk['reason']}")
    for split_name in ("train", "dev", "test"):
        prev = ", ".join(f"{h} min {p:.3f}" for h, p in s["prevalence"][split_name].items())
        click.echo(f"{split_name:5s}: {s['cases'][split_name]} cases, {s['subjects'][split_name]} subjects, "
                   f"{s['hours'][split_name]:.1f} h, {s['events'][split_name]} events, "
                   f"{s['samples'][split_name]} samples, prevalence {prev}, "
                   f"artifact {s['artifact_fraction'][split_name]:.3f}")
    if s["empty_splits"]:
        click.echo(f"warning: empty splits: {', '.join(s['empty_splits'])}", err=True)
    click.echo(f"data hash {meta['data_hash'][:16]}; wrote {out}")
    (Path(out) / "build_command.json").write_text(json.dumps(
        {"recordings": str(recordings), "clinical": str(clinical), "seed": seed, "split": list(split),
         "stride_s": stride_s}, indent=1) + "\n")
