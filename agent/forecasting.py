"""The forecaster interface shared by the baseline and the trained engines.

The per-bed pipeline builds one ``ForecastInput`` per bed and tick; a forecaster maps a batch
of them to ``ForecastOutput``s. The baseline below needs no model file; engines loaded by
``models.runtime`` implement the same ``predict``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np

from streams.contracts import PatientContext


@dataclass
class ForecastInput:
    bed_id: str
    t_ns: int                     # event time at the end of the window
    map_mmhg: np.ndarray          # (n_cells,) float32, MAP on the grid, NaN where missing or gated
    sbp_mmhg: np.ndarray          # (n_cells,) float32
    dbp_mmhg: np.ndarray          # (n_cells,) float32
    hr_bpm: np.ndarray            # (n_cells,) float32
    valid: np.ndarray             # (n_cells,) bool, cell passed the artifact gate
    wave_mmhg: np.ndarray         # (n_wave,) float32, last wave_window_s of ABP at model_fs_hz, NaN = gap
    grid_s: float                 # spacing of the cell arrays (s)
    numerics: dict[str, float] = field(default_factory=dict)   # latest vitals by label (HR, SPO2, NIBP_MBP...)
    context: PatientContext | None = None


@dataclass
class ForecastOutput:
    risk: dict[int, float]                      # horizon (min) -> P(IOH starts within horizon)
    map_trajectory_mmhg: np.ndarray | None = None  # (n_future,) on the grid, when the model gives one
    drivers: dict[str, float] = field(default_factory=dict)


class Forecaster(Protocol):
    name: str
    version: str
    backend: str
    fallback_reason: str | None

    def predict(self, batch: Sequence[ForecastInput]) -> list[ForecastOutput]: ...


def map_level_and_slope(map_mmhg: np.ndarray, valid: np.ndarray, grid_s: float,
                        level_s: float = 30.0, trend_s: float = 300.0,
                        min_trend_coverage: float = 0.6) -> tuple[float, float]:
    """Current MAP (median of the last ``level_s``) and its least-squares slope (mmHg/min)
    over the last ``trend_s``, using valid cells only. The slope is NaN unless at least
    ``min_trend_coverage`` of the trend window is valid: a slope fitted to a minute of data
    swings by several mmHg/min on a normotensive patient."""
    n_level = max(1, int(round(level_s / grid_s)))
    n_trend = max(2, int(round(trend_s / grid_s)))
    ok = valid & np.isfinite(map_mmhg)
    recent = map_mmhg[-n_level:][ok[-n_level:]]
    level = float(np.median(recent)) if recent.size else math.nan
    y = map_mmhg[-n_trend:]
    m = ok[-n_trend:]
    if m.sum() < max(3, int(min_trend_coverage * n_trend)):
        return level, math.nan
    t_min = (np.arange(y.size, dtype=np.float64) - (y.size - 1)) * grid_s / 60.0
    tm, ym = t_min[m], y[m].astype(np.float64)
    tc = tm - tm.mean()
    denom = float((tc * tc).sum())
    slope = float((tc * (ym - ym.mean())).sum() / denom) if denom > 0 else math.nan
    return level, slope


@dataclass
class BaselineForecaster:
    """MAP level and trend: project the current MAP linearly to each horizon and map the
    projected margin below the IOH threshold to a probability with a logistic curve.

    Named so nobody mistakes it for a trained model. ``scale_mmhg`` sets how sharply the risk
    rises as the projection approaches the threshold; ``margin_mmhg`` shifts the midpoint above
    65 mmHg because a projection that just reaches 65 already means IOH is likely.
    """

    horizons_min: tuple[int, ...] = (5, 10, 15)
    threshold_mmhg: float = 65.0
    margin_mmhg: float = 5.0
    scale_mmhg: float = 3.0
    max_slope_mmhg_per_min: float = 2.0
    trend_persistence: float = 0.5
    name: str = "baseline-map-trend"
    version: str = "1"
    backend: str = "numpy"
    fallback_reason: str | None = None
    needs_wave: bool = False  # the pipeline skips resampling the waveform window for it

    def predict(self, batch: Sequence[ForecastInput]) -> list[ForecastOutput]:
        out = []
        for x in batch:
            level, slope = map_level_and_slope(x.map_mmhg, x.valid, x.grid_s)
            if not math.isfinite(level):
                out.append(ForecastOutput(risk={h: math.nan for h in self.horizons_min}))
                continue
            s = 0.0 if not math.isfinite(slope) else float(
                np.clip(slope, -self.max_slope_mmhg_per_min, self.max_slope_mmhg_per_min))
            risk = {}
            for h in self.horizons_min:
                proj = level + self.trend_persistence * s * h
                z = (self.threshold_mmhg + self.margin_mmhg - proj) / self.scale_mmhg
                risk[h] = float(1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z)))))
            out.append(ForecastOutput(risk=risk, drivers={"map_level_mmhg": level, "map_trend_mmhg_per_min": s}))
        return out
