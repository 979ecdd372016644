"""Artifact gate for one MAP cell: named thresholds, one pure decision function.

An alert is never raised from a gated cell, so every rule below targets a failure of the
arterial line that clinicians recognise, and leaves a clean but abnormal signal (low MAP,
narrow pulse pressure with a notch, tachycardia) valid.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass


class Artifact(enum.IntFlag):
    NONE = 0
    GAP = 1          # too many missing samples in the cell
    FLUSH = 2        # fast-flush / pressure-bag plateau above FLUSH_MMHG
    ZERO = 4         # transducer open to air for zeroing: pressure near 0 mmHg
    DAMPED = 8       # over-damped line: collapsed pulse pressure, no notch or slow upstroke
    LINE_OFF = 16    # flat line without plausible beats (disconnection, stopcock closed)
    IMPLAUSIBLE = 32 # beats outside physiological ranges
    NO_BEATS = 64    # a pulsatile-looking signal in which too few beats were found


# GAP: a cell needs most of its samples to give a MAP comparable to its neighbours.
MIN_COVERAGE = 0.8
# FLUSH: a flush drives the line to the bag pressure (~300 mmHg) for 1-5 s; systolic peaks
# of a hypertensive patient stay above 200 mmHg for well under FLUSH_MIN_S.
FLUSH_MMHG = 200.0
FLUSH_MIN_S = 0.4
# ZERO: zeroing opens the transducer to air: |p| < ZERO_MMHG. A quarter of a cell already
# biases its MAP and breaks the beats around it.
ZERO_MMHG = 10.0
ZERO_MIN_FRAC = 0.25
# LINE_OFF: a disconnected or occluded line is flat (only noise and drift); even a weak pulse
# (PP 10 mmHg) has a standard deviation of about 3 mmHg.
FLAT_STD_MMHG = 2.0
# DAMPED: PP/MAP is about 0.4-0.7 on a clean line, also in hypotension (vasodilation keeps PP);
# an over-damped line squeezes it below DAMPED_PP_RATIO
# and smooths away the dicrotic notch or slows the upstroke beyond DAMPED_RISE_S.
DAMPED_PP_RATIO = 0.30
DAMPED_MAX_NOTCH_FRAC = 0.5
DAMPED_RISE_S = 0.20
# A milder damping (a line response with a cut-off of 1-2.5 Hz) keeps PP/MAP at 0.3-0.5 but
# still removes the notch from (nearly) every beat and slurs the upstroke. Clean lines, real
# and simulated, show a notch in most beats of every cell even where their upstroke is slow.
DAMPED_NO_NOTCH_FRAC = 0.2
DAMPED_SLOW_RISE_S = 0.19
# IMPLAUSIBLE: physiological ranges for one beat, and how many beats of a cell may miss them.
MAP_RANGE_MMHG = (20.0, 200.0)
PP_RANGE_MMHG = (10.0, 150.0)
HR_RANGE_BPM = (30.0, 200.0)
MAX_IMPLAUSIBLE_FRAC = 0.34
# NO_BEATS: the plausible beats of a cell must cover at least this share of its duration.
MIN_BEAT_COVERAGE = 0.5


@dataclass(frozen=True)
class CellStats:
    """What the gate looks at, measured on one cell (see ``cells.summarise_cell``)."""

    coverage: float          # finite samples in the cell / samples a full cell holds
    flush_run_s: float       # longest run above FLUSH_MMHG around the cell (s)
    zero_frac: float         # share of the cell's finite samples with |p| < ZERO_MMHG
    std_mmhg: float          # standard deviation of the cell's finite samples (0 when none)
    n_beats: int             # beats whose systolic peak is in the cell
    n_implausible: int       # of those, beats outside the physiological ranges
    beat_coverage: float     # duration of plausible beats / cell duration
    map_mmhg: float          # median over every beat of the cell, plausible or not (NaN if none)
    pp_mmhg: float           # median over every beat of the cell
    notch_frac: float        # share of the cell's beats with a dicrotic notch
    rise_s: float            # median onset-to-peak time of the cell's beats


def beat_plausible(map_mmhg, pp_mmhg, hr_bpm):
    """Elementwise: is each beat inside the physiological ranges? (arrays or floats)"""
    return ((map_mmhg >= MAP_RANGE_MMHG[0]) & (map_mmhg <= MAP_RANGE_MMHG[1])
            & (pp_mmhg >= PP_RANGE_MMHG[0]) & (pp_mmhg <= PP_RANGE_MMHG[1])
            & (hr_bpm >= HR_RANGE_BPM[0]) & (hr_bpm <= HR_RANGE_BPM[1]))


def gate_cell(s: CellStats) -> Artifact:
    """Artifact flags for one cell; ``Artifact.NONE`` means the cell's MAP can be used."""
    flags = Artifact.NONE
    if s.coverage < MIN_COVERAGE:
        flags |= Artifact.GAP
    if s.flush_run_s >= FLUSH_MIN_S:
        flags |= Artifact.FLUSH
    if s.zero_frac >= ZERO_MIN_FRAC:
        flags |= Artifact.ZERO
    if s.n_beats == s.n_implausible and s.std_mmhg < FLAT_STD_MMHG:
        flags |= Artifact.LINE_OFF
    if s.n_beats > 0 and (s.n_implausible / s.n_beats > MAX_IMPLAUSIBLE_FRAC):
        flags |= Artifact.IMPLAUSIBLE
    collapsed = (math.isfinite(s.map_mmhg) and s.map_mmhg > 0
                 and s.pp_mmhg / s.map_mmhg < DAMPED_PP_RATIO
                 and (s.notch_frac < DAMPED_MAX_NOTCH_FRAC or s.rise_s > DAMPED_RISE_S))
    smoothed = s.n_beats > 0 and s.notch_frac < DAMPED_NO_NOTCH_FRAC and s.rise_s > DAMPED_SLOW_RISE_S
    if collapsed or smoothed:
        flags |= Artifact.DAMPED
    if flags == Artifact.NONE and s.beat_coverage < MIN_BEAT_COVERAGE:
        flags |= Artifact.NO_BEATS
    return flags
