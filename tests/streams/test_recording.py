"""Recording reader: .vital round trip, WFDB with start time, ABP track choice, bad files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import vitaldb
import wfdb

from streams.recording import (ABP_TRACK_CANDIDATES, RecordingError, pick_abp_track,
                               read_recording, wfdb_start_ns)
from streams.signal.synthetic import synthetic_abp

T0 = 1_700_000_000.25          # epoch s of the test file's first record


def _write_vital(path: Path, waves: dict[str, np.ndarray], *, fs_hz: float = 500.0,
                 numerics: dict[str, list[tuple[float, float]]] | None = None,
                 events: list[tuple[float, str]] | None = None, packed: bool = True,
                 drop_second: int | None = None) -> None:
    vf = vitaldb.VitalFile()
    n = max(v.size for v in waves.values())
    vf.dtstart, vf.dtend = T0, T0 + n / fs_hz
    per = int(fs_hz)
    for name, x in waves.items():
        recs = [{"dt": T0 + i, "val": x[i * per:(i + 1) * per]}
                for i in range(int(np.ceil(x.size / per))) if i != drop_second]
        vf.add_track(name, recs, srate=fs_hz, unit="mmHg")
    for name, rows in (numerics or {}).items():
        vf.add_track(name, [{"dt": T0 + t, "val": v} for t, v in rows])
    if events:
        vf.add_track("EVENT", [{"dt": T0 + t, "val": s} for t, s in events])
    vf.to_vital(str(path), packed=packed)


@pytest.fixture(scope="module")
def abp_500() -> np.ndarray:
    return synthetic_abp(10.0, 500.0, seed=31).x_mmhg


@pytest.mark.parametrize("packed", [True, False])
def test_vital_round_trip(tmp_path, abp_500, packed):
    path = tmp_path / "case1.vital"
    mbp = [(2.0 * i, 80.0 + i) for i in range(5)]
    events = [(3.5, "Surgery started"), (1.0, "Propofol 100mg")]
    _write_vital(path, {"SNUADC/ART": abp_500, "SNUADC/ECG_II": np.zeros(5000, np.float32)},
                 numerics={"Solar8000/ART_MBP": mbp, "Solar8000/HR": [(0.5, 61.0)]},
                 events=events, packed=packed, drop_second=4)
    rec = read_recording(path)
    assert rec.name == "case1" and rec.source_path == path
    assert rec.abp_track == "SNUADC/ART" and rec.abp_fs_hz == 500.0
    assert rec.start_ns == int(round(T0 * 1e9))
    assert rec.abp_mmhg.dtype == np.float32 and rec.abp_mmhg.shape == (5000,)
    expected = abp_500.copy()
    expected[2000:2500] = np.nan                      # the dropped 1 s record is a gap
    np.testing.assert_array_equal(rec.abp_mmhg, expected)
    assert set(rec.numerics) == {"Solar8000/ART_MBP", "Solar8000/HR"}   # the ECG wave is not numeric
    t, v = rec.numerics["Solar8000/ART_MBP"]
    np.testing.assert_allclose(t, [r[0] for r in mbp], atol=1e-6)
    np.testing.assert_array_equal(v, [r[1] for r in mbp])
    assert [(round(t, 6), s) for t, s in rec.events] == sorted(events)
    assert rec.duration_s == pytest.approx(10.0)
    # an explicit start replaces the file's
    assert read_recording(path, start_ns=123).start_ns == 123


def test_wfdb_record_with_start_time(real_abp_record):
    rec = read_recording(real_abp_record, start_ns=1_600_000_000 * 10**9)
    assert rec.abp_track == "ABP" and rec.abp_fs_hz == 125.0
    assert rec.abp_mmhg.shape == (37_500,) and rec.abp_mmhg.dtype == np.float32
    assert rec.start_ns == 1_600_000_000 * 10**9
    assert 90.0 < float(np.median(rec.abp_mmhg)) < 100.0
    assert rec.numerics == {} and rec.events == []
    # without start_ns: the header's time of day (08:39:12.811) on 1970-01-01 UTC
    default = read_recording(real_abp_record)
    assert default.start_ns == ((8 * 60 + 39) * 60 + 12) * 10**9 + 811 * 10**6
    # the .dat beside the header reads the same record
    assert read_recording(real_abp_record.with_suffix(".dat")).abp_mmhg.size == 37_500
    # override by name, case-insensitive; an ECG lead is a waveform too
    assert read_recording(real_abp_record, abp_track="abp").abp_track == "ABP"


def test_wfdb_written_record_auto_detects_art(tmp_path):
    x = synthetic_abp(4.0, 100.0, seed=32).x_mmhg.astype(np.float64)
    sig = np.column_stack([x, np.zeros_like(x)])
    wfdb.wrsamp("rec1", fs=100, units=["mmHg", "mV"], sig_name=["ART", "II"], p_signal=sig,
                fmt=["16", "16"], adc_gain=[100.0, 200.0], baseline=[0, 0], write_dir=str(tmp_path))
    rec = read_recording(tmp_path / "rec1.hea")
    assert rec.abp_track == "ART"
    np.testing.assert_allclose(rec.abp_mmhg, x, atol=0.01)
    with pytest.raises(RecordingError, match=r"'PLETH'.*no such track.*\['ART', 'II'\]"):
        read_recording(tmp_path / "rec1.hea", abp_track="PLETH")


def test_abp_track_auto_detection_and_override(tmp_path, abp_500):
    path = tmp_path / "two_lines.vital"
    _write_vital(path, {"SNUADC/FEM": abp_500 + 5, "SNUADC/ART": abp_500},
                 numerics={"Solar8000/ART_MBP": [(0.0, 80.0)]})
    assert read_recording(path).abp_track == "SNUADC/ART"
    fem = read_recording(path, abp_track="fem")
    assert fem.abp_track == "SNUADC/FEM"
    np.testing.assert_array_equal(fem.abp_mmhg, abp_500 + 5)
    with pytest.raises(RecordingError, match="not a waveform track"):
        read_recording(path, abp_track="ART_MBP")
    with pytest.raises(RecordingError, match=r"'SNUADC/PAP'.*SNUADC/FEM.*SNUADC/ART"):
        read_recording(path, abp_track="SNUADC/PAP")


@pytest.mark.parametrize("tracks,expected", [
    (["SNUADC/ECG_II", "SNUADC/ART"], "SNUADC/ART"),
    (["Intellivue/ECG_II", "Intellivue/ABP"], "Intellivue/ABP"),
    (["X/ABP", "SNUADC/FEM"], "SNUADC/FEM"),           # candidates are tried in order
    (["monitor/art"], "monitor/art"),                   # case-insensitive, any device
    (["IBP1"], "IBP1"),
])
def test_pick_abp_track_candidates(tracks, expected):
    assert pick_abp_track(Path("f.vital"), tracks, tracks) == expected


def test_candidates_cover_the_common_names():
    lowered = {c.lower() for c in ABP_TRACK_CANDIDATES}
    assert {"snuadc/art", "abp", "art"} <= lowered


def test_file_without_abp_lists_its_tracks(tmp_path):
    path = tmp_path / "no_abp.vital"
    _write_vital(path, {"SNUADC/ECG_II": np.zeros(1000, np.float32)},
                 numerics={"Solar8000/HR": [(0.0, 70.0)]})
    with pytest.raises(RecordingError) as err:
        read_recording(path)
    msg = str(err.value)
    assert str(path) in msg and "SNUADC/ECG_II" in msg and "Solar8000/HR" in msg
    assert "--abp-track" in msg


def test_corrupt_truncated_and_foreign_files(tmp_path, abp_500):
    good = tmp_path / "good.vital"
    _write_vital(good, {"SNUADC/ART": abp_500})
    data = good.read_bytes()

    cut = tmp_path / "cut.vital"
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(RecordingError, match=r"cut\.vital: truncated"):
        read_recording(cut)

    noise = tmp_path / "noise.vital"
    noise.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(RecordingError, match=r"noise\.vital: not a \.vital file"):
        read_recording(noise)

    flipped = tmp_path / "flipped.vital"
    body = bytearray(data)
    body[len(body) // 2:len(body) // 2 + 64] = bytes(64)
    flipped.write_bytes(bytes(body))
    with pytest.raises(RecordingError, match=r"flipped\.vital: (corrupt|truncated)"):
        read_recording(flipped)

    foreign = tmp_path / "foreign.vital"
    foreign.write_bytes(gzip.compress(b"PK\x03\x04 not a vital file"))
    with pytest.raises(RecordingError, match="expected b'VITA'"):
        read_recording(foreign)

    empty = tmp_path / "empty.vital"
    empty.write_bytes(b"")
    with pytest.raises(RecordingError, match="empty.vital"):
        read_recording(empty)

    with pytest.raises(RecordingError, match="no such file"):
        read_recording(tmp_path / "missing.vital")
    with pytest.raises(RecordingError, match="unsupported recording format '.csv'"):
        (tmp_path / "x.csv").write_text("a,b\n")
        read_recording(tmp_path / "x.csv")


def test_truncated_wfdb_signal(tmp_path, real_abp_record):
    (tmp_path / "3975656_0015.hea").write_bytes(real_abp_record.read_bytes())
    (tmp_path / "3975656_0015.dat").write_bytes(real_abp_record.with_suffix(".dat").read_bytes()[:1000])
    with pytest.raises(RecordingError, match="3975656_0015.hea"):
        read_recording(tmp_path / "3975656_0015.hea")


def test_wfdb_start_ns():
    import datetime as dt
    assert wfdb_start_ns(None, None) == 0
    assert wfdb_start_ns(dt.date(2020, 1, 2), dt.time(3, 4, 5, 600_000)) == (
        int(dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc).timestamp()) * 10**9 + 600_000_000)
