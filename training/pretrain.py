"""Stage 1: domain-adaptive pretraining on IOH-rich windows and their MTRDA augmentations.

Two objectives, summed, over the same batches:

* **masked-patch reconstruction** (IOHFuseLM stage 1): a random ``mask_frac`` of the MAP patches
  is hidden (their cells marked invalid, so the model's learned mask token stands in) and a
  linear head on the backbone's patch tokens reconstructs the hidden cells (normalised MAP, MSE
  over cells that were valid). The head is used only here.
* **masked global alignment** (contrastive, for missing modalities): two views of every window,
  one with all modalities and light patch masking, one with modality dropout (waveform, numerics
  and text each dropped with probability ``modality_drop``, at least one; dropped modalities
  reach the encoders as their learned missing tokens) and heavier patch masking. The fused
  global vectors (GatedFusion ``ln_f`` output) of the two views are aligned with a symmetric
  InfoNCE loss (temperature ``tau``) through a small projection head.

IOH-rich windows: training samples with a positive label at any horizon, or with at least one
minute of valid MAP < 65 mmHg inside the window. MTRDA windows replace the MAP modality of a
randomly drawn IOH-rich sample by trend + generated residual; its other modalities are kept.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def ioh_rich_index(labels: np.ndarray, map_mmhg: np.ndarray, valid: np.ndarray, grid_s: float,
                   threshold_mmhg: float = 65.0) -> np.ndarray:
    low = (np.asarray(valid) & (np.nan_to_num(np.asarray(map_mmhg), nan=999.0) < threshold_mmhg)).sum(1)
    rich = (np.asarray(labels) == 1).any(1) | (low * grid_s >= 60.0)
    return np.nonzero(rich)[0]


def mask_patches(map_valid: torch.Tensor, cells_per_patch: int, frac: float, g: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Hide ``frac`` of the patches per row. map_valid (B, N) -> new valid (B, N), hidden (B, Np) bool."""
    B, N = map_valid.shape
    Np = N // cells_per_patch
    hidden = (torch.rand((B, Np), generator=g) < frac).to(map_valid.device)
    cell_hidden = hidden.repeat_interleave(cells_per_patch, dim=1)            # (B, N)
    return map_valid * (~cell_hidden).float(), hidden


def drop_modalities(x: dict[str, torch.Tensor], p: float, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Drop waveform / numerics / text per row with probability ``p`` (at least one per row)."""
    B = x["map_mmhg"].shape[0]
    drop = torch.rand((B, 3), generator=g) < p
    none = ~drop.any(1)
    pick = torch.randint(0, 3, (B,), generator=g)
    drop[none, pick[none]] = True
    drop = drop.to(x["map_mmhg"].device)
    y = dict(x)
    y["wave_valid"] = x["wave_valid"] * (~drop[:, 0:1]).float()
    y["numerics_mask"] = x["numerics_mask"] * (~drop[:, 1:2]).float()
    y["text_mask"] = x["text_mask"] * (~drop[:, 2:3]).float()
    return y


class PretrainHeads(nn.Module):
    """Heads used only in stage 1: patch reconstruction and the contrastive projection."""

    def __init__(self, n_embd: int, cells_per_patch: int):
        super().__init__()
        self.recon = nn.Linear(n_embd, cells_per_patch)
        self.proj = nn.Sequential(nn.Linear(n_embd, n_embd), nn.ReLU(), nn.Linear(n_embd, n_embd))


def fused_vector(model, x: dict[str, torch.Tensor]) -> torch.Tensor:
    """GatedFusion's fused global vector (B, C): the output of its final LayerNorm."""
    got = {}
    h = model.ln_f.register_forward_hook(lambda m, i, o: got.__setitem__("v", o))
    try:
        model(**x)
    finally:
        h.remove()
    return got["v"]


def info_nce(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    logits = a @ b.t() / tau                                                  # (B, B)
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def pretrain_loss(model, heads: PretrainHeads, x: dict[str, torch.Tensor], g: torch.Generator,
                  mask_frac: float = 0.3, modality_drop: float = 0.5, tau: float = 0.2
                  ) -> tuple[torch.Tensor, dict[str, float]]:
    cfg = model.cfg
    cpp = cfg.cells_per_patch
    # masked-patch reconstruction
    valid_m, hidden = mask_patches(x["map_valid"], cpp, mask_frac, g)
    h, *_ = model.lm.encode(x["map_mmhg"], valid_m, x["text_emb"], x["text_mask"])   # (B, Np, C)
    pred = heads.recon(h)                                                      # (B, Np, cpp)
    B = x["map_mmhg"].shape[0]
    z = (x["map_mmhg"] - cfg.map_mean_mmhg) / cfg.map_std_mmhg
    z = z.view(B, cfg.n_patches, cpp)
    w = x["map_valid"].view(B, cfg.n_patches, cpp) * hidden.unsqueeze(-1).float()
    recon = ((pred - z) ** 2 * w).sum() / w.sum().clamp_min(1.0)
    # masked global alignment
    va, _ = mask_patches(x["map_valid"], cpp, 0.1, g)
    xa = dict(x, map_valid=va)
    vb, _ = mask_patches(x["map_valid"], cpp, mask_frac, g)
    xb = drop_modalities(dict(x, map_valid=vb), modality_drop, g)
    za = heads.proj(fused_vector(model, xa))
    zb = heads.proj(fused_vector(model, xb))
    nce = info_nce(za, zb, tau)
    return recon + nce, {"recon": float(recon.detach()), "contrastive": float(nce.detach())}
