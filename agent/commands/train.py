"""``iohwatch train``: two-stage training of the forecaster on a cohort, then engine export."""

from __future__ import annotations

from pathlib import Path

import click

from agent.commands._common import load_settings, setup_logging


@click.command()
@click.option("--cohort", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Cohort folder from `iohwatch cohort build`.")
@click.option("--config", "config", type=click.Choice(["tiny", "base", "paper"]), default="tiny",
              show_default=True, help="Model size (tiny trains on a CPU in minutes).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Run folder.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last checkpoint.")
@click.option("--max-minutes", type=float, default=None, help="Wall-clock budget for the training stages.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of initialisation and sampling.")
@click.option("--epochs", type=int, default=None, help="Override the fine-tuning epochs of the config.")
@click.option("--diffusion-steps", type=int, default=None, help="Override the MTRDA diffusion training steps.")
@click.option("--samples-per-epoch", type=int, default=None,
              help="Override the most training samples drawn per fine-tuning epoch.")
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where to train; auto uses a CUDA GPU when one is visible.")
def train(cohort, config, out, resume, max_minutes, seed, epochs, diffusion_steps, samples_per_epoch,
          threads, device) -> None:
    """Augment (MTRDA), pretrain (masked patches + masked global alignment), fine-tune with LoRA,
    early-stop on dev AUPRC, calibrate on dev, and export engines to OUT/engine."""
    settings = load_settings()
    setup_logging(settings.log_level)
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from training.run import TrainSettings
    from training.run import train as run_train

    if threads:
        torch.set_num_threads(threads)
    ts = TrainSettings.for_config(config, seed=seed, max_minutes=max_minutes, finetune_epochs=epochs,
                                  diffusion_steps=diffusion_steps, max_samples_per_epoch=samples_per_epoch,
                                  device=device)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task("train", total=None)

        def progress(phase, done, total, epoch=None):
            label = phase if epoch is None else f"{phase} epoch {epoch}"
            bar.update(task, description=label, completed=done, total=total)

        try:
            info = run_train(cohort, out, ts, resume=resume, progress=progress)
        except (FileExistsError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"best dev AUPRC (mean over horizons) {info['best_dev_auprc_mean']:.3f} at epoch "
               f"{info['best_epoch']}; {info['stopped'] or 'all epochs run'}; {info['elapsed_s'] / 60:.1f} min")
    click.echo(f"engine: {Path(out) / 'engine'}")
