"""The engine manifest: what an exported engine directory holds and what it was built for.

``manifest.json`` sits beside the ONNX files. The loader checks it against the agent's
``Settings`` (``check_compatible``) and refuses an engine built for another grid, window,
patch, waveform window, rate or set of horizons, naming every mismatched field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from models.configs import ModelConfig

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


class EngineMismatch(RuntimeError):
    """The engine was built for a different signal geometry than the agent's settings."""

    def __init__(self, message: str, fields: list[str]):
        super().__init__(message)
        self.fields = fields


class TensorSpec(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    dtype: Literal["float32", "float16", "int64", "bool"]
    shape: list[int | str]          # symbolic dims by name ("batch", "past", ...)


class Calibration(BaseModel):
    """Platt scaling per horizon: p = sigmoid(a * logit + b); identity when never fitted."""

    platt_a: list[float]
    platt_b: list[float]
    fitted: bool = False


class ModelEntry(BaseModel):
    onnx: str
    onnx_fp16: str | None = None
    checkpoint: str                 # torch state dict for the eager backend
    opset: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    onnx_sha256: str
    calibration: Calibration | None = None


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    name: str = "iohwatch"
    version: str
    trained: bool
    config: dict                    # ModelConfig.to_dict(): rebuilds the torch modules
    forecaster: str = "gated_fusion"
    belief: str | None = "belief_decoder"
    models: dict[str, ModelEntry]
    # signal geometry (checked against Settings)
    grid_s: float
    window_s: float
    patch_s: float
    n_cells: int
    cells_per_patch: int
    horizon_s: float
    n_future: int
    wave_window_s: float
    wave_fs_hz: float
    n_wave: int
    horizons_min: list[int]
    normalisation: dict
    numeric_labels: list[str]
    modalities: list[str]
    event_kinds: list[str]
    event_names: list[str]
    event_features: list[str]
    text: dict
    training_data_hash: str | None = None
    git_sha: str = "unknown"
    libraries: dict[str, str] = Field(default_factory=dict)
    created_utc: str

    def model_config_obj(self) -> ModelConfig:
        return ModelConfig.from_dict(self.config)

    def write(self, directory: Path) -> Path:
        path = Path(directory) / MANIFEST_NAME
        path.write_text(self.model_dump_json(indent=2) + "\n")
        return path


def load_manifest(directory: str | Path) -> Manifest:
    path = Path(directory) / MANIFEST_NAME
    if not path.exists():
        raise FileNotFoundError(f"no {MANIFEST_NAME} in engine directory {directory}")
    return Manifest.model_validate(json.loads(path.read_text()))


def _close(a: float, b: float) -> bool:
    return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(a)), abs(float(b)))


def check_compatible(manifest: Manifest, settings) -> None:
    """Raise ``EngineMismatch`` naming every field where engine and settings disagree."""
    pairs = [
        ("map_grid_s", manifest.grid_s, settings.map_grid_s, "s"),
        ("map_window_s", manifest.window_s, settings.map_window_s, "s"),
        ("patch_s", manifest.patch_s, settings.patch_s, "s"),
        ("wave_window_s", manifest.wave_window_s, settings.wave_window_s, "s"),
        ("model_fs_hz", manifest.wave_fs_hz, settings.model_fs_hz, "Hz"),
    ]
    bad = [f"{name}: engine {eng:g} {unit}, settings {cur:g} {unit} (IOHWATCH_{name.upper()})"
           for name, eng, cur, unit in pairs if not _close(eng, cur)]
    fields = [name for name, eng, cur, _ in pairs if not _close(eng, cur)]
    if tuple(manifest.horizons_min) != tuple(settings.horizons_min):
        bad.append(f"horizons_min: engine {list(manifest.horizons_min)} min, settings "
                   f"{list(settings.horizons_min)} min (IOHWATCH_HORIZONS_MIN)")
        fields.append("horizons_min")
    if bad:
        raise EngineMismatch(
            f"engine {manifest.name} {manifest.version} was built for other settings; "
            + "; ".join(bad), fields)
