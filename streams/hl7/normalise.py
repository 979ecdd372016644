"""Normalise one HL7 v2 message into the project's records.

``normalise(raw) -> Normalised`` reads PCD-01 ORU^R01 (MDC codes, containment in OBX-4), the
Vital Recorder dialect of ORU^R01 (NM numerics, NA waveforms ``IABP_WAV^SNUADC/ART@100``, ST
``EVENT`` strings), ADT A01/A04/A08/A03, and medication messages (RAS^O17 administrations as
``drug``/``infusion`` events; RDE^O11 and OMP^O09 orders as ``note`` events, since an order is
not a dose). Codes and units go through ``streams.hl7.codes``.

Rules, each visible in the output (``dead_letters`` carry a metrics reason class, a readable
reason naming the message control id and segment, and the raw bytes of what was rejected):

* bed id: PV1-3 (point of care ^ room ^ bed), the non-empty components joined by ``-``
  (``OR^3`` -> ``OR-3``). For Vital Recorder (MSH-3 ``VitalRecorder``) the bed name is
  prefixed with the recorder code from MSH-4: ``VITALDEMO/BED-1``. No bed: the whole message
  is a dead letter (``unknown_bed``).
* device time: OBX-14, else OBR-7, else MSH-7 (RXA-3 for administrations, EVN-2 for ADT).
  A timestamp without a UTC offset is read in ``default_tz`` (UTC unless configured with
  ``IOHWATCH_HL7_DEFAULT_TIMEZONE``); Vital Recorder sends local time without an offset.
* an OBX that cannot be used (non-numeric NM, impossible value such as a pressure below
  -20 mmHg or above 300 mmHg, known code with a unit of the wrong quantity, OBX before any OBR,
  waveform without a sample rate) is a dead letter; the rest of the message is still used.
* recognised but unused content is listed in ``skipped`` and not dead-lettered: containment
  headers (OBX without value type), OBX-11 status X/W, waveforms other than arterial pressure,
  text/coded device attributes, Z segments.
* ABP waveform chunks: ``fs`` from the ``@<Hz>`` suffix of OBX-3 (Vital Recorder) or from a
  child OBX ``67981^MDC_ATTR_TIME_PD_SAMP`` (PCD-01 waveform); ``seq`` is the device time of
  the first sample in ms, so a redelivered message yields the same chunk.
* patient context: age in years at message time from PID-7, sex from PID-8 (M/F, else none),
  height/weight from OBX (MDC 68060/68063 or LOINC), ``episode_id`` a pseudonymous hash of the
  visit number (PV1-19, else PID-18, else PID-3) with the bed; A03 -> ``discharged``.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import datetime, timedelta, timezone, tzinfo

import numpy as np

from streams.chunk_codec import WaveformChunk
from streams.contracts import ClinicalEvent, Observation, PatientContext
from streams.hl7 import codes
from streams.hl7.fast import HL7ParseError, ParsedHL7, parse

VITAL_RECORDER_APP = "VitalRecorder"
ADT_STATUS = {"A01": "admitted", "A04": "admitted", "A08": "updated", "A03": "discharged"}
MAX_BAD_SAMPLE_FRACTION = 0.2


@dataclass(frozen=True)
class Rejected:
    """One dead letter: metrics reason class, readable reason, rejected bytes."""

    reason_class: str  # one of agent.metrics.DEAD_LETTER_REASONS
    reason: str
    raw: bytes


@dataclass
class Normalised:
    control_id: str = ""
    message_type: str = ""  # e.g. "ORU^R01"
    bed_id: str | None = None
    source: str = "hl7"
    observations: list[Observation] = field(default_factory=list)
    chunks: list[WaveformChunk] = field(default_factory=list)
    contexts: list[PatientContext] = field(default_factory=list)
    events: list[ClinicalEvent] = field(default_factory=list)
    dead_letters: list[Rejected] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def records(self) -> list[tuple[str, object]]:
        """(kind, record) in message order of kinds, for printing."""
        out: list[tuple[str, object]] = []
        out += [("context", c) for c in self.contexts]
        out += [("observation", o) for o in self.observations]
        out += [("waveform", c) for c in self.chunks]
        out += [("event", e) for e in self.events]
        out += [("dead_letter", d) for d in self.dead_letters]
        return out


# --- time ---------------------------------------------------------------------------------------

@lru_cache(maxsize=4096)
def parse_ts(value: str, default_tz: tzinfo = timezone.utc) -> int:
    """HL7 TS/DTM ``YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]`` -> ns since epoch; ValueError if bad.

    Cached: one message repeats the same timestamp in many OBX, and consecutive messages share it.
    """
    s = value.strip()
    tz: tzinfo = default_tz
    for sign in ("+", "-"):
        k = s.find(sign, 4)
        if k > 0:
            off = s[k + 1:]
            if len(off) != 4 or not off.isdigit():
                raise ValueError(f"bad UTC offset {s[k:]!r} in timestamp {value!r}")
            minutes = int(off[:2]) * 60 + int(off[2:])
            tz = timezone(timedelta(minutes=minutes if sign == "+" else -minutes))
            s = s[:k]
            break
    frac_ns = 0
    if "." in s:
        s, frac = s.split(".", 1)
        if not frac.isdigit() or len(frac) > 9:
            raise ValueError(f"bad fraction of a second in timestamp {value!r}")
        frac_ns = int(frac.ljust(9, "0"))
    if not s.isdigit() or len(s) not in (4, 6, 8, 10, 12, 14):
        raise ValueError(f"timestamp {value!r} is not YYYY[MM[DD[HH[MM[SS]]]]]")
    y = int(s[0:4])
    mo = int(s[4:6]) if len(s) >= 6 else 1
    d = int(s[6:8]) if len(s) >= 8 else 1
    h = int(s[8:10]) if len(s) >= 10 else 0
    mi = int(s[10:12]) if len(s) >= 12 else 0
    se = int(s[12:14]) if len(s) >= 14 else 0
    dt = datetime(y, mo, d, h, mi, se, tzinfo=tz)  # ValueError on impossible dates
    return int(dt.timestamp()) * 1_000_000_000 + frac_ns


def _samples(text: str, sep: str) -> tuple[np.ndarray, int]:
    """``sep``-separated samples -> ((n,) float32 with NaN for empty fields, count of non-numbers)."""
    n = text.count(sep) + 1
    if text and text[0] != sep and text[-1] != sep and sep + sep not in text:
        # Fast path: C parser. It stops early (with a DeprecationWarning) at anything that is
        # not a number, which the length check catches.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                x = np.fromstring(text, dtype=np.float32, sep=sep)
            except ValueError:
                x = None
        if x is not None and x.shape[0] == n:
            return x, 0
    x = np.full(n, np.nan, dtype=np.float32)
    bad = 0
    for i, s in enumerate(text.split(sep)):
        if s:
            try:
                x[i] = float(s)
            except ValueError:
                bad += 1
    return x, bad


def _to_float(text: str) -> float:
    x = float(text)
    if not math.isfinite(x):
        raise ValueError(text)
    return x


# --- the message walker ------------------------------------------------------------------------

class _Walk:
    def __init__(self, p: ParsedHL7, raw: bytes, default_tz: tzinfo):
        self.p = p
        self.raw = raw
        self.tz = default_tz
        self.out = Normalised()
        self._periods: dict[str, float] | None = None

    def reject(self, cls: str, reason: str, seg: list[str] | None = None) -> None:
        if seg is None:
            raw = self.raw
        else:  # MSH keeps MSH-1 (the separator) as seg[1]; it is not a field between separators
            raw = self.p.field_sep.join(seg[:1] + seg[2:] if seg[0] == "MSH" else seg).encode()
        where = f"message {self.out.control_id or '?'}"
        if seg is not None:
            where += f" {seg[0]}" if seg[0] == "MSH" else f" {seg[0]}|{self.p.get(seg, 1)}"
        self.out.dead_letters.append(Rejected(cls, f"{where}: {reason}", raw))

    def ts(self, seg: list[str], n: int) -> int | None:
        """Timestamp in field n, None when empty; ValueError when malformed."""
        text = self.p.field_text(seg, n)
        return parse_ts(text, self.tz) if text else None

    # --- header -------------------------------------------------------------------------------
    def header(self) -> bool:
        p, out = self.p, self.out
        out.control_id = p.control_id
        mtype, trigger = p.message_type
        out.message_type = f"{mtype}^{trigger}" if trigger else mtype
        if not mtype:
            self.reject("parse", "MSH-9 (message type) is empty")
            return False
        try:
            self.msg_t_ns = self.ts(p.msh, 7)
        except ValueError as exc:  # the message is still used when OBX-14/OBR-7 carry the time
            self.msg_t_ns = None
            self.reject("parse", f"MSH-7: {exc}", p.msh)
        self.is_vr = p.msh_field(3) == VITAL_RECORDER_APP
        out.source = "vitalrecorder" if self.is_vr else ("pcd01" if mtype == "ORU" else "hl7")
        out.bed_id = bed_id_of(p)
        return True

    # --- ORU ----------------------------------------------------------------------------------
    def oru(self) -> None:
        p = self.p
        obr_t: int | None = None
        seen_obr = False
        for seg in p.segments[1:]:
            sid = seg[0]
            if sid == "OBR":
                seen_obr = True
                try:
                    obr_t = self.ts(seg, 7)
                except ValueError as exc:
                    obr_t = None
                    self.reject("parse", f"OBR-7: {exc}", seg)
            elif sid == "OBX":
                if not seen_obr:
                    self.reject("parse", "OBX before any OBR (ORU^R01 needs OBR first)", seg)
                    continue
                try:
                    self.obx(seg, obr_t)
                except (ValueError, OverflowError) as exc:
                    self.reject("value", str(exc), seg)
            elif sid[0] == "Z":
                self.out.skipped.append(f"{sid} segment")

    def sample_periods(self) -> dict[str, float]:
        """OBX-4 -> sample period (s) of MDC_ATTR_TIME_PD_SAMP OBX (read once, on first use)."""
        if self._periods is not None:
            return self._periods
        p = self.p
        out: dict[str, float] = {}
        self._periods = out
        for seg in p.segments:
            if seg[0] != "OBX" or len(seg) < 4 or not seg[3].startswith(codes.MDC_SAMPLE_PERIOD):
                continue
            if p.field_text(seg, 3) != codes.MDC_SAMPLE_PERIOD:
                continue
            try:
                period = _to_float(p.field_text(seg, 5))
            except ValueError:
                continue
            unit = p.field_text(seg, 6)
            if unit == codes.MDC_DIM_MILLI_SEC or p.field_text(seg, 6, 2) == "MDC_DIM_MILLI_SEC":
                period /= 1000.0
            if period > 0:
                out[p.get(seg, 4)] = period
        return out

    def obx(self, seg: list[str], obr_t: int | None) -> None:
        p, out = self.p, self.out
        vt = seg[2] if len(seg) > 2 else ""
        code, label, system = p.parts(seg, 3, 3)
        if not vt:
            out.skipped.append(f"containment {label or code} {p.get(seg, 4)}")
            return
        status = seg[11] if len(seg) > 11 else ""
        if status in ("X", "W", "D"):
            out.skipped.append(f"{label or code}: result status {status}")
            return
        if code == codes.MDC_SAMPLE_PERIOD:
            return  # read by sample_periods
        t_text = p.parts(seg, 14, 1)[0]
        t_ns = (parse_ts(t_text, self.tz) if t_text else None) or obr_t or self.msg_t_ns
        if t_ns is None:
            self.reject("parse", "no device time (OBX-14, OBR-7 and MSH-7 empty)", seg)
            return
        if vt == "NM" or vt == "SN":
            self.numeric(seg, vt, code, label, system, t_ns)
        elif vt == "NA":
            self.waveform(seg, code, label, t_ns)
        elif self.is_vr and code == "EVENT":
            text = p.field_text(seg, 5)
            if text:
                kind, name = codes.vr_event(text)
                out.events.append(ClinicalEvent(bed_id=out.bed_id, t_ns=t_ns, kind=kind, name=name,
                                                text=text, source=out.source))
        elif vt in ("ST", "TX", "FT", "CWE", "CE", "CNE", "CF", "DTM", "TS", "EI", "NR"):
            out.skipped.append(f"{label or code}: {vt} attribute")
        else:
            self.reject("unsupported", f"OBX-2 value type {vt!r} not supported", seg)

    def numeric(self, seg, vt, code, label, system, t_ns) -> None:
        p, out = self.p, self.out
        raw_value = p.reps(p.get(seg, 5))[0]
        if vt == "SN":
            parts = p.comps(raw_value) + ["", "", ""]
            if parts[0] not in ("", "=") or parts[2]:
                self.reject("unsupported", f"SN value {raw_value!r} is a range or comparison", seg)
                return
            text = parts[1]
        else:
            text = p.unescape(raw_value)
        if not text.strip():
            out.skipped.append(f"{label or code}: empty value")
            return
        try:
            value = _to_float(text)
        except ValueError:
            self.reject("value", f"OBX-5 {text[:40]!r} of {label or code} is not a number ({vt})", seg)
            return
        unit_code, unit_label = p.parts(seg, 6, 2)
        unit = codes.lookup_unit(unit_code, unit_label)
        entry = codes.lookup_code(code, label, system)
        device_id = self.device_id(seg)
        if entry is None:
            if self.is_vr:  # code = montype, label = device/track
                code, label = (label or code), (code or label)
            out.observations.append(Observation(
                bed_id=out.bed_id, t_ns=t_ns, code=code or label, label=label or code,
                value=value * (unit.factor if unit else 1.0),
                unit=unit.ucum if unit else (unit_code or unit_label), device_id=device_id,
                source=out.source))
            return
        if unit is None or unit.quantity != entry.quantity:
            self.reject("value", f"{entry.label}: unit {unit_code or unit_label or '(none)'!r} is not a "
                        f"{entry.quantity} unit", seg)
            return
        value *= unit.factor
        if not (entry.min_value <= value <= entry.max_value):
            self.reject("value", f"{entry.label} = {value:g} {entry.ucum} is impossible "
                        f"(plausible {entry.min_value:g}..{entry.max_value:g})", seg)
            return
        out.observations.append(Observation(
            bed_id=out.bed_id, t_ns=t_ns, code=entry.code, label=entry.label, value=value,
            unit=entry.ucum, device_id=device_id, source=out.source))

    def device_id(self, seg) -> str | None:
        """OBX-18 entity identifier (first non-empty of EI-1, EI-2); the recorder for Vital Recorder."""
        a, b = self.p.parts(seg, 18, 2)
        if not (a or b):
            return (self.p.msh_field(4) or None) if self.is_vr else None
        return a or b

    def waveform(self, seg, code, label, t_ns) -> None:
        p, out = self.p, self.out
        fs_hz = None
        if "@" in label:
            label, _, suffix = label.rpartition("@")
            try:
                fs_hz = _to_float(suffix)
            except ValueError:
                self.reject("parse", f"sample-rate suffix {suffix!r} of {label} is not a number", seg)
                return
        track = codes.wave_track(code, label)
        if track is None:
            self.reject("unsupported", f"NA observation {code}^{label} is not a known waveform", seg)
            return
        if not track.is_abp:
            out.skipped.append(f"waveform {track.name}")
            return
        if fs_hz is None:
            sub = p.get(seg, 4)
            for key, period in self.sample_periods().items():
                if sub and key.startswith(sub + "."):
                    fs_hz = 1.0 / period
                    break
        if fs_hz is None or not (0 < fs_hz <= 10_000):
            self.reject("unsupported", f"waveform {track.name}: no usable sample rate ({fs_hz})", seg)
            return
        unit_field = p.get(seg, 6)
        unit = codes.lookup_unit(p.comp(unit_field, 1), p.comp(unit_field, 2))
        if unit is None or unit.quantity != "pressure":
            self.reject("value", f"waveform {track.name}: unit {unit_field[:30]!r} is not a pressure unit", seg)
            return
        text = p.reps(p.get(seg, 5))[0]
        x, bad = _samples(text, p.comp_sep)  # (n,) mmHg, NaN where missing
        infinite = np.isinf(x)
        if infinite.any():  # "inf" or beyond float32: not a pressure
            x[infinite] = np.nan
            bad += int(infinite.sum())
        if bad > MAX_BAD_SAMPLE_FRACTION * x.shape[0] or not np.isfinite(x).any():
            self.reject("value", f"waveform {track.name}: {bad} of {x.shape[0]} samples are not numbers", seg)
            return
        if unit.factor != 1.0:
            x *= np.float32(unit.factor)
        out.chunks.append(WaveformChunk(bed_id=out.bed_id, t0_ns=t_ns, fs_hz=fs_hz, samples=x,
                                        seq=t_ns // 1_000_000, track=track.name))

    # --- ADT ----------------------------------------------------------------------------------
    def adt(self, trigger: str) -> None:
        p, out = self.p, self.out
        status = ADT_STATUS.get(trigger)
        if status is None:
            self.reject("unsupported", f"ADT^{trigger} is not used (A01, A04, A08, A03 are)")
            return
        evn = p.first("EVN")
        t_ns = None
        if evn is not None:
            try:
                t_ns = self.ts(evn, 2)
            except ValueError as exc:
                self.reject("parse", f"EVN-2: {exc}", evn)
        t_ns = t_ns or self.msg_t_ns
        if t_ns is None:
            self.reject("parse", "no event time (EVN-2 and MSH-7 empty)")
            return
        pid = p.first("PID") or ["PID"]
        pv1 = p.first("PV1") or ["PV1"]
        age = None
        birth = p.field_text(pid, 7)
        if birth:
            try:
                age = round((t_ns - parse_ts(birth, self.tz)) / 1e9 / 86400 / 365.2425, 2)
                if not (0 <= age <= 130):
                    self.reject("value", f"PID-7 birth date {birth} gives age {age} years", pid)
                    age = None
            except ValueError as exc:
                self.reject("value", f"PID-7: {exc}", pid)
        sex = p.field_text(pid, 8).upper()
        height = weight = None
        for seg in p.all("OBX"):
            ident = p.reps(p.get(seg, 3))[0]
            code, label = p.comp(ident, 1), p.comp(ident, 2)
            entry = codes.lookup_code(code, label)
            if entry is None:
                key = (label or code).upper()
                entry = codes.MDC["68060"] if "HEIGHT" in key else codes.MDC["68063"] if "WEIGHT" in key else None
            if entry is None or entry.quantity not in ("length", "mass"):
                out.skipped.append(f"ADT OBX {label or code}")
                continue
            unit_field = p.get(seg, 6)
            unit = codes.lookup_unit(p.comp(unit_field, 1), p.comp(unit_field, 2))
            try:
                value = _to_float(p.field_text(seg, 5))
            except ValueError:
                self.reject("value", f"{entry.label}: {p.field_text(seg, 5)[:30]!r} is not a number", seg)
                continue
            if unit is None or unit.quantity != entry.quantity:
                self.reject("value", f"{entry.label}: unit {unit_field[:20]!r} is not a {entry.quantity} unit", seg)
                continue
            value *= unit.factor
            if not (entry.min_value <= value <= entry.max_value):
                self.reject("value", f"{entry.label} = {value:g} {entry.ucum} is impossible", seg)
                continue
            if entry.quantity == "length":
                height = round(value, 1)
            else:
                weight = round(value, 2)
        visit = p.field_text(pv1, 19) or p.field_text(pid, 18) or p.field_text(pid, 3)
        if not visit:
            visit = "admit:" + (p.field_text(pv1, 44) or str(t_ns))
        episode = hashlib.sha256(f"{out.bed_id}|{visit}".encode()).hexdigest()[:16]
        bmi = round(weight / (height / 100) ** 2, 1) if height and weight else None
        out.contexts.append(PatientContext(
            bed_id=out.bed_id, t_ns=t_ns, episode_id=episode, status=status, age=age,
            sex=sex if sex in ("M", "F") else None, height=height, weight=weight, bmi=bmi,
            department=p.field_text(pv1, 10) or None))

    # --- medication -----------------------------------------------------------------------------
    def administrations(self) -> None:
        p, out = self.p, self.out
        rxas = p.all("RXA")
        if not rxas:
            self.reject("parse", "RAS^O17 without RXA segment")
            return
        route = p.field_text(p.first("RXR") or ["RXR"], 1, 2) or p.field_text(p.first("RXR") or ["RXR"], 1)
        for seg in rxas:
            completion = p.field_text(seg, 20)
            if completion in ("RE", "NA"):
                out.skipped.append(f"RXA completion status {completion}")
                continue
            try:
                t_ns = self.ts(seg, 3) or self.msg_t_ns
            except ValueError as exc:
                self.reject("parse", f"RXA-3: {exc}", seg)
                continue
            name = (p.field_text(seg, 5, 2) or p.field_text(seg, 5, 1)).strip().lower()
            if not name or t_ns is None:
                self.reject("parse", "RXA-5 (administered code) or RXA-3 (time) empty", seg)
                continue
            amount_text = p.field_text(seg, 6)
            try:
                amount = _to_float(amount_text) if amount_text else None
            except ValueError:
                self.reject("value", f"RXA-6 amount {amount_text[:20]!r} is not a number", seg)
                continue
            unit = p.field_text(seg, 7) or p.field_text(seg, 7, 2) or None
            rate_unit = p.field_text(seg, 12)
            kind = "infusion" if rate_unit else "drug"
            text = f"{name} {amount_text} {unit or ''}".strip() + (f" per {rate_unit}" if rate_unit else "")
            if route:
                text += f" {route}"
            out.events.append(ClinicalEvent(bed_id=out.bed_id, t_ns=t_ns, kind=kind, name=name, value=amount,
                                            unit=unit, text=text, source=out.source))

    def orders(self, seg_id: str, code_f: int, amount_f: int, unit_f: int) -> None:
        p, out = self.p, self.out
        orc = p.first("ORC")
        try:
            t_ns = (self.ts(orc, 9) if orc else None) or self.msg_t_ns
        except ValueError:
            t_ns = self.msg_t_ns
        segs = p.all(seg_id)
        if not segs or t_ns is None:
            self.reject("parse", f"{out.message_type} without {seg_id} or without a time")
            return
        for seg in segs:
            name = (p.field_text(seg, code_f, 2) or p.field_text(seg, code_f, 1)).strip().lower()
            if not name:
                self.reject("parse", f"{seg_id}-{code_f} (drug) empty", seg)
                continue
            amount = p.field_text(seg, amount_f)
            unit = p.field_text(seg, unit_f) or p.field_text(seg, unit_f, 2)
            out.events.append(ClinicalEvent(
                bed_id=out.bed_id, t_ns=t_ns, kind="note", name=name,
                text=f"order ({out.message_type}): {name} {amount} {unit}".strip(), source=out.source))


def bed_id_of(p: ParsedHL7) -> str | None:
    """Bed id of a message (see the module docstring), None when PV1-3 is empty."""
    pv1 = p.first("PV1")
    if pv1 is None:
        return None
    loc = p.reps(p.get(pv1, 3))[0]
    parts = [c.strip() for c in p.comps(loc)[:3] if c.strip()] if loc else []
    if not parts:
        return None
    bed = "-".join(parts)
    if p.msh_field(3) == VITAL_RECORDER_APP and p.msh_field(4):
        bed = f"{p.msh_field(4)}/{bed}"
    return bed


def normalise(raw: bytes, default_tz: tzinfo = timezone.utc) -> Normalised:
    """Normalise one message. Never raises for bad input: problems become dead letters."""
    try:
        p = parse(raw)
    except HL7ParseError as exc:
        out = Normalised()
        out.dead_letters.append(Rejected("parse", f"not an HL7 v2 message: {exc}", bytes(raw)))
        return out
    w = _Walk(p, bytes(raw), default_tz)
    try:
        _dispatch(w)
    except (ValueError, IndexError, TypeError, OverflowError) as exc:  # pydantic errors are ValueErrors
        w.out.observations.clear(); w.out.chunks.clear(); w.out.contexts.clear(); w.out.events.clear()
        w.reject("parse", f"message could not be normalised: {type(exc).__name__}: {str(exc)[:200]}")
    return w.out


def _dispatch(w: _Walk) -> None:
    p = w.p
    for lineno, text in p.bad_lines:
        w.out.dead_letters.append(Rejected("parse", f"message {p.control_id or '?'} line {lineno} is not "
                                                    f"a segment: {text[:40]!r}", text.encode()))
    if not w.header():
        return
    mtype, trigger = p.message_type
    if mtype not in ("ORU", "ADT", "RAS", "RDE", "OMP"):
        w.reject("unsupported", f"message type {w.out.message_type} is not used by iohwatch")
        return
    if w.out.bed_id is None:
        w.reject("unknown_bed", "PV1-3 (assigned patient location) is empty: no bed to key by")
        return
    if mtype == "ORU":
        if trigger not in ("R01", ""):
            w.reject("unsupported", f"ORU^{trigger} is not used (ORU^R01 is)")
            return
        w.oru()
    elif mtype == "ADT":
        w.adt(trigger)
    elif mtype == "RAS":
        w.administrations()
    elif mtype == "RDE":
        w.orders("RXE", 2, 3, 5)
    else:
        w.orders("RXO", 1, 2, 4)
