"""TensorRT build choices that can be checked without a GPU (the build itself runs in the
``gpu``-marked contract tests of ``test_backends.py``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from models.backends.tensorrt import profile_dims, uses_strong_typing
from models.configs import get_config


def _fake_trt(version: str, has_fp16: bool):
    flags = SimpleNamespace(FP16=1) if has_fp16 else SimpleNamespace()
    return SimpleNamespace(__version__=version, BuilderFlag=flags)


def test_typing_mode_per_tensorrt_release():
    assert uses_strong_typing(_fake_trt("10.3.0", has_fp16=True)) is False      # FP16 builder flag
    assert uses_strong_typing(_fake_trt("10.14.1", has_fp16=False)) is True    # flag gone: strong typing
    assert uses_strong_typing(_fake_trt("11.0.0", has_fp16=False)) is True     # always strongly typed


def test_profile_covers_batch_events_and_cache():
    cfg = get_config("tiny")
    fusion = ["batch", 300]
    assert [profile_dims(fusion, cfg, 256, w) for w in ("min", "opt", "max")] == [(1, 300), (8, 300), (256, 300)]
    past = [2, 2, "batch", 2, "past", 32]
    lo, opt, hi = (profile_dims(past, cfg, 1, w) for w in ("min", "opt", "max"))
    assert lo == (2, 2, 1, 2, 0, 32)                      # empty cache allowed
    assert hi[4] == cfg.dec_max_tokens - 2 and opt[4] == cfg.dec_max_tokens // 2
    assert profile_dims(["batch", "events", 10], cfg, 4, "max") == (4, cfg.dec_max_tokens // 2, 10)
    with pytest.raises(ValueError, match="no profile range for symbolic dim 'time'"):
        profile_dims(["time"], cfg, 4, "min")
