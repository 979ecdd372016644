"""Normalisation of real message shapes: PCD-01, Vital Recorder, ADT, RAS, and bad input."""

from __future__ import annotations

import gzip
import shutil
from datetime import timezone
from unittest import mock
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from streams.hl7 import codes, samples
from streams.hl7.fast import parse, split_messages
from streams.hl7.normalise import normalise, parse_ts

T0 = 1_735_732_800_000_000_000  # 2025-01-01T12:00:00Z


def by_code(n):
    return {o.code: o for o in n.observations}


def test_pcd01_oru_with_containment_and_waveform():
    wave = samples.abp_wave(100)
    n = normalise(samples.pcd01_oru("OR^3", T0, map_mmhg=64, wave_mmhg=wave))
    assert n.bed_id == "OR-3" and n.message_type == "ORU^R01" and n.control_id == "MSG00001"
    obs = by_code(n)
    assert set(obs) == {"150037", "150038", "150039", "147842", "150456"}
    assert obs["150039"].value == 64 and obs["150039"].unit == "mm[Hg]"
    assert obs["150039"].label == "MDC_PRESS_BLD_ART_ABP_MEAN"
    assert obs["147842"].unit == "/min" and obs["150456"].unit == "%"
    assert obs["150039"].device_id == "0012210000000001" and obs["150039"].t_ns == T0
    assert not n.dead_letters
    assert sum(s.startswith("containment") for s in n.skipped) == 4
    [chunk] = n.chunks
    assert chunk.fs_hz == pytest.approx(100.0) and chunk.t0_ns == T0 and chunk.bed_id == "OR-3"
    np.testing.assert_allclose(chunk.samples, np.round(wave, 1), atol=1e-4)


@pytest.mark.parametrize("terminator", ["\r", "\n", "\r\n"])
@pytest.mark.parametrize("version", ["2.3", "2.5.1", "2.6", "2.7", "2.8"])
def test_line_endings_and_versions(terminator, version):
    n = normalise(samples.pcd01_oru(version=version, terminator=terminator))
    assert len(n.observations) == 5 and not n.dead_letters


def test_kpa_converted_and_impossible_values_dead_lettered_rest_kept():
    msg = samples.pcd01_oru().decode()
    msg = msg.replace("|118|266016^MDC_DIM_MMHG^MDC", "|15.732|265987^MDC_DIM_KILO_PASCAL^MDC")
    msg = msg.replace("|62|266016", "|-35|266016").replace("|81|266016", "|320|266016")
    msg = msg.replace("|72|264864", "|7x2|264864")
    n = normalise(msg.encode())
    obs = by_code(n)
    assert obs["150037"].value == pytest.approx(118.0, abs=0.01) and obs["150037"].unit == "mm[Hg]"
    assert set(obs) == {"150037", "150456"}
    reasons = sorted(d.reason for d in n.dead_letters)
    assert len(reasons) == 3 and all(d.reason_class == "value" for d in n.dead_letters)
    assert any("-35" in r and "MDC_PRESS_BLD_ART_ABP_DIA" in r for r in reasons)
    assert any("320" in r for r in reasons) and any("'7x2'" in r for r in reasons)
    assert all(d.raw.startswith(b"OBX|") for d in n.dead_letters)


def test_escapes_repeats_custom_encoding_and_z_segments():
    msg = ("MSH#:!$*#GW#ICU###20250101120000+0000##ORU:R01#E1#P#2.5\r"
           "PV1##I#OR$F$A:7\r"
           "ZAB#whatever\r"
           "OBR#1######20250101120000+0000\r"
           "OBX#1#NM#150039:MDC_PRESS_BLD_ART_ABP_MEAN:MDC##70!71#mm[Hg]#####R\r").encode()
    p = parse(msg)
    assert (p.field_sep, p.comp_sep, p.rep_sep, p.esc, p.sub_sep) == ("#", ":", "!", "$", "*")
    n = normalise(msg)
    assert n.bed_id == "OR#A-7"  # \F\ escape resolved to the field separator
    assert [o.value for o in n.observations] == [70.0]  # first repetition
    assert "ZAB segment" in n.skipped and not n.dead_letters


def test_unescape_sequences():
    p = parse(b"MSH|^~\\&|A|B|||20250101||ORU^R01|1|P|2.6\r")
    assert p.unescape(r"a\F\b\S\c\T\d\R\e\E\f") == "a|b^c&d~e\\f"
    assert p.unescape(r"x\X414243\y\.br\z") == "xABCy\nz"
    assert p.unescape("broken\\F") == "broken\\F"


def test_timestamps_offsets_and_default_zone():
    assert parse_ts("20250101120000+0100") == T0 - 3600 * 10**9
    assert parse_ts("20250101120000.25-0000") == T0 + 250_000_000
    assert parse_ts("20250101120000") == T0
    seoul = ZoneInfo("Asia/Seoul")
    assert parse_ts("20250101210000", seoul) == T0
    for bad in ("2025013", "20251301", "20250101120000+01", "abc"):
        with pytest.raises(ValueError):
            parse_ts(bad)


def test_obx_before_obr_and_missing_bed_and_unsupported_type():
    msg = samples.pcd01_oru().decode().split("\r")
    obr = msg.pop(3)
    msg.insert(8, obr)  # OBX 1..5 now precede the OBR
    n = normalise("\r".join(msg).encode())
    before = [d for d in n.dead_letters if "before any OBR" in d.reason]
    assert len(before) == 5 and {o.code for o in n.observations} == {"150039", "147842", "150456"}
    no_bed = normalise(samples.pcd01_oru(bed=""))
    assert [d.reason_class for d in no_bed.dead_letters] == ["unknown_bed"] and not no_bed.observations
    qry = normalise(b"MSH|^~\\&|A|B|||20250101||QRY^A19|9|P|2.5\rPV1||I|OR^1\r")
    assert [d.reason_class for d in qry.dead_letters] == ["unsupported"]


@pytest.mark.parametrize("raw", [b"", b"hello", b"MSH", b"MSH|^~|x", b"MSH|^^\\&|", b"PID|1\rMSH|^~\\&|",
                                 b"\x00\xff" * 40, "MSH|^~\\&|é".encode("latin-1")])
def test_garbage_never_raises(raw):
    n = normalise(raw)
    assert n.dead_letters and not n.observations


def test_adt_context_and_discharge():
    a01 = normalise(samples.adt("A01", "OR^5", T0, birth="19600101", sex="F", height_cm=160, weight_kg=64))
    [ctx] = a01.contexts
    assert ctx.bed_id == "OR-5" and ctx.status == "admitted" and ctx.sex == "F"
    assert ctx.age == pytest.approx(65.0, abs=0.01) and ctx.height == 160 and ctx.weight == 64
    assert ctx.bmi == pytest.approx(25.0, abs=0.05)
    assert "V123456" not in ctx.episode_id  # pseudonymous
    a03 = normalise(samples.adt("A03", "OR^5", T0 + 10**12))
    assert a03.contexts[0].status == "discharged" and a03.contexts[0].episode_id == ctx.episode_id
    a08 = normalise(samples.adt("A08", "OR^5", T0, sex="U", height_cm=None, weight_kg=None))
    assert a08.contexts[0].status == "updated" and a08.contexts[0].sex is None
    assert normalise(samples.adt("A02")).dead_letters[0].reason_class == "unsupported"


def test_ras_administration_event():
    n = normalise(samples.ras("OR^3", T0, drug="Phenylephrine", amount=100, unit="ug"))
    [ev] = n.events
    assert (ev.kind, ev.name, ev.value, ev.unit, ev.t_ns) == ("drug", "phenylephrine", 100.0, "ug", T0)
    assert "IV" in ev.text
    bad = normalise(samples.ras(amount=1).replace(b"|1|ug", b"|lots|ug"))
    assert bad.dead_letters[0].reason_class == "value" and not bad.events


def _reference_payload(tmp_path, seconds=4):
    """HL7 built by the reference Vital Recorder client's own functions from a local .vital file."""
    from vitalrecorder import server as vr

    vital = samples.write_vital(tmp_path / "src.vital", seconds=seconds)
    with mock.patch.object(vr, "download_file", lambda url, dest: shutil.copy(vital, dest)):
        files = vr.load_vital_files(["local/1.vital"])
    seq = [0]
    start = 1_800_000_000.0
    return vr.build_hl7_payload(files, start, start + seconds, "OR7", start, seq), files


def test_vital_recorder_payload_from_reference_client(tmp_path):
    payload, _ = _reference_payload(tmp_path)
    assert gzip.decompress(gzip.compress(payload.encode())) == payload.encode()
    [msg] = split_messages(payload.encode())
    n = normalise(msg, timezone.utc)
    assert n.bed_id == "OR7/BED-1" and n.source == "vitalrecorder" and not n.dead_letters
    obs = by_code(n)
    assert obs["150039"].value == 78.0 and obs["150039"].unit == "mm[Hg]"
    assert obs["147842"].value == 72.0
    [chunk] = n.chunks
    assert chunk.fs_hz == 100.0 and chunk.track == "SNUADC/ART"
    assert chunk.n == 400  # 4 s resampled by the client from 500 Hz to 100 Hz
    assert 40 < float(np.nanmin(chunk.samples)) < float(np.nanmax(chunk.samples)) < 130
    [event] = n.events
    assert (event.kind, event.name) == ("phase", "surgery_start")


def test_code_table_is_consistent():
    for mdc in list(codes.VR_TRACKS.values()) + list(codes.VR_MONTYPES.values()) + list(codes.MAP_CODES):
        assert mdc in codes.MDC
    for entry in codes.MDC.values():
        assert codes.lookup_unit(entry.ucum).quantity == entry.quantity
    assert codes.lookup_unit("265987").factor == pytest.approx(7.50062, abs=1e-5)
    assert codes.lookup_unit("", "MDC_DIM_MMHG").ucum == "mm[Hg]"


def test_pharmacy_orders_become_note_events():
    rde = ("MSH|^~\\&|PHARM|HOSP|||20250101120000+0000||RDE^O11^RDE_O11|R1|P|2.5\r"
           "PID|1||1^^^H^MR\rPV1|1|I|OR^3\rORC|NW|O1|||||||20250101115500+0000\r"
           "RXE|1^^^20250101|0001^Norepinephrine^LOCAL|0.05||ug/kg/min\r").encode()
    [ev] = normalise(rde).events
    assert (ev.kind, ev.name, ev.t_ns) == ("note", "norepinephrine", T0 - 300 * 10**9)
    assert "order (RDE^O11)" in ev.text and "0.05 ug/kg/min" in ev.text
    omp = rde.replace(b"RDE^O11^RDE_O11", b"OMP^O09^OMP_O09").replace(
        b"RXE|1^^^20250101|0001^Norepinephrine^LOCAL|0.05||ug/kg/min", b"RXO|0002^Ephedrine^LOCAL|10||mg")
    assert normalise(omp).events[0].name == "ephedrine"


def test_wrong_encoding_characters_are_rejected_with_reason():
    for bad, why in ((b"MSH|^^\\&|A|B|||20250101||ORU^R01|1|P|2.6\r", "distinct"),
                     (b"MSH|^~|A|B|||20250101||ORU^R01|1|P|2.6\r", "4 or 5"),
                     (b"MSHA^~\\&A\r", "not a separator")):
        n = normalise(bad)
        assert n.dead_letters[0].reason_class == "parse" and why in n.dead_letters[0].reason


def test_ingest_counts_in_agent_metrics():
    import asyncio

    from agent.metrics import Metrics
    from streams.hl7.ingest import HL7Ingest

    async def ok(topic, key, value):
        return None

    m = Metrics()
    ingest = HL7Ingest(ok, m)

    async def main():
        await ingest.handle(samples.pcd01_oru())
        await ingest.handle(samples.pcd01_oru())
        await ingest.handle(b"MSH|^^\\&|bad")

    asyncio.run(main())
    text = m.exposition().decode()
    assert 'iohwatch_hl7_messages_total{outcome="accepted"} 1.0' in text
    assert 'iohwatch_hl7_messages_total{outcome="duplicate"} 1.0' in text
    assert 'iohwatch_hl7_messages_total{outcome="rejected"} 1.0' in text
    assert 'iohwatch_dead_letters_total{reason="parse",topic="hl7.raw"} 1.0' in text


def test_waveform_missing_and_bad_samples():
    wave = samples.abp_wave(20)
    msg = samples.pcd01_oru(wave_mmhg=wave).decode()
    values = "^".join(f"{v:.1f}" for v in wave)
    holes = values.replace(f"^{wave[3]:.1f}^", "^^", 1).replace(f"^{wave[7]:.1f}^", "^x^", 1)
    holes = holes.replace(f"^{wave[9]:.1f}^", "^inf^", 1)
    [chunk] = normalise(msg.replace(values, holes).encode()).chunks
    assert chunk.n == 20 and int(np.isnan(chunk.samples).sum()) == 3
    assert np.isnan(chunk.samples[[3, 7, 9]]).all()
    mostly_bad = "^".join(["x"] * 10 + [f"{v:.1f}" for v in wave[10:]])
    n = normalise(msg.replace(values, mostly_bad).encode())
    assert not n.chunks and "10 of 20 samples are not numbers" in n.dead_letters[0].reason
    kpa = msg.replace(f"|{values}|266016^MDC_DIM_MMHG^MDC", "|10^12|265987^MDC_DIM_KILO_PASCAL^MDC")
    [chunk] = normalise(kpa.encode()).chunks
    np.testing.assert_allclose(chunk.samples, [75.006, 90.007], atol=1e-2)
