"""The micro-batcher: batches across beds, keeps each bed's order, survives a failing publish."""

from __future__ import annotations

import asyncio

import numpy as np

from agent.batching import MicroBatcher
from agent.forecasting import BaselineForecaster
from agent.pipeline import BedState
from agent.settings import Settings
from streams.chunk_codec import WaveformChunk
from streams.signal.synthetic import synthetic_abp

T0 = 1_790_000_000 * 10**9


def ticks_for(beds: dict[str, BedState], seconds: int = 120):
    x = synthetic_abp(float(seconds), 500.0, seed=1).x_mmhg
    out = []
    for name, bed in beds.items():
        for i in range(seconds):
            out += bed.add_chunk(WaveformChunk(name, T0 + i * 10**9, 500.0, x[i * 500:(i + 1) * 500], i + 1)).ticks
    return out


def test_batches_across_beds_in_order_and_survives_a_failing_publish():
    s = Settings()
    beds = {f"OR-{i}": BedState(f"OR-{i}", s, needs_wave=False) for i in range(3)}
    ticks = ticks_for(beds)
    published, sizes = [], []

    class Metrics:
        class _H:
            def __init__(self, sink):
                self.sink = sink

            def observe(self, v):
                self.sink.append(v)

            def labels(self, **kw):
                return self

        def __init__(self):
            self.batch_size = self._H(sizes)
            self.inference_seconds = self._H([])

    async def publish(fc, alerts):
        if not published:
            published.append(None)
            raise RuntimeError("broker said no")  # the first publish fails
        published.append(fc)

    async def main():
        b = MicroBatcher(beds, BaselineForecaster(), publish, max_size=16, max_wait_ms=5, metrics=Metrics())
        b.start()
        await b.submit(ticks)
        for _ in range(200):
            if len(published) >= len(ticks):
                break
            await asyncio.sleep(0.02)
        await b.stop()

    asyncio.run(main())
    got = [f for f in published if f is not None]
    assert len(got) == len(ticks) - 1           # only the failed one is missing
    assert max(sizes) > 1                       # ticks were batched
    for bed in beds:
        ts = [f.t_ns for f in got if f.bed_id == bed]
        assert ts == sorted(ts) and len(set(ts)) == len(ts)
    assert np.isfinite([v for f in got for v in f.risk.values()]).all()
