"""The settings table in deploy/README.md is exactly agent.settings.env_table()."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from agent.settings import env_table
from tests.deploy.rendering import DEPLOY


def _gen_docs():
    spec = importlib.util.spec_from_file_location("gen_docs", DEPLOY / "gen_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_table_matches_env_table():
    rows = _gen_docs().parse_table((DEPLOY / "README.md").read_text())
    assert rows == env_table(), "deploy/README.md settings table is stale; run python deploy/gen_docs.py"


def test_check_mode_passes_on_committed_readme():
    proc = subprocess.run([sys.executable, str(DEPLOY / "gen_docs.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_table_round_trips_pipes_and_empty_defaults():
    gen = _gen_docs()
    rows = [("IOHWATCH_X", "", "a | b"), ("IOHWATCH_Y", "[5,10,15]", "list")]
    text = f"intro\n{gen.START}\n{gen.render_table(rows)}\n{gen.END}\nrest"
    assert gen.parse_table(text) == rows
