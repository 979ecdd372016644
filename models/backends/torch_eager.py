"""Eager PyTorch backend: rebuilds the module from the checkpoint saved beside the ONNX."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np


def available() -> bool:
    return importlib.util.find_spec("torch") is not None


class TorchBackend:
    name = "torch"

    def __init__(self, directory: Path, manifest, model: str, precision: str = "fp32",
                 threads: int | None = None, device: str = "cpu", **_):
        import torch

        from models.configs import ModelConfig
        from models.zoo import build_model
        entry = manifest.models[model]
        ck = torch.load(Path(directory) / entry.checkpoint, map_location="cpu", weights_only=True)
        self.module = build_model(model, ModelConfig.from_dict(ck["config"]))
        self.module.load_state_dict(ck["state_dict"])
        self.module.eval().to(device)
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        if precision == "fp16":
            self.module.half()
        if threads:
            torch.set_num_threads(threads)
        self.device = device
        self._torch = torch

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        xs = []
        for name in self.module.input_names:
            t = torch.from_numpy(np.ascontiguousarray(inputs[name])).to(self.device)
            xs.append(t.to(self.dtype) if t.is_floating_point() else t)
        with torch.inference_mode():
            outs = self.module(*xs)
        return {n: o.float().cpu().numpy() for n, o in zip(self.module.output_names, outs)}
