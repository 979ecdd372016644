"""The one mapping table from what HL7 senders put in OBX-3/OBX-6 to normalised observations.

Three vocabularies end in the same normalised form (``Code``: MDC code, label, UCUM unit,
plausible range, and the kind used downstream):

* IEEE 11073-10101 MDC codes as IHE PCD-01 gateways send them in OBX-3
  (``150039^MDC_PRESS_BLD_ART_ABP_MEAN^MDC``);
* Vital Recorder identifiers (``<montype>^<device>/<track>``, e.g. ``IABP_MBP^Solar8000/ART_MBP``):
  the track name is looked up first, then the montype; numerics map onto the same MDC codes as
  PCD-01, so downstream code sees one code per quantity whatever the source;
* units as MDC unit codes in OBX-6.1 (``266016^MDC_DIM_MMHG^MDC``) or UCUM/plain strings
  (``mm[Hg]``, ``mmHg``, ``kPa``, ``/min``, ``bpm``, ``%``), each with the factor to the
  quantity's canonical UCUM unit (kPa -> mm[Hg]: 7.50062). MDC unit codes are partition 4
  (MDC_PART_DIM, 4 * 65536) plus the term code, e.g. MDC_DIM_MMHG = 262144 + 3872 = 266016,
  MDC_DIM_KILO_PASCAL = 262144 + 3843 = 265987.

Waveform identifiers (value type NA) map to ``WaveTrack``: arterial pressure goes to
``waveform.abp``; other waveforms (ECG, pleth, CO2, ...) are recognised and skipped.
A code not in the table still becomes an ``Observation`` with the sender's code and label
(unit mapped when known), so nothing recognisable is lost; a *known* code whose unit does not
fit its quantity is a dead letter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Quantity = Literal["pressure", "rate", "percent", "length", "mass", "other"]


@dataclass(frozen=True)
class Code:
    code: str  # MDC context-free code as a decimal string
    label: str  # MDC reference id
    quantity: Quantity
    ucum: str  # canonical UCUM unit of the quantity
    min_value: float  # below this the value is impossible (not just abnormal)
    max_value: float


@dataclass(frozen=True)
class Unit:
    ucum: str  # canonical UCUM unit this unit converts to
    quantity: Quantity
    factor: float  # canonical = value * factor


# Pressure: monitors report slightly negative values while zeroing; below -20 mmHg is not a
# pressure, above 300 mmHg is not a human arterial pressure.
_P = ("pressure", "mm[Hg]", -20.0, 300.0)
_HR = ("rate", "/min", 0.0, 350.0)

MDC: dict[str, Code] = {c.code: c for c in (
    Code("150037", "MDC_PRESS_BLD_ART_ABP_SYS", *_P),
    Code("150038", "MDC_PRESS_BLD_ART_ABP_DIA", *_P),
    Code("150039", "MDC_PRESS_BLD_ART_ABP_MEAN", *_P),
    Code("150033", "MDC_PRESS_BLD_ART_SYS", *_P),
    Code("150034", "MDC_PRESS_BLD_ART_DIA", *_P),
    Code("150035", "MDC_PRESS_BLD_ART_MEAN", *_P),
    Code("150017", "MDC_PRESS_BLD_SYS", *_P),
    Code("150018", "MDC_PRESS_BLD_DIA", *_P),
    Code("150019", "MDC_PRESS_BLD_MEAN", *_P),
    Code("150021", "MDC_PRESS_BLD_NONINV_SYS", *_P),
    Code("150022", "MDC_PRESS_BLD_NONINV_DIA", *_P),
    Code("150023", "MDC_PRESS_BLD_NONINV_MEAN", *_P),
    Code("147842", "MDC_ECG_HEART_RATE", *_HR),
    Code("149530", "MDC_PULS_OXIM_PULS_RATE", *_HR),
    Code("149522", "MDC_BLD_PULS_RATE_INV", *_HR),
    Code("150456", "MDC_PULS_OXIM_SAT_O2", "percent", "%", 0.0, 100.0),
    # patient attributes, sent as OBX in ADT messages
    Code("68060", "MDC_ATTR_PT_HEIGHT", "length", "cm", 20.0, 260.0),
    Code("68063", "MDC_ATTR_PT_WEIGHT", "mass", "kg", 0.3, 400.0),
)}

# Mean arterial pressure codes, most specific first (invasive ABP, arterial, generic, then NIBP).
MAP_CODES: tuple[str, ...] = ("150039", "150035", "150019", "150023")

# LOINC codes some ADT feeds use for height and weight.
LOINC_TO_MDC = {"8302-2": "68060", "3137-7": "68060", "29463-7": "68063", "3141-9": "68063"}

UNITS: dict[str, Unit] = {
    # MDC unit codes (OBX-6.1 with coding system MDC)
    "266016": Unit("mm[Hg]", "pressure", 1.0),  # MDC_DIM_MMHG
    "265987": Unit("mm[Hg]", "pressure", 7.500615758),  # MDC_DIM_KILO_PASCAL
    "264864": Unit("/min", "rate", 1.0),  # MDC_DIM_BEAT_PER_MIN
    "264928": Unit("/min", "rate", 1.0),  # MDC_DIM_RESP_PER_MIN
    "262688": Unit("%", "percent", 1.0),  # MDC_DIM_PERCENT
    "263441": Unit("cm", "length", 1.0),  # MDC_DIM_CENTI_M
    "263424": Unit("cm", "length", 100.0),  # MDC_DIM_X_M
    "263875": Unit("kg", "mass", 1.0),  # MDC_DIM_KILO_G
    "263872": Unit("kg", "mass", 0.001),  # MDC_DIM_X_G
    # UCUM and the plain strings monitors and Vital Recorder use (matched case-sensitively
    # first, then lower-cased)
    "mm[Hg]": Unit("mm[Hg]", "pressure", 1.0),
    "mmHg": Unit("mm[Hg]", "pressure", 1.0),
    "kPa": Unit("mm[Hg]", "pressure", 7.500615758),
    "/min": Unit("/min", "rate", 1.0),
    "{beats}/min": Unit("/min", "rate", 1.0),
    "bpm": Unit("/min", "rate", 1.0),
    "%": Unit("%", "percent", 1.0),
    "cm": Unit("cm", "length", 1.0),
    "m": Unit("cm", "length", 100.0),
    "[in_i]": Unit("cm", "length", 2.54),
    "kg": Unit("kg", "mass", 1.0),
    "g": Unit("kg", "mass", 0.001),
    "[lb_av]": Unit("kg", "mass", 0.45359237),
}
_UNITS_LOWER = {k.lower(): v for k, v in UNITS.items()}
# Unit labels (OBX-6.2) of MDC unit codes, accepted when OBX-6.1 is empty.
_UNIT_LABELS = {"MDC_DIM_MMHG": "266016", "MDC_DIM_KILO_PASCAL": "265987",
                "MDC_DIM_BEAT_PER_MIN": "264864", "MDC_DIM_PERCENT": "262688"}

# Vital Recorder track names (device/track) and montypes (VitalRecorder REC.h) -> MDC code.
VR_TRACKS: dict[str, str] = {
    "Solar8000/ART_SBP": "150037", "Solar8000/ART_DBP": "150038", "Solar8000/ART_MBP": "150039",
    "Solar8000/FEM_SBP": "150033", "Solar8000/FEM_DBP": "150034", "Solar8000/FEM_MBP": "150035",
    "Solar8000/NIBP_SBP": "150021", "Solar8000/NIBP_DBP": "150022", "Solar8000/NIBP_MBP": "150023",
    "Solar8000/HR": "147842", "Solar8000/PLETH_SPO2": "150456", "Solar8000/PLETH_HR": "149530",
}
VR_MONTYPES: dict[str, str] = {
    "IABP_SBP": "150037", "IABP_DBP": "150038", "IABP_MBP": "150039",
    "FEM_SBP": "150033", "FEM_DBP": "150034", "FEM_MBP": "150035",
    "NIBP_SBP": "150021", "NIBP_DBP": "150022", "NIBP_MBP": "150023",
    "ECG_HR": "147842", "PLETH_SPO2": "150456", "PLETH_HR": "149530",
}


@dataclass(frozen=True)
class WaveTrack:
    name: str  # track name on the chunk
    is_abp: bool


# Arterial-pressure waveforms: MDC (PCD-01 waveform OBX, value type NA) and Vital Recorder.
MDC_ABP_WAVES = {"150036": "MDC_PRESS_BLD_ART_ABP", "150032": "MDC_PRESS_BLD_ART",
                 "150016": "MDC_PRESS_BLD"}
VR_ABP_WAVES = {"SNUADC/ART", "SNUADC/FEM", "Solar8000/ART", "Primus/ART", "Intellivue/ABP",
                "Intellivue/ART"}
VR_ABP_MONTYPES = {"IABP_WAV"}
# MDC_ATTR_TIME_PD_SAMP (partition 1, term 2445): sample period of a PCD-01 waveform, sent in
# a child OBX of the waveform's containment.
MDC_SAMPLE_PERIOD = "67981"
MDC_DIM_SEC, MDC_DIM_MILLI_SEC = "264320", "264338"

# Vital Recorder event strings (ST ``EVENT`` OBX) -> (ClinicalEvent kind, name). Matched on the
# lower-cased text; anything else is a ``note`` carrying the original text.
VR_EVENTS: dict[str, tuple[str, str]] = {
    "case started": ("phase", "case_start"),
    "case finished": ("phase", "case_end"),
    "surgery started": ("phase", "surgery_start"),
    "surgery finished": ("phase", "surgery_end"),
    "anesthesia started": ("phase", "induction"),
    "anesthesia finished": ("phase", "emergence"),
    "induction": ("phase", "induction"),
    "intubation": ("phase", "intubation"),
    "extubation": ("phase", "extubation"),
    "cpb on": ("phase", "cpb_on"),
    "cpb off": ("phase", "cpb_off"),
}


def lookup_code(code: str, label: str = "", system: str = "") -> Code | None:
    """The table entry of an OBX-3 identifier (MDC code, MDC label, LOINC or Vital Recorder)."""
    hit = MDC.get(code)
    if hit is not None:
        return hit
    if code in LOINC_TO_MDC:
        return MDC[LOINC_TO_MDC[code]]
    mdc = VR_TRACKS.get(label) or VR_MONTYPES.get(code)
    if mdc is not None:
        return MDC[mdc]
    if label.startswith("MDC_"):
        for entry in MDC.values():
            if entry.label == label:
                return entry
    return None


def lookup_unit(code: str, label: str = "") -> Unit | None:
    """The table entry of an OBX-6 unit (MDC unit code, UCUM or plain string)."""
    for key in (code, label):
        if not key:
            continue
        hit = UNITS.get(key) or _UNITS_LOWER.get(key.lower())
        if hit is not None:
            return hit
        if key in _UNIT_LABELS:
            return UNITS[_UNIT_LABELS[key]]
    return None


def wave_track(code: str, label: str) -> WaveTrack | None:
    """Classify an NA identifier: ``IABP_WAV^SNUADC/ART@100`` or ``150036^MDC_PRESS_BLD_ART_ABP``.

    ``label`` is given without its ``@<fs>`` suffix. None when the identifier is not a waveform
    this table knows.
    """
    if code in MDC_ABP_WAVES:
        return WaveTrack(MDC_ABP_WAVES[code], True)
    if label in VR_ABP_WAVES or code in VR_ABP_MONTYPES:
        return WaveTrack(label or code, True)
    if code.endswith("_WAV") or "/" in label:
        return WaveTrack(label or code, False)
    return None


def vr_event(text: str) -> tuple[str, str]:
    """(kind, name) of a Vital Recorder event string."""
    return VR_EVENTS.get(text.strip().lower(), ("note", "event"))
