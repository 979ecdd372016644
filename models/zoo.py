"""The models an engine directory holds, by name (what the exporter writes and loaders rebuild)."""

from __future__ import annotations

import torch.nn as nn

from models.belief_decoder import BeliefDecoder
from models.configs import ModelConfig
from models.fusion_lm import FusionLM
from models.gated_fusion import GatedFusion

MODELS: dict[str, type[nn.Module]] = {
    "fusion_lm": FusionLM,
    "gated_fusion": GatedFusion,
    "belief_decoder": BeliefDecoder,
}
FORECASTERS = ("gated_fusion", "fusion_lm")   # models that map a ForecastInput batch to risks


def build_model(name: str, cfg: ModelConfig) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    return MODELS[name](cfg)
