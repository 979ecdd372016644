"""Micro-batching of forecast ticks across beds, off the event loop.

Stream agents hand ready ticks to ``MicroBatcher.submit`` and go straight back to consuming.
One batcher task gathers ticks for at most ``max_wait_ms`` or ``max_size`` beds, runs the
forecaster in a worker thread, then finishes the ticks (alert state machine) on the event loop
in arrival order, so each bed's ticks stay in time order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

from agent.pipeline import BedState, Tick, finish_ticks, predict_ticks
from streams.contracts import Alert, Forecast

log = logging.getLogger(__name__)

Publish = Callable[[Forecast, list[Alert]], Awaitable[None]]


class MicroBatcher:
    def __init__(self, beds: dict[str, BedState], forecaster, publish: Publish, *, max_size: int = 64,
                 max_wait_ms: float = 20.0, metrics=None, queue_ticks: int = 4096):
        self.beds = beds
        self.forecaster = forecaster
        self.publish = publish
        self.max_size = max_size
        self.max_wait_s = max_wait_ms / 1e3
        self.metrics = metrics
        # Bounded: when inference falls behind, submit() waits and Kafka consumption slows
        # instead of memory growing.
        self.queue: asyncio.Queue[Tick] = asyncio.Queue(maxsize=queue_ticks)
        self._task: asyncio.Task | None = None

    async def submit(self, ticks: list[Tick]) -> None:
        for t in ticks:
            await self.queue.put(t)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._loop())
            self._task.add_done_callback(self._ended)

    @staticmethod
    def _ended(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.critical("micro-batcher stopped: no more forecasts from this worker",
                         exc_info=task.exception())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None

    async def _gather(self) -> list[Tick]:
        batch = [await self.queue.get()]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_size:
            try:
                batch.append(self.queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), left))
            except asyncio.TimeoutError:
                break
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            try:
                outs, ms = await loop.run_in_executor(None, predict_ticks, batch, self.forecaster)
            except Exception:
                log.exception("forecaster failed on a batch of %d ticks; finishing them without risk",
                              len(batch))
                outs, ms = [None] * len(batch), 0.0
            # Beds may have been dropped while the batch ran (idle pruning); skip their ticks.
            live = [(t, o) for t, o in zip(batch, outs) if t.bed_id in self.beds]
            try:
                results = finish_ticks(self.beds, [t for t, _ in live], [o for _, o in live],
                                       self.forecaster, ms)
            except Exception:
                log.exception("finishing a batch of %d ticks failed; they are dropped", len(live))
                continue
            if self.metrics is not None:
                self.metrics.batch_size.observe(sum(t.input is not None for t in batch))
                self.metrics.inference_seconds.labels(backend=self.forecaster.backend).observe(ms / 1e3)
            for fc, alerts in results:
                try:
                    await self.publish(fc, alerts)
                except Exception:
                    # One bad record or a failed send must not stop forecasting for every bed.
                    log.exception("publishing the forecast of bed %s at %d failed", fc.bed_id, fc.t_ns)
