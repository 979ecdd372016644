"""MTRDA: moving-average trend + residual decomposition and a small diffusion model over residuals.

The IOHFuseLM recipe enriches the rare class by generating new IOH windows: each window of MAP is
split into a trend (centred moving average over ``kernel_cells``, 25 cells = 75 s by default) and
a residual (what the trend leaves: beat-to-beat and respiratory-scale wander, artefact-free).
A DDPM (Ho et al. 2020, epsilon prediction) is trained on the residuals of IOH windows only; new
residuals sampled from it are added to the trends of other IOH windows, so the slow course of a
real hypotensive episode is kept and only its fine structure is new.

Kept deliberately small so it trains on a CPU in seconds: ``n_steps`` = 50 diffusion steps with a
linear noise schedule, and a denoiser of three 1-D convolutions plus an MLP over the diffusion
step embedding (16 channels, kernel 5, dilations 1/2/4; residual windows of 300 cells).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def fill_invalid(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Linear interpolation over invalid cells per row (edges: nearest valid). (N, T) -> (N, T)"""
    x = np.asarray(x, np.float64).copy()
    valid = np.asarray(valid, bool) & np.isfinite(x)
    t = np.arange(x.shape[1])
    for i in range(x.shape[0]):
        ok = valid[i]
        if ok.all():
            continue
        if not ok.any():
            x[i] = np.nan
            continue
        x[i, ~ok] = np.interp(t[~ok], t[ok], x[i, ok])
    return x


def decompose(x: np.ndarray, valid: np.ndarray, kernel_cells: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """Trend (centred moving average, edges padded by reflection) and residual. (N, T) each."""
    filled = fill_invalid(x, valid)
    pad = kernel_cells // 2
    padded = np.pad(filled, ((0, 0), (pad, kernel_cells - 1 - pad)), mode="reflect")
    c = np.cumsum(np.pad(padded, ((0, 0), (1, 0))), axis=1)
    trend = (c[:, kernel_cells:] - c[:, :-kernel_cells]) / kernel_cells
    return trend, filled - trend


def residual_stats(r: np.ndarray, fs_cells: int = 1) -> dict[str, float]:
    """Summary used to compare real and generated residuals (rows are windows)."""
    r = np.asarray(r, np.float64)
    r = r[np.isfinite(r).all(1)]
    c = r - r.mean(1, keepdims=True)
    lag1 = float(np.mean((c[:, 1:] * c[:, :-1]).sum(1) / np.maximum((c * c).sum(1), 1e-12)))
    spec = np.abs(np.fft.rfft(c, axis=1)) ** 2
    spec = spec[:, 1:]
    tot = spec.sum(1, keepdims=True)
    thirds = np.array_split(np.arange(spec.shape[1]), 3)
    bands = [float(np.mean(spec[:, b].sum(1) / tot[:, 0])) for b in thirds]
    return {"mean": float(r.mean()), "std": float(r.std()), "lag1": lag1,
            "band_low": bands[0], "band_mid": bands[1], "band_high": bands[2]}


def _step_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of diffusion steps. (B,) -> (B, dim)"""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    a = t.float()[:, None] * freqs[None]
    return torch.cat([a.sin(), a.cos()], dim=1)


class Denoiser(nn.Module):
    """Predicts the noise in a noisy residual window. x (B, L), t (B,) -> (B, L)."""

    def __init__(self, channels: int = 16, t_dim: int = 32):
        super().__init__()
        self.t_dim = t_dim
        self.t_mlp = nn.Sequential(nn.Linear(t_dim, channels), nn.SiLU(), nn.Linear(channels, channels))
        self.c1 = nn.Conv1d(1, channels, 5, padding=2)
        self.c2 = nn.Conv1d(channels, channels, 5, padding=4, dilation=2)
        self.c3 = nn.Conv1d(channels, channels, 5, padding=8, dilation=4)
        self.out = nn.Conv1d(channels, 1, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = self.t_mlp(_step_embedding(t, self.t_dim))[:, :, None]   # (B, C, 1)
        h = F.silu(self.c1(x[:, None]) + temb)                          # (B, C, L)
        h = h + F.silu(self.c2(h) + temb)
        h = h + F.silu(self.c3(h) + temb)
        return self.out(h)[:, 0]                                        # (B, L)


@dataclass
class ResidualDiffusion:
    """DDPM over residual windows (mmHg), normalised by their standard deviation."""

    n_steps: int = 50
    beta_start: float = 1e-4
    beta_end: float = 0.2
    channels: int = 16
    seed: int = 0

    def __post_init__(self):
        torch.manual_seed(self.seed)
        self.net = Denoiser(self.channels)
        self.betas = torch.linspace(self.beta_start, self.beta_end, self.n_steps)
        self.alphas = 1.0 - self.betas
        self.alpha_bar = torch.cumprod(self.alphas, 0)
        self.scale = 1.0
        self.length = 0

    def fit(self, residuals: np.ndarray, steps: int = 600, batch: int = 32, lr: float = 3e-3,
            log=None) -> list[float]:
        r = np.asarray(residuals, np.float32)
        r = r[np.isfinite(r).all(1)]
        if r.shape[0] < 4:
            raise ValueError(f"augment: need at least 4 IOH residual windows to fit, got {r.shape[0]}")
        self.scale = float(r.std()) or 1.0
        self.length = r.shape[1]
        data = torch.from_numpy(r / self.scale)
        g = torch.Generator().manual_seed(self.seed)
        opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        losses = []
        self.net.train()
        for step in range(steps):
            x0 = data[torch.randint(0, data.shape[0], (batch,), generator=g)]
            t = torch.randint(0, self.n_steps, (batch,), generator=g)
            eps = torch.randn(x0.shape, generator=g)
            ab = self.alpha_bar[t][:, None]
            xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
            loss = F.mse_loss(self.net(xt, t), eps)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            if log and step % 250 == 0:
                log(step, float(loss.detach()))
        self.net.eval()
        return losses

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """n new residual windows (n, L) in mmHg (ancestral DDPM sampling)."""
        g = torch.Generator().manual_seed(seed)
        x = torch.randn((n, self.length), generator=g)
        for t in reversed(range(self.n_steps)):
            tt = torch.full((n,), t, dtype=torch.long)
            eps = self.net(x, tt)
            a, ab, b = self.alphas[t], self.alpha_bar[t], self.betas[t]
            x = (x - b / (1 - ab).sqrt() * eps) / a.sqrt()
            if t > 0:
                var = b * (1 - self.alpha_bar[t - 1]) / (1 - ab)
                x = x + var.sqrt() * torch.randn(x.shape, generator=g)
        return (x.numpy() * self.scale).astype(np.float32)


def augment_windows(map_mmhg: np.ndarray, valid: np.ndarray, model: ResidualDiffusion, n_new: int,
                    kernel_cells: int = 25, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """New IOH windows: trends of randomly drawn source windows + generated residuals.

    Returns (map (n_new, T) float32 with NaN where the source cell was invalid, valid (n_new, T),
    source index (n_new,)).
    """
    rng = np.random.default_rng(seed)
    trend, _ = decompose(map_mmhg, valid, kernel_cells)
    src = rng.integers(0, map_mmhg.shape[0], n_new)
    new = trend[src] + model.sample(n_new, seed=seed)
    v = np.asarray(valid, bool)[src]
    return np.where(v, new, np.nan).astype(np.float32), v, src
