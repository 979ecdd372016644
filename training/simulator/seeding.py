"""Random streams for one simulated case.

Every case draws from its own generators, seeded from ``(seed, caseid, stream)``, so a case is
the same whether one case or a thousand are requested, and adding a new kind of random draw to
one stream does not shift the numbers of another.
"""

from __future__ import annotations

import zlib

import numpy as np

# stable integer per stream name (crc32 is fixed across Python versions, unlike hash())
STREAMS = ("patient", "subject", "timeline", "physiology", "anaesthetist", "waveform",
           "artifacts", "monitor", "clock")


def case_rng(seed: int, caseid: int, stream: str, attempt: int = 0) -> np.random.Generator:
    """Generator for one named random stream of one case (``attempt`` re-draws a realisation)."""
    if stream not in STREAMS:
        raise ValueError(f"case_rng: unknown stream {stream!r}; known: {', '.join(STREAMS)}")
    if seed < 0 or caseid < 0:
        raise ValueError(f"case_rng: seed ({seed}) and caseid ({caseid}) must be non-negative")
    key = [int(seed), int(caseid), zlib.crc32(stream.encode()), int(attempt)]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(key)))
