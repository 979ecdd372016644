"""Importing the agent stays cheap: no TensorRT, CUDA, torch, ONNX Runtime or broker client until a
command needs one (DESIGN.md: backends and drivers are imported lazily)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("tensorrt", "torch", "onnxruntime", "aiokafka", "faust", "transformers")


def test_agent_modules_import_without_heavy_dependencies():
    code = ("import json, sys, agent, agent.cli, agent.settings, agent.app, agent.pipeline, models.runtime; "
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_cli_help_lists_every_command_without_importing_them():
    code = ("import json, sys; from click.testing import CliRunner; from agent.cli import main; "
            "r = CliRunner().invoke(main, ['--help']); "
            "print(json.dumps([r.exit_code, r.output, [m for m in sys.modules if m.startswith('agent.commands.')]]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    code_, text, loaded = json.loads(out.stdout)
    assert code_ == 0
    for name in ("demo", "simulate", "replay", "run", "score", "alerts", "bench", "ingest", "hl7", "export",
                 "engine", "cohort", "train", "evaluate"):
        assert f"  {name}" in text
    assert loaded == []
