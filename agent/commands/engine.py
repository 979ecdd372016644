"""``iohwatch engine``: print an engine's manifest, benchmark it on every backend present."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.group("engine")
def engine() -> None:
    """Inspect and benchmark engines."""


@engine.command("info")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print the manifest as JSON")
def info(path: Path, as_json: bool) -> None:
    """Print the manifest of the engine directory PATH."""
    from models.manifest import load_manifest
    m = load_manifest(path)
    if as_json:
        click.echo(m.model_dump_json(indent=2))
        return
    click.echo(f"{m.name} {m.version}  ({'trained' if m.trained else 'untrained, random init'}; "
               f"config {m.config.get('name')}; created {m.created_utc}; git {m.git_sha[:12]})")
    click.echo(f"  forecaster {m.forecaster}, belief {m.belief}")
    click.echo(f"  MAP grid {m.grid_s:g} s, window {m.window_s:g} s ({m.n_cells} cells), patch {m.patch_s:g} s "
               f"({m.cells_per_patch} cells), trajectory {m.horizon_s:g} s ({m.n_future} cells)")
    click.echo(f"  waveform {m.wave_window_s:g} s at {m.wave_fs_hz:g} Hz ({m.n_wave} samples); "
               f"horizons {m.horizons_min} min")
    n = m.normalisation
    click.echo(f"  MAP normaliser mean {n['map_mean_mmhg']:g} mmHg, std {n['map_std_mmhg']:g} mmHg; "
               f"numerics {', '.join(m.numeric_labels)}")
    click.echo(f"  text {m.text['encoder']} ({m.text['tokens']} tokens x {m.text['dim']}), "
               f"template v{m.text['template_version']}; training data {m.training_data_hash or 'none'}")
    for name, e in m.models.items():
        cal = e.calibration
        click.echo(f"  [{name}] {e.onnx}" + (f" + {e.onnx_fp16}" if e.onnx_fp16 else "") +
                   f", opset {e.opset}" + (f", calibration {'fitted' if cal.fitted else 'identity'}" if cal else ""))
        for kind, specs in (("in ", e.inputs), ("out", e.outputs)):
            for s in specs:
                click.echo(f"      {kind} {s.name:20s} {s.dtype:8s} {s.shape}")
    click.echo("  libraries " + ", ".join(f"{k} {v}" for k, v in m.libraries.items()))


@engine.command("build")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--max-batch", default=256, show_default=True, help="largest batch of the optimisation profile")
@click.option("--precision", type=click.Choice(["fp16", "fp32"]), default="fp16", show_default=True)
def build(path: Path, max_batch: int, precision: str) -> None:
    """Build TensorRT plans for every model in PATH on this GPU (kept in PATH/trt_cache)."""
    import logging

    from models.manifest import load_manifest
    from models.runtime import backend_available, load_engine
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if not backend_available("tensorrt"):
        raise click.ClickException("TensorRT or a CUDA GPU is not available on this machine; "
                                   "ONNX Runtime loads the ONNX engine as it is")
    for name in load_manifest(path).models:
        eng = load_engine(path, backend="tensorrt", model=name, precision=precision, max_batch=max_batch)
        click.echo(f"{name:15s} {eng.impl.plan_path}")


def _parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"batch sizes must be integers separated by commas, got {text!r}")
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"batch sizes must be >= 1, got {text!r}")
    return sizes


@engine.command("bench")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--backends", default="", help="comma-separated backends (default: every one present)")
@click.option("--batch-sizes", default="1,2,4,8,16,32,64,128,256", show_default=True)
@click.option("--model", default=None, help="model in the engine (default: the manifest's forecaster)")
@click.option("--precision", type=click.Choice(["default", "fp32", "fp16"]), default="default",
              show_default=True, help="default: fp16 on TensorRT, fp32 elsewhere")
@click.option("--iters", default=30, show_default=True, help="timed runs per batch size (after 3 warm-up)")
@click.option("--threads", default=None, type=int, help="CPU threads for onnxruntime/torch")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="also write the results as JSON here")
def bench(path: Path, backends: str, batch_sizes: str, model: str | None, precision: str, iters: int,
          threads: int | None, json_out: Path | None) -> None:
    """Latency p50/p99 per batch size and throughput (beds/s) for each backend present."""
    from models.bench import bench_engine
    from models.runtime import available_backends
    names = [b.strip() for b in backends.split(",") if b.strip()] or available_backends()
    rows = bench_engine(path, names, _parse_sizes(batch_sizes), model=model,
                        precision=None if precision == "default" else precision, iters=iters, threads=threads)
    from rich.console import Console
    from rich.table import Table
    table = Table(title=f"engine bench: {path}")
    for col in ("backend", "precision", "model", "batch", "p50 ms", "p99 ms", "beds/s", "ms/bed"):
        table.add_column(col, justify="right" if col not in ("backend", "precision", "model") else "left")
    for r in rows:
        if "error" in r:
            table.add_row(r["backend"], r.get("precision", ""), r.get("model", ""), "-", "-", "-", "-", r["error"][:60])
            continue
        table.add_row(r["backend"], r["precision"], r["model"], str(r["batch"]), f"{r['p50_ms']:.2f}",
                      f"{r['p99_ms']:.2f}", f"{r['beds_per_s']:.0f}", f"{r['p50_ms'] / r['batch']:.3f}")
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)
    console.print(table)
    if json_out:
        json_out.write_text(json.dumps(rows, indent=2) + "\n")
