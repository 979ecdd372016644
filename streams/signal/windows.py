"""Window and patch arithmetic: pure functions of arrays and timestamps.

The forecaster at event time ``t_ns`` sees the last ``n_cells`` final MAP cells (ending at
``window_end_cell(t_ns)``) and the last ``n`` waveform samples before ``t_ns``. Missing cells or
samples are padded (NaN values, ``valid`` False), never shifted, so a window always has the
same shape and each position the same meaning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from streams.signal.cells import LEAD_OUT_S, CellTable, first_index, grid_ns_of

_NS = 10**9


def window_end_cell(t_ns: int, grid_s: float) -> int:
    """Last cell that is final at event time ``t_ns`` (all samples before ``t_ns`` known):
    the largest ``k`` with ``(k + 1) * grid + LEAD_OUT_S <= t_ns``."""
    grid_ns = grid_ns_of(grid_s)
    return (int(t_ns) - int(round(LEAD_OUT_S * _NS))) // grid_ns - 1


@dataclass(frozen=True)
class MapWindow:
    """``n`` consecutive cells ending at ``end_cell`` (shapes (n,))."""

    end_cell: int
    t_start_ns: np.ndarray   # int64, start of every cell (also for padded cells)
    map_mmhg: np.ndarray     # float32, NaN where padded
    sbp_mmhg: np.ndarray
    dbp_mmhg: np.ndarray
    hr_bpm: np.ndarray
    pp_mmhg: np.ndarray
    artifact: np.ndarray     # int32, 0 where padded
    valid: np.ndarray        # bool, False where padded


def map_window(table: CellTable, end_cell: int, n_cells: int) -> MapWindow:
    """Cells ``end_cell - n_cells + 1 .. end_cell`` from ``table``; cells the table does not
    hold (before its first cell, after its last) come back as NaN / ``valid`` False."""
    if n_cells <= 0:
        raise ValueError(f"map_window: n_cells must be > 0, got {n_cells}")
    grid_ns = grid_ns_of(table.grid_s)
    ks = np.arange(end_cell - n_cells + 1, end_cell + 1, dtype=np.int64)  # (n,)
    if len(table):
        first = int(table.t_start_ns[0] // grid_ns)
        rows = ks - first
        have = (rows >= 0) & (rows < len(table))
    else:
        rows = np.zeros(n_cells, np.int64)
        have = np.zeros(n_cells, bool)
    src = rows[have]

    def take(col: np.ndarray, fill, dtype) -> np.ndarray:
        out = np.full(n_cells, fill, dtype=dtype)
        out[have] = col[src]
        return out

    return MapWindow(
        end_cell=int(end_cell),
        t_start_ns=ks * grid_ns,
        map_mmhg=take(table.map_mmhg, np.nan, np.float32),
        sbp_mmhg=take(table.sbp_mmhg, np.nan, np.float32),
        dbp_mmhg=take(table.dbp_mmhg, np.nan, np.float32),
        hr_bpm=take(table.hr_bpm, np.nan, np.float32),
        pp_mmhg=take(table.pp_mmhg, np.nan, np.float32),
        artifact=take(table.artifact, 0, np.int32),
        valid=take(table.valid, False, bool),
    )


def waveform_window(x: np.ndarray, fs_hz: float, t0_ns: int, end_ns: int, window_s: float, *,
                    x_start_index: int = 0) -> np.ndarray:
    """The ``round(window_s * fs_hz)`` samples just before ``end_ns``, shape (n,) float32.

    ``x`` holds samples from absolute index ``x_start_index`` of a stream whose sample ``i`` is
    at ``t0_ns + i * 1e9 / fs_hz``; samples the buffer does not hold are NaN.
    """
    n = int(round(window_s * fs_hz))
    if n <= 0:
        raise ValueError(f"waveform_window: window_s={window_s} at {fs_hz} Hz holds no samples")
    hi = first_index(end_ns, fs_hz, t0_ns) - x_start_index  # exclusive, in buffer indices
    lo = hi - n
    out = np.full(n, np.nan, dtype=np.float32)
    a, b = max(lo, 0), min(hi, len(x))
    if a < b:
        out[a - lo:b - lo] = x[a:b]
    return out


def patchify(x: np.ndarray, patch_len: int) -> np.ndarray:
    """Split the last axis into non-overlapping patches: (..., L) -> (..., L // patch_len, patch_len).

    Raises ValueError naming both lengths when L is not a multiple of ``patch_len``.
    """
    x = np.asarray(x)
    if patch_len <= 0:
        raise ValueError(f"patchify: patch_len must be > 0, got {patch_len}")
    if x.ndim == 0:
        raise ValueError("patchify: expected at least one axis, got a scalar")
    length = x.shape[-1]
    if length % patch_len:
        raise ValueError(f"patchify: window length {length} is not a multiple of patch_len "
                         f"{patch_len} ({length} = {length // patch_len} * {patch_len} + "
                         f"{length % patch_len})")
    return x.reshape(*x.shape[:-1], length // patch_len, patch_len)


def cells_per_window(window_s: float, grid_s: float) -> int:
    """Number of cells in a window, requiring the window to be a whole number of cells."""
    n = window_s / grid_s
    if not math.isclose(n, round(n), abs_tol=1e-9) or round(n) <= 0:
        raise ValueError(f"window of {window_s} s is not a whole number of {grid_s} s cells")
    return int(round(n))
