"""Fusion LM and gated fusion: gaps and missing modalities are learned tokens, not values."""

from __future__ import annotations

import pytest
import torch

from models.configs import MODALITIES, get_config
from models.fusion_lm import FusionLM
from models.gated_fusion import GatedFusion, wave_tokens_len


@pytest.fixture(scope="module")
def gated():
    torch.manual_seed(0)
    return GatedFusion(get_config("tiny")).eval()


def _run(m, x):
    with torch.no_grad():
        return m(*[x[k] for k in m.input_names])


def test_gated_cells_and_samples_are_ignored(gated):
    cfg = gated.cfg
    x = GatedFusion.example_inputs(cfg, 2)
    y = {k: v.clone() for k, v in x.items()}
    y["map_mmhg"][x["map_valid"] < 0.5] = float("nan")      # whatever sits under a gate is never read
    y["wave_mmhg"][x["wave_valid"] < 0.5] = 1e4
    y["numerics"][x["numerics_mask"] < 0.5] = -7.0
    y["text_emb"][x["text_mask"] < 0.5] = 5.0
    for a, b in zip(_run(gated, x), _run(gated, y)):
        assert torch.isfinite(b).all()
        assert torch.allclose(a, b, atol=1e-6)


def test_gap_is_not_a_zero_value(gated):
    cfg = gated.cfg
    x = GatedFusion.example_inputs(cfg, 2)
    zero = {k: v.clone() for k, v in x.items()}
    zero["map_mmhg"][:, -20:] = cfg.map_mean_mmhg            # a value that normalises to exactly 0
    zero["map_valid"][:, -20:] = 1.0
    gap = {k: v.clone() for k, v in zero.items()}
    gap["map_valid"][:, -20:] = 0.0
    assert not torch.allclose(_run(gated, zero)[0], _run(gated, gap)[0], atol=1e-4)


def test_shapes_and_gates(gated):
    cfg = gated.cfg
    logits, traj, gates = _run(gated, GatedFusion.example_inputs(cfg, 5))
    assert logits.shape == (5, cfg.n_horizons) and traj.shape == (5, cfg.n_future)
    assert gates.shape == (5, len(MODALITIES)) and ((gates > 0) & (gates < 1)).all()
    assert wave_tokens_len(cfg.n_wave) == 47


def test_fusion_lm_checks_window_length():
    cfg = get_config("tiny")
    lm = FusionLM(cfg).eval()
    x = FusionLM.example_inputs(cfg, 1)
    x["map_mmhg"], x["map_valid"] = x["map_mmhg"][:, :250], x["map_valid"][:, :250]
    with pytest.raises(ValueError, match="250 cells, model expects 300"):
        _run(lm, x)
