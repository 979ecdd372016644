"""Recording -> message stream (pure part of `iohwatch replay`) and the command's input errors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from agent.cli import main
from streams import chunk_codec
from streams.contracts import ClinicalEvent, Observation, PatientContext, decode
from streams.recording import Recording
from streams.replay import (bed_messages, caseid_of, classify_event, context_from_clinical, find_context,
                            load_clinical)
from streams.topics import EVENTS, OBSERVATIONS, PATIENTS, WAVEFORM_ABP

T0 = 1_790_000_000_000_000_000


def recording(seconds: float = 5.0) -> Recording:
    n = int(seconds * 500)
    x = (80 + 20 * np.sin(np.arange(n) / 500 * 2 * np.pi * 1.2)).astype(np.float32)
    x[1000:1500] = np.nan  # second 2-3 is missing entirely
    return Recording(name="0007", start_ns=T0, abp_mmhg=x, abp_fs_hz=500.0, abp_track="SNUADC/ART",
                     numerics={"Solar8000/HR": (np.array([0.5, 2.5]), np.array([71.0, np.nan])),
                               "Solar8000/ART_MBP": (np.array([1.0]), np.array([80.0]))},
                     events=[(1.5, "Phenylephrine 100 mcg"), (0.2, "Induction")],
                     source_path=Path("0007.vital"))


@pytest.mark.parametrize("text,expected", [
    ("Phenylephrine 100 mcg", ("drug", "phenylephrine", 100.0, "mcg")),
    ("Ephedrine 10 mg", ("drug", "ephedrine", 10.0, "mg")),
    ("Fluid bolus 250 mL", ("fluid", "fluid", 250.0, "mL")),
    ("Incision", ("phase", "incision", None, None)),
    ("Orchestra PPF20 infusion propofol", ("infusion", "propofol", None, None)),
])
def test_classify_event(text, expected):
    assert classify_event(text) == expected


def test_bed_messages_are_time_ordered_and_typed():
    ctx = PatientContext(bed_id="OR-2", t_ns=T0, episode_id="case-7", age=60)
    msgs = list(bed_messages(recording(), "OR-2", ctx))
    assert msgs[0].topic == PATIENTS.name
    assert [m.t_ns for m in msgs] == sorted(m.t_ns for m in msgs)
    assert {m.key for m in msgs} == {b"OR-2"}
    chunks = [chunk_codec.decode(m.value) for m in msgs if m.topic == WAVEFORM_ABP.name]
    assert [c.seq for c in chunks] == [1, 2, 4, 5]  # the all-missing second is not sent
    obs = [decode(Observation, m.value) for m in msgs if m.topic == OBSERVATIONS.name]
    assert [(o.label, o.value, o.unit) for o in obs] == [("HR", 71.0, "/min"), ("ART_MBP", 80.0, "mm[Hg]")]
    events = [decode(ClinicalEvent, m.value) for m in msgs if m.topic == EVENTS.name]
    assert [(e.kind, e.t_ns - T0) for e in events] == [("phase", 200_000_000), ("drug", 1_500_000_000)]
    # A chunk is due when its last sample exists.
    wave = [m for m in msgs if m.topic == WAVEFORM_ABP.name]
    assert wave[0].t_ns == T0 + 10**9


def test_shift_moves_every_time():
    a = list(bed_messages(recording(), "OR-1"))
    b = list(bed_messages(recording(), "OR-1", shift_ns=60 * 10**9))
    assert [m.t_ns + 60 * 10**9 for m in a] == [m.t_ns for m in b]


def test_context_from_clinical_table(tmp_path):
    with open(tmp_path / "clinical.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["caseid", "subjectid", "age", "sex", "height", "weight", "asa",
                                          "emop", "optype", "preop_htn"])
        w.writeheader()
        w.writerow({"caseid": "7", "subjectid": "70", "age": "66", "sex": "F", "height": "160.5",
                    "weight": "", "asa": "3", "emop": "0", "optype": "Colorectal", "preop_htn": "1"})
    assert caseid_of(Path("cohort/0007.vital")) == 7
    table = load_clinical(tmp_path / "clinical.csv")
    ctx = context_from_clinical(table[7], "OR-1", T0)
    assert (ctx.age, ctx.sex, ctx.height, ctx.weight, ctx.asa, ctx.optype, ctx.preop_htn) == \
        (66.0, "F", 160.5, None, 3, "Colorectal", 1)
    assert ctx.episode_id == "case-7"
    found = find_context(tmp_path / "0007.vital", recording(), "OR-1")
    assert found is not None and found.subjectid == 70
    assert find_context(tmp_path / "0008.vital", recording(), "OR-1") is None


def test_replay_command_rejects_bad_input(tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["replay", str(tmp_path / "missing.vital")])
    assert r.exit_code != 0 and "does not exist" in r.output
    r = runner.invoke(main, ["replay", str(tmp_path)])
    assert r.exit_code != 0 and "no .vital or .hea recordings" in r.output
    bad = tmp_path / "0001.vital"
    bad.write_bytes(b"this is not a vital file")
    r = runner.invoke(main, ["replay", str(bad)])
    assert r.exit_code != 0 and "0001.vital" in r.output
    r = runner.invoke(main, ["score", str(bad)])
    assert r.exit_code != 0 and "0001.vital" in r.output


def test_replay_command_checks_bed_count(real_abp_record):
    r = CliRunner().invoke(main, ["replay", str(real_abp_record), "--beds", "OR-1,OR-2"])
    assert r.exit_code != 0 and "2 bed ids for 1 recordings" in r.output


def test_replay_command_without_broker_says_how_to_fix(real_abp_record, monkeypatch):
    from streams.broker import free_port

    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("IOHWATCH_EMBEDDED_BROKER_PORT", str(free_port()))
    r = CliRunner().invoke(main, ["replay", str(real_abp_record), "--no-progress"])
    assert r.exit_code != 0
    assert "KAFKA_BOOTSTRAP_SERVERS" in r.output and "iohwatch run" in r.output
