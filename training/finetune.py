"""Stage 2: task fine-tuning with LoRA, and calibration on the development split.

Losses per batch (forecaster = ``models.gated_fusion.GatedFusion``):

* classification: binary cross-entropy of the IOH logits at 5/10/15 min over non-excluded labels,
  positives weighted ``pos_weight`` (IOH time points are rare; calibration on dev undoes the
  shift this causes in probabilities);
* auxiliary classification on the fusion LM's own IOH head (so the exported ``fusion_lm`` is a
  usable forecaster too), weight 0.5;
* forecasting: MSE of the MAP trajectory (normalised) over valid future cells, cells with MAP
  < 65 mmHg weighted ``ioh_step_weight`` (extra weight on IOH time steps), weight ``traj_weight``.

LoRA (``peft``): adapters of rank ``cfg.lora_r`` on the attention projections of the fusion
backbone (``lm.backbone.h.*.attn.c_attn|c_proj``) and of the belief decoder; the base weights of
those backbones are frozen, every other parameter (embeddings, encoders, cross-attention, gates,
heads) stays trainable. Adapters are merged before export.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

FUSION_LORA_TARGETS = r".*lm\.backbone\.h\.\d+\.attn\.(c_attn|c_proj)"
DECODER_LORA_TARGETS = r".*backbone\.h\.\d+\.attn\.(c_attn|c_proj)"


def add_lora(model: nn.Module, targets: str, r: int, alpha: int) -> nn.Module:
    """Wrap with peft LoRA; freeze only the adapted backbone's base weights."""
    from peft import LoraConfig, get_peft_model

    wrapped = get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, target_modules=targets,
                                               lora_dropout=0.0, bias="none"))
    for name, p in wrapped.named_parameters():
        p.requires_grad = ("lora_" in name) or (".backbone.h." not in name)
    return wrapped


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under a peft wrapper (adapters still separate)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def masked_bce(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, pos_weight: float) -> torch.Tensor:
    w = mask * torch.where(y > 0.5, torch.full_like(y, pos_weight), torch.ones_like(y))
    loss = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    return (loss * w).sum() / w.sum().clamp_min(1.0)


def finetune_loss(model, x: dict, t: dict, pos_weight: float = 3.0, ioh_step_weight: float = 4.0,
                  traj_weight: float = 0.1, ioh_mmhg: float = 65.0) -> tuple[torch.Tensor, dict[str, float]]:
    base = unwrap(model)
    got = {}
    hook = base.lm.head_ioh.register_forward_hook(lambda m, i, o: got.__setitem__("lm", o))
    try:
        logits, traj, _ = model(**x)
    finally:
        hook.remove()
    cls = masked_bce(logits, t["labels"], t["label_mask"], pos_weight)
    aux = masked_bce(got["lm"], t["labels"], t["label_mask"], pos_weight)
    cfg = base.cfg
    w = t["future_valid"] * torch.where(t["future_map"] < ioh_mmhg, ioh_step_weight, 1.0)
    err = ((traj - t["future_map"]) / cfg.map_std_mmhg) ** 2
    tl = (err * w).sum() / w.sum().clamp_min(1.0)
    loss = cls + 0.5 * aux + traj_weight * tl
    return loss, {"cls": float(cls.detach()), "aux": float(aux.detach()), "traj": float(tl.detach())}


def belief_loss(decoder, ev: dict, t: dict, pos_weight: float = 3.0) -> torch.Tensor:
    """BCE of the belief after the last event of each sequence."""
    B = ev["event_kind"].shape[0]
    base = unwrap(decoder)
    logits, _ = decoder(**ev, past_kv=base.empty_past(B).to(ev["event_values"].device))                      # (B, S, H)
    return masked_bce(logits[:, -1], t["labels"], t["label_mask"], pos_weight)


def fit_platt(logits: np.ndarray, y: np.ndarray, iters: int = 200) -> tuple[float, float]:
    """Platt scaling p = sigmoid(a * logit + b) by maximum likelihood on (dev) data.

    With ``b`` = 0 this is temperature scaling (a = 1/T); the bias also absorbs the prior shift
    that ``pos_weight`` introduced in training.
    """
    z = torch.as_tensor(np.asarray(logits, np.float64))
    yy = torch.as_tensor(np.asarray(y, np.float64))
    a = torch.ones((), dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([a, b], lr=0.5, max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(a * z + b, yy)
        loss.backward()
        return loss

    opt.step(closure)
    return float(a.detach()), float(b.detach())
