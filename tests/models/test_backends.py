"""One contract suite over every backend present (torch, onnxruntime; tensorrt on a GPU).

Each backend runs the same engine directory through ``Engine.run`` and must give: the
manifest's output names, float32 outputs with the right shapes at batch 1 and 7, and values
within 1e-4 (logits, gates, KV) / 1e-3 mmHg (trajectory) of the eager FP32 module at its
default precision, or 3e-2 / 0.5 mmHg when that default is FP16 (TensorRT).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.manifest import load_manifest
from models.runtime import BACKENDS, backend_available, load_engine
from models.zoo import MODELS, build_model

BACKEND_PARAMS = [
    pytest.param("torch"),
    pytest.param("onnxruntime"),
    pytest.param("tensorrt", marks=[pytest.mark.gpu, pytest.mark.skipif(
        not backend_available("tensorrt"), reason="TensorRT and a CUDA GPU are not present")]),
]


def _tol(name: str, precision: str) -> float:
    traj = name == "map_trajectory_mmhg"
    if precision == "fp16":
        return 0.5 if traj else 3e-2
    return 1e-3 if traj else 1e-4


@pytest.fixture(scope="module")
def reference_models(tiny_engine_dir):
    cfg = load_manifest(tiny_engine_dir).model_config_obj()
    out = {}
    for name in MODELS:
        m = build_model(name, cfg)
        m.load_state_dict(torch.load(tiny_engine_dir / f"{name}.pt", weights_only=True)["state_dict"])
        out[name] = m.eval()
    return out


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("model_name", list(MODELS))
def test_backend_contract(backend, model_name, tiny_engine_dir, tiny_cfg, reference_models):
    if not backend_available(backend):
        pytest.skip(f"{backend} not available")
    eng = load_engine(tiny_engine_dir, backend=backend, model=model_name)
    assert eng.backend == backend and eng.precision == BACKENDS[backend][2]
    assert eng.manifest.models[model_name].onnx
    ref = reference_models[model_name]
    for batch in (1, 7):
        x = {k: v.numpy() for k, v in MODELS[model_name].example_inputs(tiny_cfg, batch, seed=10 + batch).items()}
        with torch.no_grad():
            want = dict(zip(ref.output_names, (o.numpy() for o in ref(*[torch.from_numpy(x[n]) for n in ref.input_names]))))
        got = eng.run(x)
        assert list(got) == [s.name for s in eng.outputs]
        for spec in eng.outputs:
            arr = got[spec.name]
            assert arr.dtype == np.float32
            assert arr.shape == want[spec.name].shape
            for d, n in zip(spec.shape, arr.shape):
                assert d == n or isinstance(d, str)
            err = float(np.abs(arr - want[spec.name]).max())
            assert err <= _tol(spec.name, eng.precision), f"{backend} {spec.name} batch {batch}: {err}"


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_backend_rejects_bad_input(backend, tiny_engine_dir, tiny_cfg):
    if not backend_available(backend):
        pytest.skip(f"{backend} not available")
    eng = load_engine(tiny_engine_dir, backend=backend, model="fusion_lm")
    x = {k: v.numpy() for k, v in MODELS["fusion_lm"].example_inputs(tiny_cfg, 2).items()}
    with pytest.raises(ValueError, match="map_mmhg has shape"):
        eng.run({**x, "map_mmhg": x["map_mmhg"][:, :290]})
    with pytest.raises(KeyError, match="text_mask"):
        eng.run({k: v for k, v in x.items() if k != "text_mask"})


def test_auto_prefers_tensorrt_then_onnxruntime(tiny_engine_dir):
    eng = load_engine(tiny_engine_dir, backend="auto")
    expected = "tensorrt" if backend_available("tensorrt") else "onnxruntime"
    assert eng.backend == expected
    if expected == "onnxruntime":
        assert eng.providers[-1] == "CPUExecutionProvider"


def test_unknown_backend_is_named(tiny_engine_dir):
    with pytest.raises(ValueError, match="unknown backend 'tvm'"):
        load_engine(tiny_engine_dir, backend="tvm")


def test_importing_runtime_does_not_import_backends():
    import subprocess
    import sys
    code = ("import sys, models.runtime, models.forecaster, agent.beliefs; "
            "bad=[m for m in ('tensorrt','onnxruntime','torch') if m in sys.modules]; print(bad); "
            "sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_decoder_steps_from_an_empty_cache(backend, tiny_engine_dir, tiny_cfg, reference_models):
    """One event against an empty cache (zero-length past) and then against the returned cache."""
    if not backend_available(backend):
        pytest.skip(f"{backend} not available")
    eng = load_engine(tiny_engine_dir, backend=backend, model="belief_decoder")
    x = {k: v.numpy() for k, v in MODELS["belief_decoder"].example_inputs(tiny_cfg, 1, n_events=2, past_len=0).items()}
    first = eng.run({**{k: v[:, :1] for k, v in x.items() if k != "past_kv"}, "past_kv": x["past_kv"]})
    second = eng.run({**{k: v[:, 1:] for k, v in x.items() if k != "past_kv"}, "past_kv": first["present_kv"]})
    ref = reference_models["belief_decoder"]
    with torch.no_grad():
        full = ref(*[torch.from_numpy(x[n]) for n in ref.input_names])[0].numpy()        # (1, 2, H)
    tol = _tol("belief_logits", eng.precision)
    assert first["present_kv"].shape[4] == 2 and second["present_kv"].shape[4] == 4
    assert float(abs(first["belief_logits"][0, 0] - full[0, 0]).max()) <= tol
    assert float(abs(second["belief_logits"][0, 0] - full[0, 1]).max()) <= tol
