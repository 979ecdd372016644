"""Synthetic patients drawn from the VitalDB population marginals.

The marginals (``training/data/vitaldb_population.json``) are aggregate figures of VitalDB's
clinical table for cases with an arterial line. Draws are independent per column except for a few
couplings that keep a record plausible: height by sex, weight from BMI and height, children sized
for their age, hypertension and diabetes more likely with age, a department-consistent operation
type and position. Field names are VitalDB's clinical-table column names.

About 4 % of VitalDB's arterial-line cases belong to a subject with another case (3,463 cases,
3,335 subjects). Here a case is a repeat with probability ``REPEAT_CASE_P`` and then belongs to the
subject of an earlier case id, so subject-level splits have something to split.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from importlib import resources

import numpy as np

from training.simulator.seeding import case_rng

REPEAT_CASE_P = 0.08          # fraction of cases that are another case of an earlier subject
REPEAT_LOOKBACK_CASES = 12    # the earlier case is at most this many case ids before
_SUBJECT_MODULUS = 99991      # prime; subjectid = 1 + caseid * 7919 mod it (a bijection below it)

# department -> operation types it performs (VitalDB optype values)
_DEPARTMENT_OPTYPES = {
    "General surgery": ("Stomach", "Colorectal", "Biliary/Pancreas", "Transplantation", "Hepatic",
                        "Vascular", "Thyroid", "Breast", "Major resection", "Minor resection", "Others"),
    "Thoracic surgery": ("Major resection", "Minor resection", "Others"),
    "Gynecology": ("Others", "Major resection", "Minor resection"),
    "Urology": ("Others", "Major resection", "Minor resection"),
}
_THORACIC_POSITIONS = ("Left lateral decubitus", "Right lateral decubitus", "Supine")


@dataclass(frozen=True)
class Patient:
    """Static context of one case, in VitalDB clinical-table column names and units."""

    subjectid: int
    age: float                  # years
    sex: str                    # "M" | "F"
    height: float               # cm
    weight: float               # kg
    bmi: float                  # kg/m2
    asa: int | None             # ASA physical status (1-6), None when missing
    emop: int                   # emergency operation (0/1)
    department: str
    optype: str
    approach: str               # "Open" | "Videoscopic" | "Robotic"
    position: str | None        # None when missing
    ane_type: str               # always "General" here (the physiology assumes it)
    preop_htn: int              # 0/1
    preop_dm: int               # 0/1
    aline1: str                 # arterial line site

    def to_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=1)
def load_population() -> dict:
    """The population marginals shipped with the package."""
    text = resources.files("training").joinpath("data/vitaldb_population.json").read_text()
    return json.loads(text)


def subject_of_new_case(caseid: int) -> int:
    """Subject id of a case that is its subject's first (a fixed bijection of the case id)."""
    if not 0 <= caseid < _SUBJECT_MODULUS:
        raise ValueError(f"subject id: caseid {caseid} outside 0..{_SUBJECT_MODULUS - 1}")
    return 1 + (caseid * 7919) % _SUBJECT_MODULUS


def _categorical(rng: np.random.Generator, counts: dict, skip=("missing",)) -> str | None:
    keys = [k for k in counts if k not in skip]
    weights = np.array([counts[k] for k in keys], dtype=float)
    missing = sum(counts.get(k, 0) for k in skip)
    total = weights.sum() + missing
    u = rng.random() * total
    if u >= weights.sum():
        return None
    return keys[int(np.searchsorted(np.cumsum(weights), u, side="right"))]


def _age(rng: np.random.Generator, pop: dict) -> float:
    a = pop["age_years"]
    # piecewise-linear inverse CDF through the published quantiles (plus an adult floor at 2 %,
    # which brings the mean to the published 58)
    q = [0.0, 0.02, 0.25, 0.5, 0.75, 1.0]
    x = [a["min"], 18.0, a["p25"], a["median"], a["p75"], a["max"]]
    return float(round(np.interp(rng.random(), q, x), 1))


def _body(rng: np.random.Generator, pop: dict, sex: str, age: float) -> tuple[float, float, float]:
    p_male = pop["sex"]["M"] / (pop["sex"]["M"] + pop["sex"]["F"])
    h_mean, h_sd, sex_gap = pop["height_cm"]["mean"], pop["height_cm"]["std"], 13.0
    within_sd = float(np.sqrt(max(h_sd**2 - p_male * (1 - p_male) * sex_gap**2, 25.0)))
    mean = h_mean + (1 - p_male) * sex_gap if sex == "M" else h_mean - p_male * sex_gap
    height = rng.normal(mean, within_sd)
    bmi = float(np.clip(rng.normal(pop["bmi"]["mean"], pop["bmi"]["std"]), 15.0, 45.0))
    if age < 18:  # children: height along a growth curve, lower BMI
        adult = height
        height = 50.0 + (adult - 50.0) * min(1.0, (age / 18.0) ** 0.6)
        bmi = float(np.clip(rng.normal(17.0, 2.0), 13.0, 25.0))
    height = float(round(height, 1))
    weight = float(round(bmi * (height / 100.0) ** 2, 1))
    return height, weight, float(round(weight / (height / 100.0) ** 2, 1))


def _fresh_patient(caseid: int, seed: int) -> Patient:
    pop = load_population()
    rng = case_rng(seed, caseid, "patient")
    sex = _categorical(rng, pop["sex"])
    age = _age(rng, pop)
    height, weight, bmi = _body(rng, pop, sex, age)
    asa = _categorical(rng, pop["asa"])
    emop = int(rng.random() < pop["emergency"]["1"] / sum(pop["emergency"].values()))
    # comorbidities rise with age; the age factor has mean ~1 over the age distribution
    p_htn = pop["preop_htn"]["1"] / sum(pop["preop_htn"].values())
    p_dm = pop["preop_dm"]["1"] / sum(pop["preop_dm"].values())
    age_factor = (age / pop["age_years"]["mean"]) ** 2 / 1.07
    htn = int(rng.random() < min(0.9, p_htn * age_factor))
    dm = int(rng.random() < min(0.6, p_dm * age_factor))
    department = _categorical(rng, pop["department"])
    allowed = _DEPARTMENT_OPTYPES[department]
    optype = _categorical(rng, {k: v for k, v in pop["optype"].items() if k in allowed})
    approach = _categorical(rng, pop["approach"])
    if department == "Thoracic surgery":
        position = _THORACIC_POSITIONS[int(rng.integers(len(_THORACIC_POSITIONS)))]
    elif department in ("Gynecology", "Urology"):
        position = "Lithotomy" if rng.random() < 0.7 else "Supine"
    else:
        position = _categorical(rng, pop["position"])
    aline1 = _categorical(rng, pop["aline_site"])
    return Patient(
        subjectid=subject_of_new_case(caseid), age=age, sex=sex, height=height, weight=weight,
        bmi=bmi, asa=None if asa is None else int(asa), emop=emop, department=department,
        optype=optype, approach=approach, position=position, ane_type="General",
        preop_htn=htn, preop_dm=dm, aline1=aline1)


def draw_patient(caseid: int, seed: int) -> Patient:
    """The patient of case ``caseid`` (deterministic in ``(seed, caseid)``).

    A repeat case reuses the subject of an earlier case id (same subject id, sex, height and
    comorbidities, slightly older, weight drifted) with a new operation drawn for this case.
    """
    rng = case_rng(seed, caseid, "subject")
    if caseid > 1 and rng.random() < REPEAT_CASE_P:
        earlier = max(1, caseid - int(rng.integers(1, REPEAT_LOOKBACK_CASES + 1)))
        base = draw_patient(earlier, seed)
        own = _fresh_patient(caseid, seed)
        weight = float(round(max(3.0, base.weight + rng.normal(0.0, 1.5)), 1))
        return replace(
            own, subjectid=base.subjectid, sex=base.sex, height=base.height, weight=weight,
            bmi=float(round(weight / (base.height / 100.0) ** 2, 1)),
            age=float(round(base.age + rng.uniform(0.0, 2.0), 1)),
            preop_htn=base.preop_htn, preop_dm=base.preop_dm)
    return _fresh_patient(caseid, seed)


def draw_patients(caseids, seed: int) -> list[Patient]:
    """Patients for ``caseids`` (an iterable of ids, or a count ``n`` meaning ids 1..n)."""
    ids = range(1, int(caseids) + 1) if isinstance(caseids, (int, np.integer)) else caseids
    return [draw_patient(int(c), seed) for c in ids]
