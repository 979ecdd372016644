"""Engines: one exported model run by a backend chosen by name.

``load_engine(path, backend="auto")`` reads ``manifest.json`` in ``path`` and returns an
``Engine`` whose ``run(inputs: dict[str, ndarray]) -> dict[str, ndarray]`` is the same for
every backend. Backends live in ``models/backends/`` and are imported only when chosen, so
importing this module never imports TensorRT, CUDA or onnxruntime.

    backend       precision (default)   runs
    tensorrt      fp16                  serialized TensorRT plan built on this GPU (cached)
    onnxruntime   fp32                  ONNX with TensorRT, CUDA or CPU execution providers
    torch         fp32                  eager PyTorch from the checkpoint beside the ONNX

``auto`` takes the first available of tensorrt, onnxruntime, torch.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.manifest import Manifest, TensorSpec, load_manifest

log = logging.getLogger("iohwatch.models.runtime")

# name -> (module, class, default precision)
BACKENDS: dict[str, tuple[str, str, str]] = {
    "tensorrt": ("models.backends.tensorrt", "TensorRTBackend", "fp16"),
    "onnxruntime": ("models.backends.ort", "OrtBackend", "fp32"),
    "torch": ("models.backends.torch_eager", "TorchBackend", "fp32"),
}
AUTO_ORDER = ("tensorrt", "onnxruntime", "torch")
_NP_DTYPES = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "bool": np.bool_}


def backend_available(name: str) -> bool:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)} or 'auto'")
    try:
        return bool(importlib.import_module(BACKENDS[name][0]).available())
    except Exception as exc:  # a broken optional install counts as absent, with the reason logged
        log.warning("backend %s unavailable: %s", name, exc)
        return False


def available_backends() -> list[str]:
    return [b for b in AUTO_ORDER if backend_available(b)]


@dataclass
class Engine:
    directory: Path
    manifest: Manifest
    model: str
    backend: str
    precision: str
    impl: Any

    @property
    def inputs(self) -> list[TensorSpec]:
        return self.manifest.models[self.model].inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self.manifest.models[self.model].outputs

    @property
    def providers(self) -> list[str]:
        return list(getattr(self.impl, "providers", [self.backend]))

    def check_inputs(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Names, dtypes and fixed dims against the manifest; errors name the tensor and both shapes."""
        out = {}
        for spec in self.inputs:
            if spec.name not in inputs:
                raise KeyError(f"engine {self.model}: missing input {spec.name!r} (needs {[s.name for s in self.inputs]})")
            arr = np.asarray(inputs[spec.name], dtype=_NP_DTYPES[spec.dtype])
            if arr.ndim != len(spec.shape) or any(
                    isinstance(d, int) and d != n for d, n in zip(spec.shape, arr.shape)):
                raise ValueError(f"engine {self.model}: input {spec.name} has shape {arr.shape}, expected {spec.shape}")
            out[spec.name] = arr
        return out

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.impl.run(self.check_inputs(inputs))


def load_engine(path: str | Path, backend: str = "auto", model: str | None = None,
                precision: str | None = None, **options) -> Engine:
    """Load ``model`` (default: the manifest's forecaster) from engine directory ``path``."""
    path = Path(path)
    manifest = load_manifest(path)
    model = model or manifest.forecaster
    if model not in manifest.models:
        raise KeyError(f"engine {path} has no model {model!r} (has {sorted(manifest.models)})")
    if backend == "auto":
        names = available_backends()
        if not names:
            raise RuntimeError("no inference backend available (install onnxruntime or torch)")
    else:
        if not backend_available(backend):
            raise RuntimeError(f"backend {backend!r} is not available on this machine")
        names = [backend]
    errors = []
    for name in names:
        module, cls, default_precision = BACKENDS[name]
        prec = precision or default_precision
        try:
            impl = getattr(importlib.import_module(module), cls)(path, manifest, model, precision=prec, **options)
        except Exception as exc:
            if backend != "auto":
                raise
            errors.append(f"{name}: {exc}")
            log.warning("backend %s failed to load %s, trying the next: %s", name, model, exc)
            continue
        return Engine(directory=path, manifest=manifest, model=model, backend=name, precision=prec, impl=impl)
    raise RuntimeError(f"no backend could load {model} from {path}: " + "; ".join(errors))
