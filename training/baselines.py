"""Baselines scored on exactly the samples the model is scored on.

* ``current_map``: score = -(current MAP), current MAP = median of the valid cells of the last 30 s;
* ``map_threshold``: 1 when current MAP < ``threshold_mmhg`` (75 by default, the top of the
  72-75 mmHg range clinicians use), else 0 — a binary alarm, reported as a score too;
* ``linear_extrapolation``: least-squares line through the valid cells of the last ``fit_s``
  (180 s) projected ``h`` minutes ahead; score = -(projected MAP);
* ``hpi_cnn``: the open HPI-style CNN VitalDB publishes (``openvital.filters.abp_hpi``, weights
  ``model_hpi_state_dict_v1.pth`` from the ``openvital`` package) on the last 20 s of 100 Hz ABP.

About the HPI network: its five convolutions share **one** BatchNorm module, so the stored running
statistics are an average over five different layers and eval mode gives a near-constant output
(about 0.9 on any input, measured). The filter as shipped never calls ``eval()``: it runs in training
mode, i.e. with batch statistics. We keep that (it is what the weights were trained with) but make
it deterministic and independent of the scored batch: per-layer batch statistics are measured once
on a reference set of ABP segments (the training split, no labels used) and then frozen; dropout
is off. Segments the filter itself rejects (over 10 % missing, max > 200, min < 20, pulse range
< 30 mmHg, a jump > 30 mmHg between samples) get no HPI; the evaluation carries the last HPI of the
same recording forward, as the monitor display would, and uses 0.5 before the first one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

HPI_FS_HZ = 100.0
HPI_SAMPLES = 2000  # 20 s at 100 Hz


def _last_level(map_mmhg: np.ndarray, valid: np.ndarray, n_cells: int) -> np.ndarray:
    """Median of the valid cells among the last ``n_cells`` of each row. (N, T) -> (N,)"""
    m = np.where(valid[:, -n_cells:], map_mmhg[:, -n_cells:], np.nan).astype(np.float64)
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmedian(m, axis=1)


def current_map(map_mmhg: np.ndarray, valid: np.ndarray, grid_s: float = 3.0, level_s: float = 30.0) -> np.ndarray:
    """Current MAP (mmHg) per sample; NaN when no valid cell in the last ``level_s``. (N, T) -> (N,)"""
    return _last_level(map_mmhg, valid, max(1, int(round(level_s / grid_s))))


def current_map_score(map_mmhg, valid, grid_s=3.0) -> np.ndarray:
    lvl = current_map(map_mmhg, valid, grid_s)
    return -np.nan_to_num(lvl, nan=np.nanmedian(lvl) if np.isfinite(lvl).any() else 80.0)


def map_threshold_score(map_mmhg, valid, grid_s=3.0, threshold_mmhg: float = 75.0) -> np.ndarray:
    lvl = current_map(map_mmhg, valid, grid_s)
    return (np.nan_to_num(lvl, nan=np.inf) < threshold_mmhg).astype(np.float64)


def linear_extrapolation(map_mmhg: np.ndarray, valid: np.ndarray, horizon_min: float, grid_s: float = 3.0,
                         fit_s: float = 180.0) -> np.ndarray:
    """MAP projected ``horizon_min`` ahead from a least-squares line over the last ``fit_s``.

    (N, T) -> (N,). Rows with fewer than 3 valid cells in the fit window keep the current MAP.
    """
    n = max(3, int(round(fit_s / grid_s)))
    y = map_mmhg[:, -n:].astype(np.float64)
    w = (valid[:, -n:] & np.isfinite(y)).astype(np.float64)
    t_min = (np.arange(n) - (n - 1)) * grid_s / 60.0            # (n,), 0 at the last cell
    sw = w.sum(1)
    yz = np.where(w > 0, y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        tm = (w * t_min).sum(1) / sw
        ym = (w * yz).sum(1) / sw
        tc = t_min[None, :] - tm[:, None]
        slope = (w * tc * (yz - ym[:, None])).sum(1) / (w * tc * tc).sum(1)
        proj = ym + slope * (horizon_min - tm)
    lvl = current_map(map_mmhg, valid, grid_s)
    ok = (sw >= 3) & np.isfinite(proj)
    return np.where(ok, proj, lvl)


def linear_extrapolation_score(map_mmhg, valid, horizon_min, grid_s=3.0) -> np.ndarray:
    p = linear_extrapolation(map_mmhg, valid, horizon_min, grid_s)
    return -np.nan_to_num(p, nan=np.nanmedian(p) if np.isfinite(p).any() else 80.0)


# --- the VitalDB HPI-style CNN --------------------------------------------------------------------

def hpi_segment_ok(seg_mmhg: np.ndarray) -> np.ndarray:
    """The filter's own input checks. (N, 2000) -> (N,) bool"""
    seg = np.asarray(seg_mmhg, dtype=np.float64)
    nan_frac = np.isnan(seg).mean(1)
    with np.errstate(invalid="ignore"):
        mx, mn = np.nanmax(np.where(np.isnan(seg), -np.inf, seg), 1), np.nanmin(np.where(np.isnan(seg), np.inf, seg), 1)
        jump = np.nanmax(np.abs(np.diff(seg, axis=1)), 1, initial=0.0)
    return (nan_frac <= 0.1) & (mx <= 200) & (mn >= 20) & (mx - mn >= 30) & ~(jump > 30)


def _interp_nan(seg: np.ndarray) -> np.ndarray:
    out = seg.copy()
    for row in out:
        bad = np.isnan(row)
        if bad.any() and (~bad).any():
            row[bad] = np.interp(np.nonzero(bad)[0], np.nonzero(~bad)[0], row[~bad])
    return out


@dataclass
class HPIBaseline:
    """VitalDB's HPI CNN with per-layer batch statistics frozen from a reference set."""

    stats: list[tuple[np.ndarray, np.ndarray]] | None = None  # per conv layer: (mean, var), each (64,)
    _net: object = field(default=None, repr=False)

    def _load(self):
        if self._net is None:
            import torch
            import openvital.filters.abp_hpi as hpi_mod

            net = hpi_mod.Net()
            weights = os.path.join(os.path.dirname(hpi_mod.__file__), "model_hpi_state_dict_v1.pth")
            net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            net.eval()
            self._net = net
        return self._net

    def _forward(self, x):
        """x: (N, 1, 2000) normalised ABP -> (N,) probability, with the frozen per-layer stats."""
        import torch

        net = self._load()
        bn = net.batchnorm
        convs = [net.conv1, net.conv2, net.conv3, net.conv4, net.conv5]
        h = x
        for i, conv in enumerate(convs):
            h = torch.relu(conv(h))                                     # (N, 64, L)
            mean, var = (torch.as_tensor(a, dtype=h.dtype) for a in self.stats[i])
            h = (h - mean[None, :, None]) / torch.sqrt(var[None, :, None] + bn.eps)
            h = h * bn.weight[None, :, None] + bn.bias[None, :, None]
            h = net.maxpool(h)
        h = net.gap(h).squeeze(2)                                       # (N, 64)
        p = torch.sigmoid(net.fc2(torch.relu(net.fc1(h)))).squeeze(1)  # (N,)
        return p

    @staticmethod
    def _prep(seg_mmhg: np.ndarray):
        import torch

        seg = _interp_nan(np.asarray(seg_mmhg, dtype=np.float64)[:, -HPI_SAMPLES:])
        return torch.from_numpy(((seg - 65.0) / 65.0)[:, None, :].astype(np.float32))

    def calibrate(self, seg_mmhg: np.ndarray, max_segments: int = 2000, seed: int = 0) -> "HPIBaseline":
        """Measure per-layer batch statistics on reference segments (N, >=2000) mmHg at 100 Hz."""
        import torch

        seg = np.asarray(seg_mmhg)[hpi_segment_ok(np.asarray(seg_mmhg)[:, -HPI_SAMPLES:])]
        if seg.shape[0] < 8:
            raise ValueError(f"hpi baseline: only {seg.shape[0]} usable reference segments (need >= 8)")
        if seg.shape[0] > max_segments:
            seg = seg[np.random.default_rng(seed).choice(seg.shape[0], max_segments, replace=False)]
        with torch.no_grad():
            x = self._prep(seg)
            # statistics of layer i depend on the normalisation of layers < i: fill them in order
            self.stats = []
            for i in range(5):
                _, found = self._forward_partial(x, i)
                self.stats.append(found)
        return self

    def _forward_partial(self, x, upto: int):
        import torch

        net = self._load()
        bn = net.batchnorm
        convs = [net.conv1, net.conv2, net.conv3, net.conv4, net.conv5]
        h = x
        for i in range(upto + 1):
            h = torch.relu(convs[i](h))
            if i == upto:
                return None, (h.mean(dim=(0, 2)).numpy(), h.var(dim=(0, 2), unbiased=False).numpy())
            mean, var = (torch.as_tensor(a) for a in self.stats[i])
            h = (h - mean[None, :, None]) / torch.sqrt(var[None, :, None] + bn.eps)
            h = net.maxpool(h * bn.weight[None, :, None] + bn.bias[None, :, None])
        raise AssertionError("unreachable")

    def score(self, seg_mmhg: np.ndarray, batch: int = 512) -> np.ndarray:
        """HPI in [0, 1] per segment (N, >=2000) mmHg at 100 Hz; NaN where the filter rejects it."""
        import torch

        if self.stats is None:
            raise RuntimeError("hpi baseline: call calibrate() on reference segments first")
        seg = np.asarray(seg_mmhg)
        if seg.ndim != 2 or seg.shape[1] < HPI_SAMPLES:
            raise ValueError(f"hpi baseline: need (N, >= {HPI_SAMPLES}) samples at 100 Hz, got {seg.shape}")
        ok = hpi_segment_ok(seg[:, -HPI_SAMPLES:])
        out = np.full(seg.shape[0], np.nan)
        idx = np.nonzero(ok)[0]
        with torch.no_grad():
            for i in range(0, idx.size, batch):
                j = idx[i:i + batch]
                out[j] = self._forward(self._prep(seg[j])).numpy()
        return out


def carry_forward(score: np.ndarray, case: np.ndarray, fill: float = 0.5) -> np.ndarray:
    """Replace NaN with the last finite score of the same case (samples sorted by case, time)."""
    out = np.asarray(score, dtype=np.float64).copy()
    last, last_case = fill, None
    for i in range(out.size):
        if case[i] != last_case:
            last, last_case = fill, case[i]
        if np.isfinite(out[i]):
            last = out[i]
        else:
            out[i] = last
    return out
