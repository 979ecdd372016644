"""Shared fixtures. Data shared with the project lives in ../shared/data beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    env = os.environ.get("IOHWATCH_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = _shared_data()
    if not (path / "real" / "3975656_0015.hea").exists():
        pytest.fail(f"shared data not found at {path}; set IOHWATCH_SHARED_DATA")
    return path


@pytest.fixture(scope="session")
def real_abp_record(shared_data: Path) -> Path:
    """WFDB header of the real MIMIC-II arterial-pressure record (125 Hz, 300 s)."""
    return shared_data / "real" / "3975656_0015.hea"
