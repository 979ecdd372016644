"""Read a recording (VitalDB ``.vital`` or WFDB ``.hea``) into arrays: the I/O edge of the signal path.

One reader serves real VitalDB files, simulated cohort files and PhysioNet WFDB records:

- ``.vital``: parsed by ``vitaldb.VitalFile``. The arterial-pressure waveform is placed sample by
  sample at its native rate (``round((rec_dt - start) * srate)``, NaN where no record covers a
  sample); every numeric track goes to ``numerics`` with its own timestamps; every string track
  (VitalDB's ``EVENT``, drug and phase tracks) goes to ``events``. The file is checked as a
  complete gzip stream first, because vitaldb silently returns a partial file when the stream
  is cut short.
- ``.hea``: read with ``wfdb``; only the ABP channel's samples are loaded. WFDB headers often
  hold a time of day without a date (or nothing), so the start is ``start_ns`` when given, else
  ``base_date`` + ``base_time`` taken as UTC, with 1970-01-01 for a missing date and midnight
  for a missing time.

The ABP track is found among waveform tracks by ``ABP_TRACK_CANDIDATES`` in order (case
insensitive; a candidate without a device prefix matches any device), or named explicitly
(``abp_track``, the CLI's ``--abp-track``). Anything unreadable raises ``RecordingError``
naming the file and, for track problems, listing the tracks the file has.
"""

from __future__ import annotations

import datetime as dt
import gzip
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ABP_TRACK_CANDIDATES: tuple[str, ...] = (
    "SNUADC/ART", "SNUADC/FEM", "Intellivue/ABP", "Intellivue/ART", "Solar8000/ART",
    "ABP", "ART", "ART1", "IBP1", "IABP", "AOBP", "FAP",
)

_KPA_TO_MMHG = 7.500617


class RecordingError(ValueError):
    """A recording that cannot be used: unreadable, truncated, or without an ABP waveform."""


@dataclass
class Recording:
    name: str
    start_ns: int                    # epoch ns of sample 0 of abp_mmhg and of t_s = 0
    abp_mmhg: np.ndarray             # (n,) float32, NaN = missing
    abp_fs_hz: float
    abp_track: str
    numerics: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    # track -> (t_s (m,) float64 relative to start, values (m,) float64)
    events: list[tuple[float, str]] = field(default_factory=list)   # (t_s relative to start, text)
    source_path: Path = Path()

    @property
    def duration_s(self) -> float:
        return self.abp_mmhg.size / self.abp_fs_hz


def read_recording(path: Path | str, abp_track: str | None = None, start_ns: int | None = None
                   ) -> Recording:
    """Read ``path`` (``.vital`` or WFDB ``.hea``; a ``.dat`` beside its ``.hea`` also works)."""
    path = Path(path)
    if path.suffix.lower() == ".dat" and path.with_suffix(".hea").exists():
        path = path.with_suffix(".hea")
    if not path.exists():
        raise RecordingError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".vital":
        return _read_vital(path, abp_track, start_ns)
    if suffix == ".hea":
        return _read_wfdb(path, abp_track, start_ns)
    raise RecordingError(f"{path}: unsupported recording format {suffix!r} "
                         "(expected .vital or a WFDB .hea header)")


# -- track selection ---------------------------------------------------------------------------

def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1].lower()


def _match(wanted: str, names: list[str]) -> list[str]:
    exact = [n for n in names if n.lower() == wanted.lower()]
    if exact or "/" in wanted:
        return exact
    return [n for n in names if _short(n) == wanted.lower()]


def pick_abp_track(path: Path, waveform_tracks: list[str], all_tracks: list[str],
                   requested: str | None = None) -> str:
    """The ABP waveform track of a file: ``requested`` if given, else the first candidate found."""
    listing = (f"waveform tracks: {waveform_tracks or 'none'}; "
               f"all tracks: {all_tracks or 'none'}")
    if requested is not None:
        hits = _match(requested, waveform_tracks)
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise RecordingError(f"{path}: ABP track {requested!r} is ambiguous ({hits}); "
                                 f"name it with its device. {listing}")
        other = _match(requested, all_tracks)
        why = f"{other} is not a waveform track" if other else "no such track"
        raise RecordingError(f"{path}: ABP track {requested!r}: {why}. {listing}")
    for cand in ABP_TRACK_CANDIDATES:
        hits = _match(cand, waveform_tracks)
        if hits:
            return hits[0]
    raise RecordingError(f"{path}: no arterial-pressure waveform found (looked for "
                         f"{', '.join(ABP_TRACK_CANDIDATES)}); {listing}. "
                         "Name the track with --abp-track.")


# -- .vital ------------------------------------------------------------------------------------

def _check_gzip(path: Path) -> None:
    """vitaldb stops quietly at a truncated gzip stream; decompress once to find out."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise RecordingError(f"{path}: cannot read: {e}") from e
    if len(data) < 18 or data[:2] != b"\x1f\x8b":
        raise RecordingError(f"{path}: not a .vital file (not gzip-compressed; {len(data)} bytes)")
    try:
        head = gzip.decompress(data)
    except EOFError as e:
        raise RecordingError(f"{path}: truncated .vital file (the compressed stream ends early "
                             f"after {len(data)} bytes)") from e
    except (OSError, zlib.error) as e:
        raise RecordingError(f"{path}: corrupt .vital file ({e})") from e
    if head[:4] != b"VITA":
        raise RecordingError(f"{path}: not a .vital file (header {head[:4]!r}, expected b'VITA')")


def _wave_samples(trk, t_start: float, n: int) -> np.ndarray:
    """Dense float32 samples of a vitaldb wave track from ``t_start`` for ``n`` samples."""
    from vitaldb.utils import FMT_NAN

    out = np.full(n, np.nan, dtype=np.float32)
    nan_raw = FMT_NAN.get(trk.fmt)
    for rec in trk.recs:
        val = np.asarray(rec["val"])
        vals = val.astype(np.float32)
        if trk.fmt > 2:  # integer formats: sentinel, then gain and offset
            missing = val == nan_raw if nan_raw is not None else np.zeros(val.shape, bool)
            vals = vals * np.float32(trk.gain) + np.float32(trk.offset)
            vals[missing] = np.nan
        idx = int(round((rec["dt"] - t_start) * trk.srate))
        a, b = max(idx, 0), min(idx + vals.size, n)
        if a < b:
            out[a:b] = vals[a - idx:b - idx]
    out[~np.isfinite(out) | (np.abs(out) > 4e9)] = np.nan
    return out


def _read_vital(path: Path, abp_track: str | None, start_ns: int | None) -> Recording:
    _check_gzip(path)
    try:
        import vitaldb

        vf = vitaldb.VitalFile(str(path))
    except Exception as e:  # vitaldb raises whatever its parser hits
        raise RecordingError(f"{path}: vitaldb could not parse the file: "
                             f"{type(e).__name__}: {e}") from e
    names = list(vf.trks)
    if not names:
        raise RecordingError(f"{path}: the file holds no tracks")
    waves = [n for n, t in vf.trks.items() if t.type == 1 and t.srate > 0]
    track = pick_abp_track(path, waves, names, abp_track)
    trk = vf.trks[track]
    t_start = float(vf.dtstart)
    t_end = max(float(vf.dtend), t_start)
    fs_hz = float(trk.srate)
    n = int(math.ceil(round((t_end - t_start) * fs_hz, 6)))
    abp = _wave_samples(trk, t_start, n)
    unit = (trk.unit or "").strip().lower()
    if unit == "kpa":
        abp *= np.float32(_KPA_TO_MMHG)

    numerics: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    events: list[tuple[float, str]] = []
    for name, t in vf.trks.items():
        if t.type == 2 and t.recs:
            ts = np.fromiter((r["dt"] - t_start for r in t.recs), np.float64, len(t.recs))
            vs = np.fromiter((r["val"] for r in t.recs), np.float64, len(t.recs))
            if t.fmt > 2:
                vs = vs * t.gain + t.offset
            order = np.argsort(ts, kind="stable")
            numerics[name] = (ts[order], vs[order])
        elif t.type == 5:
            events.extend((float(r["dt"] - t_start), str(r["val"])) for r in t.recs)
    events.sort(key=lambda e: e[0])
    return Recording(
        name=path.stem, start_ns=int(round(t_start * 1e9)) if start_ns is None else int(start_ns),
        abp_mmhg=abp, abp_fs_hz=fs_hz, abp_track=track, numerics=numerics, events=events,
        source_path=path)


# -- WFDB --------------------------------------------------------------------------------------

def wfdb_start_ns(base_date: dt.date | None, base_time: dt.time | None) -> int:
    """Start of a WFDB record as epoch ns, UTC; 1970-01-01 / midnight stand in for missing parts."""
    day = base_date or dt.date(1970, 1, 1)
    clock = base_time or dt.time(0, 0)
    start = dt.datetime.combine(day, clock, tzinfo=dt.timezone.utc)
    delta = start - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 10**9 + delta.microseconds * 1000


def _read_wfdb(path: Path, abp_track: str | None, start_ns: int | None) -> Recording:
    import wfdb

    record_name = str(path.with_suffix(""))
    try:
        header = wfdb.rdheader(record_name)
    except Exception as e:
        raise RecordingError(f"{path}: cannot read WFDB header: {type(e).__name__}: {e}") from e
    if getattr(header, "n_seg", None):
        raise RecordingError(f"{path}: multi-segment WFDB records are not supported; "
                             "read one segment's header")
    names = list(header.sig_name or [])
    track = pick_abp_track(path, names, names, abp_track)
    channel = names.index(track)
    try:
        rec = wfdb.rdrecord(record_name, channels=[channel], physical=True)
    except Exception as e:
        raise RecordingError(f"{path}: cannot read WFDB signal {track!r}: "
                             f"{type(e).__name__}: {e}") from e
    if rec.p_signal is None or rec.p_signal.shape[0] == 0:
        raise RecordingError(f"{path}: WFDB signal {track!r} holds no samples")
    abp = rec.p_signal[:, 0].astype(np.float32)
    unit = (rec.units[0] if rec.units else "").strip().lower()
    if unit == "kpa":
        abp *= np.float32(_KPA_TO_MMHG)
    elif unit not in ("mmhg", "mm hg", ""):
        raise RecordingError(f"{path}: signal {track!r} is in {rec.units[0]!r}, expected mmHg")
    t0 = wfdb_start_ns(header.base_date, header.base_time) if start_ns is None else int(start_ns)
    return Recording(name=path.stem, start_ns=t0, abp_mmhg=abp, abp_fs_hz=float(rec.fs),
                     abp_track=track, numerics={}, events=[], source_path=path)
