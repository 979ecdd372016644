"""Binary codec of waveform chunks on ``waveform.abp``.

Layout (little-endian), version 1::

    offset size  field
    0      4     magic b"IOHW"
    4      1     version (1)
    5      1     encoding: 0 = float32 samples, 1 = int16 samples * gain + offset
    6      2     length of bed id in bytes (n_bed)
    8      8     t0_ns: device time of the first sample (int64, ns since epoch)
    16     8     seq: per-bed chunk sequence number (uint64), for duplicate detection
    24     8     fs_hz (float64)
    32     4     n samples (uint32)
    36     4     gain (float32, mmHg per count; 1.0 for float32)
    40     4     offset (float32, mmHg)
    44     2     length of track name in bytes (n_track)
    46     n_bed bed id (utf-8), then n_track track name (utf-8), then the samples

Missing samples are NaN in float32 and -32768 in int16. Decoding checks every length and
raises ``ChunkError`` with the numbers, so a bad chunk goes to the dead-letter topic.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

MAGIC = b"IOHW"
VERSION = 1
ENC_FLOAT32 = 0
ENC_INT16 = 1
INT16_MISSING = -32768
_HEADER = struct.Struct("<4sBBHqQdIffH")
HEADER_BYTES = _HEADER.size  # 46
MAX_SAMPLES = 1 << 20


class ChunkError(ValueError):
    """A chunk that cannot be decoded; the message says which field and which numbers."""


@dataclass(frozen=True)
class WaveformChunk:
    bed_id: str
    t0_ns: int
    fs_hz: float
    samples: np.ndarray  # (n,) float32 mmHg, NaN = missing
    seq: int = 0
    track: str = "ABP"

    @property
    def n(self) -> int:
        return int(self.samples.shape[0])

    @property
    def t_end_ns(self) -> int:
        """Device time just after the last sample."""
        return self.t0_ns + int(round(self.n * 1e9 / self.fs_hz))


def encode(chunk: WaveformChunk, encoding: int = ENC_INT16, gain: float = 0.01,
           offset: float = 0.0) -> bytes:
    """Serialise a chunk. int16 with 0.01 mmHg per count covers -327..+327 mmHg."""
    x = np.asarray(chunk.samples, dtype=np.float32)
    if x.ndim != 1:
        raise ChunkError(f"samples must be 1-D, got shape {x.shape}")
    if not (chunk.fs_hz > 0 and np.isfinite(chunk.fs_hz)):
        raise ChunkError(f"fs_hz must be positive, got {chunk.fs_hz}")
    bed = chunk.bed_id.encode()
    track = chunk.track.encode()
    if encoding == ENC_FLOAT32:
        body = x.astype("<f4").tobytes()
        gain, offset = 1.0, 0.0
    elif encoding == ENC_INT16:
        counts = np.round((x - offset) / gain)
        counts = np.where(np.isfinite(counts), np.clip(counts, -32767, 32767), INT16_MISSING)
        body = counts.astype("<i2").tobytes()
    else:
        raise ChunkError(f"unknown encoding {encoding}")
    head = _HEADER.pack(MAGIC, VERSION, encoding, len(bed), int(chunk.t0_ns), int(chunk.seq),
                        float(chunk.fs_hz), x.shape[0], gain, offset, len(track))
    return head + bed + track + body


def decode(raw: bytes) -> WaveformChunk:
    """Parse bytes produced by ``encode``; raise ChunkError naming the bad field."""
    if len(raw) < HEADER_BYTES:
        raise ChunkError(f"chunk is {len(raw)} bytes, shorter than the {HEADER_BYTES}-byte header")
    magic, version, enc, n_bed, t0_ns, seq, fs_hz, n, gain, offset, n_track = _HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise ChunkError(f"bad magic {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise ChunkError(f"chunk version {version} not supported (expected {VERSION})")
    if enc not in (ENC_FLOAT32, ENC_INT16):
        raise ChunkError(f"unknown encoding {enc}")
    if not (fs_hz > 0 and np.isfinite(fs_hz)):
        raise ChunkError(f"fs_hz must be positive, got {fs_hz}")
    if n > MAX_SAMPLES:
        raise ChunkError(f"chunk claims {n} samples, more than the limit {MAX_SAMPLES}")
    width = 4 if enc == ENC_FLOAT32 else 2
    expected = HEADER_BYTES + n_bed + n_track + n * width
    if len(raw) != expected:
        raise ChunkError(f"chunk is {len(raw)} bytes, header says {expected} "
                         f"({n} samples of {width} bytes, bed id {n_bed}, track {n_track})")
    p = HEADER_BYTES
    try:
        bed_id = raw[p:p + n_bed].decode()
        track = raw[p + n_bed:p + n_bed + n_track].decode()
    except UnicodeDecodeError as exc:
        raise ChunkError(f"bed id or track is not utf-8: {exc}") from None
    if not bed_id:
        raise ChunkError("empty bed id")
    p += n_bed + n_track
    if enc == ENC_FLOAT32:
        x = np.frombuffer(raw, dtype="<f4", count=n, offset=p).astype(np.float32)
    else:
        counts = np.frombuffer(raw, dtype="<i2", count=n, offset=p)
        x = counts.astype(np.float32) * np.float32(gain) + np.float32(offset)
        x[counts == INT16_MISSING] = np.nan
    return WaveformChunk(bed_id=bed_id, t0_ns=t0_ns, fs_hz=fs_hz, samples=x, seq=seq, track=track)
