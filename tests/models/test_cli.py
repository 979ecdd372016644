"""``iohwatch export`` and ``iohwatch engine info|bench`` through click."""

from __future__ import annotations

import json

from click.testing import CliRunner

from agent.cli import main


def test_export_writes_engines(tmp_path):
    out = tmp_path / "eng"
    res = CliRunner().invoke(main, ["export", "--out", str(out), "--config", "tiny", "--no-fp16",
                                    "--tensorrt", "no"])
    assert res.exit_code == 0, res.output
    assert "untrained (random init)" in res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["trained"] is False and set(manifest["models"]) == {"fusion_lm", "gated_fusion", "belief_decoder"}
    assert all(m["onnx_fp16"] is None for m in manifest["models"].values())
    assert all((out / m["onnx"]).exists() for m in manifest["models"].values())


def test_export_follows_settings_geometry(tmp_path, monkeypatch):
    monkeypatch.setenv("IOHWATCH_MAP_WINDOW_S", "600")
    out = tmp_path / "eng"
    res = CliRunner().invoke(main, ["export", "--out", str(out), "--no-fp16", "--tensorrt", "no"])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "manifest.json").read_text())
    assert m["n_cells"] == 200 and m["models"]["fusion_lm"]["inputs"][0]["shape"] == ["batch", 200]


def test_engine_info(tiny_engine_dir):
    res = CliRunner().invoke(main, ["engine", "info", str(tiny_engine_dir)])
    assert res.exit_code == 0, res.output
    assert "untrained, random init" in res.output and "300 cells" in res.output
    assert "past_kv" in res.output and "'batch'" in res.output
    js = CliRunner().invoke(main, ["engine", "info", str(tiny_engine_dir), "--json"])
    assert json.loads(js.output)["forecaster"] == "gated_fusion"


def test_engine_bench(tiny_engine_dir, tmp_path):
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(main, ["engine", "bench", str(tiny_engine_dir), "--backends", "onnxruntime,torch",
                                    "--batch-sizes", "1,3", "--iters", "3", "--json", str(out)])
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())
    assert [(r["backend"], r["batch"]) for r in rows] == [("onnxruntime", 1), ("onnxruntime", 3),
                                                          ("torch", 1), ("torch", 3)]
    for r in rows:
        assert 0 < r["p50_ms"] <= r["p99_ms"] and r["beds_per_s"] > 0
    dec = CliRunner().invoke(main, ["engine", "bench", str(tiny_engine_dir), "--backends", "onnxruntime",
                                    "--model", "belief_decoder", "--batch-sizes", "1", "--iters", "3"])
    assert dec.exit_code == 0 and "belief_decoder" in dec.output
    bad = CliRunner().invoke(main, ["engine", "bench", str(tiny_engine_dir), "--batch-sizes", "0,x"])
    assert bad.exit_code != 0 and "batch sizes" in bad.output


def test_engine_build_needs_tensorrt(tiny_engine_dir):
    from models.runtime import backend_available
    res = CliRunner().invoke(main, ["engine", "build", str(tiny_engine_dir)])
    if backend_available("tensorrt"):
        assert res.exit_code == 0, res.output
        assert res.output.count(".plan") == 3
    else:
        assert res.exit_code != 0 and "TensorRT or a CUDA GPU is not available" in res.output
