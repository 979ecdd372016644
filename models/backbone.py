"""GPT-2-style causal transformer blocks (nanoGPT layout and parameter names).

Parameter names follow Hugging Face GPT-2 (``h.{i}.ln_1``, ``attn.c_attn``, ``attn.c_proj``,
``mlp.c_fc``, ``mlp.c_proj``, ``ln_f``) so ``load_gpt2_weights`` can copy the first N blocks
of a local GPT-2 checkpoint. Attention is written out (no fused kernel) so the same code
exports to ONNX opset 17 and runs with a KV cache: ``past`` holds the keys and values of
earlier tokens, and a query at absolute position P+i attends to keys 0..P+i.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
        self.n_head = n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, past: torch.Tensor | None = None):
        """x: (B, T, C); past: (2, B, nh, P, hs) or None -> y (B, T, C), present (2, B, nh, P+T, hs)."""
        B, T, C = x.shape
        hs = C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)               # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        if past is not None:
            k = torch.cat([past[0], k], dim=2)                           # (B, nh, P+T, hs)
            v = torch.cat([past[1], v], dim=2)
        S = k.shape[2]
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))         # (B, nh, T, S)
        q_pos = torch.arange(T, device=x.device) + (S - T)               # absolute positions
        k_pos = torch.arange(S, device=x.device)
        allowed = k_pos[None, :] <= q_pos[:, None]                       # (T, S)
        att = att.masked_fill(~allowed, float("-inf"))
        att = self.drop(F.softmax(att, dim=-1))
        y = (att @ v).transpose(1, 2).reshape(B, T, C)                   # (B, T, C)
        return self.c_proj(y), torch.stack([k, v])


class MLP(nn.Module):
    def __init__(self, n_embd: int, dropout: float = 0.0):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.c_proj = nn.Linear(4 * n_embd, n_embd)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = MLP(n_embd, dropout)

    def forward(self, x, past=None):
        a, present = self.attn(self.ln_1(x), past)
        x = x + a
        return x + self.mlp(self.ln_2(x)), present


class GPTBackbone(nn.Module):
    """A stack of GPT-2 blocks and the final LayerNorm; positions are added by the caller."""

    def __init__(self, n_layer: int, n_embd: int, n_head: int, dropout: float = 0.0):
        super().__init__()
        self.h = nn.ModuleList([Block(n_embd, n_head, dropout) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.apply(_init_weights)
        for name, p in self.named_parameters():   # GPT-2 scaled init of residual projections
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    def forward(self, x: torch.Tensor, past: torch.Tensor | None = None):
        """x: (B, T, C); past: (L, 2, B, nh, P, hs) or None -> (B, T, C), present (L, 2, B, nh, P+T, hs)."""
        presents = []
        for i, block in enumerate(self.h):
            x, pr = block(x, None if past is None else past[i])
            presents.append(pr)
        return self.ln_f(x), torch.stack(presents)


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, mean=0.0, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Embedding):
        nn.init.normal_(m.weight, mean=0.0, std=0.02)


_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    st = path / "model.safetensors"
    if st.exists():
        from safetensors.torch import load_file
        return load_file(str(st))
    pt = path / "pytorch_model.bin"
    if pt.exists():
        return torch.load(str(pt), map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"load_gpt2_weights: no model.safetensors or pytorch_model.bin in {path}")


def load_gpt2_weights(backbone: GPTBackbone, path: str | Path) -> dict[str, torch.Tensor]:
    """Copy the first ``len(backbone.h)`` blocks (and ln_f) of a local HF GPT-2 directory.

    Returns the remaining tensors the caller may use (``wpe`` for positions). Never downloads.
    Raises ValueError naming both widths when the checkpoint does not fit the backbone.
    """
    path = Path(path)
    cfg = json.loads((path / "config.json").read_text()) if (path / "config.json").exists() else {}
    n_embd = backbone.ln_f.weight.shape[0]
    if cfg.get("n_embd", n_embd) != n_embd:
        raise ValueError(f"load_gpt2_weights: checkpoint n_embd {cfg['n_embd']} != backbone n_embd {n_embd}")
    if cfg.get("n_layer", len(backbone.h)) < len(backbone.h):
        raise ValueError(f"load_gpt2_weights: checkpoint has {cfg['n_layer']} blocks, backbone needs {len(backbone.h)}")
    raw = {k.removeprefix("transformer."): v for k, v in _read_state(path).items()}
    own = backbone.state_dict()
    new = {}
    for key in own:
        src = raw.get(key)
        if src is None:
            raise KeyError(f"load_gpt2_weights: {key} missing from {path}")
        if any(key.endswith(s) for s in _CONV1D):
            src = src.t()                       # HF Conv1D stores (in, out); nn.Linear wants (out, in)
        if tuple(src.shape) != tuple(own[key].shape):
            raise ValueError(f"load_gpt2_weights: {key} has shape {tuple(src.shape)}, expected {tuple(own[key].shape)}")
        new[key] = src.to(own[key].dtype)
    backbone.load_state_dict(new)
    return {k: v for k, v in raw.items() if k in ("wpe.weight", "wte.weight")}


class CrossAttention(nn.Module):
    """Pre-norm multi-head cross-attention with a residual: queries ``x`` attend to ``ctx``.

    ``ctx_mask`` (B, Tk) is 1 where a key may be attended; every row must keep at least one key.
    Returns the updated queries (B, Tq, C) (only what attention adds when ``residual=False``)
    and the head-averaged weights (B, Tq, Tk).
    """

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0):
        super().__init__()
        self.n_head = n_head
        self.ln_q = nn.LayerNorm(n_embd)
        self.ln_kv = nn.LayerNorm(n_embd)
        self.q = nn.Linear(n_embd, n_embd)
        self.kv = nn.Linear(n_embd, 2 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, ctx_mask: torch.Tensor | None = None,
                residual: bool = True):
        B, Tq, C = x.shape
        Tk = ctx.shape[1]
        hs = C // self.n_head
        q = self.q(self.ln_q(x)).view(B, Tq, self.n_head, hs).transpose(1, 2)     # (B, nh, Tq, hs)
        k, v = self.kv(self.ln_kv(ctx)).split(C, dim=2)
        k = k.view(B, Tk, self.n_head, hs).transpose(1, 2)                        # (B, nh, Tk, hs)
        v = v.view(B, Tk, self.n_head, hs).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))                  # (B, nh, Tq, Tk)
        if ctx_mask is not None:
            att = att.masked_fill(ctx_mask[:, None, None, :] < 0.5, float("-inf"))
        att = F.softmax(att, dim=-1)
        y = (self.drop(att) @ v).transpose(1, 2).reshape(B, Tq, C)               # (B, Tq, C)
        y = self.c_proj(y)
        return (x + y if residual else y), att.mean(dim=1)
