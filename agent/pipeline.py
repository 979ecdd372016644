"""Per-bed processing: waveform chunks in, forecast ticks and alerts out.

``BedState`` is the one implementation used by the streaming agent and by offline scoring:

    chunk ──add_chunk──> sample buffer ──> final MAP-grid cells ──> ticks (ForecastInput)
                                                                       │ forecaster (batched by caller)
    Forecast + Alerts <──finish────────────────────────────────────────┘

Event time only. Sample ``i`` of a bed sits at ``origin_ns + i / fs``. A grid cell ``k`` covers
``[k * grid, (k + 1) * grid)`` of epoch time and becomes final once samples up to its end plus
``LEAD_OUT_S`` (+ ``allowed_lateness_s``) have arrived. The forecast tick at time ``T`` (a
multiple of the cadence) is emitted when samples up to ``T`` have arrived and uses only cells that
were final at ``T``, so the result depends on the data, never on arrival timing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from agent.alerts import AlertInput, AlertStateMachine
from agent.forecasting import ForecastInput, ForecastOutput, Forecaster, map_level_and_slope
from agent.settings import Settings
from streams.chunk_codec import WaveformChunk
from streams.contracts import Alert, Forecast, Observation, PatientContext
from streams.signal import cells as cellmath
from streams.signal.gating import Artifact
from streams.signal.resample import first_grid_index, resample_linear

QUALITY_LOOKBACK_S = 15.0      # artifact in the last 15 s of cells marks the window as artifact
MIN_VALID_FRACTION_5MIN = 0.25  # fewer valid cells than this in the last 5 min: insufficient
RISK_DECIMALS = 4               # published risk precision; also makes replays compare exactly
MAX_TICKS_PER_CHUNK = 60        # after a long gap only the newest ticks are emitted


def wave_window(raw: np.ndarray, fs_hz: float, t0_ns: int, t_end_ns: int, fs_out_hz: float,
                n_out: int) -> np.ndarray:
    """The ``n_out`` samples at ``fs_out_hz`` on the absolute grid just before ``t_end_ns``,
    linearly resampled from ``raw`` (sample 0 at ``t0_ns``); NaN where ``raw`` has no data.
    Returns (n_out,) float32 mmHg."""
    y, t0_out = resample_linear(raw, fs_hz, fs_out_hz, t0_ns)
    j_end = first_grid_index(t_end_ns, fs_out_hz) - first_grid_index(t0_out, fs_out_hz)
    out = np.full(n_out, np.nan, dtype=np.float32)
    lo = j_end - n_out
    a, b = max(lo, 0), min(j_end, y.shape[0])
    if b > a:
        out[a - lo:b - lo] = y[a:b]
    return out


class ChunkRejected(ValueError):
    """The chunk cannot be used; ``reason`` is a short class for metrics, str() the details."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


@dataclass
class Tick:
    """One forecast tick of one bed, before the forecaster ran."""

    bed_id: str
    t_ns: int
    quality: str                      # ok | artifact | insufficient
    gate_reasons: list[str]
    valid_fraction: float
    map_now_mmhg: float
    map_slope_mmhg_per_min: float
    map_below_s: float
    input: ForecastInput | None       # None unless quality == "ok"
    source_wall_ns: int | None = None


@dataclass
class ChunkResult:
    outcome: str                      # accepted | duplicate | out_of_order | gap | late | restarted
    ticks: list[Tick] = field(default_factory=list)
    late_samples: int = 0


class _CellRing:
    """The last ``size`` grid cells of a bed, indexed by absolute cell number."""

    FIELDS = ("map_mmhg", "sbp_mmhg", "dbp_mmhg", "hr_bpm")

    def __init__(self, size: int):
        self.size = size
        self.k = np.full(size, -1, dtype=np.int64)
        self.vals = {f: np.full(size, np.nan, dtype=np.float32) for f in self.FIELDS}
        self.valid = np.zeros(size, dtype=bool)
        self.artifact = np.zeros(size, dtype=np.int32)

    def put(self, k: int, cell) -> None:
        j = k % self.size
        self.k[j] = k
        for f in self.FIELDS:
            self.vals[f][j] = getattr(cell, f)
        self.valid[j] = bool(cell.valid)
        self.artifact[j] = int(cell.artifact)

    def window(self, k_end: int, n: int) -> dict[str, np.ndarray]:
        """Arrays (n,) for cells k_end-n+1..k_end; cells never seen are NaN / invalid / GAP."""
        ks = np.arange(k_end - n + 1, k_end + 1, dtype=np.int64)
        j = ks % self.size
        present = self.k[j] == ks
        out = {f: np.where(present, self.vals[f][j], np.nan).astype(np.float32) for f in self.FIELDS}
        out["valid"] = present & self.valid[j]
        out["artifact"] = np.where(present, self.artifact[j], int(Artifact.GAP)).astype(np.int32)
        return out


class BedState:
    """Everything the agent keeps in memory for one bed (a few hundred kB)."""

    def __init__(self, bed_id: str, settings: Settings, needs_wave: bool = True,
                 alert_thresholds: dict[int, float] | None = None):
        self.bed_id = bed_id
        self.s = settings
        self.needs_wave = needs_wave
        self.grid_ns = int(round(settings.map_grid_s * 1e9))
        self.cadence_ns = int(round(settings.forecast_cadence_s * 1e9))
        self.lead_out_ns = int(round(cellmath.LEAD_OUT_S * 1e9))
        self.lateness_ns = int(round(settings.allowed_lateness_s * 1e9))
        self.ring = _CellRing(settings.cells_per_window + 64)
        self.alerts = AlertStateMachine(bed_id, settings, raise_risk_by_h=alert_thresholds)
        self.context: PatientContext | None = None
        self.numerics: dict[str, tuple[int, float]] = {}  # label -> (t_ns, value)
        self.chunks_seen = 0
        self._reset_signal()

    # --- waveform ---------------------------------------------------------------------------

    def _reset_signal(self) -> None:
        self.fs_hz: float | None = None
        self.origin_ns: int | None = None
        self.buf = np.empty(0, dtype=np.float32)  # samples from absolute index buf_lo
        self.buf_lo = 0
        self.hw = 0                   # absolute index one past the newest sample received
        self.next_cell: int | None = None   # first cell not yet final
        self.last_tick_ns: int | None = None
        self.seen_seq: dict[int, int] = {}  # chunk seq -> its first sample index

    def _t_of(self, idx: int | float) -> int:
        return self.origin_ns + int(round(idx * 1e9 / self.fs_hz))

    def _idx_of(self, t_ns: int) -> int:
        """First sample index at or after t_ns."""
        return cellmath.first_index(t_ns, self.fs_hz, self.origin_ns)

    def _keep_samples(self) -> int:
        keep_s = (self.s.wave_window_s + cellmath.LEAD_IN_S + cellmath.LEAD_OUT_S + self.s.map_grid_s
                  + self.s.allowed_lateness_s + 2 * self.s.forecast_cadence_s + 2.0)
        return int(math.ceil(keep_s * self.fs_hz))

    def _ensure(self, hi: int) -> None:
        """Grow the buffer so it holds absolute indices up to hi (exclusive); drop old samples."""
        keep = self._keep_samples()
        lo_needed = max(self.buf_lo, hi - 2 * keep)
        if self.next_cell is not None:
            first_needed = self._idx_of(self.next_cell * self.grid_ns) - int(cellmath.LEAD_IN_S * self.fs_hz) - 2
            lo_needed = min(lo_needed, max(self.buf_lo, first_needed))
        if hi - self.buf_lo <= self.buf.shape[0] and lo_needed - self.buf_lo < keep:
            return
        new_lo = max(self.buf_lo, min(lo_needed, hi - keep))
        new = np.full(max(hi - new_lo, 0) + keep, np.nan, dtype=np.float32)
        old_hi = self.buf_lo + self.buf.shape[0]
        a, b = max(new_lo, self.buf_lo), min(old_hi, hi)
        if b > a:
            new[a - new_lo:b - new_lo] = self.buf[a - self.buf_lo:b - self.buf_lo]
        self.buf, self.buf_lo = new, new_lo

    def _slice(self, lo: int, hi: int) -> np.ndarray:
        """Samples of absolute indices [lo, hi), NaN where never received or dropped."""
        out = np.full(max(hi - lo, 0), np.nan, dtype=np.float32)
        a, b = max(lo, self.buf_lo), min(hi, self.buf_lo + self.buf.shape[0], self.hw)
        if b > a:
            out[a - lo:b - lo] = self.buf[a - self.buf_lo:b - self.buf_lo]
        return out

    def add_chunk(self, chunk: WaveformChunk, wall_ns: int | None = None) -> ChunkResult:
        """Insert a chunk; return the outcome and the ticks it made ready, in time order.

        Raises ChunkRejected for a chunk that cannot be used at all (wrong rate, late)."""
        if chunk.n == 0:
            raise ChunkRejected("empty", f"{self.bed_id}: chunk seq {chunk.seq} has no samples")
        outcome = "accepted"
        if self.origin_ns is None:
            self.fs_hz, self.origin_ns = float(chunk.fs_hz), int(chunk.t0_ns)
            self.next_cell = self.origin_ns // self.grid_ns  # the cell holding the first sample
        elif abs(chunk.fs_hz - self.fs_hz) > 1e-6 * self.fs_hz:
            raise ChunkRejected("rate_changed", f"{self.bed_id}: chunk at {chunk.fs_hz} Hz, bed runs at "
                                f"{self.fs_hz} Hz; restart the bed's feed to change rate")
        idx0 = int(round((chunk.t0_ns - self.origin_ns) * self.fs_hz / 1e9))
        gap_s = (idx0 - self.hw) / self.fs_hz
        if gap_s > self.s.max_gap_s:
            # A long silence: start the bed's window afresh rather than pad minutes of NaN.
            alerts = self.alerts
            self._reset_signal()
            self.alerts = alerts
            res = self.add_chunk(chunk, wall_ns)
            res.outcome = "restarted"
            return res
        idx1 = idx0 + chunk.n
        # Samples before the first non-final cell's context can no longer change any output.
        frozen = self._idx_of(self.next_cell * self.grid_ns) - int(math.ceil(cellmath.LEAD_IN_S * self.fs_hz))
        if self.needs_wave and self.last_tick_ns is not None:
            # The waveform window of an emitted tick was read when it was emitted; samples before
            # it arriving now could not reach that forecast, so they count as late.
            frozen = max(frozen, self._idx_of(self.last_tick_ns))
        # A duplicate is the same sequence number at the same place; a gateway that restarts
        # its counter sends new data with old numbers.
        if chunk.seq and self.seen_seq.get(chunk.seq) == idx0:
            return ChunkResult("duplicate")
        if idx1 <= max(frozen, self.buf_lo):
            raise ChunkRejected("late", f"{self.bed_id}: chunk seq {chunk.seq} at t0={chunk.t0_ns} ns arrived "
                                f"{(self.hw - idx0) / self.fs_hz:.1f} s behind the newest sample; its cells are final")
        if idx0 < self.hw:
            outcome = "out_of_order"
        elif idx0 > self.hw:
            outcome = "gap"
        late = max(0, max(frozen, self.buf_lo) - idx0)
        self._ensure(max(idx1, self.hw))
        lo = max(idx0, frozen, self.buf_lo)
        self.buf[lo - self.buf_lo:idx1 - self.buf_lo] = chunk.samples[lo - idx0:]
        if chunk.seq:
            self.seen_seq[chunk.seq] = idx0
            if len(self.seen_seq) > 4096:
                self.seen_seq = dict(sorted(self.seen_seq.items(), key=lambda kv: kv[1])[-2048:])
        self.hw = max(self.hw, idx1)
        self.chunks_seen += 1
        self._finalise_cells()
        return ChunkResult(outcome, self._ready_ticks(wall_ns), late)

    def _finalise_cells(self) -> None:
        # Exactly the cells, slices and finality rule of the batch ``map_grid``, so streaming
        # and cohort building see the same numbers.
        n_eff = self.hw - int(round(self.s.allowed_lateness_s * self.fs_hz))
        last = cellmath.complete_cells(n_eff, self.fs_hz, self.origin_ns, self.s.map_grid_s).stop
        while self.next_cell < last:
            sl = cellmath.cell_slice(self.next_cell, self.hw, self.fs_hz, self.origin_ns, self.s.map_grid_s)
            seg = self._slice(sl.seg_lo, sl.seg_hi)
            self.ring.put(self.next_cell, cellmath.summarise_cell(
                seg, self.fs_hz, sl.cell_lo, sl.cell_hi, t_start_ns=sl.t_start_ns, n_expected=sl.n_expected))
            self.next_cell += 1

    def _ready_ticks(self, wall_ns: int | None) -> list[Tick]:
        hw_t = self._t_of(self.hw) - self.lateness_ns
        last = self.last_tick_ns
        if last is None:
            last = (self.origin_ns // self.cadence_ns) * self.cadence_ns
        newest = (hw_t // self.cadence_ns) * self.cadence_ns
        if newest <= last:
            return []
        first = max(last + self.cadence_ns, newest - (MAX_TICKS_PER_CHUNK - 1) * self.cadence_ns)
        ticks = [self._tick(t, wall_ns) for t in range(first, newest + 1, self.cadence_ns)]
        self.last_tick_ns = newest
        return ticks

    def _tick(self, t_ns: int, wall_ns: int | None) -> Tick:
        s = self.s
        n = s.cells_per_window
        k_end = (t_ns - self.lead_out_ns) // self.grid_ns - 1  # last cell final at t_ns
        w = self.ring.window(k_end, n)
        valid = w["valid"]
        look = max(1, int(round(QUALITY_LOOKBACK_S / s.map_grid_s)))
        recent_art = np.bitwise_or.reduce(w["artifact"][-look:])
        five = max(1, int(round(300.0 / s.map_grid_s)))
        valid_frac_5 = float(valid[-five:].mean())
        reasons: list[str] = []
        if recent_art:
            quality = "artifact"
            reasons = [f.name.lower() for f in Artifact if f and (recent_art & f)]
        elif valid_frac_5 < MIN_VALID_FRACTION_5MIN or not valid[-look:].any():
            quality = "insufficient"
            reasons = [f"valid {valid_frac_5:.0%} of the last 5 min"]
        else:
            quality = "ok"
        level, slope = map_level_and_slope(w["map_mmhg"], valid, s.map_grid_s)
        with np.errstate(invalid="ignore"):
            hypo = valid & (w["map_mmhg"] < s.ioh_map_mmhg)
        not_hypo = np.flatnonzero(~hypo)  # length of the run of hypotensive cells ending now
        below = hypo.size if not_hypo.size == 0 else hypo.size - 1 - int(not_hypo[-1])
        fin = None
        if quality == "ok":
            wave = np.empty(0, dtype=np.float32)
            if self.needs_wave:
                lo = self._idx_of(t_ns - int(s.wave_window_s * 1e9)) - 2
                hi = self._idx_of(t_ns) + 2
                n_wave = int(round(s.wave_window_s * s.model_fs_hz))
                wave = wave_window(self._slice(lo, hi), self.fs_hz, self._t_of(lo), t_ns, s.model_fs_hz, n_wave)
            fin = ForecastInput(
                bed_id=self.bed_id, t_ns=t_ns, map_mmhg=w["map_mmhg"], sbp_mmhg=w["sbp_mmhg"],
                dbp_mmhg=w["dbp_mmhg"], hr_bpm=w["hr_bpm"], valid=valid, wave_mmhg=wave,
                grid_s=s.map_grid_s, numerics=self.numerics_at(t_ns), context=self.context)
        return Tick(self.bed_id, t_ns, quality, reasons, float(valid.mean()), level, slope,
                    below * s.map_grid_s, fin, wall_ns)

    # --- other inputs ---------------------------------------------------------------------

    def add_observation(self, obs: Observation) -> None:
        prev = self.numerics.get(obs.label)
        if prev is None or obs.t_ns >= prev[0]:
            self.numerics[obs.label] = (obs.t_ns, obs.value)

    def numerics_at(self, t_ns: int) -> dict[str, float]:
        """Latest value per label, no older than 10 min and not from the future of t_ns."""
        return {k: v for k, (t, v) in self.numerics.items() if t_ns - 600e9 <= t <= t_ns}

    def set_context(self, ctx: PatientContext) -> list[Alert]:
        """Apply ADT context; a new episode or a discharge resets the alert state."""
        old = self.context
        self.context = ctx if ctx.status != "discharged" else None
        if old is None or old.episode_id != ctx.episode_id or ctx.status == "discharged":
            return self.alerts.reset(ctx.episode_id, ctx.t_ns)
        return []

    # --- after the forecaster ----------------------------------------------------------------

    def finish(self, tick: Tick, out: ForecastOutput | None, forecaster: Forecaster,
               inference_ms: float | None = None) -> tuple[Forecast, list[Alert]]:
        """Turn a tick and its forecaster output into the published forecast and alert events."""
        risk: dict[int, float] = {}
        drivers: dict[str, float] = {}
        traj = None
        if out is not None:
            risk = {h: round(float(p), RISK_DECIMALS) for h, p in out.risk.items() if math.isfinite(p)}
            drivers = {k: round(float(v), RISK_DECIMALS) for k, v in out.drivers.items() if math.isfinite(v)}
            if out.map_trajectory_mmhg is not None:
                traj = [round(float(v), 2) for v in out.map_trajectory_mmhg]

        def fin(x: float) -> float | None:
            return round(float(x), 3) if math.isfinite(x) else None

        fc = Forecast(
            bed_id=self.bed_id, t_ns=tick.t_ns, risk={str(h): p for h, p in risk.items()},
            map_now_mmhg=fin(tick.map_now_mmhg), map_slope_mmhg_per_min=fin(tick.map_slope_mmhg_per_min),
            map_trajectory_mmhg=traj, signal_quality=tick.quality, gate_reasons=tick.gate_reasons,
            valid_fraction=round(tick.valid_fraction, 4), drivers=drivers, model=forecaster.name,
            model_version=forecaster.version, backend=forecaster.backend,
            fallback_reason=forecaster.fallback_reason, inference_ms=inference_ms,
            source_wall_ns=tick.source_wall_ns)
        alerts = self.alerts.step(AlertInput(
            t_ns=tick.t_ns, risk=risk, map_now_mmhg=tick.map_now_mmhg,
            map_slope_mmhg_per_min=tick.map_slope_mmhg_per_min, signal_quality=tick.quality,
            gate_reasons=tick.gate_reasons, map_below_s=tick.map_below_s, drivers=drivers))
        return fc, alerts


def predict_ticks(ticks: Sequence[Tick], forecaster: Forecaster) -> tuple[list[ForecastOutput | None], float]:
    """Run the forecaster once over the ticks that need it (thread-safe: touches no bed state).
    Returns one output per tick (None where the window was not usable) and the time in ms."""
    import time

    need = [i for i, t in enumerate(ticks) if t.input is not None]
    outs: list[ForecastOutput | None] = [None] * len(ticks)
    t0 = time.perf_counter()
    if need:
        for i, o in zip(need, forecaster.predict([ticks[i].input for i in need])):
            outs[i] = o
    return outs, (time.perf_counter() - t0) * 1e3


def finish_ticks(beds: dict[str, "BedState"], ticks: Sequence[Tick], outs: Sequence[ForecastOutput | None],
                 forecaster: Forecaster, ms: float) -> list[tuple[Forecast, list[Alert]]]:
    """Finish each tick in order (alert state machine); call from the event loop only."""
    return [beds[t.bed_id].finish(t, o, forecaster, round(ms, 3) if t.input is not None else None)
            for t, o in zip(ticks, outs)]


def score_chunks(bed_id: str, chunks: Iterator[WaveformChunk], settings: Settings, forecaster: Forecaster,
                 context: PatientContext | None = None,
                 observations: Sequence[Observation] = ()) -> Iterator[Forecast | Alert]:
    """Offline scoring of one bed: the same BedState and forecaster calls as the agent."""
    bed = BedState(bed_id, settings, needs_wave=getattr(forecaster, "needs_wave", True),
                   alert_thresholds=getattr(forecaster, "alert_thresholds", None))
    if context is not None:
        yield from bed.set_context(context)
    obs = sorted(observations, key=lambda o: o.t_ns)
    j = 0
    for chunk in chunks:
        while j < len(obs) and obs[j].t_ns <= chunk.t_end_ns:
            bed.add_observation(obs[j])
            j += 1
        try:
            res = bed.add_chunk(chunk)
        except ChunkRejected:
            continue
        outs, ms = predict_ticks(res.ticks, forecaster)
        for fc, alerts in finish_ticks({bed_id: bed}, res.ticks, outs, forecaster, ms):
            yield fc
            yield from alerts
