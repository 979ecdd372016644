"""Fixtures for the model tests: one tiny engine exported per session, the real MiniLM encoder."""

from __future__ import annotations

import pytest

from models.configs import get_config


@pytest.fixture(scope="session")
def tiny_cfg():
    return get_config("tiny")


@pytest.fixture(scope="session")
def tiny_engine_dir(tmp_path_factory, tiny_cfg):
    """ONNX FP32 + FP16, torch checkpoints and manifest of all three tiny models (random init, seed 0)."""
    from models.export import export_engines
    out = tmp_path_factory.mktemp("engine")
    export_engines(out, tiny_cfg, fp16=True, seed=0)
    return out


@pytest.fixture(scope="session")
def text_encoder():
    """The packaged MiniLM (loaded once per session, offline)."""
    from models.text import TextEncoder
    return TextEncoder(text_tokens=64)
