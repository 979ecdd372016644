"""Building blocks of the two training stages (fast; no training loop)."""

import numpy as np
import pytest
import torch

from training.finetune import DECODER_LORA_TARGETS, FUSION_LORA_TARGETS, add_lora, fit_platt, masked_bce
from training.pretrain import drop_modalities, info_nce, ioh_rich_index, mask_patches


def test_mask_patches_hides_whole_patches():
    g = torch.Generator().manual_seed(0)
    valid = torch.ones(8, 300)
    v, hidden = mask_patches(valid, 10, 0.3, g)
    assert hidden.shape == (8, 30)
    assert torch.equal(v.view(8, 30, 10).amax(-1) == 0, hidden)
    assert 0.1 < hidden.float().mean() < 0.5


def test_drop_modalities_drops_at_least_one_and_keeps_map():
    g = torch.Generator().manual_seed(1)
    x = {"map_mmhg": torch.ones(64, 300), "map_valid": torch.ones(64, 300), "wave_valid": torch.ones(64, 3000),
         "numerics_mask": torch.ones(64, 8), "text_mask": torch.ones(64, 64)}
    y = drop_modalities(x, 0.5, g)
    dropped = torch.stack([y["wave_valid"].amax(1) == 0, y["numerics_mask"].amax(1) == 0,
                           y["text_mask"].amax(1) == 0], 1)
    assert dropped.any(1).all() and not dropped.all(0).any()
    assert torch.equal(y["map_valid"], x["map_valid"])


def test_info_nce_prefers_aligned_pairs():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(32, 16, generator=g)
    assert info_nce(a, a + 0.01 * torch.randn(32, 16, generator=g), 0.2) < info_nce(a, torch.randn(32, 16, generator=g), 0.2)


def test_ioh_rich_windows():
    lab = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 0]])
    m = np.full((3, 300), 80.0)
    v = np.ones((3, 300), bool)
    m[2, 100:120] = 60.0  # one minute below 65
    assert ioh_rich_index(lab, m, v, 3.0).tolist() == [1, 2]


def test_fit_platt_recovers_known_parameters():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 20000)
    p = 1 / (1 + np.exp(-(0.5 * z - 1.0)))
    y = (rng.random(z.size) < p).astype(float)
    a, b = fit_platt(z, y)
    assert a == pytest.approx(0.5, abs=0.05) and b == pytest.approx(-1.0, abs=0.08)


def test_masked_bce_ignores_excluded_labels():
    logits = torch.tensor([[5.0, -5.0]])
    y = torch.tensor([[0.0, 1.0]])
    assert masked_bce(logits, y, torch.zeros(1, 2), 3.0) == 0.0
    assert masked_bce(logits, y, torch.tensor([[1.0, 0.0]]), 3.0) > 4.0


def test_lora_wraps_only_backbones_and_merges_exactly():
    from models.belief_decoder import BeliefDecoder
    from models.configs import get_config
    from models.gated_fusion import GatedFusion

    cfg = get_config("tiny")
    torch.manual_seed(0)
    gf = GatedFusion(cfg).eval()
    x = GatedFusion.example_inputs(cfg, batch=2)
    wrapped = add_lora(gf, FUSION_LORA_TARGETS, cfg.lora_r, cfg.lora_alpha)
    names = {n for n, p in wrapped.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in names)
    assert not any(".backbone.h." in n and "lora_" not in n for n in names)   # backbone base frozen
    assert any("head" in n for n in names) and any("wave" in n for n in names)  # the rest trains
    with torch.no_grad():
        for n, p in wrapped.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
        before = wrapped(**x)[0]
        merged = wrapped.merge_and_unload()
        assert type(merged) is GatedFusion
        assert torch.allclose(merged(**x)[0], before, atol=1e-5)
    dec = add_lora(BeliefDecoder(cfg), DECODER_LORA_TARGETS, cfg.lora_r, cfg.lora_alpha)
    assert any("lora_A" in n for n, _ in dec.named_parameters())
