"""The MAP grid: batch ``map_grid`` equals what a live stream computes on every prefix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb

from streams.signal.cells import (LEAD_IN_S, LEAD_OUT_S, CellTable, cell_at, cell_slice,
                                  cells_at_end, complete_cells, map_grid, summarise_cell)
from streams.signal.beats import detect_beats
from streams.signal.synthetic import synthetic_abp

GRID_S = 3.0
T0_NS = 1_700_000_000_123_456_789   # not aligned to the grid on purpose


@pytest.fixture(scope="module")
def synthetic_10min() -> np.ndarray:
    syn = synthetic_abp(600.0, 125.0, hr_bpm=75.0, seed=11)
    x = syn.x_mmhg.copy()
    x[20_000:20_300] = np.nan          # a 2.4 s gap
    return x


@pytest.fixture(scope="module")
def real_x(real_abp_record: Path) -> np.ndarray:
    rec = wfdb.rdrecord(str(real_abp_record.with_suffix("")), channel_names=["ABP"])
    return rec.p_signal[:, 0].astype(np.float32)


def _same(a: CellTable, b: CellTable) -> None:
    """Tables equal bit for bit (NaN equal to NaN)."""
    assert len(a) == len(b)
    for name in ("t_start_ns", "n_beats", "artifact", "valid"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("map_mmhg", "sbp_mmhg", "dbp_mmhg", "hr_bpm", "pp_mmhg"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def _rows(table: CellTable, ks: range) -> CellTable:
    first = int(table.cell_index[0])
    return CellTable.from_cells(table.cells()[ks.start - first:ks.stop - first], table.grid_s)


def _prefixes(x: np.ndarray, fs_hz: float, t0_ns: int, rng: np.random.Generator) -> list[int]:
    """Prefix lengths ending at cell borders, just before/after them, at the end of a cell's
    lead-out, inside beats (upstroke and diastole) and at random points."""
    n = x.size
    out = set(rng.integers(1, n, 4).tolist())
    beats = detect_beats(x, fs_hz)
    for j in rng.choice(len(beats), 4, replace=False):   # between onset and peak, and after it
        out.update({int(beats.onset[j] + beats.peak[j]) // 2, int(beats.peak[j] + beats.end[j]) // 2})
    for k in list(cells_at_end(n, fs_hz, t0_ns, GRID_S))[1::53]:
        b = cell_slice(k, n, fs_hz, t0_ns, GRID_S)
        border = b.seg_lo + b.cell_hi  # first sample of the next cell
        lead_out_end = b.seg_hi        # first sample after the lead-out context
        out.update({border, border + 1, lead_out_end - 1, lead_out_end, lead_out_end + 1})
    return sorted(m for m in out if 0 < m <= n)


@pytest.mark.parametrize("source", ["synthetic", "real"])
def test_map_grid_on_prefixes_equals_batch(source, synthetic_10min, real_x):
    x, fs_hz = (synthetic_10min, 125.0) if source == "synthetic" else (real_x, 125.0)
    full = map_grid(x, fs_hz, T0_NS, GRID_S)
    assert np.array_equal(full.cell_index, np.arange(full.cell_index[0], full.cell_index[-1] + 1))
    rng = np.random.default_rng(1)
    for m in _prefixes(x, fs_hz, T0_NS, rng):
        ks = complete_cells(m, fs_hz, T0_NS, GRID_S)
        part = map_grid(x[:m], fs_hz, T0_NS, GRID_S, at_end=False)
        assert np.array_equal(part.cell_index, np.arange(ks.start, ks.stop))
        if len(ks):
            _same(part, _rows(full, ks))


@pytest.mark.parametrize("fs_hz", [125.0, 500.0])
def test_streaming_with_a_trimmed_buffer_equals_batch(fs_hz, synthetic_10min):
    """What agent.pipeline does: samples arrive in uneven chunks, the buffer keeps only the
    last few seconds, each cell is summarised once, when it becomes complete."""
    if fs_hz == 125.0:
        x = synthetic_10min
    else:
        x = synthetic_abp(120.0, fs_hz, hr_bpm=95.0, seed=13).x_mmhg.copy()
        x[30_000:31_000] = np.nan
    full = map_grid(x, fs_hz, T0_NS, GRID_S, at_end=False)
    rng = np.random.default_rng(2)
    keep = int((LEAD_IN_S + GRID_S + LEAD_OUT_S + 2.0) * fs_hz)
    buf, buf_start, n, done = np.zeros(0, np.float32), 0, 0, None
    streamed = []
    while n < x.size:
        step = int(rng.integers(1, int(3 * fs_hz)))
        chunk = x[n:n + step]
        n += chunk.size
        buf = np.concatenate([buf, chunk])
        ks = complete_cells(n, fs_hz, T0_NS, GRID_S)
        for k in range(ks.start if done is None else done + 1, ks.stop):
            streamed.append(cell_at(buf, fs_hz, T0_NS, k, GRID_S, x_start_index=buf_start, n_samples=n))
            done = k
        if buf.size > keep:
            buf_start += buf.size - keep
            buf = buf[-keep:]
    _same(CellTable.from_cells(streamed, GRID_S), full)


def test_complete_cells_arithmetic():
    fs, grid = 100.0, 3.0
    # t0 at an exact cell border (cell 10): cell 10 is complete once t_next >= 33 s + lead-out
    t0 = 30 * 10**9
    need = int(round((3.0 + LEAD_OUT_S) * fs))
    assert complete_cells(need - 1, fs, t0, grid) == range(10, 10)
    assert complete_cells(need, fs, t0, grid) == range(10, 11)
    assert complete_cells(0, fs, t0, grid) == range(10, 10)
    assert cells_at_end(1, fs, t0, grid) == range(10, 11)
    assert cells_at_end(301, fs, t0, grid) == range(10, 12)   # sample 300 is at 33.0 s
    sl = cell_slice(11, 10_000, fs, t0, grid)
    assert (sl.seg_lo, sl.cell_lo, sl.cell_hi, sl.n_expected) == (
        300 - int(LEAD_IN_S * fs), int(LEAD_IN_S * fs), int(LEAD_IN_S * fs) + 300, 300)
    # the first cell of a recording that starts mid-cell is partial: clipped, not shifted
    sl0 = cell_slice(10, 10_000, fs, t0 + 10**9, grid)
    assert (sl0.seg_lo, sl0.cell_lo, sl0.cell_hi, sl0.n_expected) == (0, 0, 200, 300)


def test_cell_values_on_synthetic_signal():
    syn = synthetic_abp(120.0, 500.0, hr_bpm=60.0, sbp_mmhg=120.0, dbp_mmhg=70.0, seed=12)
    table = map_grid(syn.x_mmhg, 500.0, 0, GRID_S)
    inner = table.valid
    assert inner.mean() > 0.95
    assert np.all(np.abs(table.hr_bpm[inner] - 60.0) < 5.0)
    assert np.all(np.abs(table.sbp_mmhg[inner] - 120.0) < 8.0)
    assert np.all(np.abs(table.dbp_mmhg[inner] - 70.0) < 5.0)
    # MAP equals the mean pressure over whole cycles
    ref = np.mean(syn.x_mmhg[int(syn.onset_s[2] * 500):int(syn.onset_s[-3] * 500)])
    assert abs(np.median(table.map_mmhg[inner]) - ref) < 2.0
    # every beat is counted once: beats of all cells add up to the beats in the recording
    assert abs(int(table.n_beats.sum()) - (syn.onset_s.size - 1)) <= 2


def test_summarise_cell_rejects_a_range_outside_the_segment():
    with pytest.raises(ValueError, match="outside the segment"):
        summarise_cell(np.zeros(100, np.float32), 125.0, 50, 150)
    with pytest.raises(ValueError, match="buffer holds"):
        cell_at(np.zeros(100, np.float32), 125.0, 0, 1, GRID_S, x_start_index=1000)
