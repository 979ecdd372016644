"""The synthetic cohort: physiology in bounds, IOH prevalence, artifacts, demo, files, determinism."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import vitaldb
from click.testing import CliRunner

from training.simulator import (ABP_TRACK, CLINICAL_COLUMNS, EVENT_TRACK, draw_patient, draw_patients,
                                ioh_episodes, load_population, simulate_case, simulate_physiology,
                                write_cohort)

FS = 500.0


def _outside(t_s: np.ndarray, artifacts: list[dict], margin_s: float = 8.0) -> np.ndarray:
    keep = np.ones(len(t_s), dtype=bool)
    for a in artifacts:
        keep &= ~((t_s >= a["start_s"] - margin_s) & (t_s <= a["end_s"] + margin_s))
    return keep


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- patients ----------------------------------------------------------------------------------

def test_patients_follow_the_population_marginals():
    pop = load_population()
    patients = draw_patients(600, seed=11)
    male = np.mean([p.sex == "M" for p in patients])
    assert abs(male - pop["sex"]["M"] / pop["n_cases"]) < 0.06
    ages = np.array([p.age for p in patients])
    assert 55 <= np.median(ages) <= 65 and 0 < ages.min() and ages.max() <= 94
    assert 20.5 <= np.median([p.bmi for p in patients]) <= 25.0
    htn = np.mean([p.preop_htn for p in patients])
    assert 0.22 <= htn <= 0.45                                  # VitalDB: 0.33
    assert {p.department for p in patients} <= set(pop["department"])
    assert {p.optype for p in patients} <= set(pop["optype"])
    # some subjects have more than one case, with the same sex and height
    by_subject: dict[int, list] = {}
    for p in patients:
        by_subject.setdefault(p.subjectid, []).append(p)
    repeats = [ps for ps in by_subject.values() if len(ps) > 1]
    assert 10 <= len(repeats) < 100
    for ps in repeats:
        assert len({p.sex for p in ps}) == 1 and len({p.height for p in ps}) == 1


def test_a_patient_does_not_depend_on_the_cohort_size():
    assert draw_patients(30, seed=4)[24] == draw_patient(25, seed=4)
    assert draw_patient(25, seed=4) != draw_patient(25, seed=5)


# ---- physiology ----------------------------------------------------------------------------------

def test_ioh_episode_needs_sixty_seconds_below_65():
    m = np.full(600, 80.0)
    m[100:159] = 60.0                  # 59 s: not an episode
    m[300:360] = 64.9                  # 60 s: an episode
    eps = ioh_episodes(m)
    assert [(e["start_s"], e["end_s"]) for e in eps] == [(300.0, 360.0)]


@pytest.fixture(scope="module")
def courses():
    """80 one-hour cases on the 1 s grid, treated and untreated (same random draws)."""
    treated = [simulate_physiology(c, seed=0, minutes=60.0) for c in range(1, 81)]
    untreated = [simulate_physiology(c, seed=0, minutes=60.0, treat_hypotension=False)
                 for c in range(1, 41)]
    return treated, untreated


def test_ioh_prevalence_is_a_third_to_a_half(courses):
    treated, _ = courses
    with_ioh = np.mean([bool(ph.episodes) for ph in treated])
    assert 0.30 <= with_ioh <= 0.50, with_ioh                  # VitalDB-like: a third to a half


def test_case_level_vitals_are_physiological(courses):
    treated, _ = courses
    maps = np.array([np.median(ph.course.map_mmhg) for ph in treated])
    hrs = np.array([np.median(ph.course.hr_bpm) for ph in treated])
    pps = np.array([np.median(ph.course.pp_mmhg) for ph in treated])
    assert 70 <= np.median(maps) <= 100 and maps.min() > 55 and maps.max() < 125
    assert 50 <= np.median(hrs) <= 110 and hrs.min() > 40 and hrs.max() < 140
    assert 30 <= np.median(pps) <= 70 and pps.min() > 20 and pps.max() < 95


def test_withholding_treatment_makes_hypotension_longer_and_more_frequent(courses):
    treated, untreated = courses
    on = treated[: len(untreated)]
    secs_on = sum(e["duration_s"] for ph in on for e in ph.episodes)
    secs_off = sum(e["duration_s"] for ph in untreated for e in ph.episodes)
    assert secs_off > 2.0 * secs_on
    assert sum(bool(ph.episodes) for ph in untreated) >= sum(bool(ph.episodes) for ph in on)
    # and it is the anaesthetist's vasopressors that differ
    assert any("Phenylephrine" in e["text"] or "Ephedrine" in e["text"]
               for ph in on for e in ph.course.events)
    assert not any("Phenylephrine" in e["text"] or "Ephedrine" in e["text"]
                   for ph in untreated for e in ph.course.events)


def test_bleeding_raises_pulse_pressure_variation_and_heart_rate(courses):
    treated, _ = courses
    checked = 0
    for ph in treated:
        for b in ph.timeline.bleeds:
            vol = b.rate_ml_min * (b.end_s - b.start_s) / 60.0
            if vol < 400 or b.end_s > 3500:
                continue
            i0, i1 = int(b.start_s) - 30, int(b.end_s)
            c = ph.course
            assert c.ppv[i1] > c.ppv[i0] + 0.03
            assert c.blood_volume_rel[i1] < c.blood_volume_rel[i0]
            checked += 1
    assert checked >= 3


# ---- one recorded case ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def recorded():
    return [simulate_case(c, seed=2, minutes=15.0) for c in (1, 2, 3)]


def test_recorded_numerics_are_physiological_outside_artifacts(recorded):
    for case in recorded:
        t, mbp = case.numerics["Solar8000/ART_MBP"]
        _, sbp = case.numerics["Solar8000/ART_SBP"]
        _, dbp = case.numerics["Solar8000/ART_DBP"]
        keep = _outside(t, case.truth["artifacts"])
        assert 65 <= np.median(mbp[keep]) <= 105
        assert 30 <= np.median((sbp - dbp)[keep]) <= 75
        t_hr, hr = case.numerics["Solar8000/HR"]
        assert 50 <= np.median(hr) <= 110
        # the monitor's MAP follows the artifact-free MAP
        true = case.true_map_1s[t[keep].astype(int) - 1]
        assert np.median(np.abs(mbp[keep] - true)) < 4.0
        assert case.abp_mmhg.dtype == np.float32 and len(case.abp_mmhg) == 15 * 60 * FS


def test_waveform_has_beats_with_a_dicrotic_notch(recorded):
    case = recorded[0]
    arts = case.truth["artifacts"]
    t0 = next(s for s in range(60, 800, 10) if _outside(np.array([s, s + 10.0]), arts).all())
    x = case.abp_mmhg[int(t0 * FS): int((t0 + 10) * FS)].astype(float)
    from scipy.signal import find_peaks
    peaks, _ = find_peaks(x, prominence=15, distance=int(0.3 * FS))
    hr = float(np.interp(t0 + 5, np.arange(len(case.course.hr_bpm)), case.course.hr_bpm))
    assert abs(len(peaks) - hr / 6.0) <= 2                     # beats in 10 s
    # upstroke much faster than the fall; a notch (local minimum) after each systolic peak
    dx = np.diff(np.convolve(x, np.ones(10) / 10, mode="valid")) * FS      # mmHg/s, 20 ms smoothing
    assert dx.max() > 2.0 * -dx.min()
    notches = 0
    for p in peaks[:-1]:
        seg = x[p + int(0.08 * FS): p + int(0.35 * FS)]
        notches += bool(find_peaks(-seg, prominence=0.3)[0].size)
    assert notches >= len(peaks) - 2


def test_artifacts_in_the_sidecar_are_in_the_waveform():
    rates = {"flush": 12.0, "zeroing": 9.0, "damping": 6.0, "disconnection": 6.0, "gap": 6.0}
    case = simulate_case(9, seed=5, minutes=20.0, artifact_rates_per_h=rates)
    arts = case.truth["artifacts"]
    assert {a["kind"] for a in arts} == set(rates)
    x = case.abp_mmhg
    t_sbp, sbp = case.numerics["Solar8000/ART_SBP"]
    for a in arts:
        seg = x[int(a["start_s"] * FS) + 25: int(a["end_s"] * FS) - 25]
        if a["kind"] == "flush":
            assert np.nanmin(seg) > 200
            assert sbp[(t_sbp > a["start_s"]) & (t_sbp <= a["end_s"] + 2)].max() > 200
        elif a["kind"] == "zeroing":
            assert np.nanmax(np.abs(seg)) < 3
        elif a["kind"] == "disconnection":
            assert abs(np.nanmedian(seg)) < 8 and np.nanmax(seg) < 20
        elif a["kind"] == "gap":
            assert np.isnan(seg).all()
        elif a["kind"] == "damping":
            before = x[int((a["start_s"] - 10) * FS): int(a["start_s"] * FS)]
            pulse = lambda y: np.median(np.ptp(y[: len(y) // 500 * 500].reshape(-1, 500), axis=1))  # noqa: E731
            assert pulse(seg[-10 * int(FS):]) < 0.8 * pulse(before)        # pulse pressure shrinks
            assert abs(np.mean(seg) - np.mean(before)) < 15                # the mean stays
    # nothing is NaN outside gaps
    gaps = np.zeros(len(x), dtype=bool)
    for a in arts:
        if a["kind"] == "gap":
            gaps[int(round(a["start_s"] * FS)): int(round(a["end_s"] * FS))] = True
    assert np.isnan(x).sum() == gaps.sum() and not np.isnan(x[~gaps]).any()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_demo_has_an_episode_after_a_flush_in_normotension(seed):
    case = simulate_case(1, seed=seed, minutes=16.0, scenario="demo")
    onset = case.truth["ioh_episodes"][0]["start_s"]
    assert 6 * 60 <= onset <= 10 * 60
    (flush,) = case.truth["artifacts"]
    assert flush["kind"] == "flush" and flush["end_s"] < onset - 120
    t, mbp = case.numerics["Solar8000/ART_MBP"]
    assert mbp[(t > flush["start_s"]) & (t <= flush["end_s"] + 2)].max() > 150     # visible
    assert case.true_map_1s[int(flush["start_s"]) - 30: int(flush["end_s"]) + 30].min() > 75
    # precursors: an induction before onset and pressure falling over the minutes before it
    assert any(t_e < onset - 120 and text.startswith("Propofol") for t_e, text in case.events)
    m = case.true_map_1s
    assert m[int(onset) - 300] - m[int(onset) - 30] > 10
    assert case.truth["ioh_episodes"][0]["end_s"] < len(m) - 120                     # it resolves


# ---- files ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cohort")
    paths = write_cohort(out, cases=2, seed=3, minutes=4.0, progress=False)
    return out, paths


def test_vital_round_trip(cohort):
    out, paths = cohort
    assert [p.name for p in paths] == ["0001.vital", "0002.vital"]
    case = simulate_case(2, seed=3, minutes=4.0)
    vf = vitaldb.VitalFile(str(paths[1]))
    names = set(vf.get_track_names())
    assert names == set(case.numerics) | {ABP_TRACK, EVENT_TRACK}
    assert vf.trks[ABP_TRACK].srate == FS and vf.trks[ABP_TRACK].unit == "mmHg"
    assert all(vf.trks[n].srate == 0 for n in case.numerics)
    assert vf.dtstart == case.start_ns / 1e9
    wave = vf.to_numpy([ABP_TRACK], 1 / FS)[:, 0]
    np.testing.assert_array_equal(np.isnan(wave), np.isnan(case.abp_mmhg))
    np.testing.assert_allclose(wave, case.abp_mmhg, atol=1e-4)
    t_s, mbp = case.numerics["Solar8000/ART_MBP"]
    recs = vf.trks["Solar8000/ART_MBP"].recs
    np.testing.assert_allclose([r["dt"] - vf.dtstart for r in recs], t_s, atol=1e-3)
    np.testing.assert_allclose([r["val"] for r in recs], mbp)
    assert [r["val"] for r in vf.trks[EVENT_TRACK].recs] == [text for _, text in case.events]
    truth = json.loads((out / "0002.truth.json").read_text())
    assert truth["ioh_episodes"] == case.truth["ioh_episodes"]
    assert truth["start_ns"] == case.start_ns


def test_clinical_table_has_vitaldb_columns(cohort):
    out, _ = cohort
    with open(out / "clinical.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["caseid"]) for r in rows] == [1, 2]
    assert tuple(rows[0]) == CLINICAL_COLUMNS
    for r in rows:
        assert r["sex"] in ("M", "F") and float(r["age"]) > 0 and r["ane_type"] == "General"
        assert 0 == int(r["casestart"]) <= int(r["anestart"]) < int(r["aneend"]) <= int(r["caseend"]) == 240


def test_same_seed_same_bytes_and_cases_independent_of_cohort(cohort, tmp_path):
    out, paths = cohort
    again = write_cohort(tmp_path / "a", cases=2, seed=3, minutes=4.0, progress=False)
    for p, q in zip(paths, again):
        assert _sha(p) == _sha(q)
    assert _sha(out / "clinical.csv") == _sha(tmp_path / "a" / "clinical.csv")
    alone = write_cohort(tmp_path / "b", cases=1, seed=3, minutes=4.0, progress=False, first_caseid=2)
    assert _sha(alone[0]) == _sha(paths[1])
    assert _sha(tmp_path / "b" / "0002.truth.json") == _sha(out / "0002.truth.json")
    other = write_cohort(tmp_path / "c", cases=1, seed=4, minutes=4.0, progress=False)
    assert _sha(other[0]) != _sha(paths[0])


def test_simulate_command(tmp_path):
    from agent.cli import main
    runner = CliRunner()
    res = runner.invoke(main, ["simulate", "--cases", "2", "--out", str(tmp_path / "c"), "--seed", "1",
                               "--minutes", "3", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "wrote 2 cases" in res.output and "cases with IOH" in res.output and "artifacts" in res.output
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        "0001.truth.json", "0001.vital", "0002.truth.json", "0002.vital", "clinical.csv"]
    afile = tmp_path / "file"
    afile.write_text("x")
    res = runner.invoke(main, ["simulate", "--cases", "1", "--out", str(afile)])
    assert res.exit_code != 0 and "not a directory" in res.output
    res = runner.invoke(main, ["simulate", "--cases", "1", "--out", str(tmp_path / "d"),
                               "--scenario", "demo", "--minutes", "5"])
    assert res.exit_code != 0 and "--minutes >= 14" in res.output
