"""One simulated case end to end: patient, course, waveform, artifacts, monitor tracks, ground truth.

The ground truth (``SimulatedCase.truth``, written as ``NNNN.truth.json``) holds:

* ``caseid``, ``subjectid``, ``seed``, ``scenario``, ``minutes``, ``duration_s``, ``start_ns``,
  ``start_utc``, ``abp_fs_hz``, ``generator`` (name, version);
* ``patient`` (VitalDB clinical columns), ``susceptibility`` and ``anaesthetist`` (the drawn
  physiology and behaviour parameters), ``clinical_times_s`` (casestart ... opend), ``bleeds``;
* ``ioh_episodes``: ``[{start_s, end_s, duration_s, min_map_mmhg}]`` where the artifact-free MAP on
  the 1 s grid stayed below 65 mmHg for at least 60 s (``ioh_definition`` says so);
* ``artifacts``: ``[{kind, start_s, end_s, ...}]`` with kind in flush, zeroing, damping,
  disconnection, gap;
* ``events``: ``[{t_s, kind, text, amount, unit}]`` (phases, drugs, fluids; the EVENT track);
* ``totals``: drug, fluid and blood-loss totals.

All times are seconds from the case (recording) start.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

import numpy as np

from training.simulator import artifacts as art
from training.simulator.monitor import Numerics, art_numerics, nibp_numerics, pump_numerics, vital_numerics
from training.simulator.physiology import (Anaesthetist, Course, Susceptibility, draw_anaesthetist,
                                           draw_susceptibility, simulate_course)
from training.simulator.population import Patient, draw_patient
from training.simulator.seeding import case_rng
from training.simulator.timeline import SCENARIOS, Timeline, draw_timeline
from training.simulator.waveform import synthesise

ABP_FS_HZ = 500.0
IOH_MAP_MMHG = 65.0
IOH_MIN_DURATION_S = 60.0
GENERATOR_VERSION = 1
_EPOCH = dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc)     # a Monday
# demo: the first episode must begin in this window (s) and the flush sits in normotension before it
DEMO_ONSET_WINDOW_S = (390.0, 570.0)
DEMO_MAX_ATTEMPTS = 400


@dataclass
class SimulatedCase:
    caseid: int
    subjectid: int
    seed: int
    scenario: str
    patient: Patient
    start_ns: int                      # recording start (UTC, ns since the epoch)
    abp_fs_hz: float
    abp_mmhg: np.ndarray               # (n,) float32, NaN in gaps, artifacts included
    numerics: Numerics                 # track -> (t_s, values), t_s from the case start
    events: list[tuple[float, str]]    # (t_s, text) as on the EVENT track
    truth: dict                        # the sidecar content
    true_map_1s: np.ndarray            # (duration_s,) artifact-free MAP, second i = [i, i+1)
    course: Course | None = None

    @property
    def duration_s(self) -> float:
        return len(self.abp_mmhg) / self.abp_fs_hz


@dataclass
class Physiology:
    """The 1 s course alone (no waveform): cheap enough for cohort-level statistics."""

    caseid: int
    patient: Patient
    timeline: Timeline
    susceptibility: Susceptibility
    anaesthetist: Anaesthetist
    course: Course
    episodes: list[dict]


def ioh_episodes(map_1s: np.ndarray, threshold_mmhg: float = IOH_MAP_MMHG,
                 min_duration_s: float = IOH_MIN_DURATION_S) -> list[dict]:
    """Runs of the 1 s MAP below ``threshold_mmhg`` lasting at least ``min_duration_s``."""
    low = np.asarray(map_1s) < threshold_mmhg
    edges = np.diff(np.r_[0, low.astype(np.int8), 0])
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [{"start_s": float(s), "end_s": float(e), "duration_s": float(e - s),
             "min_map_mmhg": round(float(np.min(map_1s[s:e])), 1)}
            for s, e in zip(starts, ends) if e - s >= min_duration_s]


def start_ns_of(seed: int, caseid: int) -> int:
    """Recording start: 2026-01-05 plus one day per case id, at a seeded time of the morning."""
    minute = int(case_rng(seed, caseid, "clock").integers(7 * 60 + 30, 15 * 60))
    start = _EPOCH + dt.timedelta(days=caseid, minutes=minute)
    return int(start.timestamp()) * 1_000_000_000


def _demo_patient(p: Patient) -> Patient:
    return replace(p, age=max(p.age, 68.0), preop_htn=1, asa=3, emop=0)


def _physiology(caseid: int, seed: int, minutes: float, scenario: str, patient: Patient | None,
                treat_hypotension: bool, attempt: int) -> Physiology:
    p = patient if patient is not None else draw_patient(caseid, seed)
    if scenario == "demo" and patient is None:
        p = _demo_patient(p)
    sus = draw_susceptibility(case_rng(seed, caseid, "physiology", attempt), p)
    if scenario == "demo":   # a susceptible patient with a blunted baroreflex
        sus = replace(sus, vasodilation=max(sus.vasodilation, 0.6), baro_gain=min(sus.baro_gain, 0.6),
                      induction_mg_kg=max(sus.induction_mg_kg, 1.6), map0_mmhg=min(max(sus.map0_mmhg, 88.0), 100.0))
    doc = draw_anaesthetist(case_rng(seed, caseid, "anaesthetist", attempt), scenario, treat_hypotension)
    tl = draw_timeline(case_rng(seed, caseid, "timeline", attempt), minutes * 60.0, p.optype,
                       p.approach, p.emop, scenario)
    course = simulate_course(p, sus, doc, tl, case_rng(seed, caseid, "physiology", attempt + 1_000_000))
    return Physiology(caseid, p, tl, sus, doc, course, ioh_episodes(course.map_mmhg))


def _demo_ok(ph: Physiology) -> bool:
    eps = ph.episodes
    if not eps:
        return False
    first = eps[0]
    lo, hi = DEMO_ONSET_WINDOW_S
    m = ph.course.map_mmhg
    return (lo <= first["start_s"] <= hi and 90.0 <= first["duration_s"] <= 420.0
            and first["end_s"] + 180.0 < len(m)
            and float(np.min(m[60:200])) > 75.0                     # normotensive around the flush
            and float(np.min(m[: int(first["start_s"]) - 60])) > 66.0
            # a clear recovery, so alerts can resolve
            and float(np.median(m[int(first["end_s"]) + 120: int(first["end_s"]) + 300])) >= 75.0)


def simulate_physiology(caseid: int, seed: int, minutes: float = 60.0, scenario: str = "default",
                        patient: Patient | None = None, treat_hypotension: bool = True) -> Physiology:
    """The 1 s physiological course of a case (what ``simulate_case`` turns into a recording).

    ``treat_hypotension=False`` keeps the anaesthetist from giving vasopressors and fluid for low
    pressure (for experiments on causality); everything else draws the same random numbers.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"simulate: unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    if minutes <= 0 or not np.isfinite(minutes):
        raise ValueError(f"simulate: minutes must be positive, got {minutes}")
    if scenario != "demo":
        return _physiology(caseid, seed, minutes, scenario, patient, treat_hypotension, 0)
    for attempt in range(DEMO_MAX_ATTEMPTS):
        ph = _physiology(caseid, seed, minutes, scenario, patient, treat_hypotension, attempt)
        if _demo_ok(ph):
            return ph
    raise RuntimeError(f"simulate: no demo realisation of case {caseid} (seed {seed}) put an IOH onset "
                       f"in {DEMO_ONSET_WINDOW_S[0]:.0f}-{DEMO_ONSET_WINDOW_S[1]:.0f} s within "
                       f"{DEMO_MAX_ATTEMPTS} attempts")


def _demo_flush(ph: Physiology, rng: np.random.Generator) -> art.Artifact:
    start = float(rng.uniform(100.0, 140.0))      # awake and normotensive, minutes before onset
    return art.Artifact("flush", start, start + float(rng.uniform(4.0, 8.0)),
                        level_mmhg=float(rng.uniform(240.0, 290.0)))


def _totals(events: list[dict], course: Course, tl: Timeline) -> dict:
    def total(prefix: str) -> float:
        return float(sum(e["amount"] or 0.0 for e in events if e["text"].startswith(prefix)))
    return {"phenylephrine_mcg": total("Phenylephrine"), "ephedrine_mg": total("Ephedrine"),
            "propofol_bolus_mg": total("Propofol"), "fluid_bolus_ml": total("Fluid bolus"),
            "ebl_ml": round(sum(b.rate_ml_min * max(0.0, min(b.end_s, tl.duration_s) - b.start_s) / 60.0
                                for b in tl.bleeds), 1),
            "min_blood_volume_rel": round(float(course.blood_volume_rel.min()), 4)}


def simulate_case(caseid: int, seed: int, minutes: float = 60.0, scenario: str = "default",
                  patient: Patient | None = None, *, artifact_rates_per_h: dict[str, float] | None = None,
                  treat_hypotension: bool = True) -> SimulatedCase:
    """Simulate one case; the same ``(caseid, seed, minutes, scenario, patient)`` gives the same case."""
    ph = simulate_physiology(caseid, seed, minutes, scenario, patient, treat_hypotension)
    c, tl = ph.course, ph.timeline
    wave = synthesise(c.t_s, c.map_mmhg, c.pp_mmhg, c.hr_bpm, c.ppv, c.resp_rate_min,
                      ph.susceptibility.augmentation, ph.susceptibility.diastolic_tau_s,
                      ABP_FS_HZ, case_rng(seed, caseid, "waveform"))
    a_rng = case_rng(seed, caseid, "artifacts")
    if scenario == "demo":
        artifacts = art.schedule(a_rng, tl.duration_s, rates_per_h={}, fixed=(_demo_flush(ph, a_rng),))
    else:
        artifacts = art.schedule(a_rng, tl.duration_s, artifact_rates_per_h)
    abp = art.apply(wave.abp_mmhg, ABP_FS_HZ, artifacts, a_rng).astype(np.float32)

    m_rng = case_rng(seed, caseid, "monitor")
    numerics: Numerics = {}
    numerics.update(art_numerics(abp, ABP_FS_HZ))
    numerics.update(vital_numerics(c, m_rng))
    numerics.update(nibp_numerics(c, wave, ABP_FS_HZ, m_rng))
    numerics.update(pump_numerics(c))

    start_ns = start_ns_of(seed, caseid)
    p = ph.patient
    truth = {
        "generator": {"name": "iohwatch.training.simulator", "version": GENERATOR_VERSION},
        "caseid": caseid, "subjectid": p.subjectid, "seed": seed, "scenario": scenario,
        "minutes": minutes, "duration_s": tl.duration_s, "start_ns": start_ns,
        "start_utc": dt.datetime.fromtimestamp(start_ns / 1e9, dt.timezone.utc).isoformat(),
        "abp_fs_hz": ABP_FS_HZ,
        "patient": p.to_dict(),
        "susceptibility": ph.susceptibility.to_dict(),
        "anaesthetist": ph.anaesthetist.to_dict(),
        "clinical_times_s": tl.clinical(),
        "bleeds": [{"start_s": round(b.start_s, 1), "end_s": round(b.end_s, 1),
                    "rate_ml_min": round(b.rate_ml_min, 2)} for b in tl.bleeds],
        "ioh_definition": {"map_below_mmhg": IOH_MAP_MMHG, "min_duration_s": IOH_MIN_DURATION_S,
                           "source": "artifact-free MAP on the 1 s grid"},
        "ioh_episodes": ph.episodes,
        "artifacts": [a.to_dict() for a in artifacts],
        "events": c.events,
        "totals": _totals(c.events, c, tl),
    }
    return SimulatedCase(
        caseid=caseid, subjectid=p.subjectid, seed=seed, scenario=scenario, patient=p,
        start_ns=start_ns, abp_fs_hz=ABP_FS_HZ, abp_mmhg=abp, numerics=numerics,
        events=[(e["t_s"], e["text"]) for e in c.events], truth=truth,
        true_map_1s=c.map_mmhg.copy(), course=c)
