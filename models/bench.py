"""Latency and throughput of an engine per backend and batch size (``iohwatch engine bench``)."""

from __future__ import annotations

import os
import platform
import time

import numpy as np

from models.configs import ModelConfig
from models.zoo import MODELS


def bench_inputs(model: str, cfg: ModelConfig, batch: int) -> dict[str, np.ndarray]:
    """Representative inputs: the model's example batch (decoder: one event on a half-full cache)."""
    cls = MODELS[model]
    if model == "belief_decoder":
        x = cls.example_inputs(cfg, batch, n_events=1, past_len=cfg.dec_max_tokens // 2)
    else:
        x = cls.example_inputs(cfg, batch)
    return {k: v.numpy() for k, v in x.items()}


def time_runs(run, inputs, iters: int, warmup: int = 3) -> np.ndarray:
    for _ in range(warmup):
        run(inputs)
    ms = np.empty(iters)
    for i in range(iters):
        t0 = time.perf_counter()
        run(inputs)
        ms[i] = (time.perf_counter() - t0) * 1e3
    return ms


def bench_engine(path, backends: list[str], batch_sizes: list[int], model: str | None = None,
                 precision: str | None = None, iters: int = 30, threads: int | None = None) -> list[dict]:
    from models.runtime import load_engine
    rows = []
    host = {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()}
    for backend in backends:
        opts = {"threads": threads} if threads else {}
        if backend == "tensorrt":
            opts = {"max_batch": max(batch_sizes)}
        try:
            eng = load_engine(path, backend=backend, model=model, precision=precision, **opts)
        except Exception as exc:
            rows.append({"backend": backend, "error": f"{type(exc).__name__}: {exc}"})
            continue
        cfg = eng.manifest.model_config_obj()
        for b in batch_sizes:
            ms = time_runs(eng.run, bench_inputs(eng.model, cfg, b), iters)
            p50 = float(np.percentile(ms, 50))
            rows.append({"backend": backend, "providers": eng.providers, "precision": eng.precision,
                         "model": eng.model, "batch": b, "iters": iters, "p50_ms": p50,
                         "p99_ms": float(np.percentile(ms, 99)), "beds_per_s": b / (p50 / 1e3), **host})
    return rows
