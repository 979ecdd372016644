"""Rendering the kustomize overlays and picking objects out of them (helpers for tests/deploy)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
OVERLAYS = ("edge", "cluster")


def render(path: Path) -> list[dict]:
    """Objects of ``kubectl kustomize path``."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not on PATH; the deploy tests render the overlays with `kubectl kustomize`")
    proc = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"kubectl kustomize {path} failed:\n{proc.stderr}"
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def of_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict], kind: str, name: str) -> dict:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_specs(objs: list[dict]) -> list[tuple[dict, dict]]:
    """(workload, pod spec) for every Deployment, StatefulSet, DaemonSet and Job."""
    out = []
    for o in objs:
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            out.append((o, o["spec"]["template"]["spec"]))
    return out


def settings_env(objs: list[dict]) -> dict[str, str]:
    cms = [o for o in of_kind(objs, "ConfigMap") if o["metadata"]["name"].startswith("iohwatch-settings")]
    assert len(cms) == 1, [c["metadata"]["name"] for c in cms]
    return cms[0]["data"]
