"""``iohwatch simulate``: write a synthetic cohort of VitalDB-format recordings."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from training.simulator.timeline import SCENARIOS


@click.command("simulate")
@click.option("--cases", "-n", type=click.IntRange(min=1), required=True, help="number of cases to simulate")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="output folder (created if missing); gets NNNN.vital, NNNN.truth.json, clinical.csv")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="cohort seed; each case is seeded from (seed, caseid)")
@click.option("--minutes", type=click.FloatRange(min=2.0, max=24 * 60.0), default=60.0, show_default=True,
              help="recording length per case")
@click.option("--scenario", type=click.Choice(SCENARIOS), default="default", show_default=True,
              help="demo: an IOH episode begins 6.5-9.5 min in, after a flush artifact in normotension "
                   "(needs --minutes >= 14)")
@click.option("--first-caseid", type=click.IntRange(min=1), default=1, show_default=True,
              help="case id of the first case (ids are consecutive)")
@click.option("--quiet", is_flag=True, help="no progress bar")
def simulate(cases: int, out_dir: Path, seed: int, minutes: float, scenario: str,
             first_caseid: int, quiet: bool) -> None:
    """Write a synthetic cohort of VitalDB-format .vital files.

    Tracks: SNUADC/ART (500 Hz, mmHg), Solar8000/ART_SBP|DBP|MBP, HR, PLETH_HR, PLETH_SPO2,
    NIBP_SBP|DBP|MBP, Orchestra/PPF20_RATE|CE and the EVENT/EVENT string track. Ground truth
    (IOH episodes on the artifact-free MAP, artifact intervals, drugs) goes to NNNN.truth.json.
    Same seed and options, same bytes.
    """
    from training.simulator import truth_path, write_cohort

    if out_dir.exists() and not out_dir.is_dir():
        raise click.UsageError(f"--out {out_dir} exists and is not a directory")
    if scenario == "demo" and minutes < 14.0:
        raise click.UsageError(f"--scenario demo needs --minutes >= 14 (got {minutes:g})")
    started = time.perf_counter()
    try:
        paths = write_cohort(out_dir, cases, seed, minutes=minutes, scenario=scenario,
                             progress=not quiet, first_caseid=first_caseid)
    except (ValueError, OSError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    elapsed_s = time.perf_counter() - started

    with_ioh = episodes = 0
    artifacts: dict[str, int] = {}
    for caseid in range(first_caseid, first_caseid + cases):
        truth = json.loads(truth_path(out_dir, caseid).read_text())
        episodes += len(truth["ioh_episodes"])
        with_ioh += bool(truth["ioh_episodes"])
        for a in truth["artifacts"]:
            artifacts[a["kind"]] = artifacts.get(a["kind"], 0) + 1
    hours = cases * minutes / 60.0
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(artifacts.items())) or "none"
    click.echo(f"wrote {len(paths)} cases ({hours:.1f} h of 500 Hz ABP) to {out_dir} in {elapsed_s:.1f} s "
               f"({elapsed_s / cases:.2f} s per case)")
    click.echo(f"cases with IOH: {with_ioh}/{cases} ({100.0 * with_ioh / cases:.0f} %), "
               f"{episodes} episodes (MAP < 65 mmHg for >= 60 s, artifact-free MAP)")
    click.echo(f"artifacts: {sum(artifacts.values())} ({kinds})")
    click.echo(f"clinical table: {out_dir / 'clinical.csv'}")
