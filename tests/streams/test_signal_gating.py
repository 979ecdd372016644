"""Artifact gate: each line failure flagged on a synthetic waveform, clean signal left valid,
and the zeroing + flush at the start of the real record gated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb
from scipy.signal import butter, sosfilt, sosfilt_zi, sosfiltfilt

from streams.signal.cells import map_grid
from streams.signal.gating import Artifact, CellStats, gate_cell
from streams.signal.synthetic import synthetic_abp

FS = 125.0
GRID_S = 3.0


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return synthetic_abp(120.0, FS, hr_bpm=70.0, seed=21).x_mmhg


def _flags_between(x: np.ndarray, t_from_s: float, t_to_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Artifact flags of the cells inside [t_from_s, t_to_s) and of the rest (t0 = 0)."""
    table = map_grid(x, FS, 0, GRID_S)
    t_s = table.t_start_ns / 1e9
    inside = (t_s >= t_from_s) & (t_s + GRID_S <= t_to_s)
    return table.artifact[inside], table.artifact[~inside]


def test_clean_synthetic_signal_is_valid(clean):
    table = map_grid(clean, FS, 0, GRID_S)
    inner = table.artifact[1:-1]  # the last cell is cut by the recording end
    assert np.all(inner == Artifact.NONE), np.unique(inner)


@pytest.mark.parametrize("kind,expected", [
    ("flush", Artifact.FLUSH),
    ("zero", Artifact.ZERO),
    ("flat", Artifact.LINE_OFF),
    ("gap", Artifact.GAP),
    ("damped", Artifact.DAMPED),
    ("damped_mild", Artifact.DAMPED),
])
def test_artifact_is_flagged(clean, kind, expected):
    x = clean.astype(np.float64).copy()
    a, b = int(30 * FS), int(45 * FS)          # cells 10..14 hold the artifact
    if kind == "flush":
        x[a:b] = 300.0                         # square plateau at bag pressure
    elif kind == "zero":
        x[a:b] = np.random.default_rng(0).normal(0.0, 0.5, b - a)
    elif kind == "flat":
        x[a:b] = 62.0                          # stopcock closed: flat at a plausible level
    elif kind == "gap":
        x[a:b] = np.nan
    elif kind == "damped":
        damped = sosfiltfilt(butter(2, 1.2, fs=FS, output="sos"), x)
        x[a:b] = damped[a:b]
    elif kind == "damped_mild":                # causal line response at 2.3 Hz: PP mostly kept
        sos = butter(2, 2.3, fs=FS, output="sos")
        x[a:b], _ = sosfilt(sos, x[a:b], zi=sosfilt_zi(sos) * x[a])
    inside, outside = _flags_between(x.astype(np.float32), 30.0, 45.0)
    assert inside.size == 5
    shown = [Artifact(int(f)) for f in inside]
    assert np.all(inside != 0), shown               # no cell of the artifact is used
    assert np.all((inside[1:-1] & expected) != 0), shown  # and the reason is named
    # the cells around the artifact may be flagged too (lead-in/out), the rest stay clean
    assert np.mean(outside == 0) > 0.9


def test_real_record_artifact_is_gated_and_the_rest_is_valid(real_abp_record: Path):
    rec = wfdb.rdrecord(str(real_abp_record.with_suffix("")), channel_names=["ABP"])
    x, fs = rec.p_signal[:, 0].astype(np.float32), float(rec.fs)
    table = map_grid(x, fs, 0, GRID_S)
    flush_end_s = (np.flatnonzero(x > 200.0)[-1] + 1) / fs
    t_s = table.t_start_ns / 1e9
    during = t_s < flush_end_s                 # zeroing then flush to 270 mmHg
    assert np.all(~table.valid[during])
    assert np.any((table.artifact[during] & Artifact.FLUSH) != 0)
    assert np.any((table.artifact[during] & Artifact.ZERO) != 0)
    after = table.valid[~during][:-1]           # last cell is cut by the end of the record
    assert after.mean() > 0.95


def test_simulated_artifacts_are_gated_and_clean_cells_kept():
    """The cohort simulator writes its artifacts to a ground-truth list: every cell lying inside
    one must be gated, and cells well away from all of them must stay valid."""
    from training.simulator import DEFAULT_RATES_PER_H, simulate_case

    rates = {kind: 6.0 * rate for kind, rate in DEFAULT_RATES_PER_H.items()}
    case = simulate_case(3, seed=11, minutes=20, artifact_rates_per_h=rates)
    table = map_grid(case.abp_mmhg, case.abp_fs_hz, case.start_ns, GRID_S)
    t_s = (table.t_start_ns - case.start_ns) / 1e9
    near = np.zeros(len(table), bool)
    kinds = set()
    for a in case.truth["artifacts"]:
        inside = (t_s >= a["start_s"]) & (t_s + GRID_S <= a["end_s"])
        assert not table.valid[inside].any(), (a, table.artifact[inside])
        near |= (t_s + GRID_S > a["start_s"] - 5.0) & (t_s < a["end_s"] + 5.0)
        kinds.add(a["kind"])
    assert len(kinds) >= 3, kinds
    away = ~near & (t_s >= 3.0) & (t_s + GRID_S <= case.duration_s)
    assert away.sum() > 60
    assert table.valid[away].mean() > 0.95


def _stats(**kw) -> CellStats:
    base = dict(coverage=1.0, flush_run_s=0.0, zero_frac=0.0, std_mmhg=12.0, n_beats=3,
                n_implausible=0, beat_coverage=1.0, map_mmhg=80.0, pp_mmhg=40.0,
                notch_frac=1.0, rise_s=0.1)
    base.update(kw)
    return CellStats(**base)


def test_gate_cell_rules():
    assert gate_cell(_stats()) == Artifact.NONE
    # hypotension with a narrow but notched pulse is physiology, not artifact
    assert gate_cell(_stats(map_mmhg=55.0, pp_mmhg=18.0)) == Artifact.NONE
    assert gate_cell(_stats(map_mmhg=80.0, pp_mmhg=16.0, notch_frac=0.0)) == Artifact.DAMPED
    assert gate_cell(_stats(map_mmhg=80.0, pp_mmhg=16.0, rise_s=0.3)) == Artifact.DAMPED
    # PP kept, but no notch in any beat and a slurred upstroke: milder damping
    assert gate_cell(_stats(notch_frac=0.0, rise_s=0.25)) == Artifact.DAMPED
    assert gate_cell(_stats(notch_frac=0.0, rise_s=0.12)) == Artifact.NONE
    assert gate_cell(_stats(notch_frac=1.0, rise_s=0.30)) == Artifact.NONE
    assert gate_cell(_stats(coverage=0.5)) & Artifact.GAP
    assert gate_cell(_stats(flush_run_s=0.2)) == Artifact.NONE   # a hypertensive systole
    assert gate_cell(_stats(flush_run_s=1.0)) & Artifact.FLUSH
    assert gate_cell(_stats(n_beats=4, n_implausible=2)) & Artifact.IMPLAUSIBLE
    assert gate_cell(_stats(n_beats=4, n_implausible=1)) == Artifact.NONE
    assert gate_cell(_stats(n_beats=0, std_mmhg=1.0, map_mmhg=float("nan"),
                            beat_coverage=0.0)) == Artifact.LINE_OFF
    # noise on a disconnected line may look like beats, but none is plausible
    assert gate_cell(_stats(n_beats=2, n_implausible=2, std_mmhg=1.5, beat_coverage=0.0)) == (
        Artifact.LINE_OFF | Artifact.IMPLAUSIBLE)
    assert gate_cell(_stats(beat_coverage=0.2)) == Artifact.NO_BEATS
