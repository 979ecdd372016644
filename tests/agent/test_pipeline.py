"""The per-bed pipeline against the batch signal path, and its handling of bad chunk streams."""

from __future__ import annotations

import numpy as np
import pytest

from agent.forecasting import BaselineForecaster
from agent.pipeline import BedState, ChunkRejected, finish_ticks, predict_ticks, score_chunks
from agent.settings import Settings
from streams.chunk_codec import WaveformChunk
from streams.replay import iter_chunks
from streams.signal.cells import map_grid
from streams.signal.synthetic import synthetic_abp

FS = 500.0
T0 = 1_790_000_000_123_400_000  # deliberately not on the 3 s grid nor the 2 s cadence


@pytest.fixture(scope="module")
def wave() -> np.ndarray:
    return synthetic_abp(150.0, FS, seed=3).x_mmhg


def chunks_of(x: np.ndarray, sizes: list[int], t0: int = T0) -> list[WaveformChunk]:
    out, lo, i = [], 0, 0
    while lo < x.shape[0]:
        n = sizes[i % len(sizes)]
        out.append(WaveformChunk("OR-1", t0 + int(round(lo * 1e9 / FS)), FS, x[lo:lo + n], seq=i + 1))
        lo += n
        i += 1
    return out


def run(chunks, settings=None):
    settings = settings or Settings()
    bed = BedState("OR-1", settings)
    fc = BaselineForecaster()
    forecasts, outcomes = [], []
    for ch in chunks:
        try:
            res = bed.add_chunk(ch)
        except ChunkRejected as exc:
            outcomes.append(exc.reason)
            continue
        outcomes.append(res.outcome)
        outs, ms = predict_ticks(res.ticks, fc)
        forecasts += [f for f, _ in finish_ticks({"OR-1": bed}, res.ticks, outs, fc, ms)]
    return bed, forecasts, outcomes


def ring_cells(bed: BedState, ks: np.ndarray) -> dict[str, np.ndarray]:
    return bed.ring.window(int(ks[-1]), len(ks))


def test_streaming_cells_equal_batch_on_every_prefix(wave):
    """After every chunk, each cell the bed has made final equals the batch map_grid cell
    computed from exactly the samples received so far."""
    chunks = chunks_of(wave, [137, 500, 61, 1000])
    bed = BedState("OR-1", Settings())
    received = 0
    checked = 0
    for ch in chunks:
        bed.add_chunk(ch)
        received += ch.n
        tab = map_grid(wave[:received], FS, T0, 3.0)
        k = tab.t_start_ns // 3_000_000_000
        final = k < bed.next_cell
        if not final.any():
            continue
        w = ring_cells(bed, k[final])
        np.testing.assert_allclose(w["map_mmhg"], tab.map_mmhg[final], rtol=0, atol=1e-4, equal_nan=True)
        np.testing.assert_allclose(w["hr_bpm"], tab.hr_bpm[final], rtol=0, atol=1e-3, equal_nan=True)
        assert (w["valid"] == tab.valid[final]).all()
        assert (w["artifact"] == tab.artifact[final]).all()
        checked += int(final.sum())
    assert checked > 1000  # many (prefix, cell) pairs were compared


def test_forecasts_do_not_depend_on_chunk_size(wave):
    _, a, _ = run(chunks_of(wave, [500]))
    _, b, _ = run(chunks_of(wave, [137, 61, 1000, 250]))
    strip = lambda fs: [f.model_dump(exclude={"issued_wall_ns", "inference_ms", "source_wall_ns"}) for f in fs]
    assert len(a) > 40
    assert strip(a) == strip(b)
    ts = [f.t_ns for f in a]
    assert all(t % 2_000_000_000 == 0 for t in ts) and ts == sorted(set(ts))


def test_out_of_order_within_allowed_lateness_gives_the_same_result(wave):
    s = Settings(allowed_lateness_s=3.0)
    chunks = chunks_of(wave, [500])
    swapped = list(chunks)
    for i in range(10, len(swapped) - 1, 7):
        swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
    bed_a, fa, _ = run(chunks, s)
    bed_b, fb, outcomes = run(swapped, s)
    assert "out_of_order" in outcomes
    strip = lambda fs: [f.model_dump(exclude={"issued_wall_ns", "inference_ms"}) for f in fs]
    assert strip(fa) == strip(fb)


def test_out_of_order_beyond_lateness_is_counted_and_gated(wave):
    chunks = chunks_of(wave, [500])
    late = chunks.pop(60)
    chunks.insert(75, late)  # 15 s late with zero allowed lateness
    bed, forecasts, outcomes = run(chunks)
    assert "late" in outcomes
    assert "gap" in outcomes  # the hole it left was seen as a gap when the next chunk came


def test_duplicate_chunks_are_dropped_without_changing_results(wave):
    chunks = chunks_of(wave, [500])
    dup = chunks[:50] + [chunks[49], chunks[30]] + chunks[50:]
    _, fa, _ = run(chunks)
    _, fb, outcomes = run(dup)
    assert outcomes.count("duplicate") == 2
    strip = lambda fs: [f.model_dump(exclude={"issued_wall_ns", "inference_ms"}) for f in fs]
    assert strip(fa) == strip(fb)


def test_gap_marks_artifact_and_never_alerts(wave):
    x = wave.copy()
    chunks = [c for c in chunks_of(x, [500]) if not 100 <= (c.t0_ns - T0) / 1e9 < 110]
    bed, forecasts, outcomes = run(chunks)
    assert "gap" in outcomes
    # A tick at T uses cells final at T (ending LEAD_OUT_S = 2.5 s before it): ticks from ~106 s
    # see gap cells, and the 15 s quality look-back keeps them flagged until ~125 s.
    around = [f for f in forecasts if 106e9 <= f.t_ns - T0 <= 120e9]
    assert around and all(f.signal_quality == "artifact" and f.risk == {} for f in around)
    assert any("gap" in f.gate_reasons for f in around)


def test_long_silence_restarts_the_window(wave):
    s = Settings(max_gap_s=20.0)
    chunks = chunks_of(wave, [500])
    moved = chunks[:60] + [WaveformChunk(c.bed_id, c.t0_ns + 600 * 10**9, c.fs_hz, c.samples, c.seq + 1000)
                           for c in chunks[60:]]
    bed, forecasts, outcomes = run(moved, s)
    assert "restarted" in outcomes
    after = [f for f in forecasts if f.t_ns > T0 + 600e9]
    assert after and after[0].signal_quality != "ok" and after[0].risk == {}


def test_rate_change_and_empty_chunks_are_rejected(wave):
    bed = BedState("OR-1", Settings())
    bed.add_chunk(WaveformChunk("OR-1", T0, FS, wave[:500], 1))
    with pytest.raises(ChunkRejected) as e:
        bed.add_chunk(WaveformChunk("OR-1", T0 + 10**9, 125.0, wave[:125], 2))
    assert e.value.reason == "rate_changed" and "125" in str(e.value)
    with pytest.raises(ChunkRejected) as e:
        bed.add_chunk(WaveformChunk("OR-1", T0 + 10**9, FS, wave[:0], 3))
    assert e.value.reason == "empty"


def test_all_nan_chunk_is_a_gap_not_a_crash(wave):
    x = wave.copy()
    x[20_000:22_000] = np.nan
    chunks = chunks_of(x, [500])
    bed, forecasts, outcomes = run(chunks)
    assert forecasts and not any(np.isnan(v) for f in forecasts for v in f.risk.values())


def test_score_chunks_matches_manual_loop(wave):
    chunks = chunks_of(wave, [500])
    _, manual, _ = run(chunks)
    scored = [m for m in score_chunks("OR-1", iter(chunks), Settings(), BaselineForecaster())
              if m.__class__.__name__ == "Forecast"]
    strip = lambda fs: [f.model_dump(exclude={"issued_wall_ns", "inference_ms"}) for f in fs]
    assert strip(manual) == strip(scored)


def test_iter_chunks_skips_all_nan_chunks_and_numbers_them():
    x = np.ones(2000, dtype=np.float32) * 80
    x[500:1000] = np.nan
    chunks = list(iter_chunks(x, FS, T0, "OR-9"))
    assert [c.seq for c in chunks] == [1, 3, 4]
    assert chunks[1].t0_ns == T0 + 2 * 10**9  # seq 3 starts at sample 1000



def test_restarted_sequence_numbers_are_new_data_not_duplicates(wave):
    chunks = chunks_of(wave, [500])
    restarted = chunks[:20] + [WaveformChunk(c.bed_id, c.t0_ns, c.fs_hz, c.samples, c.seq - 20)
                               for c in chunks[20:40]]
    bed, forecasts, outcomes = run(restarted)
    assert "duplicate" not in outcomes
    assert bed.hw == 40 * 500


def test_chunk_before_the_first_sample_is_late_not_an_error(wave):
    bed = BedState("OR-1", Settings())
    bed.add_chunk(WaveformChunk("OR-1", T0 + 2 * 10**9, FS, wave[1000:1500], 3))
    with pytest.raises(ChunkRejected) as e:
        bed.add_chunk(WaveformChunk("OR-1", T0, FS, wave[:500], 1))
    assert e.value.reason == "late"


def test_samples_before_an_emitted_tick_cannot_change_it(wave):
    """A model forecaster reads the waveform window when the tick is emitted; samples for that
    window arriving afterwards are counted as late instead of silently missing from it."""
    chunks = chunks_of(wave, [500])
    held = chunks.pop(100)             # samples 100-101 s
    chunks.insert(103, held)           # arrives after the tick at ~102 s was emitted
    bed = BedState("OR-1", Settings(), needs_wave=True)
    late = 0
    for ch in chunks:
        try:
            late += bed.add_chunk(ch).late_samples
        except ChunkRejected as exc:
            assert exc.reason == "late"
            late += ch.n
    assert late > 0
