"""Window and patch arithmetic on hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from streams.signal.cells import LEAD_OUT_S, Cell, CellTable
from streams.signal.windows import (cells_per_window, map_window, patchify, waveform_window,
                                    window_end_cell)

G = 3.0
GNS = 3 * 10**9


def _table(first_k: int, maps: list[float], valid: list[bool]) -> CellTable:
    cells = [Cell(t_start_ns=(first_k + i) * GNS, map_mmhg=m, sbp_mmhg=m + 30, dbp_mmhg=m - 15,
                  hr_bpm=70.0, pp_mmhg=45.0, n_beats=3, artifact=0 if v else 2, valid=v)
             for i, (m, v) in enumerate(zip(maps, valid))]
    return CellTable.from_cells(cells, G)


def test_window_end_cell():
    lead = int(LEAD_OUT_S * 1e9)
    # cell 9 = [27 s, 30 s) is final once t >= 30 s + lead-out
    assert window_end_cell(30 * 10**9 + lead, G) == 9
    assert window_end_cell(30 * 10**9 + lead - 1, G) == 8
    assert window_end_cell(33 * 10**9 + lead - 1, G) == 9


def test_map_window_pads_before_and_after_the_table():
    table = _table(100, [80.0, 81.0, 82.0, 83.0], [True, False, True, True])
    w = map_window(table, end_cell=102, n_cells=5)
    np.testing.assert_array_equal(w.map_mmhg, np.array([np.nan, np.nan, 80, 81, 82], np.float32))
    np.testing.assert_array_equal(w.valid, [False, False, True, False, True])
    np.testing.assert_array_equal(w.artifact, [0, 0, 0, 2, 0])
    np.testing.assert_array_equal(w.t_start_ns, np.arange(98, 103) * GNS)
    w = map_window(table, end_cell=105, n_cells=3)
    np.testing.assert_array_equal(w.map_mmhg, np.array([83, np.nan, np.nan], np.float32))
    np.testing.assert_array_equal(w.valid, [True, False, False])
    empty = map_window(CellTable.from_cells([], G), end_cell=5, n_cells=2)
    assert np.isnan(empty.map_mmhg).all() and not empty.valid.any()
    with pytest.raises(ValueError, match="n_cells"):
        map_window(table, 102, 0)


def test_cell_table_rejects_non_consecutive_cells():
    cells = _table(0, [80.0, 81.0], [True, True]).cells()
    moved = Cell(**{**cells[1].__dict__, "t_start_ns": 5 * GNS})
    with pytest.raises(ValueError, match="consecutive"):
        CellTable.from_cells([cells[0], moved], G)


def test_waveform_window():
    x = np.arange(10, dtype=np.float32)            # samples at t0 + i * 10 ms (100 Hz)
    t0 = 1_000 * 10**6
    # 50 ms before t = t0 + 70 ms: samples 2..6
    np.testing.assert_array_equal(waveform_window(x, 100.0, t0, t0 + 70 * 10**6, 0.05), [2, 3, 4, 5, 6])
    # end not on a sample: first sample at or after end is 7 (t0 + 70 ms) -> same window
    np.testing.assert_array_equal(waveform_window(x, 100.0, t0, t0 + 61 * 10**6, 0.05), [2, 3, 4, 5, 6])
    # before the first sample and past the buffer: NaN padding, shape kept
    w = waveform_window(x, 100.0, t0, t0 + 30 * 10**6, 0.05)
    np.testing.assert_array_equal(w, np.array([np.nan, np.nan, 0, 1, 2], np.float32))
    w = waveform_window(x, 100.0, t0, t0 + 120 * 10**6, 0.05)
    np.testing.assert_array_equal(w, np.array([7, 8, 9, np.nan, np.nan], np.float32))
    # a buffer holding absolute samples 4..9
    w = waveform_window(x[4:], 100.0, t0, t0 + 70 * 10**6, 0.05, x_start_index=4)
    np.testing.assert_array_equal(w, np.array([np.nan, np.nan, 4, 5, 6], np.float32))


def test_patchify():
    x = np.arange(12)
    p = patchify(x, 4)
    assert p.shape == (3, 4)
    np.testing.assert_array_equal(p[1], [4, 5, 6, 7])
    batch = np.arange(24).reshape(2, 12)          # (B, L) -> (B, L/p, p)
    assert patchify(batch, 3).shape == (2, 4, 3)
    np.testing.assert_array_equal(patchify(batch, 3)[1, 0], [12, 13, 14])
    with pytest.raises(ValueError, match=r"length 12 is not a multiple of patch_len 5"):
        patchify(x, 5)
    with pytest.raises(ValueError, match="patch_len must be > 0"):
        patchify(x, 0)


def test_cells_per_window():
    assert cells_per_window(900.0, 3.0) == 300
    assert cells_per_window(30.0, 3.0) == 10
    with pytest.raises(ValueError, match="whole number"):
        cells_per_window(10.0, 3.0)
