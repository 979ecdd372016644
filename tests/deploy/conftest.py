"""Rendered overlays, shared by the deploy tests (kubectl kustomize runs once per overlay)."""

from __future__ import annotations

import pytest

from tests.deploy.rendering import DEPLOY, OVERLAYS, render


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    return {name: render(DEPLOY / "k8s" / "overlays" / name) for name in OVERLAYS}
