"""Linear resampling onto an absolute time grid, so any prefix yields a prefix of the output.

Output sample ``j`` (an integer, counted from the epoch) sits at ``j / fs_out`` seconds. The
output covers every grid time from the first input sample to the last one, inclusive; each
value interpolates only its two neighbouring input samples (NaN if either is NaN, exact when
the grid time falls on an input sample). The position of each output time within the input
is computed with exact integer arithmetic, so a prefix of the input gives bit-identical
leading output samples: streaming and batch resampling agree.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

_NS = 10**9


def _rate(name: str, fs_hz: float) -> Fraction:
    if not fs_hz > 0:
        raise ValueError(f"resample_linear: {name} must be > 0 Hz, got {fs_hz}")
    return Fraction(fs_hz).limit_denominator(10**6)


def first_grid_index(t0_ns: int, fs_out_hz: float) -> int:
    """Absolute index ``j`` of the first output time at or after ``t0_ns``."""
    return math.ceil(Fraction(int(t0_ns)) * _rate("fs_out", fs_out_hz) / _NS)


def resample_linear(x: np.ndarray, fs_in: float, fs_out: float, t0_ns: int
                    ) -> tuple[np.ndarray, int]:
    """Resample ``x`` (sample ``i`` at ``t0_ns + i * 1e9 / fs_in``) to ``fs_out``.

    Returns ``(y, t0_out_ns)``: ``y`` (m,) float32 and the time of ``y[0]``, which is the
    first multiple of ``1 / fs_out`` at or after ``t0_ns`` (rounded to the nearest ns when
    ``1e9 / fs_out`` is not a whole number of ns).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"resample_linear: expected a 1-D signal, got shape {x.shape}")
    f_in, f_out = _rate("fs_in", fs_in), _rate("fs_out", fs_out)
    j0 = first_grid_index(t0_ns, fs_out)
    t0_out_ns = int(round(Fraction(j0) * _NS / f_out))
    if x.size == 0:
        return np.zeros(0, np.float32), t0_out_ns
    # position of output j0 + m in input samples: a + m * b (exact rationals)
    a = (Fraction(j0) / f_out - Fraction(int(t0_ns), _NS)) * f_in
    b = f_in / f_out
    den = math.lcm(a.denominator, b.denominator)
    a_num, b_num = a.numerator * (den // a.denominator), b.numerator * (den // b.denominator)
    # number of m with a + m b <= n - 1
    m_count = (x.size - 1 - a) / b
    if m_count < 0:
        return np.zeros(0, np.float32), t0_out_ns
    m_max = math.floor(m_count)
    if abs(a_num) + m_max * b_num >= 2**62:
        raise ValueError(f"resample_linear: rates {fs_in} -> {fs_out} Hz with {x.size} samples "
                         "overflow exact int64 positions; use rates with a smaller common "
                         "denominator")
    m = np.arange(m_max + 1, dtype=np.int64)
    num = a_num + m * b_num                 # (m,) exact position * den
    i = num // den
    frac = (num - i * den) / den            # in [0, 1)
    nxt = np.minimum(i + 1, x.size - 1)
    y = np.where(frac == 0.0, x[i], x[i] + frac * (x[nxt] - x[i]))
    return y.astype(np.float32), t0_out_ns
