"""EngineForecaster over a tiny engine, manifest checks and the baseline fallbacks."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from agent.forecasting import BaselineForecaster, ForecastInput
from agent.settings import Settings
from models import forecaster as fc
from models.manifest import EngineMismatch, check_compatible, load_manifest
from models.runtime import load_engine
from streams.contracts import PatientContext


def _input(i: int, n_cells=300, n_wave=3000, with_wave=True, context=None) -> ForecastInput:
    rng = np.random.default_rng(i)
    map_mmhg = (78 - 0.03 * i * np.arange(n_cells) / 10 + rng.normal(0, 2, n_cells)).astype(np.float32)
    valid = np.ones(n_cells, bool)
    map_mmhg[100:140] = np.nan            # gated stretch
    valid[100:140] = False
    t = np.arange(n_wave) / 100.0
    wave = (map_mmhg[-1] + 20 * np.sin(2 * np.pi * 1.1 * t)).astype(np.float32)
    if not with_wave:
        wave[:] = np.nan
    return ForecastInput(bed_id=f"OR-{i}", t_ns=10**18, map_mmhg=map_mmhg, sbp_mmhg=map_mmhg + 30,
                         dbp_mmhg=map_mmhg - 15, hr_bpm=np.full(n_cells, 70, np.float32), valid=valid,
                         wave_mmhg=wave, grid_s=3.0, numerics={"HR": 72.0, "SpO2": 98.0}, context=context)


@pytest.fixture(scope="module")
def forecaster(tiny_engine_dir, text_encoder):
    eng = load_engine(tiny_engine_dir, "onnxruntime")
    return fc.EngineForecaster(eng, text_encoder, Settings())


def test_predict_batch_shapes_and_drivers(forecaster):
    ctx = PatientContext(bed_id="OR-0", t_ns=0, episode_id="e1", age=71, sex="F", asa=3, emop=0,
                         optype="Colorectal", department="General surgery", approach="Open", preop_htn=1)
    batch = [_input(i, with_wave=(i % 3 != 0), context=ctx if i % 2 else None) for i in range(7)]
    out = forecaster.predict(batch)
    assert len(out) == 7
    for o in out:
        assert set(o.risk) == {5, 10, 15}
        assert all(0.0 < r < 1.0 for r in o.risk.values())
        assert o.map_trajectory_mmhg.shape == (300,) and np.isfinite(o.map_trajectory_mmhg).all()
        assert {"trend", "morphology", "numerics", "context"} <= set(o.drivers)
        assert all(0.0 <= o.drivers[m] <= 1.0 for m in ("trend", "morphology", "numerics", "context"))
        assert math.isfinite(o.drivers["map_level_mmhg"]) and math.isfinite(o.drivers["map_trend_mmhg_per_min"])
    assert forecaster.backend == "onnxruntime" and forecaster.fallback_reason is None
    assert forecaster.last_inference_ms > 0
    # one batch equals one bed at a time (no leakage across the batch)
    single = [forecaster.predict([x])[0] for x in batch[:3]]
    for a, b in zip(single, out[:3]):
        assert max(abs(a.risk[h] - b.risk[h]) for h in (5, 10, 15)) < 1e-5


def test_prepare_context_fills_the_cache(forecaster):
    ctx = PatientContext(bed_id="OR-5", t_ns=0, episode_id="e5", age=55, sex="F", asa=2, emop=0)
    misses = forecaster.text_encoder.misses
    forecaster.prepare_context(ctx)
    assert forecaster.text_encoder.misses == misses + 1
    hits = forecaster.text_encoder.hits
    forecaster.predict([_input(5, context=ctx)])
    assert forecaster.text_encoder.hits == hits + 1 and forecaster.text_encoder.misses == misses + 1


def test_context_and_waveform_change_the_forecast(forecaster):
    ctx = PatientContext(bed_id="OR-1", t_ns=0, episode_id="e", age=80, sex="M", asa=4, emop=1)
    a, b, c = forecaster.predict([_input(1), _input(1, context=ctx), _input(1, with_wave=False)])
    assert a.risk != b.risk and a.risk != c.risk


def test_inputs_reject_wrong_window(forecaster):
    with pytest.raises(ValueError, match="MAP window has 290 cells.*expects 300"):
        forecaster.predict([_input(0, n_cells=290)])
    with pytest.raises(ValueError, match="waveform has 2500 samples"):
        forecaster.predict([_input(0, n_wave=2500)])


def test_inputs_mask_gaps_not_zero(forecaster):
    arr = forecaster.inputs([_input(0)])
    assert arr["map_valid"][0, 100:140].sum() == 0 and arr["map_valid"][0, :100].all()
    assert np.isfinite(arr["map_mmhg"]).all()
    assert arr["numerics_mask"][0].tolist()[:2] == [1.0, 1.0] and arr["numerics_mask"][0, 2:].sum() == 0


def test_calibration_from_manifest_is_applied(tmp_path, tiny_engine_dir, text_encoder):
    d = tmp_path / "eng"
    shutil.copytree(tiny_engine_dir, d)
    raw = json.loads((d / "manifest.json").read_text())
    raw["models"]["gated_fusion"]["calibration"] = {"platt_a": [0.0, 0.0, 0.0], "platt_b": [2.0, 0.0, -2.0],
                                                    "fitted": True}
    (d / "manifest.json").write_text(json.dumps(raw))
    f = fc.EngineForecaster(load_engine(d, "onnxruntime"), text_encoder, Settings())
    r = f.predict([_input(2)])[0].risk
    assert r[5] == pytest.approx(1 / (1 + math.exp(-2)), abs=1e-6)
    assert r[10] == pytest.approx(0.5, abs=1e-6)
    assert r[15] == pytest.approx(1 / (1 + math.exp(2)), abs=1e-6)


def test_check_compatible_names_each_field(tiny_engine_dir):
    m = load_manifest(tiny_engine_dir)
    check_compatible(m, Settings())
    bad = Settings(map_grid_s=2.0, map_window_s=600.0, patch_s=30.0, model_fs_hz=125.0, horizons_min=(5, 10))
    with pytest.raises(EngineMismatch) as exc:
        check_compatible(m, bad)
    assert exc.value.fields == ["map_grid_s", "map_window_s", "model_fs_hz", "horizons_min"]
    msg = str(exc.value)
    for part in ("map_grid_s: engine 3 s, settings 2 s", "map_window_s: engine 900 s, settings 600 s",
                 "model_fs_hz: engine 100 Hz, settings 125 Hz", "horizons_min: engine [5, 10, 15] min"):
        assert part in msg
    assert "patch_s" not in exc.value.fields
    with pytest.raises(EngineMismatch, match="wave_window_s: engine 30 s, settings 10 s"):
        check_compatible(m, Settings(wave_window_s=10.0))


def test_load_forecaster_uses_engine(tiny_engine_dir, text_encoder):
    f = fc.load_forecaster(Settings(engine_path=tiny_engine_dir, engine_backend="onnxruntime"), text_encoder)
    assert isinstance(f, fc.EngineForecaster)
    assert f.fallback_reason is None and f.backend == "onnxruntime" and f.version == "untrained-tiny"


def test_load_forecaster_falls_back_on_mismatch(tiny_engine_dir, caplog):
    s = Settings(engine_path=tiny_engine_dir, map_grid_s=2.0, map_window_s=600.0)
    f = fc.load_forecaster(s)
    assert isinstance(f, BaselineForecaster)
    assert "map_grid_s: engine 3 s, settings 2 s" in f.fallback_reason
    assert "baseline" in caplog.text


def test_load_forecaster_falls_back_when_missing(tmp_path):
    f = fc.load_forecaster(Settings(engine_path=tmp_path / "nope"))
    assert isinstance(f, BaselineForecaster) and "no manifest.json" in f.fallback_reason
    f = fc.load_forecaster(Settings(engine_path="none"))
    assert isinstance(f, BaselineForecaster) and "IOHWATCH_ENGINE_PATH=none" in f.fallback_reason


def test_load_forecaster_default_dir_absent(tmp_path, monkeypatch):
    monkeypatch.setattr(fc, "DEFAULT_ENGINE_DIR", tmp_path / "default")
    f = fc.load_forecaster(Settings())
    assert isinstance(f, BaselineForecaster) and "shipped default engine not found" in f.fallback_reason
    monkeypatch.setenv("IOHWATCH_ENGINE_PATH", "")
    assert fc.resolve_engine_dir(Settings()) == tmp_path / "default"


def test_load_forecaster_falls_back_on_broken_engine(tmp_path, tiny_engine_dir):
    d = tmp_path / "eng"
    shutil.copytree(tiny_engine_dir, d)
    (d / "gated_fusion.onnx").write_bytes(b"not an onnx file")
    f = fc.load_forecaster(Settings(engine_path=d, engine_backend="onnxruntime"))
    assert isinstance(f, BaselineForecaster) and "failed to load" in f.fallback_reason
