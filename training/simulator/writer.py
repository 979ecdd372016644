"""Writing simulated cases as VitalDB does: ``{caseid:04d}.vital``, ``clinical.csv``, plus a sidecar.

The ``.vital`` file is written with the ``vitaldb`` package. Its gzip container stamps the write
time into the header; the writer replaces it with the recording start, so the same case always
gives the same bytes.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from training.simulator.case import SimulatedCase, simulate_case

ABP_TRACK = "SNUADC/ART"
EVENT_TRACK = "EVENT/EVENT"
UNITS = {"Solar8000/ART_SBP": "mmHg", "Solar8000/ART_DBP": "mmHg", "Solar8000/ART_MBP": "mmHg",
         "Solar8000/NIBP_SBP": "mmHg", "Solar8000/NIBP_DBP": "mmHg", "Solar8000/NIBP_MBP": "mmHg",
         "Solar8000/HR": "/min", "Solar8000/PLETH_HR": "/min", "Solar8000/PLETH_SPO2": "%",
         "Orchestra/PPF20_RATE": "mL/h", "Orchestra/PPF20_CE": "mcg/mL"}
# VitalDB clinical-table columns written to clinical.csv, in VitalDB's order
CLINICAL_COLUMNS = (
    "caseid", "subjectid", "casestart", "caseend", "anestart", "aneend", "opstart", "opend",
    "age", "sex", "height", "weight", "bmi", "asa", "emop", "department", "optype", "approach",
    "position", "ane_type", "preop_htn", "preop_dm", "aline1", "intraop_ebl", "intraop_crystalloid",
    "intraop_ppf", "intraop_eph", "intraop_phe")
_GZIP_MTIME = slice(4, 8)


def vital_path(out_dir: Path, caseid: int) -> Path:
    return Path(out_dir) / f"{caseid:04d}.vital"


def truth_path(out_dir: Path, caseid: int) -> Path:
    return Path(out_dir) / f"{caseid:04d}.truth.json"


def write_vital(case: SimulatedCase, path: Path, compresslevel: int = 1) -> Path:
    """Write one case as a ``.vital`` file (deterministic bytes)."""
    import vitaldb  # imported here: only writers need it

    start_s = case.start_ns / 1e9
    vf = vitaldb.VitalFile()
    vf.dtstart, vf.dtend, vf.dgmt = start_s, start_s + case.duration_s, 0
    vf.add_track(ABP_TRACK, [{"dt": start_s, "val": np.asarray(case.abp_mmhg, dtype=np.float32)}],
                 srate=case.abp_fs_hz, unit="mmHg", mindisp=20, maxdisp=200)
    for name, (t_s, values) in case.numerics.items():
        recs = [{"dt": start_s + float(t), "val": float(v)} for t, v in zip(t_s, values)
                if math.isfinite(float(v))]
        vf.add_track(name, recs, unit=UNITS.get(name, ""))
    vf.add_track(EVENT_TRACK, [{"dt": start_s + float(t), "val": text} for t, text in case.events])
    path = Path(path)
    if not vf.to_vital(str(path), compresslevel=compresslevel):
        raise OSError(f"write .vital: vitaldb could not write {path}")
    # gzip header bytes 4..7 hold the write time: stamp the recording start instead
    with open(path, "r+b") as f:
        f.seek(_GZIP_MTIME.start)
        f.write(int(start_s).to_bytes(4, "little"))
    return path


def write_truth(case: SimulatedCase, path: Path) -> Path:
    Path(path).write_text(json.dumps(case.truth, indent=1, sort_keys=True) + "\n")
    return Path(path)


def clinical_row(case: SimulatedCase) -> dict:
    """One row of VitalDB's clinical table for the case."""
    p, tr = case.patient, case.truth
    totals = tr["totals"]
    row = {"caseid": case.caseid, "subjectid": case.subjectid, **tr["clinical_times_s"]}
    row.update({k: v for k, v in p.to_dict().items() if k in CLINICAL_COLUMNS and k != "subjectid"})
    crystalloid = totals["fluid_bolus_ml"] + 4.0 * p.weight * max(
        0.0, tr["clinical_times_s"]["aneend"] - tr["clinical_times_s"]["anestart"]) / 3600.0
    row.update({"intraop_ebl": round(totals["ebl_ml"]), "intraop_crystalloid": round(crystalloid),
                "intraop_ppf": round(totals["propofol_bolus_mg"]),
                "intraop_eph": totals["ephedrine_mg"], "intraop_phe": totals["phenylephrine_mcg"]})
    return {k: ("" if row.get(k) is None else row[k]) for k in CLINICAL_COLUMNS}


def write_clinical(rows: list[dict], path: Path) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CLINICAL_COLUMNS, lineterminator="\n")
        w.writeheader()
        for row in sorted(rows, key=lambda r: int(r["caseid"])):
            w.writerow(row)
    return Path(path)


def write_cohort(out_dir: Path, cases: int, seed: int, minutes: float = 60.0,
                 scenario: str = "default", progress: bool = True, first_caseid: int = 1) -> list[Path]:
    """Simulate ``cases`` cases (ids ``first_caseid`` ...) into ``out_dir``; returns the .vital paths.

    Writes ``{caseid:04d}.vital``, ``{caseid:04d}.truth.json`` per case and ``clinical.csv``.
    """
    out_dir = Path(out_dir)
    if cases < 1:
        raise ValueError(f"simulate: --cases must be at least 1, got {cases}")
    if first_caseid < 1:
        raise ValueError(f"simulate: first case id must be at least 1, got {first_caseid}")
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"simulate: output {out_dir} exists and is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = range(first_caseid, first_caseid + cases)
    paths, rows = [], []

    def one(caseid: int) -> None:
        case = simulate_case(caseid, seed, minutes, scenario)
        paths.append(write_vital(case, vital_path(out_dir, caseid)))
        write_truth(case, truth_path(out_dir, caseid))
        rows.append(clinical_row(case))

    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        with Progress(TextColumn("simulate"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("case {task.fields[caseid]}"), TimeRemainingColumn()) as bar:
            task = bar.add_task("cases", total=cases, caseid="")
            for caseid in ids:
                bar.update(task, caseid=f"{caseid:04d}")
                one(caseid)
                bar.advance(task)
    else:
        for caseid in ids:
            one(caseid)
    clinical = out_dir / "clinical.csv"
    if clinical.exists():   # keep rows of cases written earlier into the same folder
        new = {r["caseid"] for r in rows}
        with open(clinical, newline="") as f:
            rows += [r for r in csv.DictReader(f) if int(r["caseid"]) not in new]
    write_clinical(rows, clinical)
    return paths
