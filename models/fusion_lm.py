"""IOHFuseLM-style fusion forecaster: MAP patches through GPT-2 blocks, text tokens attend to them.

Input MAP window (n_cells = window_s / grid_s, 300 at 3 s = 15 min) is normalised with the fixed
scaler of the config (written to the manifest), cut into patches of ``patch_s`` (10 cells = 30 s)
and embedded with a validity channel; a patch with no valid cell becomes a learned mask token,
so a gap is never read as a value. The clinical description enters as MiniLM token embeddings
(computed once per patient outside the graph); a learned "missing text" token stands in when
there is no context. Token-level cross-attention lets every text token attend to the patch
tokens; the last patch token and the pooled text tokens feed two heads:

- ``map_trajectory_mmhg`` (B, n_future): MAP for the next ``horizon_s`` on the same grid
  (300 cells at 3 s = 15 min);
- ``ioh_logits`` (B, n_horizons): IOH within 5/10/15 min, uncalibrated logits.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from models.backbone import CrossAttention, GPTBackbone, load_gpt2_weights
from models.configs import ModelConfig


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x: (B, T, C), mask: (B, T) with at least one 1 per row -> (B, C)."""
    w = mask.unsqueeze(-1)
    return (x * w).sum(1) / w.sum(1).clamp_min(1.0)


class FusionLM(nn.Module):
    input_names = ("map_mmhg", "map_valid", "text_emb", "text_mask")
    output_names = ("ioh_logits", "map_trajectory_mmhg")

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        C, cpp = cfg.n_embd, cfg.cells_per_patch
        self.register_buffer("map_mean", torch.tensor(cfg.map_mean_mmhg), persistent=False)
        self.register_buffer("map_std", torch.tensor(cfg.map_std_mmhg), persistent=False)
        self.patch_proj = nn.Linear(2 * cpp, C)                 # (value, valid) per cell
        self.patch_mask_token = nn.Parameter(torch.randn(C) * 0.02)
        self.wpe = nn.Parameter(torch.randn(cfg.n_patches, C) * 0.02)
        self.backbone = GPTBackbone(cfg.n_layer, C, cfg.n_head, cfg.dropout)
        self.text_proj = nn.Linear(cfg.text_dim, C)
        self.text_pos = nn.Parameter(torch.randn(cfg.text_tokens, C) * 0.02)
        self.missing_text_token = nn.Parameter(torch.randn(C) * 0.02)
        self.text_to_patch = CrossAttention(C, cfg.n_head, cfg.dropout)
        self.ln_head = nn.LayerNorm(2 * C)
        self.head_traj = nn.Linear(2 * C, cfg.n_future)
        self.head_ioh = nn.Linear(2 * C, cfg.n_horizons)

    def load_gpt2(self, path) -> None:
        """Fill the backbone (and positions, where they fit) from a local GPT-2 directory."""
        extra = load_gpt2_weights(self.backbone, path)
        wpe = extra.get("wpe.weight")
        if wpe is not None and wpe.shape[1] == self.wpe.shape[1]:
            with torch.no_grad():
                self.wpe.copy_(wpe[: self.wpe.shape[0]])

    def encode(self, map_mmhg, map_valid, text_emb, text_mask):
        """-> patches (B, Np, C), text tokens (B, T, C), text key mask (B, T), summary (B, 2C)."""
        B, N = map_mmhg.shape
        cfg = self.cfg
        if N != cfg.n_cells:
            raise ValueError(f"FusionLM: map window has {N} cells, model expects {cfg.n_cells}")
        ok = map_valid > 0.5
        z = torch.where(ok, (map_mmhg - self.map_mean) / self.map_std, torch.zeros_like(map_mmhg))
        cells = torch.stack([z, ok.to(z.dtype)], dim=-1)                       # (B, N, 2)
        cells = cells.view(B, cfg.n_patches, 2 * cfg.cells_per_patch)         # (B, Np, 2*cpp)
        tok = self.patch_proj(cells)                                           # (B, Np, C)
        patch_any = ok.view(B, cfg.n_patches, cfg.cells_per_patch).any(-1)     # (B, Np)
        tok = torch.where(patch_any.unsqueeze(-1), tok, self.patch_mask_token.to(tok.dtype))
        h, _ = self.backbone(tok + self.wpe)                                   # (B, Np, C)

        T = text_emb.shape[1]
        txt = self.text_proj(text_emb)                                         # (B, T, C)
        has_text = text_mask.sum(1, keepdim=True) > 0.5                        # (B, 1)
        txt = torch.where(has_text.unsqueeze(-1), txt, self.missing_text_token.to(txt.dtype))
        first_only = (torch.arange(T, device=text_mask.device) == 0).to(text_mask.dtype)   # (T,)
        t_mask = torch.where(has_text, text_mask, first_only.expand_as(text_mask))  # (B, T)
        txt, _ = self.text_to_patch(txt + self.text_pos[:T], h)                # text attends to patches
        summary = torch.cat([h[:, -1], masked_mean(txt, t_mask)], dim=-1)      # (B, 2C)
        return h, txt, t_mask, self.ln_head(summary)

    def heads(self, summary):
        traj = self.head_traj(summary) * self.map_std + self.map_mean          # (B, n_future) mmHg
        return self.head_ioh(summary), traj

    def forward(self, map_mmhg, map_valid, text_emb, text_mask):
        *_, summary = self.encode(map_mmhg, map_valid, text_emb, text_mask)
        logits, traj = self.heads(summary)
        return logits, traj

    @staticmethod
    def example_inputs(cfg: ModelConfig, batch: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        valid = (torch.rand(batch, cfg.n_cells, generator=g) > 0.1).float()
        valid[:, 30:60] = 0.0                                   # three fully gated patches
        text_mask = torch.zeros(batch, cfg.text_tokens)
        text_mask[:, :40] = 1.0
        text_mask[-1] = 0.0                                     # last row: no context
        return {
            "map_mmhg": 75 + 12 * torch.randn(batch, cfg.n_cells, generator=g),
            "map_valid": valid,
            "text_emb": torch.randn(batch, cfg.text_tokens, cfg.text_dim, generator=g) * 0.3,
            "text_mask": text_mask,
        }

    @staticmethod
    def dynamic_axes() -> dict[str, dict[int, str]]:
        names = FusionLM.input_names + FusionLM.output_names
        return {n: {0: "batch"} for n in names}
