"""Belief decoder: a small causal transformer over one bed's event sequence.

Each event is one token followed by a learned ``[PREDICT]`` token; the decoder's output at the
``[PREDICT]`` token is the IOH belief (logits at 5/10/15 min) after that event. One event is one
decoder step of two tokens, run against the KV cache of everything before it:

    inputs  event_kind (B, S) int64, event_name (B, S) int64,
            event_values (B, S, F) float32, event_mask (B, S, F) float32,
            past_kv (L, 2, B, nh, P, hs) float32      (P = 0 for an empty cache)
    outputs belief_logits (B, S, H), present_kv (L, 2, B, nh, P + 2S, hs)

Positions are absolute (P + i) and bounded by ``dec_max_tokens``; the caller re-primes the
cache from recent events when it is full (``agent.beliefs``). An absent feature is its learned
missing token, never a zero value. LoRA adapters (``peft``) sit on the attention projections
and are merged before export (``merge_lora``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from models.backbone import GPTBackbone
from models.configs import ModelConfig
from models.events import EVENT_FEATURES, EVENT_KINDS, EVENT_NAMES

LORA_TARGETS = ("attn.c_attn", "attn.c_proj")


class BeliefDecoder(nn.Module):
    input_names = ("event_kind", "event_name", "event_values", "event_mask", "past_kv")
    output_names = ("belief_logits", "present_kv")

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        D, nf = cfg.dec_embd, len(EVENT_FEATURES)
        self.kind_emb = nn.Embedding(len(EVENT_KINDS), D)
        self.name_emb = nn.Embedding(len(EVENT_NAMES), D)
        self.feat_w = nn.Parameter(torch.randn(nf, D) * 0.02)
        self.feat_b = nn.Parameter(torch.randn(nf, D) * 0.02)
        self.feat_missing = nn.Parameter(torch.randn(nf, D) * 0.02)
        self.predict_token = nn.Parameter(torch.randn(D) * 0.02)
        self.wpe = nn.Embedding(cfg.dec_max_tokens, D)
        self.backbone = GPTBackbone(cfg.dec_layer, D, cfg.dec_head, cfg.dropout)
        self.head = nn.Linear(D, cfg.n_horizons)
        for emb in (self.kind_emb, self.name_emb, self.wpe):
            nn.init.normal_(emb.weight, std=0.02)

    @property
    def kv_shape_tail(self) -> tuple[int, int, int]:
        return self.cfg.dec_layer, self.cfg.dec_head, self.cfg.dec_embd // self.cfg.dec_head

    def empty_past(self, batch: int = 1, dtype=torch.float32) -> torch.Tensor:
        L, nh, hs = self.kv_shape_tail
        return torch.zeros(L, 2, batch, nh, 0, hs, dtype=dtype)

    def forward(self, event_kind, event_name, event_values, event_mask, past_kv):
        B, S = event_kind.shape
        ok = (event_mask > 0.5).unsqueeze(-1)                                  # (B, S, F, 1)
        feat = event_values.unsqueeze(-1) * self.feat_w + self.feat_b           # (B, S, F, D)
        feat = torch.where(ok, feat, self.feat_missing.to(feat.dtype)).sum(2)   # (B, S, D)
        ev = self.kind_emb(event_kind) + self.name_emb(event_name) + feat       # (B, S, D)
        pred = self.predict_token.to(ev.dtype).expand_as(ev)                   # (B, S, D)
        x = torch.stack([ev, pred], dim=2).reshape(B, 2 * S, ev.shape[-1])      # ev0, P0, ev1, P1, ...
        pos = torch.arange(2 * S, device=x.device) + past_kv.shape[4]
        h, present = self.backbone(x + self.wpe(pos), past_kv)                 # (B, 2S, D)
        return self.head(h[:, 1::2]), present                                  # (B, S, H)

    @staticmethod
    def example_inputs(cfg: ModelConfig, batch: int = 2, seed: int = 0, n_events: int = 3,
                       past_len: int = 4) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        nf = len(EVENT_FEATURES)
        L, nh, hs = cfg.dec_layer, cfg.dec_head, cfg.dec_embd // cfg.dec_head
        return {
            "event_kind": torch.randint(0, len(EVENT_KINDS), (batch, n_events), generator=g),
            "event_name": torch.randint(0, len(EVENT_NAMES), (batch, n_events), generator=g),
            "event_values": torch.randn(batch, n_events, nf, generator=g),
            "event_mask": (torch.rand(batch, n_events, nf, generator=g) > 0.5).float(),
            "past_kv": torch.randn(L, 2, batch, nh, past_len, hs, generator=g) * 0.5,
        }

    @staticmethod
    def dynamic_axes() -> dict[str, dict[int, str]]:
        ev = {0: "batch", 1: "events"}
        return {"event_kind": ev, "event_name": ev, "event_values": ev, "event_mask": ev,
                "past_kv": {2: "batch", 4: "past"}, "belief_logits": ev,
                "present_kv": {2: "batch", 4: "total"}}


def apply_lora(model: BeliefDecoder, r: int | None = None, alpha: int | None = None):
    """Wrap ``model`` with LoRA adapters on the attention projections (peft); base weights frozen."""
    from peft import LoraConfig, get_peft_model
    cfg = LoraConfig(r=r or model.cfg.lora_r, lora_alpha=alpha or model.cfg.lora_alpha,
                     target_modules=list(LORA_TARGETS), lora_dropout=0.0, bias="none")
    return get_peft_model(model, cfg)


def merge_lora(model) -> BeliefDecoder:
    """Fold LoRA adapters into the base weights (a plain BeliefDecoder); no-op without adapters."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model

