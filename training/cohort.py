"""Build a training cohort from recordings: samples at every eligible time point, split by subject.

Every recording goes through the agent's own signal path: ``streams.recording.read_recording``
-> ``streams.signal.cells.map_grid`` at the source rate (beat detection, MAP grid, artifact gate)
-> labels (``training.labels``) on that grid. The waveform the models see is the recording
resampled to ``wave_fs_hz`` with ``streams.signal.resample.resample_linear`` and cut with
``streams.signal.windows.waveform_window``, as the agent does.

Time points: cell ``k`` (absolute grid index) is a candidate when ``(k + 1) % stride_cells == 0``
(every ``stride_s``, 30 s by default, aligned to the epoch grid). Its decision time is
``t_ns = (k + 1) * grid + LEAD_OUT_S`` — the earliest moment the agent has cell ``k`` final — and
its inputs use only data before ``t_ns``. A candidate becomes a sample when it is eligible for at
least one horizon; ``labels`` keeps ``-1`` for the horizons where it is excluded.

Layout of ``COHORT/``::

    meta.json                      summary, settings, skipped recordings, data hash
    cases.json                     one row per used recording: caseid, subjectid, split, clinical row
    {train,dev,test}/<name>.npy    arrays below (N = samples of the split), memory-mappable
      map_mmhg, sbp_mmhg, dbp_mmhg, hr_mmhg   (N, n_cells) float32, NaN where no plausible beat
      valid                        (N, n_cells) bool, cell passed the artifact gate
      future_map_mmhg              (N, n_future) float32, MAP after t (NaN where gated): a target only
      wave_mmhg                    (N, n_wave) float32, last wave_window_s of ABP at wave_fs_hz, NaN = gap
      numerics                     (N, n_numerics) float32, latest vital <= t and <= 10 min old, NaN = none
      labels                       (N, n_horizons) int8: 1 positive, 0 negative, -1 excluded
      caseid, subjectid            (N,) int64
      t_ns                         (N,) int64 decision time
      event_caseid, event_onset_ns, event_end_ns   (n_events,) int64: IOH events of the split
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from streams.replay import caseid_of, load_clinical
from training.labels import ELIGIBLE, LabelProtocol, point_labels

log = logging.getLogger("iohwatch.cohort")

SPLITS = ("train", "dev", "test")
NUMERIC_MAX_AGE_S = 600.0   # as the agent's numerics_at
SAMPLE_ARRAYS = ("map_mmhg", "sbp_mmhg", "dbp_mmhg", "hr_bpm", "valid", "future_map_mmhg", "wave_mmhg",
                 "numerics", "labels", "caseid", "subjectid", "t_ns")
EVENT_ARRAYS = ("event_caseid", "event_onset_ns", "event_end_ns")


@dataclass(frozen=True)
class CohortSpec:
    grid_s: float = 3.0
    window_s: float = 900.0
    future_s: float = 900.0
    wave_window_s: float = 30.0
    wave_fs_hz: float = 100.0
    stride_s: float = 30.0
    horizons_min: tuple[int, ...] = (5, 10, 15)
    numeric_labels: tuple[str, ...] = ("HR", "SPO2", "NIBP_SBP", "NIBP_DBP", "NIBP_MBP", "RR", "ETCO2", "BT")

    @property
    def n_cells(self) -> int:
        return int(round(self.window_s / self.grid_s))

    @property
    def n_future(self) -> int:
        return int(round(self.future_s / self.grid_s))

    @property
    def n_wave(self) -> int:
        return int(round(self.wave_window_s * self.wave_fs_hz))

    @property
    def stride_cells(self) -> int:
        n = self.stride_s / self.grid_s
        if abs(n - round(n)) > 1e-9 or round(n) < 1:
            raise ValueError(f"cohort: stride_s ({self.stride_s}) must be a multiple of grid_s ({self.grid_s})")
        return int(round(n))

    def protocol(self) -> LabelProtocol:
        return LabelProtocol(grid_s=self.grid_s, horizons_min=tuple(self.horizons_min))


class SkipRecording(Exception):
    """A recording that cannot contribute samples; the message says why."""


@dataclass
class RecordingSamples:
    caseid: int
    name: str
    arrays: dict[str, np.ndarray]
    events: list[tuple[int, int]]          # (onset_ns, end_ns)
    hours: float                           # recorded hours on the grid
    artifact_cells: int
    cells: int


def _window_rows(values: np.ndarray, rows: np.ndarray, n: int, fill) -> np.ndarray:
    """values[(r - n + 1) .. r] for each r in ``rows``, padded with ``fill`` outside. -> (len(rows), n)"""
    idx = rows[:, None] + np.arange(-n + 1, 1)[None, :]            # (S, n)
    ok = (idx >= 0) & (idx < values.size)
    out = np.full(idx.shape, fill, dtype=values.dtype)
    out[ok] = values[idx[ok]]
    return out


def _latest_numerics(numerics: dict, labels: tuple[str, ...], start_ns: int, t_ns: np.ndarray) -> np.ndarray:
    """(S, F) latest value of each label at or before t (at most NUMERIC_MAX_AGE_S old), NaN otherwise.

    Track names are reduced to their label (``Solar8000/PLETH_SPO2`` -> ``PLETH_SPO2``) as the replay
    does, and each model label takes the first of its spellings that has a value, exactly as
    ``models.forecaster.numerics_vector`` does for the agent.
    """
    from models.forecaster import _NUMERIC_ALIASES

    by_label: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for track, (ts, vs) in numerics.items():
        label = track.split("/")[-1]
        ok = np.isfinite(vs)
        if label not in by_label and ok.any():
            by_label[label] = (start_ns + np.round(np.asarray(ts)[ok] * 1e9).astype(np.int64), np.asarray(vs)[ok])

    def latest(label: str) -> np.ndarray:
        vals = np.full(t_ns.size, np.nan)
        if label not in by_label:
            return vals
        tt, vv = by_label[label]
        i = np.searchsorted(tt, t_ns, side="right") - 1               # last reading <= t
        ii = np.maximum(i, 0)
        fresh = (i >= 0) & (t_ns - tt[ii] <= NUMERIC_MAX_AGE_S * 1e9)
        vals[fresh] = vv[ii[fresh]]
        return vals

    out = np.full((t_ns.size, len(labels)), np.nan, dtype=np.float32)
    for j, label in enumerate(labels):
        for alias in _NUMERIC_ALIASES.get(label, (label,)):
            v = latest(alias)
            fill = np.isnan(out[:, j]) & np.isfinite(v)
            out[fill, j] = v[fill]
    return out


def samples_from_recording(rec, spec: CohortSpec, caseid: int) -> RecordingSamples:
    """All eligible samples of one ``streams.recording.Recording``. Raises SkipRecording."""
    from streams.signal.cells import LEAD_OUT_S, grid_ns_of, map_grid
    from streams.signal.resample import resample_linear
    from streams.signal.windows import waveform_window

    x = np.asarray(rec.abp_mmhg)
    if x.size == 0 or not np.isfinite(x).any():
        raise SkipRecording("the ABP track holds no samples")
    table = map_grid(x, rec.abp_fs_hz, rec.start_ns, spec.grid_s)
    n = len(table)
    if n == 0:
        raise SkipRecording("no MAP grid cells")
    labels, reason, events = point_labels(table.map_mmhg, table.valid, spec.protocol())
    k_abs = table.cell_index                                          # (n,)
    cand = np.nonzero(((k_abs + 1) % spec.stride_cells == 0) & (reason == ELIGIBLE).any(1))[0]
    if cand.size == 0:
        raise SkipRecording(f"no eligible time point in {n} cells "
                            f"({int((~table.valid).sum())} gated by the artifact gate)")
    grid_ns = grid_ns_of(spec.grid_s)
    t_ns = (k_abs[cand] + 1) * grid_ns + int(round(LEAD_OUT_S * 1e9))  # (S,)

    arrays: dict[str, np.ndarray] = {}
    for name, col, fill in (("map_mmhg", table.map_mmhg, np.nan), ("sbp_mmhg", table.sbp_mmhg, np.nan),
                            ("dbp_mmhg", table.dbp_mmhg, np.nan), ("hr_bpm", table.hr_bpm, np.nan)):
        arrays[name] = _window_rows(col.astype(np.float32), cand, spec.n_cells, fill)
    arrays["valid"] = _window_rows(table.valid.astype(bool), cand, spec.n_cells, False)
    arrays["map_mmhg"][~arrays["valid"]] = np.nan
    fut = _window_rows(np.where(table.valid, table.map_mmhg, np.nan).astype(np.float32),
                       cand + spec.n_future, spec.n_future, np.nan)   # cells k+1 .. k+n_future
    arrays["future_map_mmhg"] = fut

    wave, t0_wave = resample_linear(x, rec.abp_fs_hz, spec.wave_fs_hz, rec.start_ns)
    arrays["wave_mmhg"] = np.stack([waveform_window(wave, spec.wave_fs_hz, t0_wave, int(t), spec.wave_window_s)
                                    for t in t_ns]).astype(np.float32)
    arrays["numerics"] = _latest_numerics(rec.numerics, spec.numeric_labels, rec.start_ns, t_ns)
    arrays["labels"] = labels[cand].astype(np.int8)
    arrays["t_ns"] = t_ns.astype(np.int64)
    arrays["caseid"] = np.full(cand.size, caseid, dtype=np.int64)
    ev = [(int(table.t_start_ns[e.onset]), int(table.t_start_ns[e.end] + grid_ns)) for e in events]
    return RecordingSamples(caseid=caseid, name=rec.name, arrays=arrays, events=ev,
                            hours=n * spec.grid_s / 3600.0,
                            artifact_cells=int((~table.valid).sum()), cells=n)


def _process(path: Path, spec: CohortSpec, caseid: int) -> RecordingSamples | tuple[str, str]:
    """Worker: samples of one file, or (name, reason) when it must be skipped. Never raises."""
    from streams.recording import RecordingError, read_recording

    try:
        rec = read_recording(path)
        return samples_from_recording(rec, spec, caseid)
    except (RecordingError, SkipRecording) as e:
        return path.name, str(e)
    except Exception as e:  # a bug or an unforeseen file: keep going, but say exactly what happened
        log.exception("cohort: %s failed", path)
        return path.name, f"unexpected {type(e).__name__}: {e}"


def split_subjects(subjects, fractions=(0.6, 0.2, 0.2), seed: int = 0) -> dict[int, str]:
    """Assign each subject to a split: a seeded shuffle of the sorted ids cut by ``fractions``."""
    uniq = np.array(sorted(set(int(s) for s in subjects)), dtype=np.int64)
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ValueError(f"cohort: split fractions must be three non-negative numbers summing to 1, got {fractions}")
    perm = np.random.default_rng(seed).permutation(uniq)
    n = uniq.size
    n_train = int(round(fractions[0] * n))
    n_dev = int(round((fractions[0] + fractions[1]) * n)) - n_train
    out = {}
    for i, s in enumerate(perm):
        out[int(s)] = "train" if i < n_train else ("dev" if i < n_train + n_dev else "test")
    return out


@dataclass
class CohortSummary:
    cases: dict[str, int] = field(default_factory=dict)
    subjects: dict[str, int] = field(default_factory=dict)
    samples: dict[str, int] = field(default_factory=dict)
    hours: dict[str, float] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)
    prevalence: dict[str, dict[str, float]] = field(default_factory=dict)
    eligible: dict[str, dict[str, int]] = field(default_factory=dict)
    artifact_fraction: dict[str, float] = field(default_factory=dict)
    skipped: list[dict] = field(default_factory=list)
    empty_splits: list[str] = field(default_factory=list)


def data_hash(out_dir: Path) -> str:
    """SHA-256 over every split array (name, shape, dtype, bytes) in a fixed order."""
    h = hashlib.sha256()
    for split in SPLITS:
        for name in SAMPLE_ARRAYS + EVENT_ARRAYS:
            p = out_dir / split / f"{name}.npy"
            if not p.exists():
                continue
            a = np.load(p, mmap_mode="r")
            h.update(f"{split}/{name}:{a.shape}:{a.dtype}".encode())
            for i in range(0, a.shape[0], 4096):
                h.update(np.ascontiguousarray(a[i:i + 4096]).tobytes())
    return h.hexdigest()


def build_cohort(recordings_dir: Path, clinical_csv: Path, out_dir: Path, *, seed: int = 0,
                 split=(0.6, 0.2, 0.2), spec: CohortSpec = CohortSpec(), workers: int = 1,
                 progress=None) -> dict:
    """Build the cohort; returns the meta dict also written to ``out_dir/meta.json``.

    ``progress(done, total, name)`` is called after each recording when given.
    """
    recordings_dir, out_dir = Path(recordings_dir), Path(out_dir)
    files = sorted(p for p in recordings_dir.iterdir() if p.suffix.lower() == ".vital")
    clinical = load_clinical(Path(clinical_csv))
    summary = CohortSummary()
    jobs: list[tuple[Path, int, int]] = []
    for p in files:
        cid = caseid_of(p)
        row = clinical.get(cid) if cid is not None else None
        if row is None:
            summary.skipped.append({"recording": p.name, "reason": f"caseid {cid} not in {Path(clinical_csv).name}"})
            continue
        try:
            sid = int(float(row.get("subjectid") or cid))
        except ValueError:
            summary.skipped.append({"recording": p.name, "reason": f"bad subjectid {row.get('subjectid')!r}"})
            continue
        jobs.append((p, cid, sid))

    results: list[tuple[RecordingSamples, int]] = []
    done = 0

    def collect(job, res):
        nonlocal done
        done += 1
        if isinstance(res, RecordingSamples):
            results.append((res, job[2]))
        else:
            summary.skipped.append({"recording": res[0], "reason": res[1]})
            log.warning("cohort: skipped %s: %s", res[0], res[1])
        if progress:
            progress(done, len(jobs), job[0].name)

    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as ex:
            futs = [(job, ex.submit(_process, job[0], spec, job[1])) for job in jobs]
            for job, fut in futs:
                collect(job, fut.result())
    else:
        for job in jobs:
            collect(job, _process(job[0], spec, job[1]))

    assign = split_subjects([sid for _, sid in results], split, seed) if results else {}
    out_dir.mkdir(parents=True, exist_ok=True)
    cases = []
    for split_name in SPLITS:
        part = [(r, sid) for r, sid in results if assign[sid] == split_name]
        part.sort(key=lambda rs: rs[0].caseid)
        d = out_dir / split_name
        d.mkdir(exist_ok=True)
        if not part:
            summary.empty_splits.append(split_name)
            log.warning("cohort: split %s is empty (%d usable recordings in all)", split_name, len(results))
        _write_split(d, part, spec)
        for r, sid in part:
            cases.append({"caseid": r.caseid, "subjectid": sid, "split": split_name, "recording": r.name,
                          "hours": r.hours, "events": len(r.events), "samples": int(r.arrays["t_ns"].size),
                          "clinical": clinical[r.caseid]})
        lab = np.concatenate([r.arrays["labels"] for r, _ in part]) if part else np.zeros((0, len(spec.horizons_min)), np.int8)
        summary.cases[split_name] = len(part)
        summary.subjects[split_name] = len({sid for _, sid in part})
        summary.samples[split_name] = int(lab.shape[0])
        summary.hours[split_name] = float(sum(r.hours for r, _ in part))
        summary.events[split_name] = int(sum(len(r.events) for r, _ in part))
        cells = sum(r.cells for r, _ in part)
        summary.artifact_fraction[split_name] = float(sum(r.artifact_cells for r, _ in part) / cells) if cells else float("nan")
        summary.prevalence[split_name] = {}
        summary.eligible[split_name] = {}
        for j, h in enumerate(spec.horizons_min):
            elig = lab[:, j] >= 0
            summary.eligible[split_name][str(h)] = int(elig.sum())
            summary.prevalence[split_name][str(h)] = float(lab[elig, j].mean()) if elig.any() else float("nan")

    (out_dir / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")
    spec_d = asdict(spec)
    spec_d["horizons_min"] = list(spec.horizons_min)
    spec_d["numeric_labels"] = list(spec.numeric_labels)
    meta = {
        "format_version": 1,
        "recordings_dir": str(recordings_dir),
        "clinical": str(clinical_csv),
        "seed": seed,
        "split_fractions": list(split),
        "spec": spec_d,
        "label_protocol": asdict(spec.protocol()) | {"horizons_min": list(spec.horizons_min)},
        "recordings_found": len(files),
        "recordings_used": len(results),
        "recordings_skipped": len(summary.skipped),
        "summary": asdict(summary),
        "data_hash": data_hash(out_dir),
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=1, default=float) + "\n")
    return meta


def _write_split(d: Path, part: list[tuple[RecordingSamples, int]], spec: CohortSpec) -> None:
    shapes = {"map_mmhg": (spec.n_cells,), "sbp_mmhg": (spec.n_cells,), "dbp_mmhg": (spec.n_cells,),
              "hr_bpm": (spec.n_cells,), "valid": (spec.n_cells,), "future_map_mmhg": (spec.n_future,),
              "wave_mmhg": (spec.n_wave,), "numerics": (len(spec.numeric_labels),),
              "labels": (len(spec.horizons_min),), "caseid": (), "subjectid": (), "t_ns": ()}
    dtypes = {"valid": bool, "labels": np.int8, "caseid": np.int64, "subjectid": np.int64, "t_ns": np.int64}
    for name in SAMPLE_ARRAYS:
        if name == "subjectid":
            chunks = [np.full(r.arrays["t_ns"].size, sid, dtype=np.int64) for r, sid in part]
        else:
            chunks = [r.arrays[name] for r, _ in part]
        dtype = dtypes.get(name, np.float32)
        arr = np.concatenate(chunks).astype(dtype) if chunks else np.zeros((0, *shapes[name]), dtype=dtype)
        np.save(d / f"{name}.npy", arr)
    ev = [(r.caseid, on, end) for r, _ in part for on, end in r.events]
    ev_a = np.array(ev, dtype=np.int64).reshape(-1, 3)
    for i, name in enumerate(EVENT_ARRAYS):
        np.save(d / f"{name}.npy", ev_a[:, i].copy())


@dataclass
class Split:
    """One split of a built cohort, memory-mapped."""

    name: str
    arrays: dict[str, np.ndarray]

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def __len__(self) -> int:
        return int(self.arrays["t_ns"].shape[0])


def load_split(cohort_dir: Path, split: str) -> Split:
    d = Path(cohort_dir) / split
    if not d.is_dir():
        raise FileNotFoundError(f"cohort: {d} not found; build the cohort with `iohwatch cohort build`")
    arrays = {name: np.load(d / f"{name}.npy", mmap_mode="r") for name in SAMPLE_ARRAYS + EVENT_ARRAYS}
    return Split(split, arrays)


def load_meta(cohort_dir: Path) -> dict:
    return json.loads((Path(cohort_dir) / "meta.json").read_text())


def load_cases(cohort_dir: Path) -> list[dict]:
    return json.loads((Path(cohort_dir) / "cases.json").read_text())
