"""``iohwatch export``: write ONNX engines (FP32 + FP16), torch checkpoints and a manifest."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("export")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="engine directory to write")
@click.option("--checkpoint", default=None, help="training run directory or checkpoint file; none = random init")
@click.option("--config", "config_name", type=click.Choice(["tiny", "base", "paper"]), default="tiny",
              show_default=True, help="model size (ignored with --checkpoint, which carries its own)")
@click.option("--fp16/--no-fp16", default=True, show_default=True, help="also write FP16 ONNX")
@click.option("--gpt2", "gpt2_path", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="local Hugging Face GPT-2 directory for the backbone blocks")
@click.option("--tensorrt", "tensorrt", type=click.Choice(["auto", "yes", "no"]), default="auto",
              show_default=True, help="build TensorRT plans now (auto: when TensorRT and a GPU are present)")
@click.option("--max-batch", default=256, show_default=True, help="largest batch of the TensorRT profile")
def export(out_dir: Path, checkpoint: str | None, config_name: str, fp16: bool, gpt2_path: Path | None,
           tensorrt: str, max_batch: int) -> None:
    """Export the fusion LM, gated fusion and belief decoder to OUT with a manifest."""
    from agent.settings import Settings
    from models.configs import get_config
    from models.export import export_engines
    from models.manifest import EngineMismatch, check_compatible

    settings = Settings()
    cfg = get_config(config_name, grid_s=settings.map_grid_s, window_s=settings.map_window_s,
                     patch_s=settings.patch_s, wave_window_s=settings.wave_window_s,
                     wave_fs_hz=settings.model_fs_hz, horizons_min=tuple(settings.horizons_min))
    manifest = export_engines(out_dir, cfg, checkpoint=checkpoint, fp16=fp16, gpt2_path=gpt2_path)
    try:
        check_compatible(manifest, settings)
    except EngineMismatch as exc:   # a checkpoint carries its own geometry; the agent would refuse it
        click.echo(f"warning: the agent with the current settings will refuse this engine: {exc}", err=True)
    state = "trained" if manifest.trained else "untrained (random init)"
    click.echo(f"wrote {len(manifest.models)} models to {out_dir} [{manifest.version}, {state}, "
               f"config {manifest.config['name']}]")
    for name, entry in manifest.models.items():
        click.echo(f"  {name:15s} {entry.onnx}" + (f", {entry.onnx_fp16}" if entry.onnx_fp16 else ""))
    if tensorrt == "no":
        return
    from models.runtime import backend_available, load_engine
    if not backend_available("tensorrt"):
        if tensorrt == "yes":
            raise click.ClickException("TensorRT or a CUDA GPU is not available on this machine")
        click.echo("TensorRT not available here: plans will be built on the target GPU at first load")
        return
    for name in manifest.models:
        eng = load_engine(out_dir, backend="tensorrt", model=name, max_batch=max_batch)
        click.echo(f"  {name:15s} TensorRT plan {eng.impl.plan_path.name}")
