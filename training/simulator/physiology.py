"""Causal haemodynamics of one anaesthetised case on a 1 s grid.

Causes -> state -> pressure, never the other way round (the IOH label is computed afterwards
from the pressure this produces):

* propofol: Marsh three-compartment kinetics, effect site (ke0 0.26/min), depth by a Hill curve;
  depth lowers vascular tone, contractility, heart rate and baroreflex gain;
* noxious stimulation (intubation, incision, surgery) raises tone and heart rate, blunted by depth;
* blood volume: bleeding episodes, maintenance crystalloid and fluid boluses (intravascular
  fraction leaves with a 30 min time constant); preload scales stroke volume (Frank-Starling) and
  raises respiratory pulse-pressure variation under positive-pressure ventilation;
* vasopressors: phenylephrine (vascular tone) and ephedrine (heart rate, contractility, some
  tone), each through a depot -> effect first-order chain;
* baroreflex: heart rate and vascular tone follow the MAP error with lags (8 s, 15 s);
* MAP = CO x SVR / 80 + CVP; pulse pressure = SV / arterial compliance.

A simulated anaesthetist watches the displayed MAP, heart rate and pulse-pressure variation and
reacts with delay and imperfect vigilance: vasopressor boluses, fluid boluses, lighter or deeper
propofol. Its decisions are the only feedback from pressure to the drivers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from training.simulator.population import Patient
from training.simulator.timeline import Timeline, ou_noise, stimulation

# Marsh propofol model (per minute), volumes per kg
_V1_L_KG, _K10, _K12, _K13, _K21, _K31, _KE0 = 0.228, 0.119, 0.112, 0.0419, 0.055, 0.0033, 0.26
_PPF_MG_PER_ML = 20.0       # Orchestra PPF20: propofol 2 % (mL/h on the pump)
_HILL = 2.5


@dataclass(frozen=True)
class Susceptibility:
    """Per-patient physiology parameters (drawn from covariates plus individual variation)."""

    map0_mmhg: float            # awake MAP
    hr0_bpm: float              # awake heart rate
    sv0_ml: float               # awake stroke volume
    compliance_ml_mmhg: float   # arterial compliance (pulse pressure = SV / compliance)
    vasodilation: float         # relative fall of SVR per unit depth
    baro_gain: float            # 1 = nominal baroreflex gain
    ce50_ug_ml: float           # propofol effect-site concentration of half effect
    blood_volume_ml: float
    ppf_maint_mg_kg_h: float    # maintenance propofol rate chosen for this case
    induction_mg_kg: float
    augmentation: float         # reflected-wave amplitude (waveform shape), rises with age
    diastolic_tau_s: float      # diastolic decay constant (waveform shape)

    def to_dict(self) -> dict:
        return {k: round(float(v), 4) for k, v in self.__dict__.items()}


def draw_susceptibility(rng: np.random.Generator, p: Patient) -> Susceptibility:
    age, htn = p.age, p.preop_htn
    asa3 = 1 if (p.asa or 2) >= 3 else 0
    map0 = 86.0 + 0.18 * (age - 55) + 9.0 * htn + rng.normal(0, 6)
    hr0 = 76.0 - 0.12 * (age - 55) + 4.0 * p.emop + rng.normal(0, 8)
    if age < 12:
        hr0 += 30.0 * (12 - age) / 12
    sv0 = float(np.clip(70.0 * (p.weight / 65.0) ** 0.5 * rng.lognormal(0, 0.12), 15.0, 110.0))
    compliance = float(np.clip((1.75 - 0.011 * (max(age, 18) - 30)) * (0.85 if htn else 1.0)
                               * rng.lognormal(0, 0.12), 0.7, 2.2)) * sv0 / 70.0
    vaso = (0.50 + 0.005 * (age - 55) + 0.06 * asa3 + 0.05 * htn + 0.03 * p.preop_dm
            + 0.04 * p.emop) * rng.lognormal(0, 0.25)
    baro = float(np.clip((1.0 - 0.008 * (age - 50) - 0.1 * htn) * rng.lognormal(0, 0.2), 0.3, 1.5))
    ce50 = float(np.clip((3.4 - 0.02 * (age - 50)) * rng.lognormal(0, 0.15), 1.8, 5.0))
    ppf = float(np.clip(rng.normal(7.5, 1.5) * (1.0 - 0.006 * max(0.0, age - 60)), 4.0, 12.0))
    ind = float(np.clip(rng.normal(1.8, 0.3) * (1.0 - 0.008 * max(0.0, age - 55)), 0.9, 2.8))
    aug = float(np.clip(0.25 + 0.006 * (age - 30) + 0.08 * htn + rng.normal(0, 0.05), 0.1, 0.75))
    tau_d = float(np.clip(1.4 - 0.006 * (age - 30) + rng.normal(0, 0.1), 0.7, 2.0))
    return Susceptibility(
        map0_mmhg=float(np.clip(map0, 65.0, 125.0)), hr0_bpm=float(np.clip(hr0, 48.0, 125.0)),
        sv0_ml=sv0, compliance_ml_mmhg=compliance, vasodilation=float(np.clip(vaso, 0.1, 0.75)),
        baro_gain=baro, ce50_ug_ml=ce50, blood_volume_ml=70.0 * p.weight, ppf_maint_mg_kg_h=ppf,
        induction_mg_kg=ind, augmentation=aug, diastolic_tau_s=tau_d)


@dataclass(frozen=True)
class Anaesthetist:
    """How the simulated anaesthetist watches and reacts."""

    trigger_mmhg: float         # treats when displayed MAP stays below this
    delay_median_s: float       # median time from noticing-worthy MAP to the action
    delay_sigma: float          # lognormal spread of that delay (imperfect vigilance)
    refractory_s: float         # waits this long after a bolus before treating again
    treats_hypotension: bool = True

    def to_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def draw_anaesthetist(rng: np.random.Generator, scenario: str, treats_hypotension: bool) -> Anaesthetist:
    return Anaesthetist(
        trigger_mmhg=float(rng.uniform(60.0, 66.0)),
        delay_median_s=float(rng.uniform(80.0, 180.0) if scenario == "default" else rng.uniform(120.0, 150.0)),
        delay_sigma=float(rng.uniform(0.3, 0.7)),
        refractory_s=float(rng.uniform(120.0, 200.0)),
        treats_hypotension=treats_hypotension)


@dataclass
class Course:
    """The physiological course on the 1 s grid (index i = second i of the case). Arrays (n_s,)."""

    t_s: np.ndarray
    map_mmhg: np.ndarray
    pp_mmhg: np.ndarray
    hr_bpm: np.ndarray
    sv_ml: np.ndarray
    svr_dyn: np.ndarray
    co_l_min: np.ndarray
    cvp_mmhg: np.ndarray
    ppv: np.ndarray             # respiratory pulse-pressure variation (fraction)
    resp_rate_min: np.ndarray   # breaths per minute (spontaneous before intubation)
    ventilated: np.ndarray      # bool: positive-pressure ventilation
    blood_volume_rel: np.ndarray
    ce_ug_ml: np.ndarray        # propofol effect-site concentration
    depth: np.ndarray           # 0..1
    stimulation: np.ndarray
    ppf_rate_ml_h: np.ndarray   # propofol 2 % pump rate
    events: list[dict]          # {"t_s", "text", "kind", "amount", "unit"}


def _event(events: list, t: float, kind: str, text: str, amount=None, unit=None) -> None:
    events.append({"t_s": round(float(t), 1), "kind": kind, "text": text,
                   "amount": amount, "unit": unit})


def simulate_course(p: Patient, sus: Susceptibility, doc: Anaesthetist, tl: Timeline,
                    rng: np.random.Generator) -> Course:
    """Integrate the haemodynamics second by second (explicit Euler, dt = 1 s)."""
    n = int(round(tl.duration_s))
    stim = stimulation(rng, tl, p.approach, n)
    svr_noise = ou_noise(rng, n, tau_s=90.0, sd=0.035)      # slow vasomotor fluctuation (log)
    hr_noise = ou_noise(rng, n, tau_s=30.0, sd=1.5)         # bpm
    obs_noise = rng.normal(0.0, 1.5, n)                     # display noise seen by the anaesthetist
    delays = rng.lognormal(math.log(doc.delay_median_s), doc.delay_sigma, 64)
    choice_u = rng.random(64)
    notice_u = rng.random(n)                                # per-second chance of noticing bleeding
    n_delay = 0
    # plain Python floats in the loop (numpy scalars are several times slower)
    stim_l, svr_noise, hr_noise = stim.tolist(), svr_noise.tolist(), hr_noise.tolist()
    obs_noise, notice_u = obs_noise.tolist(), notice_u.tolist()
    delays, choice_u = delays.tolist(), choice_u.tolist()

    wt = p.weight
    v1 = _V1_L_KG * wt
    k10, k12, k13, k21, k31, ke0 = (k / 60.0 for k in (_K10, _K12, _K13, _K21, _K31, _KE0))
    co0 = sus.hr0_bpm * sus.sv0_ml / 1000.0
    cvp0 = 6.0
    svr0 = (sus.map0_mmhg - cvp0) * 80.0 / co0
    bv0 = sus.blood_volume_ml

    out = {k: np.empty(n) for k in ("map", "pp", "hr", "sv", "svr", "co", "cvp", "ppv", "rr",
                                    "bv", "ce", "depth", "rate")}
    vent = np.zeros(n, dtype=bool)
    events: list[dict] = []

    # state
    a1 = a2 = a3 = ce = 0.0
    ppf_mg_min = 0.0
    loading_until = -1.0
    blood_lost = 0.0
    fluid_iv = 0.0                 # intravascular crystalloid (mL)
    fluid_rate = 0.0               # mL/min being infused now (boluses)
    fluid_until = -1.0
    maint_ml_min = 4.0 * wt / 60.0  # 4 mL/kg/h
    phe_dep = phe_eff = eph_dep = eph_eff = 0.0
    hr_baro = svr_baro = 0.0
    map_filt = sus.map0_mmhg
    hr = sus.hr0_bpm
    pending_at = -1.0              # time the pending treatment will be given
    next_ok = 0.0
    high_since = -1.0
    next_deepen = 0.0
    next_fluid = 0.0
    low_count = 0
    bleed_ml_s = np.zeros(n)                                 # blood loss per second (mL)
    for b in tl.bleeds:
        bleed_ml_s[int(b.start_s):int(b.end_s)] += b.rate_ml_min / 60.0
    bleed_ml_s = bleed_ml_s.tolist()
    pneumo = tl.pneumoperitoneum_s
    surgery_end = tl.opend_s if tl.opend_s is not None else tl.duration_s + 1
    position_preload = {"Reverse Trendelenburg": 0.93, "Sitting": 0.9, "Trendelenburg": 1.04,
                        "Prone": 0.96}.get(p.position or "", 1.0)

    for i in range(n):
        t = float(i)
        # ---- scheduled clinical steps (causes) ---------------------------------------------
        if i == int(tl.induction_s):
            _event(events, t, "phase", "Induction")
            if tl.induction_bolus:
                dose = float(np.clip(round(sus.induction_mg_kg * wt / 10.0) * 10.0, 30.0, 200.0))
                a1 += dose
                _event(events, t, "drug", f"Propofol {dose:.0f} mg", dose, "mg")
            else:
                loading_until = t + 60.0        # TCI-style loading at 1.2 mg/kg/min for 1 min
                _event(events, t, "drug", "Propofol TCI start", None, None)
            ppf_mg_min = sus.ppf_maint_mg_kg_h * wt / 60.0
        if i == int(tl.intubation_s):
            _event(events, t, "phase", "Intubation")
        if tl.incision_s is not None and i == int(tl.incision_s):
            _event(events, t, "phase", "Incision")
        if pneumo is not None and i == int(pneumo):
            _event(events, t, "phase", "Pneumoperitoneum")
        if tl.opend_s is not None and i == int(tl.opend_s):
            _event(events, t, "phase", "Surgery end")
            ppf_mg_min = 0.0
            if pneumo is not None:
                _event(events, t, "phase", "Desufflation")
        if tl.extubation_s is not None and i == int(tl.extubation_s):
            _event(events, t, "phase", "Extubation")

        # ---- propofol kinetics ------------------------------------------------------------
        rate = ppf_mg_min + (1.2 * wt if t < loading_until else 0.0)
        d1 = rate / 60.0 - (k10 + k12 + k13) * a1 + k21 * a2 + k31 * a3
        a2 += k12 * a1 - k21 * a2
        a3 += k13 * a1 - k31 * a3
        a1 += d1
        cp = a1 / v1
        ce += ke0 * (cp - ce)
        depth = ce ** _HILL / (ce ** _HILL + sus.ce50_ug_ml ** _HILL) if ce > 0 else 0.0

        # ---- volume -------------------------------------------------------------------------
        blood_lost += bleed_ml_s[i]
        inflow = (fluid_rate if t < fluid_until else 0.0) + (maint_ml_min if t >= tl.induction_s else 0.0)
        fluid_iv += inflow / 60.0 - fluid_iv / 1800.0
        bv_rel = (bv0 - blood_lost + fluid_iv) / bv0
        insufflated = pneumo is not None and pneumo <= t < surgery_end
        preload = min(1.08, max(0.25, bv_rel * position_preload * (0.95 if insufflated else 1.0))) ** 2.0
        ventilated = t >= tl.intubation_s and (tl.extubation_s is None or t < tl.extubation_s)

        # ---- drugs on the vasculature and heart ----------------------------------------------
        phe_eff += phe_dep / 45.0 - phe_eff / 360.0
        phe_dep -= phe_dep / 45.0
        eph_eff += eph_dep / 60.0 - eph_eff / 900.0
        eph_dep -= eph_dep / 60.0
        phe_svr = 0.6 * phe_eff / (phe_eff + 150.0)          # mcg at the effect site
        eph_hr = 12.0 * eph_eff / (eph_eff + 10.0)           # mg
        eph_ino = 0.25 * eph_eff / (eph_eff + 10.0)
        eph_svr = 0.10 * eph_eff / (eph_eff + 10.0)

        # ---- baroreflex (set point resets lower and gain falls with depth) -------------------
        gain = sus.baro_gain * (1.0 - 0.6 * depth)
        err = (sus.map0_mmhg - 8.0 * depth) - map_filt
        hr_baro += (min(35.0, max(-20.0, 0.7 * gain * err)) - hr_baro) / 8.0
        svr_baro += (min(0.35, max(-0.2, 0.009 * gain * err)) - svr_baro) / 15.0

        symp = stim_l[i] * (1.0 - 0.5 * depth)
        hr_target = (sus.hr0_bpm * (1.0 - 0.15 * depth) + 22.0 * symp + hr_baro + eph_hr
                     + hr_noise[i])
        hr += (hr_target - hr) / 4.0
        hr = min(170.0, max(35.0, hr))
        sv = (sus.sv0_ml * preload * (1.0 - 0.22 * depth) * (1.0 + eph_ino) * (1.0 + 0.05 * symp)
              * (sus.hr0_bpm / hr) ** 0.35)
        svr = (svr0 * (1.0 - sus.vasodilation * depth) * (1.0 + 0.4 * symp) * (1.0 + phe_svr + eph_svr)
               * (1.0 + svr_baro) * (1.12 if insufflated else 1.0) * math.exp(svr_noise[i]))
        co = hr * sv / 1000.0
        cvp = min(14.0, max(1.0, cvp0 + 10.0 * (bv_rel - 1.0) + (3.0 if insufflated else 0.0)))
        map_ = co * svr / 80.0 + cvp
        compliance = sus.compliance_ml_mmhg * (1.0 - 0.004 * (map_ - 90.0))
        pp = sv / max(0.3, compliance)
        deficit = max(0.0, 1.0 - bv_rel * position_preload)
        ppv = (0.05 + 1.1 * deficit + 0.04 * depth + (0.02 if insufflated else 0.0)) if ventilated else 0.03
        map_filt += (map_ - map_filt) / 5.0

        # ---- the anaesthetist ----------------------------------------------------------------
        if t >= tl.induction_s and t < tl.aneend_s:
            shown = map_ + obs_noise[i]             # what the monitor shows now
            if doc.treats_hypotension and pending_at < 0 and t >= next_ok and shown < doc.trigger_mmhg:
                pending_at = t + delays[n_delay % 64]
                n_delay += 1
            if pending_at >= 0 and t >= pending_at:
                pending_at = -1.0
                if map_ < doc.trigger_mmhg + 3.0:
                    low_count += 1
                    u = choice_u[low_count % 64]
                    # ephedrine first unless the heart is already fast (as in VitalDB, where
                    # ephedrine is given in about half of the cases, phenylephrine in a fifth)
                    if hr < 72.0 or (hr < 85.0 and u < 0.5):
                        dose = 10.0 if map_ < 58.0 or u < 0.5 else 5.0
                        eph_dep += dose
                        _event(events, t, "drug", f"Ephedrine {dose:.0f} mg", dose, "mg")
                    else:
                        dose = 150.0 if map_ < 55.0 else (100.0 if u < 0.7 else 50.0)
                        phe_dep += dose
                        _event(events, t, "drug", f"Phenylephrine {dose:.0f} mcg", dose, "mcg")
                    if ppf_mg_min > 0 and ce > 2.0 and u < 0.7:
                        ppf_mg_min *= 0.8     # lighten the anaesthetic (visible on the pump rate)
                    hypovolaemic = hr > sus.hr0_bpm * 1.15 or ppv > 0.13 or low_count >= 3
                    if hypovolaemic and t >= next_fluid:
                        fluid_rate, fluid_until = 250.0 / 5.0, t + 300.0
                        next_fluid = t + 600.0
                        _event(events, t, "fluid", "Fluid bolus 250 mL", 250.0, "mL")
                    next_ok = t + doc.refractory_s
            # bleeding noticed from tachycardia and a swinging arterial trace
            if (t >= next_fluid and ventilated and (ppv > 0.16 or hr > sus.hr0_bpm * 1.3)
                    and notice_u[i] < 0.02):
                vol = 500.0 if ppv > 0.2 else 250.0
                fluid_rate, fluid_until = vol / 5.0, t + 300.0
                next_fluid = t + 600.0
                _event(events, t, "fluid", f"Fluid bolus {vol:.0f} mL", vol, "mL")
            # too light: deepen
            if shown > max(sus.map0_mmhg * 1.2, 100.0) and ppf_mg_min > 0:
                high_since = t if high_since < 0 else high_since
                if t - high_since > 60.0 and t >= next_deepen:
                    ppf_mg_min *= 1.2
                    next_deepen = t + 300.0
            else:
                high_since = -1.0

        out["map"][i], out["pp"][i], out["hr"][i], out["sv"][i] = map_, pp, hr, sv
        out["svr"][i], out["co"][i], out["cvp"][i], out["ppv"][i] = svr, co, cvp, ppv
        out["rr"][i] = 12.0 if ventilated else 15.0
        out["bv"][i], out["ce"][i], out["depth"][i] = bv_rel, ce, depth
        out["rate"][i] = rate * 60.0 / _PPF_MG_PER_ML
        vent[i] = ventilated

    return Course(
        t_s=np.arange(n, dtype=float), map_mmhg=out["map"], pp_mmhg=out["pp"], hr_bpm=out["hr"],
        sv_ml=out["sv"], svr_dyn=out["svr"], co_l_min=out["co"], cvp_mmhg=out["cvp"],
        ppv=np.clip(out["ppv"], 0.02, 0.35), resp_rate_min=out["rr"], ventilated=vent,
        blood_volume_rel=out["bv"], ce_ug_ml=out["ce"], depth=out["depth"], stimulation=stim,
        ppf_rate_ml_h=out["rate"], events=events)
