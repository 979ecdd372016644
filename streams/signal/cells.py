"""The MAP grid: per-cell beat summaries on cells aligned to absolute epoch time.

Time model
----------
A bed's waveform is ``x`` (mmHg, NaN = missing) at ``fs_hz``; sample ``i`` is at device time
``t0_ns + i * 1e9 / fs_hz``. Cell ``k`` covers ``[k * grid_ns, (k + 1) * grid_ns)`` in epoch
nanoseconds. Its samples are ``[first_index(k * grid_ns), first_index((k + 1) * grid_ns))``
where ``first_index(t)`` is the first sample at or after ``t`` (exact rational arithmetic, so
no rounding drift over hours).

A cell's summary looks at the segment ``[first_index(start - LEAD_IN_S),
first_index(end + LEAD_OUT_S))`` clipped to the samples that exist, and nothing else.
A beat belongs to the cell that holds its **systolic peak**; the lead-in and lead-out give the
beats at both borders their onsets and ends (a beat lasts at most 2 s at 30 bpm).

A cell is *complete* once the sample at ``end + LEAD_OUT_S`` would be the next one to arrive
(``complete_cells``); its summary can then never change, because its segment is fixed.
The streaming pipeline and the batch ``map_grid`` both call ``cell_at`` on the same
samples, so they produce identical numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from fractions import Fraction

import numpy as np

from streams.signal.beats import detect_beats
from streams.signal.gating import (FLUSH_MMHG, ZERO_MMHG, Artifact, CellStats, beat_plausible,
                                   gate_cell)

LEAD_IN_S = 2.5     # context before a cell: the onset of a beat peaking at the cell start
LEAD_OUT_S = 2.5    # context after: the end of a 30 bpm beat peaking just before the cell end
FLUSH_GUARD_S = 1.0  # a flush plateau this close to the cell also flags it (ringing, refill)
DEFAULT_GRID_S = 3.0

_NS = 10**9


def _fs(fs_hz: float) -> Fraction:
    if not fs_hz > 0:
        raise ValueError(f"sampling rate must be > 0 Hz, got {fs_hz}")
    return Fraction(fs_hz).limit_denominator(10**6)


def grid_ns_of(grid_s: float) -> int:
    grid_ns = int(round(grid_s * _NS))
    if grid_ns <= 0:
        raise ValueError(f"grid_s must be > 0, got {grid_s}")
    return grid_ns


def first_index(t_ns: int, fs_hz: float, t0_ns: int) -> int:
    """Index of the first sample at or after ``t_ns`` (may be negative or past the end)."""
    return math.ceil(Fraction(int(t_ns) - int(t0_ns)) * _fs(fs_hz) / _NS)


@dataclass(frozen=True)
class CellSlice:
    """Where cell ``k`` lies in a sample array (absolute sample indices, 0 = first sample).

    ``x[seg_lo:seg_hi]`` is the segment passed to ``summarise_cell`` and ``cell_lo:cell_hi``
    the cell's own range *within that segment*; ``n_expected`` is how many samples the cell
    holds when nothing is missing.
    """

    k: int
    t_start_ns: int
    seg_lo: int
    seg_hi: int
    cell_lo: int
    cell_hi: int
    n_expected: int


def cell_slice(k: int, n_samples: int, fs_hz: float, t0_ns: int, grid_s: float = DEFAULT_GRID_S
               ) -> CellSlice:
    grid_ns = grid_ns_of(grid_s)
    start_ns, end_ns = k * grid_ns, (k + 1) * grid_ns
    a = first_index(start_ns, fs_hz, t0_ns)
    b = first_index(end_ns, fs_hz, t0_ns)
    seg_lo = min(max(0, first_index(start_ns - int(round(LEAD_IN_S * _NS)), fs_hz, t0_ns)), n_samples)
    seg_hi = min(max(0, first_index(end_ns + int(round(LEAD_OUT_S * _NS)), fs_hz, t0_ns)), n_samples)
    cell_lo = min(max(a, 0), n_samples) - seg_lo
    cell_hi = min(max(b, 0), n_samples) - seg_lo
    return CellSlice(k=k, t_start_ns=start_ns, seg_lo=seg_lo, seg_hi=seg_hi, cell_lo=cell_lo,
                     cell_hi=cell_hi, n_expected=b - a)


def complete_cells(n_samples: int, fs_hz: float, t0_ns: int, grid_s: float = DEFAULT_GRID_S
                   ) -> range:
    """Cell indices whose summary is final once samples ``0..n_samples-1`` are known.

    Starts at the cell holding the first sample; cell ``k`` is final when the next sample
    (index ``n_samples``) is at or after ``(k + 1) * grid + LEAD_OUT_S``.
    """
    grid_ns = grid_ns_of(grid_s)
    k0 = int(t0_ns) // grid_ns
    if n_samples <= 0:
        return range(k0, k0)
    t_next = Fraction(int(t0_ns)) + Fraction(n_samples) * _NS / _fs(fs_hz)
    k_last = math.floor((t_next - int(round(LEAD_OUT_S * _NS))) / grid_ns) - 1
    return range(k0, max(k0, k_last + 1))


def cells_at_end(n_samples: int, fs_hz: float, t0_ns: int, grid_s: float = DEFAULT_GRID_S
                 ) -> range:
    """Every cell holding at least one sample: what is final when the recording has ended."""
    grid_ns = grid_ns_of(grid_s)
    k0 = int(t0_ns) // grid_ns
    if n_samples <= 0:
        return range(k0, k0)
    t_last = Fraction(int(t0_ns)) + Fraction(n_samples - 1) * _NS / _fs(fs_hz)
    return range(k0, math.floor(t_last / grid_ns) + 1)


@dataclass(frozen=True)
class Cell:
    """Summary of one grid cell. Values come from the cell's plausible beats:
    ``map_mmhg`` is their time-weighted mean pressure (total area / total duration),
    ``sbp/dbp/pp`` the mean of their beat values, ``hr_bpm`` beats per minute over their
    duration. NaN when the cell has no plausible beat. ``valid`` is ``artifact == 0``."""

    t_start_ns: int
    map_mmhg: float
    sbp_mmhg: float
    dbp_mmhg: float
    hr_bpm: float
    pp_mmhg: float
    n_beats: int
    artifact: int
    valid: bool


def _longest_run_s(mask: np.ndarray, fs_hz: float) -> float:
    if not mask.any():
        return 0.0
    edges = np.diff(np.concatenate(([0], mask.view(np.int8), [0])))
    return float((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max() / fs_hz)


def summarise_cell(segment: np.ndarray, fs_hz: float, cell_lo: int, cell_hi: int, *,
                   t_start_ns: int = 0, n_expected: int | None = None) -> Cell:
    """Summarise one cell.

    segment:  (m,) mmHg, the samples from LEAD_IN_S before the cell start to LEAD_OUT_S after
              its end, clipped where the recording has no samples (``cell_slice`` gives them)
    cell_lo, cell_hi: the cell's own samples are ``segment[cell_lo:cell_hi]``
    n_expected: samples in a full cell (default ``cell_hi - cell_lo``); a cell cut by the
              start or end of the recording has fewer and is flagged GAP when under coverage
    """
    seg = np.array(segment, dtype=np.float64)  # a fresh copy: same layout on every path
    if not 0 <= cell_lo <= cell_hi <= seg.size:
        raise ValueError(f"summarise_cell: cell range [{cell_lo}, {cell_hi}) is outside the "
                         f"segment of {seg.size} samples")
    n_full = (cell_hi - cell_lo) if n_expected is None else int(n_expected)
    own = seg[cell_lo:cell_hi]
    finite = own[np.isfinite(own)]
    coverage = finite.size / n_full if n_full > 0 else 0.0

    guard = int(round(FLUSH_GUARD_S * fs_hz))
    around = seg[max(0, cell_lo - guard):min(seg.size, cell_hi + guard)]
    with np.errstate(invalid="ignore"):
        flush_run_s = _longest_run_s(around > FLUSH_MMHG, fs_hz)
        zero_frac = float(np.mean(np.abs(finite) < ZERO_MMHG)) if finite.size else 0.0

    beats = detect_beats(seg, fs_hz)
    mine = beats.select((beats.peak >= cell_lo) & (beats.peak < cell_hi))
    ok = beat_plausible(mine.map, mine.pp, mine.hr_bpm)
    good = mine.select(ok)
    dur = (good.end - good.onset).astype(np.float64)
    n_good = len(good)
    if n_good:
        map_mmhg = float(np.sum(good.map * dur) / np.sum(dur))
        sbp, dbp, pp = float(good.sbp.mean()), float(good.dbp.mean()), float(good.pp.mean())
        hr = float(60.0 * fs_hz * n_good / np.sum(dur))
    else:
        map_mmhg = sbp = dbp = pp = hr = math.nan
    n_all = len(mine)
    stats = CellStats(
        coverage=coverage,
        flush_run_s=flush_run_s,
        zero_frac=zero_frac,
        std_mmhg=float(finite.std()) if finite.size else 0.0,
        n_beats=n_all,
        n_implausible=int(n_all - n_good),
        beat_coverage=float(dur.sum() / n_full) if n_full > 0 else 0.0,
        map_mmhg=float(np.median(mine.map)) if n_all else math.nan,
        pp_mmhg=float(np.median(mine.pp)) if n_all else math.nan,
        notch_frac=float(np.mean(mine.notch >= 0)) if n_all else 0.0,
        rise_s=float(np.median(mine.rise_s)) if n_all else 0.0,
    )
    artifact = gate_cell(stats)
    return Cell(t_start_ns=int(t_start_ns), map_mmhg=map_mmhg, sbp_mmhg=sbp, dbp_mmhg=dbp,
                hr_bpm=hr, pp_mmhg=pp, n_beats=n_good, artifact=int(artifact),
                valid=artifact == Artifact.NONE)


def cell_at(x: np.ndarray, fs_hz: float, t0_ns: int, k: int, grid_s: float = DEFAULT_GRID_S, *,
            x_start_index: int = 0, n_samples: int | None = None) -> Cell:
    """Summary of cell ``k`` from a buffer ``x`` whose first element is absolute sample
    ``x_start_index`` of a recording that so far holds ``n_samples`` samples (default:
    ``x_start_index + len(x)``). Raises ValueError when the buffer lacks part of the segment.
    """
    n_total = x_start_index + len(x) if n_samples is None else int(n_samples)
    sl = cell_slice(k, n_total, fs_hz, t0_ns, grid_s)
    lo, hi = sl.seg_lo - x_start_index, sl.seg_hi - x_start_index
    if lo < 0 or hi > len(x):
        raise ValueError(f"cell_at: cell {k} needs samples [{sl.seg_lo}, {sl.seg_hi}) but the "
                         f"buffer holds [{x_start_index}, {x_start_index + len(x)})")
    return summarise_cell(x[lo:hi], fs_hz, sl.cell_lo, sl.cell_hi, t_start_ns=sl.t_start_ns,
                          n_expected=sl.n_expected)


@dataclass(frozen=True)
class CellTable:
    """Parallel arrays, one entry per consecutive grid cell (shape (n,) each)."""

    grid_s: float
    t_start_ns: np.ndarray   # int64
    map_mmhg: np.ndarray     # float64, NaN where no plausible beat
    sbp_mmhg: np.ndarray
    dbp_mmhg: np.ndarray
    hr_bpm: np.ndarray
    pp_mmhg: np.ndarray
    n_beats: np.ndarray      # int32
    artifact: np.ndarray     # int32, Artifact flags
    valid: np.ndarray        # bool

    def __len__(self) -> int:
        return int(self.t_start_ns.size)

    @property
    def cell_index(self) -> np.ndarray:
        """(n,) int64 absolute cell index k of each row."""
        return self.t_start_ns // grid_ns_of(self.grid_s)

    @staticmethod
    def from_cells(cells: list[Cell], grid_s: float) -> "CellTable":
        cols = {f.name: [getattr(c, f.name) for c in cells] for f in fields(Cell)}
        dtypes = {"t_start_ns": np.int64, "n_beats": np.int32, "artifact": np.int32, "valid": bool}
        arrays = {name: np.asarray(vals, dtype=dtypes.get(name, np.float64))
                  for name, vals in cols.items()}
        table = CellTable(grid_s=float(grid_s), **arrays)
        k = table.cell_index
        if k.size > 1 and not np.all(np.diff(k) == 1):
            raise ValueError("CellTable: cells must be consecutive grid cells in order")
        return table

    def cells(self) -> list[Cell]:
        return [Cell(t_start_ns=int(self.t_start_ns[i]), map_mmhg=float(self.map_mmhg[i]),
                     sbp_mmhg=float(self.sbp_mmhg[i]), dbp_mmhg=float(self.dbp_mmhg[i]),
                     hr_bpm=float(self.hr_bpm[i]), pp_mmhg=float(self.pp_mmhg[i]),
                     n_beats=int(self.n_beats[i]), artifact=int(self.artifact[i]),
                     valid=bool(self.valid[i])) for i in range(len(self))]


def map_grid(x: np.ndarray, fs_hz: float, t0_ns: int, grid_s: float = DEFAULT_GRID_S, *,
             at_end: bool = True) -> CellTable:
    """Batch MAP grid of a recording: ``cell_at`` for every cell that is final.

    at_end=True: the recording has ended, so the last cells (lead-out cut short) are final too
    (``cells_at_end``); at_end=False: only ``complete_cells``, as a live stream would have.
    """
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"map_grid: expected a 1-D waveform, got shape {x.shape}")
    ks = (cells_at_end if at_end else complete_cells)(x.size, fs_hz, t0_ns, grid_s)
    return CellTable.from_cells([cell_at(x, fs_hz, t0_ns, k, grid_s) for k in ks], grid_s)
