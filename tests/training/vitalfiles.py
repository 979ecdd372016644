"""Small hand-made .vital files for cohort tests (written with vitaldb's own writer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streams.signal.synthetic import synthetic_abp

START_S = 1_700_000_010.0  # epoch seconds of the first sample (not on a 30 s boundary on purpose)


def abp_with_dips(duration_s: float, dips: list[tuple[float, float, float]], fs_hz: float = 100.0,
                  seed: int = 0) -> np.ndarray:
    """Synthetic ABP (MAP about 88 mmHg) with pressure lowered by ``drop`` mmHg from ``t0`` to ``t1``
    (s), with 60 s linear ramps on both sides. dips: [(t0_s, t1_s, drop_mmhg)]."""
    x = synthetic_abp(duration_s, fs_hz, sbp_mmhg=120.0, dbp_mmhg=72.0, seed=seed).x_mmhg.astype(np.float64)
    t = np.arange(x.size) / fs_hz
    off = np.zeros_like(t)
    for t0, t1, drop in dips:
        ramp_in = np.clip((t - (t0 - 60.0)) / 60.0, 0, 1)
        ramp_out = np.clip(((t1 + 60.0) - t) / 60.0, 0, 1)
        off = np.maximum(off, drop * np.minimum(ramp_in, ramp_out))
    # scale the whole beat down so pulse pressure shrinks with MAP, as in real hypotension
    scale = 1.0 - off / 90.0
    return (x * scale).astype(np.float32)


def write_vital(path: Path, abp_mmhg: np.ndarray | None, fs_hz: float = 100.0, start_s: float = START_S,
                numerics: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
                abp_track: str = "SNUADC/ART") -> Path:
    import vitaldb

    vf = vitaldb.VitalFile()
    duration_s = 0.0
    if abp_mmhg is not None:
        vf.add_track(abp_track, [{"dt": start_s, "val": np.asarray(abp_mmhg, dtype=np.float32)}],
                     srate=fs_hz, unit="mmHg", mindisp=0, maxdisp=200)
        duration_s = abp_mmhg.size / fs_hz
    for name, (t_s, vals) in (numerics or {}).items():
        vf.add_track(name, [{"dt": start_s + float(t), "val": float(v)} for t, v in zip(t_s, vals)], unit="")
        duration_s = max(duration_s, float(np.max(t_s)) + 1.0)
    vf.dtstart = start_s
    vf.dtend = start_s + duration_s
    vf.to_vital(str(path))
    return path


def write_clinical(path: Path, rows: list[dict]) -> Path:
    import csv

    cols = ["caseid", "subjectid", "age", "sex", "height", "weight", "bmi", "asa", "emop", "department",
            "optype", "approach", "preop_htn", "preop_dm"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in cols})
    return path
