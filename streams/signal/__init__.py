"""The pure signal path: resampling, beat detection, artifact gating, the MAP grid, windows.

Everything here is a function of (samples, fs_hz, absolute sample index or time); nothing
holds state or reads a clock, so the streaming pipeline and the batch cohort code agree.

    x (mmHg, NaN = missing) --resample_linear--> detect_beats --> summarise_cell (gate_cell)
        --> map_grid / cell_at (CellTable) --> map_window, waveform_window --> patchify
"""

from streams.signal.beats import Beats, detect_beats
from streams.signal.cells import (DEFAULT_GRID_S, LEAD_IN_S, LEAD_OUT_S, Cell, CellSlice, CellTable,
                                  cell_at, cell_slice, cells_at_end, complete_cells, first_index,
                                  map_grid, summarise_cell)
from streams.signal.gating import Artifact, CellStats, gate_cell
from streams.signal.resample import resample_linear
from streams.signal.windows import (MapWindow, cells_per_window, map_window, patchify,
                                    waveform_window, window_end_cell)

__all__ = [
    "Artifact", "Beats", "Cell", "CellSlice", "CellStats", "CellTable", "DEFAULT_GRID_S",
    "LEAD_IN_S", "LEAD_OUT_S", "MapWindow", "cell_at", "cell_slice", "cells_at_end",
    "cells_per_window", "complete_cells", "detect_beats", "first_index", "gate_cell", "map_grid",
    "map_window", "patchify", "resample_linear", "summarise_cell", "waveform_window",
    "window_end_cell",
]
