"""When things happen in one simulated case: phases of anaesthesia and surgery, bleeding, stimulation.

All times are seconds from the case start (the start of the recording). The timeline is drawn
before the physiology runs and never looks at pressure: it is a cause, not a consequence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.signal import lfilter

# expected number of bleeding episodes per hour of surgery, by operation type
_BLEED_RATE_PER_H = {
    "Transplantation": 2.2, "Hepatic": 2.0, "Vascular": 1.8, "Biliary/Pancreas": 1.5,
    "Major resection": 1.3, "Stomach": 1.1, "Colorectal": 1.1, "Others": 0.7,
    "Minor resection": 0.5, "Thyroid": 0.3, "Breast": 0.3,
}
SCENARIOS = ("default", "demo")
DEMO_MIN_MINUTES = 14.0


@dataclass(frozen=True)
class Bleed:
    start_s: float
    end_s: float
    rate_ml_min: float


@dataclass(frozen=True)
class Timeline:
    duration_s: float
    induction_s: float
    intubation_s: float
    incision_s: float | None       # None when the case ends before surgery starts
    pneumoperitoneum_s: float | None
    opend_s: float | None
    extubation_s: float | None
    aneend_s: float
    induction_bolus: bool          # propofol bolus (else a rapid TCI-style loading infusion)
    bleeds: tuple[Bleed, ...] = field(default_factory=tuple)

    def clinical(self) -> dict:
        """casestart/caseend/anestart/aneend/opstart/opend in seconds, VitalDB style."""
        return {
            "casestart": 0, "caseend": int(round(self.duration_s)),
            "anestart": int(round(max(0.0, self.induction_s - 60.0))),
            "aneend": int(round(self.aneend_s)),
            "opstart": None if self.incision_s is None else int(round(self.incision_s)),
            "opend": None if self.opend_s is None else int(round(self.opend_s)),
        }


def draw_timeline(rng: np.random.Generator, duration_s: float, optype: str, approach: str,
                  emop: int, scenario: str) -> Timeline:
    if scenario not in SCENARIOS:
        raise ValueError(f"timeline: unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    if duration_s < 120.0:
        raise ValueError(f"timeline: a case needs at least 120 s, got {duration_s:.0f} s")
    T = float(duration_s)
    if scenario == "demo":
        if T < DEMO_MIN_MINUTES * 60:
            raise ValueError(f"timeline: the demo scenario needs at least {DEMO_MIN_MINUTES:.0f} min, "
                             f"got {T / 60:.1f} min")
        ind = rng.uniform(185.0, 215.0)
        intub = ind + rng.uniform(90.0, 120.0)
        incision = min(ind + rng.uniform(14.0, 16.0) * 60, T - 60.0)
    else:
        ind = min(rng.uniform(90.0, 240.0), 0.08 * T)
        intub = ind + min(rng.uniform(90.0, 180.0), 0.05 * T)
        incision = intub + min(rng.uniform(8.0, 22.0) * 60, 0.3 * T)
    # surgery ends a few minutes before the recording does; emergence follows
    tail = min(rng.uniform(5.0, 9.0) * 60, 0.12 * T)
    opend = T - tail if T - tail > incision + 60.0 else None
    if incision >= T - 30.0:
        incision_s, opend = None, None
    else:
        incision_s = incision
    aneend = T - min(60.0, 0.02 * T)
    extubation = None if opend is None else opend + 0.6 * (aneend - opend)
    pneumo = None
    if incision_s is not None and approach in ("Videoscopic", "Robotic"):
        pneumo = incision_s + rng.uniform(60.0, 240.0)
        if opend is not None and pneumo >= opend:
            pneumo = None
    bleeds: list[Bleed] = []
    if incision_s is not None and scenario == "default":
        surg_end = opend if opend is not None else T
        hours = (surg_end - incision_s) / 3600.0
        rate = _BLEED_RATE_PER_H.get(optype, 0.8) * (1.5 if approach == "Open" else 1.0)
        for _ in range(rng.poisson(rate * hours)):
            start = rng.uniform(incision_s + 60.0, max(incision_s + 61.0, surg_end - 120.0))
            dur = rng.uniform(3.0, 15.0) * 60
            volume = float(np.clip(rng.lognormal(np.log(220.0), 0.75), 40.0, 2500.0))
            bleeds.append(Bleed(start, min(start + dur, surg_end), volume / (dur / 60.0)))
    if emop:  # emergencies often arrive with a blood-volume deficit: model as an early bleed
        if rng.random() < 0.5:
            bleeds.append(Bleed(ind, ind + 600.0, rng.uniform(10.0, 35.0)))
    bleeds.sort(key=lambda b: b.start_s)
    return Timeline(duration_s=T, induction_s=ind, intubation_s=intub, incision_s=incision_s,
                    pneumoperitoneum_s=pneumo, opend_s=opend, extubation_s=extubation,
                    aneend_s=aneend, induction_bolus=bool(scenario == "demo" or rng.random() < 0.4),
                    bleeds=tuple(bleeds))


def ou_noise(rng: np.random.Generator, n: int, tau_s: float, sd: float, dt_s: float = 1.0) -> np.ndarray:
    """Stationary Ornstein-Uhlenbeck noise on a regular grid (AR(1) filter of white noise). (n,)"""
    a = np.exp(-dt_s / tau_s)
    white = rng.normal(0.0, sd * np.sqrt(1 - a * a), n)
    white[0] = rng.normal(0.0, sd)
    return lfilter([1.0], [1.0, -a], white)


def stimulation(rng: np.random.Generator, tl: Timeline, approach: str, n_s: int) -> np.ndarray:
    """Noxious stimulation on the 1 s grid, 0 (none) .. 1 (intubation, incision). Shape (n_s,)."""
    t = np.arange(n_s, dtype=float)
    s = np.zeros(n_s)
    # intubation and extubation: a sharp spike decaying over ~2 min
    for t0, amp in ((tl.intubation_s, 1.0), (tl.extubation_s, 0.8)):
        if t0 is not None:
            after = t >= t0
            s[after] += amp * np.exp(-(t[after] - t0) / 90.0)
    if tl.incision_s is not None:
        end = tl.opend_s if tl.opend_s is not None else tl.duration_s
        level = rng.uniform(0.35, 0.75) if approach == "Open" else rng.uniform(0.25, 0.55)
        # Ornstein-Uhlenbeck fluctuation around the level (tau 120 s, sd 0.12)
        ou = ou_noise(rng, n_s, tau_s=120.0, sd=0.12)
        surg = (t >= tl.incision_s) & (t < end)
        s[surg] += level + ou[surg]
        # the incision itself
        inc = t >= tl.incision_s
        s[inc] += 0.5 * np.exp(-(t[inc] - tl.incision_s) / 60.0)
    return np.clip(s, 0.0, 1.2)
