"""Example messages in the shapes real senders use, for tests, ``iohwatch hl7 bench`` and docs.

* ``pcd01_oru``: IHE PCD-01 ORU^R01 as a monitor gateway sends it: MDS/VMD/channel containment
  headers (OBX without value type, OBX-4 ``1.13.1.0``), ABP SYS/DIA/MEAN, HR and SpO2 numerics
  with MDC unit codes, OBX-18 equipment id, and optionally an ABP waveform as an NA OBX
  (``150036^MDC_PRESS_BLD_ART_ABP``) with its sample period in a child
  ``67981^MDC_ATTR_TIME_PD_SAMP`` OBX.
* ``adt``: ADT A01/A03/A04/A08 with PID-7/8, PV1-3, PV1-19 and height/weight OBX.
* ``ras``: RAS^O17 medication administration (ORC, RXA, RXR).
* ``write_vital``: a small ``.vital`` file (SNUADC/ART at 500 Hz, Solar8000 numerics, an event)
  written with the ``vitaldb`` package, with VitalRecorder montypes set, for feeding the
  reference Vital Recorder client offline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streams.hl7.build import ts


def _dtm(t_ns: int) -> str:
    return ts(t_ns, fraction=False)


def pcd01_oru(bed: str = "OR^3", t_ns: int = 1_735_732_800_000_000_000, *, control_id: str = "MSG00001",
              sys_mmhg: float = 118.0, dia_mmhg: float = 62.0, map_mmhg: float = 81.0, hr_bpm: float = 72.0,
              spo2_pct: float = 98.0, wave_mmhg: np.ndarray | None = None, wave_fs_hz: float = 100.0,
              version: str = "2.6", terminator: str = "\r") -> bytes:
    """One PCD-01 ORU^R01; ``wave_mmhg`` (n,) adds the waveform OBX starting at ``t_ns``."""
    t = _dtm(t_ns)
    eq = "0012210000000001^MONITOR^0012210000000001^EUI-64"
    segs = [
        f"MSH|^~\\&|GATEWAY^0012210000000099^EUI-64|ICU|||{t}||ORU^R01^ORU_R01|{control_id}|P|{version}"
        "|||NE|AL||UNICODE UTF-8|||IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO",
        "PID|||0000000001^^^HOSP^PI||Test^Patient||19600101|M",
        f"PV1||I|{bed}",
        f"OBR|1|{control_id}^GATEWAY|{control_id}^GATEWAY|182777000^monitoring of patient^SCT|||{t}|{t}",
        "OBX|1||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X|||||||" + eq,
        "OBX|2||69854^MDC_DEV_METER_PRESS_BLD_VMD^MDC|1.13.0.0|||||||X",
        "OBX|3||69855^MDC_DEV_METER_PRESS_BLD_CHAN^MDC|1.13.1.0|||||||X",
        f"OBX|4|NM|150037^MDC_PRESS_BLD_ART_ABP_SYS^MDC|1.13.1.1|{sys_mmhg:g}|266016^MDC_DIM_MMHG^MDC|||||R|||{t}||||{eq}",
        f"OBX|5|NM|150038^MDC_PRESS_BLD_ART_ABP_DIA^MDC|1.13.1.2|{dia_mmhg:g}|266016^MDC_DIM_MMHG^MDC|||||R|||{t}||||{eq}",
        f"OBX|6|NM|150039^MDC_PRESS_BLD_ART_ABP_MEAN^MDC|1.13.1.3|{map_mmhg:g}|266016^MDC_DIM_MMHG^MDC|||||R|||{t}||||{eq}",
        "OBX|7||69798^MDC_DEV_ECG_VMD^MDC|1.5.0.0|||||||X",
        f"OBX|8|NM|147842^MDC_ECG_HEART_RATE^MDC|1.5.1.1|{hr_bpm:g}|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R|||{t}||||{eq}",
        f"OBX|9|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.7.1.1|{spo2_pct:g}|262688^MDC_DIM_PERCENT^MDC|||||R|||{t}||||{eq}",
    ]
    if wave_mmhg is not None:
        values = "^".join(f"{v:.1f}" if np.isfinite(v) else "" for v in np.asarray(wave_mmhg, dtype=float))
        segs.append(f"OBX|10|NA|150036^MDC_PRESS_BLD_ART_ABP^MDC|1.13.1.4|{values}|266016^MDC_DIM_MMHG^MDC"
                    f"|||||R|||{ts(t_ns)}||||{eq}")
        segs.append(f"OBX|11|NM|67981^MDC_ATTR_TIME_PD_SAMP^MDC|1.13.1.4.1|{1000.0 / wave_fs_hz:g}"
                    "|264338^MDC_DIM_MILLI_SEC^MDC|||||R")
    return (terminator.join(segs) + terminator).encode()


def abp_wave(n: int, fs_hz: float = 100.0, map_mmhg: float = 80.0, hr_bpm: float = 72.0,
             phase_s: float = 0.0) -> np.ndarray:
    """A simple arterial-pressure-like waveform (n,) in mmHg (pulse of +-20 mmHg around MAP)."""
    t = phase_s + np.arange(n) / fs_hz
    beat = (t * hr_bpm / 60.0) % 1.0
    pulse = np.where(beat < 0.3, np.sin(np.pi * beat / 0.3), 0.0) - 0.3
    return (map_mmhg + 28.0 * pulse + 4.0 * np.exp(-beat * 3)).astype(np.float32)


def adt(trigger: str = "A01", bed: str = "OR^3", t_ns: int = 1_735_732_800_000_000_000, *,
        control_id: str = "ADT00001", birth: str = "19600615", sex: str = "F", height_cm: float | None = 165.0,
        weight_kg: float | None = 70.0, visit: str = "V123456", version: str = "2.5") -> bytes:
    t = _dtm(t_ns)
    segs = [f"MSH|^~\\&|ADT|HOSP|||{t}||ADT^{trigger}^ADT_A01|{control_id}|P|{version}",
            f"EVN|{trigger}|{t}",
            f"PID|1||0000000001^^^HOSP^MR||Test^Patient||{birth}|{sex}",
            f"PV1|1|I|{bed}|||||||SUR||||||||||{visit}"]
    if height_cm is not None:
        segs.append(f"OBX|1|NM|8302-2^Body height^LN||{height_cm:g}|cm|||||F")
    if weight_kg is not None:
        segs.append(f"OBX|2|NM|29463-7^Body weight^LN||{weight_kg:g}|kg|||||F")
    return ("\r".join(segs) + "\r").encode()


def ras(bed: str = "OR^3", t_ns: int = 1_735_732_800_000_000_000, *, control_id: str = "RAS00001",
        drug: str = "phenylephrine", amount: float = 100.0, unit: str = "ug", route: str = "IV",
        version: str = "2.5") -> bytes:
    t = _dtm(t_ns)
    segs = [f"MSH|^~\\&|AIMS|HOSP|||{t}||RAS^O17^RAS_O17|{control_id}|P|{version}",
            "PID|1||0000000001^^^HOSP^MR||Test^Patient||19600615|F",
            f"PV1|1|I|{bed}",
            f"ORC|RE|ORD1|FIL1||CM||||{t}",
            f"RXA|0|1|{t}|{t}|0000^{drug}^LOCAL|{amount:g}|{unit}^{unit}^UCUM||||||||||||CP",
            f"RXR|{route}^{route}^HL70162"]
    return ("\r".join(segs) + "\r").encode()


def write_vital(path: Path, seconds: int = 10, fs_hz: float = 500.0, t0_s: float = 1_735_732_800.0,
                map_mmhg: float = 78.0) -> Path:
    """A ``.vital`` file with SNUADC/ART, Solar8000 ART and HR numerics and one event."""
    import vitaldb

    n = int(seconds * fs_hz)
    art = abp_wave(n, fs_hz, map_mmhg)
    vf = vitaldb.VitalFile()
    vf.add_track("SNUADC/ART", [{"dt": t0_s + i, "val": art[int(i * fs_hz):int((i + 1) * fs_hz)]}
                                for i in range(seconds)], srate=fs_hz, unit="mmHg", mindisp=0, maxdisp=200)
    for name, value, unit in (("Solar8000/ART_SBP", map_mmhg + 30, "mmHg"), ("Solar8000/ART_DBP", map_mmhg - 15, "mmHg"),
                              ("Solar8000/ART_MBP", map_mmhg, "mmHg"), ("Solar8000/HR", 72.0, "/min")):
        vf.add_track(name, [{"dt": t0_s + i, "val": float(value)} for i in range(seconds)], unit=unit,
                     mindisp=0, maxdisp=200)
    vf.add_track("EVENT", [{"dt": t0_s + seconds / 2, "val": "Surgery started"}])
    # VitalRecorder montypes (REC.h), as real recordings carry them.
    for name, montype in (("SNUADC/ART", 4), ("Solar8000/ART_SBP", 5), ("Solar8000/ART_DBP", 6),
                          ("Solar8000/ART_MBP", 7), ("Solar8000/HR", 2)):
        vf.trks[name].montype = montype
    path = Path(path)
    # packed=False keeps one wave record per second, as Vital Recorder writes them (the reference
    # client streams a record when its start time falls in the interval it sends).
    vf.to_vital(str(path), packed=False)
    return path
