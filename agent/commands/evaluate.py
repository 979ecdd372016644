"""``iohwatch evaluate``: a trained run against the baselines on a cohort's test split."""

from __future__ import annotations

from pathlib import Path

import click

from agent.commands._common import load_settings, setup_logging


@click.command()
@click.option("--cohort", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Cohort folder; its test split is scored (dev picks the thresholds).")
@click.option("--run", "run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Training run folder (or an engine folder with manifest.json).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Report folder.")
@click.option("--fa-per-h", type=float, default=1.0, show_default=True,
              help="False alarms per hour allowed on dev when choosing each method's threshold.")
@click.option("--n-boot", type=int, default=200, show_default=True, help="Bootstrap resamples of subjects.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--dev-cohort", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Cohort whose dev split picks thresholds (default: --cohort); use the training cohort "
                   "when --cohort is a held-out cohort built with --split 0,0,1.")
def evaluate(cohort, run_dir, out, fa_per_h, n_boot, seed, dev_cohort) -> None:
    """Score every eligible test time point with the exported engine and the baselines (current
    MAP, MAP < 75 mmHg, linear extrapolation, VitalDB HPI CNN); write report.json, report.md, plots."""
    settings = load_settings()
    setup_logging(settings.log_level)
    from training.evaluate import evaluate as run_eval

    try:
        report = run_eval(cohort, run_dir, out, target_fa_per_h=fa_per_h, n_boot=n_boot, seed=seed,
                          dev_cohort=dev_cohort)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo((Path(out) / "report.md").read_text())
