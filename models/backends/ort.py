"""ONNX Runtime backend: TensorRT, CUDA, then CPU execution providers, whichever are present."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


class OrtBackend:
    name = "onnxruntime"

    def __init__(self, directory: Path, manifest, model: str, precision: str = "fp32",
                 threads: int | None = None, providers: list[str] | None = None, **_):
        import onnxruntime as ort
        entry = manifest.models[model]
        if precision == "fp16" and not entry.onnx_fp16:
            raise FileNotFoundError(f"onnxruntime: engine has no FP16 ONNX for {model}")
        path = Path(directory) / (entry.onnx_fp16 if precision == "fp16" else entry.onnx)
        have = ort.get_available_providers()
        chosen = [p for p in (providers or PREFERRED_PROVIDERS) if p in have]
        if not chosen:
            raise RuntimeError(f"onnxruntime: none of {providers or PREFERRED_PROVIDERS} available (have {have})")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        provider_options = []
        for p in chosen:
            if p == "TensorrtExecutionProvider":
                cache = Path(directory) / "trt_cache"
                cache.mkdir(exist_ok=True)
                provider_options.append({"trt_fp16_enable": precision == "fp16", "trt_engine_cache_enable": True,
                                         "trt_engine_cache_path": str(cache)})
            else:
                provider_options.append({})
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=chosen,
                                            provider_options=provider_options)
        self.providers = self.session.get_providers()
        self._inputs = [(i.name, i.type) for i in self.session.get_inputs()]
        self._outputs = [o.name for o in self.session.get_outputs()]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {}
        for name, typ in self._inputs:
            dtype = np.int64 if typ == "tensor(int64)" else np.float32
            feed[name] = np.ascontiguousarray(inputs[name], dtype=dtype)
        return dict(zip(self._outputs, self.session.run(self._outputs, feed)))
