"""Model sizes and the signal-path geometry the models are built for.

One ``ModelConfig`` describes all three models of an engine directory (fusion LM, gated fusion,
belief decoder); the training area imports ``CONFIGS`` and the exporter writes the chosen one
into the manifest, so a loader can rebuild the torch modules from the manifest alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

# Vitals numerics given to the gated fusion model, in this order (label used in ForecastInput.numerics).
NUMERIC_LABELS: tuple[str, ...] = ("HR", "SPO2", "NIBP_SBP", "NIBP_DBP", "NIBP_MBP", "RR", "ETCO2", "BT")
# Fixed (centre, scale) per numeric, applied inside the graph; clinical reference values, not fitted.
NUMERIC_SCALE: dict[str, tuple[float, float]] = {
    "HR": (75.0, 20.0), "SPO2": (97.0, 3.0), "NIBP_SBP": (120.0, 25.0), "NIBP_DBP": (65.0, 15.0),
    "NIBP_MBP": (85.0, 18.0), "RR": (12.0, 5.0), "ETCO2": (35.0, 8.0), "BT": (36.5, 1.0),
}
# Modalities of the gated fusion model, in the order of its ``gates`` output.
MODALITIES: tuple[str, ...] = ("trend", "morphology", "numerics", "context")


@dataclass(frozen=True)
class ModelConfig:
    name: str = "tiny"
    # transformer sizes (fusion LM backbone and gated fusion)
    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 2
    dropout: float = 0.0
    # signal geometry (must match agent Settings; checked by models.manifest.check_compatible)
    grid_s: float = 3.0            # MAP cell spacing
    window_s: float = 900.0        # MAP history
    patch_s: float = 30.0          # one patch
    horizon_s: float = 900.0       # MAP trajectory length, on the same grid
    wave_window_s: float = 30.0    # ABP morphology window
    wave_fs_hz: float = 100.0
    horizons_min: tuple[int, ...] = (5, 10, 15)
    # MAP normaliser (fixed, written to the manifest): z = (map - mean) / std
    map_mean_mmhg: float = 80.0
    map_std_mmhg: float = 15.0
    # text
    text_dim: int = 384            # MiniLM hidden size
    text_tokens: int = 64          # token embeddings per description (padded/truncated)
    # waveform CNN
    wave_channels: int = 32
    # belief decoder
    dec_embd: int = 64
    dec_layer: int = 2
    dec_head: int = 2
    dec_max_tokens: int = 256      # KV cache capacity in tokens (2 per event)
    lora_r: int = 4
    lora_alpha: int = 8

    @property
    def n_cells(self) -> int:
        return int(round(self.window_s / self.grid_s))

    @property
    def cells_per_patch(self) -> int:
        return int(round(self.patch_s / self.grid_s))

    @property
    def n_patches(self) -> int:
        return self.n_cells // self.cells_per_patch

    @property
    def n_future(self) -> int:
        return int(round(self.horizon_s / self.grid_s))

    @property
    def n_wave(self) -> int:
        return int(round(self.wave_window_s * self.wave_fs_hz))

    @property
    def n_horizons(self) -> int:
        return len(self.horizons_min)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["horizons_min"] = list(self.horizons_min)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = dict(d)
        d["horizons_min"] = tuple(d.get("horizons_min", (5, 10, 15)))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


CONFIGS: dict[str, ModelConfig] = {
    # CPU: trains in minutes, exports in seconds; used by the tests.
    "tiny": ModelConfig(),
    "base": ModelConfig(name="base", n_embd=256, n_layer=4, n_head=4, wave_channels=64,
                        dec_embd=128, dec_layer=4, dec_head=4, dec_max_tokens=512, lora_r=8, lora_alpha=16),
    # GPT-2 small widths, first 6 blocks (load_gpt2_weights fills them from a local GPT-2 directory).
    "paper": ModelConfig(name="paper", n_embd=768, n_layer=6, n_head=12, dropout=0.1, wave_channels=128,
                         dec_embd=256, dec_layer=4, dec_head=8, dec_max_tokens=1024, lora_r=8, lora_alpha=16),
}


def get_config(name: str, **overrides) -> ModelConfig:
    if name not in CONFIGS:
        raise ValueError(f"unknown model config {name!r}; choose one of {sorted(CONFIGS)}")
    return replace(CONFIGS[name], **overrides) if overrides else CONFIGS[name]
