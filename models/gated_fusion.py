"""Gated multimodal fusion (after MedFlexFusion): trend, morphology, numerics and context.

Each modality becomes a set of tokens; a query (the last MAP patch token of the fusion LM)
cross-attends to each set, and a learned sigmoid gate per modality scales what that
modality adds. A missing modality is a learned token (a gated-out waveform, absent numerics,
no patient context), never zeros. The gate values are an output (``gates``, order
``MODALITIES``) so an alert can say what drove it.

Modalities:
- trend: the fusion LM's patch tokens (MAP history);
- morphology: last ``wave_window_s`` of ABP at ``wave_fs_hz`` (3,000 samples) through a small
  strided 1-D CNN (upstroke, pulse pressure, dicrotic notch, respiratory variation live here);
- numerics: one token per vital in ``NUMERIC_LABELS`` (value embedding, or its missing token);
- context: the fusion LM's text tokens (already attended to the patches).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.backbone import CrossAttention
from models.configs import MODALITIES, NUMERIC_LABELS, NUMERIC_SCALE, ModelConfig
from models.fusion_lm import FusionLM

_WAVE_LAYERS = ((7, 4, 3), (7, 4, 3), (5, 4, 2))   # (kernel, stride, padding) per conv


def wave_tokens_len(n_wave: int) -> int:
    n = n_wave
    for k, s, p in _WAVE_LAYERS:
        n = (n + 2 * p - k) // s + 1
    return n


class WaveEncoder(nn.Module):
    """(B, n_wave) ABP + validity -> (B, Tw, C) tokens; 3000 samples -> 47 tokens."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        ch, C = cfg.wave_channels, cfg.n_embd
        chans = (2, ch, ch, C)
        self.convs = nn.ModuleList(
            nn.Conv1d(chans[i], chans[i + 1], k, s, p) for i, (k, s, p) in enumerate(_WAVE_LAYERS))
        self.pos = nn.Parameter(torch.randn(wave_tokens_len(cfg.n_wave), C) * 0.02)
        self.register_buffer("mean", torch.tensor(cfg.map_mean_mmhg), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.map_std_mmhg), persistent=False)

    def forward(self, wave_mmhg, wave_valid):
        ok = wave_valid > 0.5
        z = torch.where(ok, (wave_mmhg - self.mean) / self.std, torch.zeros_like(wave_mmhg))
        x = torch.stack([z, ok.to(z.dtype)], dim=1)                 # (B, 2, n_wave)
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < len(self.convs) - 1:
                x = F.gelu(x)
        return x.transpose(1, 2) + self.pos                           # (B, Tw, C)


class GatedFusion(nn.Module):
    input_names = ("map_mmhg", "map_valid", "wave_mmhg", "wave_valid", "numerics", "numerics_mask",
                   "text_emb", "text_mask")
    output_names = ("ioh_logits", "map_trajectory_mmhg", "gates")

    def __init__(self, cfg: ModelConfig, min_wave_valid: float = 0.5):
        super().__init__()
        self.cfg = cfg
        C, nf = cfg.n_embd, len(NUMERIC_LABELS)
        self.min_wave_valid = min_wave_valid
        self.lm = FusionLM(cfg)
        self.wave = WaveEncoder(cfg)
        self.missing_wave_token = nn.Parameter(torch.randn(C) * 0.02)
        self.register_buffer("num_centre", torch.tensor([NUMERIC_SCALE[k][0] for k in NUMERIC_LABELS]),
                             persistent=False)
        self.register_buffer("num_scale", torch.tensor([NUMERIC_SCALE[k][1] for k in NUMERIC_LABELS]),
                             persistent=False)
        self.num_w = nn.Parameter(torch.randn(nf, C) * 0.02)
        self.num_b = nn.Parameter(torch.randn(nf, C) * 0.02)
        self.num_missing = nn.Parameter(torch.randn(nf, C) * 0.02)
        self.cross = nn.ModuleDict({m: CrossAttention(C, cfg.n_head, cfg.dropout) for m in MODALITIES})
        self.gate = nn.ModuleDict({m: nn.Linear(2 * C, 1) for m in MODALITIES})
        self.ln_f = nn.LayerNorm(C)
        self.head = nn.Linear(C, cfg.n_horizons)

    def forward(self, map_mmhg, map_valid, wave_mmhg, wave_valid, numerics, numerics_mask,
                text_emb, text_mask):
        h, txt, t_mask, summary = self.lm.encode(map_mmhg, map_valid, text_emb, text_mask)
        _, traj = self.lm.heads(summary)                                         # (B, n_future)
        q = h[:, -1:]                                                            # (B, 1, C)

        wave = self.wave(wave_mmhg, wave_valid)                                  # (B, Tw, C)
        wave_ok = wave_valid.mean(1, keepdim=True) >= self.min_wave_valid         # (B, 1)
        wave = torch.where(wave_ok.unsqueeze(-1), wave, self.missing_wave_token.to(wave.dtype))

        zn = (numerics - self.num_centre) / self.num_scale                       # (B, F)
        num_ok = numerics_mask > 0.5
        zn = torch.where(num_ok, zn, torch.zeros_like(zn))
        num = zn.unsqueeze(-1) * self.num_w + self.num_b                         # (B, F, C)
        num = torch.where(num_ok.unsqueeze(-1), num, self.num_missing.to(num.dtype))

        tokens = {"trend": (h, None), "morphology": (wave, None), "numerics": (num, None),
                  "context": (txt, t_mask)}
        fused = q
        gates = []
        for m in MODALITIES:
            toks, mask = tokens[m]
            c, _ = self.cross[m](q, toks, mask, residual=False)                  # (B, 1, C)
            g = torch.sigmoid(self.gate[m](torch.cat([q, c], dim=-1)))           # (B, 1, 1)
            fused = fused + g * c
            gates.append(g[:, 0])                                                # (B, 1)
        logits = self.head(self.ln_f(fused[:, 0]))                               # (B, H)
        return logits, traj, torch.cat(gates, dim=-1)                            # gates (B, n_modalities)

    @staticmethod
    def example_inputs(cfg: ModelConfig, batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
        x = FusionLM.example_inputs(cfg, batch, seed)
        g = torch.Generator().manual_seed(seed + 1)
        t = torch.arange(cfg.n_wave) / cfg.wave_fs_hz
        wave = 80 + 25 * torch.sin(2 * torch.pi * 1.2 * t)[None] + torch.randn(batch, cfg.n_wave, generator=g)
        wave_valid = torch.ones(batch, cfg.n_wave)
        wave_valid[0, : cfg.n_wave // 4] = 0.0                      # a gap
        if batch > 1:
            wave_valid[1] = 0.0                                     # waveform missing entirely
        nf = len(NUMERIC_LABELS)
        numerics = torch.tensor([NUMERIC_SCALE[k][0] for k in NUMERIC_LABELS]).expand(batch, nf).clone()
        numerics = numerics + torch.randn(batch, nf, generator=g) * 5
        num_mask = (torch.rand(batch, nf, generator=g) > 0.3).float()
        x.update(wave_mmhg=wave, wave_valid=wave_valid, numerics=numerics, numerics_mask=num_mask)
        return {k: x[k] for k in GatedFusion.input_names}

    @staticmethod
    def dynamic_axes() -> dict[str, dict[int, str]]:
        return {n: {0: "batch"} for n in GatedFusion.input_names + GatedFusion.output_names}
