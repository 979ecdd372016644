"""Cohort building through the agent's signal path, on hand-made .vital files."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from agent.cli import main
from tests.training.vitalfiles import abp_with_dips, write_clinical, write_vital
from training.cohort import SPLITS, CohortSpec, load_split, split_subjects


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    d = tmp_path_factory.mktemp("rec")
    rows = []
    for cid in range(1, 9):
        dips = [(600.0 + 60 * (cid % 3), 700.0 + 60 * (cid % 3), 35.0)] if cid % 2 else []
        x = abp_with_dips(1500.0, dips, seed=cid)
        hr = (np.arange(0, 1500, 2.0), np.full(750, 60.0 + cid))
        write_vital(d / f"{cid:04d}.vital", x, numerics={"Solar8000/HR": hr})
        rows.append({"caseid": cid, "subjectid": 100 + (cid + 1) // 2, "age": 50 + cid, "sex": "MF"[cid % 2]})
    # bad inputs: no arterial line, corrupt bytes, a flat line with no usable window, unknown caseid
    write_vital(d / "0020.vital", None, numerics={"Solar8000/HR": (np.arange(0, 60, 2.0), np.full(30, 70.0))})
    rows.append({"caseid": 20, "subjectid": 120})
    (d / "0021.vital").write_bytes(b"\x1f\x8b\x08\x00garbage")
    rows.append({"caseid": 21, "subjectid": 121})
    write_vital(d / "0022.vital", np.zeros(60000, dtype=np.float32))
    rows.append({"caseid": 22, "subjectid": 122})
    write_vital(d / "0099.vital", abp_with_dips(300.0, []))
    clinical = write_clinical(d / "clinical.csv", rows)
    return d, clinical


@pytest.fixture(scope="module")
def built(recordings, tmp_path_factory):
    d, clinical = recordings
    out = tmp_path_factory.mktemp("cohort")
    res = CliRunner().invoke(main, ["cohort", "build", "--recordings", str(d), "--clinical", str(clinical),
                                    "--out", str(out), "--seed", "3", "--split", "0.5,0.25,0.25"])
    assert res.exit_code == 0, res.output
    return out, res.output


def test_bad_recordings_are_skipped_with_reasons(built):
    out, output = built
    meta = json.loads((out / "meta.json").read_text())
    assert meta["recordings_found"] == 12 and meta["recordings_used"] == 8
    reasons = {s["recording"]: s["reason"] for s in meta["summary"]["skipped"]}
    assert set(reasons) == {"0020.vital", "0021.vital", "0022.vital", "0099.vital"}
    assert "no arterial-pressure waveform" in reasons["0020.vital"]
    assert "gzip" in reasons["0021.vital"] or "corrupt" in reasons["0021.vital"] or "truncated" in reasons["0021.vital"]
    assert "no eligible time point" in reasons["0022.vital"]
    assert "not in clinical.csv" in reasons["0099.vital"]
    assert "skipped 0021.vital" in output


def test_split_by_subject_has_no_leakage(built):
    out, _ = built
    subj = {s: set(np.unique(load_split(out, s)["subjectid"]).tolist()) for s in SPLITS}
    assert all(subj[s] for s in SPLITS)
    assert not (subj["train"] & subj["dev"]) and not (subj["train"] & subj["test"]) and not (subj["dev"] & subj["test"])
    cases = json.loads((out / "cases.json").read_text())
    for c in cases:  # both cases of a subject land in the same split
        assert c["subjectid"] in subj[c["split"]]


def test_samples_labels_and_inputs(built):
    out, _ = built
    meta = json.loads((out / "meta.json").read_text())
    tr = load_split(out, "train")
    n = len(tr)
    assert tr["map_mmhg"].shape == (n, 300) and tr["wave_mmhg"].shape == (n, 3000)
    assert tr["labels"].shape == (n, 3) and tr["future_map_mmhg"].shape == (n, 300)
    # 30 s stride on the absolute grid; decision time 2.5 s after the cell end
    assert np.all((tr["t_ns"] - 2_500_000_000) % 30_000_000_000 == 0)
    # every sample is eligible for some horizon; the last cell it sees is valid
    assert np.all((tr["labels"] >= 0).any(1))
    assert tr["valid"][:, -1].all()
    # numerics: latest HR of the case, no look-ahead
    hr = tr["numerics"][:, 0]
    assert np.allclose(hr, 60.0 + tr["caseid"])
    s = meta["summary"]
    total_events = sum(s["events"].values())
    assert total_events == 4  # the four odd cases each hold one dip
    for split in SPLITS:
        for h in ("5", "10", "15"):
            assert 0 <= s["prevalence"][split][h] <= 1
    assert len(meta["data_hash"]) == 64


def test_positive_samples_precede_event_onsets(built):
    out, _ = built
    for split in SPLITS:
        sp = load_split(out, split)
        for cid, on in zip(sp["event_caseid"], sp["event_onset_ns"]):
            m = sp["caseid"] == cid
            t, lab = sp["t_ns"][m], sp["labels"][m]
            before = (t < on) & (t >= on - 5 * 60e9 + 3e9)
            assert (lab[before, 0] == 1).all()
            assert (lab[t < on - 15 * 60e9 - 6e9, 2] != 1).all()


def test_split_subjects_deterministic_and_complete():
    a = split_subjects(range(100), (0.6, 0.2, 0.2), seed=1)
    assert a == split_subjects(list(range(100))[::-1], (0.6, 0.2, 0.2), seed=1)
    counts = {s: sum(v == s for v in a.values()) for s in SPLITS}
    assert counts == {"train": 60, "dev": 20, "test": 20}
    with pytest.raises(ValueError, match="fractions"):
        split_subjects(range(5), (0.5, 0.6, 0.1))


def test_empty_split_is_reported(recordings, tmp_path):
    d, clinical = recordings
    from training.cohort import build_cohort

    meta = build_cohort(d, clinical, tmp_path / "c", split=(1.0, 0.0, 0.0), spec=CohortSpec())
    assert meta["summary"]["empty_splits"] == ["dev", "test"]
    assert len(load_split(tmp_path / "c", "dev")) == 0


def test_latest_numerics_no_look_ahead_aliases_and_age():
    from training.cohort import _latest_numerics

    n = {"Solar8000/PLETH_SPO2": (np.array([0.0, 10.0]), np.array([97.0, 95.0])),
         "Solar8000/HR": (np.array([5.0]), np.array([70.0])),
         "Solar8000/PLETH_HR": (np.array([1.0]), np.array([71.0]))}
    t = np.array([0, 2e9, 6e9, 11e9, 700e9]).astype(np.int64)
    out = _latest_numerics(n, ("HR", "SPO2", "BT"), 0, t)
    assert np.isnan(out[0, 0]) and out[1, 0] == 71.0 and out[2, 0] == 70.0   # HR first, PLETH_HR as fallback
    assert out[2, 1] == 97.0 and out[3, 1] == 95.0                           # SPO2 from PLETH_SPO2
    assert np.isnan(out[4]).all()                                            # older than 10 min
    assert np.isnan(out[:, 2]).all()
