"""TensorRT backend: build a serialized engine from the ONNX on the target GPU, cache it, run it.

Works with TensorRT 10 and 11:

- TensorRT 10 (weak typing): parse the FP32 ONNX and set ``BuilderFlag.FP16``;
- TensorRT 11 removed ``BuilderFlag.FP16`` and every network is strongly typed: parse the FP16
  ONNX written by the exporter (half weights, float32 I/O cast inside the graph) with the
  ``STRONGLY_TYPED`` creation flag (required opt-in on 10.12+, accepted and ignored on 11).

Both use ``build_serialized_network``, one optimisation profile over batch sizes 1..max_batch
(and the decoder's event count and cache length), and name-based execution
(``set_input_shape``/``set_tensor_address``/``execute_async_v3``); no bindings API.
Device buffers and the stream come from torch's CUDA allocator. The plan is cached under
``<engine dir>/trt_cache/`` keyed by model, precision, GPU name, TensorRT version and the ONNX
SHA-256, so a plan built for one GPU or TensorRT release is never loaded by another.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("iohwatch.models.tensorrt")


def available() -> bool:
    if importlib.util.find_spec("tensorrt") is None or importlib.util.find_spec("torch") is None:
        return False
    import torch
    return torch.cuda.is_available()


def uses_strong_typing(trt) -> bool:
    major = int(trt.__version__.split(".")[0])
    return major >= 11 or not hasattr(trt.BuilderFlag, "FP16")


def profile_dims(spec_shape: list, cfg, max_batch: int, which: str) -> tuple[int, ...]:
    """min/opt/max for one input: symbolic dims by name ('batch', 'events', 'past')."""
    pick = {"min": 0, "opt": 1, "max": 2}[which]
    ranges = {
        "batch": (1, min(8, max_batch), max_batch),
        "events": (1, 1, max(1, cfg.dec_max_tokens // 2)),
        "past": (0, cfg.dec_max_tokens // 2, max(0, cfg.dec_max_tokens - 2)),
    }
    out = []
    for d in spec_shape:
        if isinstance(d, str):
            if d not in ranges:
                raise ValueError(f"tensorrt: no profile range for symbolic dim {d!r}")
            out.append(ranges[d][pick])
        else:
            out.append(int(d))
    return tuple(out)


def build_plan(trt, onnx_path: Path, entry, cfg, precision: str, max_batch: int,
               workspace_bytes: int = 1 << 30) -> bytes:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strong = uses_strong_typing(trt)
    flags = 0
    if strong and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"tensorrt: parsing {onnx_path.name} failed: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if precision == "fp16" and not strong:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    specs = {s.name: s.shape for s in entry.inputs}
    for i in range(network.num_inputs):
        name = network.get_input(i).name
        profile.set_shape(name, *(profile_dims(specs[name], cfg, max_batch, w) for w in ("min", "opt", "max")))
    config.add_optimization_profile(profile)
    t0 = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"tensorrt: build_serialized_network returned no engine for {onnx_path.name}")
    log.info("tensorrt %s: built %s (%s, %s typing, batch 1..%d) in %.1f s", trt.__version__, onnx_path.name,
             precision, "strong" if strong else "weak", max_batch, time.perf_counter() - t0)
    return bytes(plan)


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, directory: Path, manifest, model: str, precision: str = "fp16",
                 max_batch: int = 256, **_):
        import tensorrt as trt
        import torch
        if not torch.cuda.is_available():
            raise RuntimeError("tensorrt: no CUDA device visible to torch")
        self.trt, self.torch = trt, torch
        directory = Path(directory)
        entry = manifest.models[model]
        cfg = manifest.model_config_obj()
        strong = uses_strong_typing(trt)
        onnx_name = entry.onnx_fp16 if (precision == "fp16" and strong) else entry.onnx
        if onnx_name is None:
            raise FileNotFoundError(f"tensorrt {trt.__version__} needs the FP16 ONNX of {model} (export with --fp16)")
        onnx_path = directory / onnx_name
        gpu = re.sub(r"[^A-Za-z0-9]+", "-", torch.cuda.get_device_name(0)).strip("-")
        from models.export import sha256_file
        key = f"{model}-{precision}-b{max_batch}-{gpu}-trt{trt.__version__}-{sha256_file(onnx_path)[:16]}"
        cache = directory / "trt_cache"
        cache.mkdir(exist_ok=True)
        plan_path = cache / f"{key}.plan"
        if plan_path.exists():
            plan = plan_path.read_bytes()
            log.info("tensorrt: using cached plan %s", plan_path.name)
        else:
            plan = build_plan(trt, onnx_path, entry, cfg, precision, max_batch)
            tmp = plan_path.with_suffix(".tmp")
            tmp.write_bytes(plan)
            tmp.replace(plan_path)
        self.plan_path = plan_path
        self._logger = trt.Logger(trt.Logger.WARNING)       # runtime and logger outlive the engine
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise RuntimeError(f"tensorrt: could not deserialize {plan_path}")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.stream = torch.cuda.Stream()
        self._dtypes = {n: self._torch_dtype(self.engine.get_tensor_dtype(n)) for n in names}
        self.providers = [f"TensorRT {trt.__version__}", torch.cuda.get_device_name(0)]
        self._scratch = torch.empty(16, dtype=torch.float32, device="cuda")

    def _torch_dtype(self, dt):
        trt, torch = self.trt, self.torch
        table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16,
                 trt.DataType.INT64: torch.int64, trt.DataType.INT32: torch.int32,
                 trt.DataType.BOOL: torch.bool}
        return table[dt]

    def _address(self, t) -> int:
        # zero-volume tensors (an empty KV cache) still need a valid device address
        return t.data_ptr() if t.numel() else self._scratch.data_ptr()

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        keep = []
        with torch.cuda.stream(self.stream):
            for name in self.inputs:
                t = torch.from_numpy(np.ascontiguousarray(inputs[name])).to("cuda", self._dtypes[name])
                keep.append(t)
                self.context.set_input_shape(name, tuple(t.shape))
                self.context.set_tensor_address(name, self._address(t))
            outs = {}
            for name in self.outputs:
                shape = tuple(self.context.get_tensor_shape(name))
                outs[name] = torch.empty(shape, dtype=self._dtypes[name], device="cuda")
                self.context.set_tensor_address(name, self._address(outs[name]))
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("tensorrt: execute_async_v3 failed")
        self.stream.synchronize()
        return {n: (o.float() if o.is_floating_point() else o).cpu().numpy() for n, o in outs.items()}
