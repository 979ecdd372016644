"""The Faust application: the whole topology declared in one place.

    waveform.abp ──> window stage (BedState per bed) ──> MicroBatcher ──> ioh.forecasts, ioh.alerts
    observations ──> latest numerics per bed
    patients     ──> patient context per bed (new episode resets alerts) ──> ioh.alerts
    events       ──> belief updates (when a belief decoder is loaded) ──> ioh.beliefs
    hl7.raw      ──> parse stage (agent.hl7_stage) ──> the topics above, dlq.hl7
    anything unusable ──> dlq.<topic> with the reason and the original bytes

Step names (``window``, ``numerics``, ``context``, ``beliefs``) are used for logs, metrics
labels and dead-letter records alike.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from agent.batching import MicroBatcher
from agent.health import HealthServer, ServiceState
from agent.metrics import Metrics
from agent.pipeline import BedState, ChunkRejected
from agent.settings import Settings
from streams import chunk_codec, topics
from streams.contracts import (Alert, ClinicalEvent, ContractError, DeadLetter, Forecast, Observation,
                               PatientContext, decode)

log = logging.getLogger(__name__)

BED_IDLE_S = 900.0  # a bed with no waveform for this long (wall time) is dropped from memory


@dataclass
class Runtime:
    """What the topology shares: built once at start-up, passed to every stage."""

    settings: Settings
    forecaster: object
    metrics: Metrics
    state: ServiceState
    beliefs: object | None = None
    beds: dict[str, BedState] = field(default_factory=dict)
    last_seen: dict[str, float] = field(default_factory=dict)

    def bed(self, bed_id: str, waveform: bool = False) -> BedState:
        """The bed's state, created on first use. Only waveform keeps a bed from idle pruning."""
        b = self.beds.get(bed_id)
        if b is None:
            b = BedState(bed_id, self.settings, needs_wave=getattr(self.forecaster, "needs_wave", True),
                         alert_thresholds=getattr(self.forecaster, "alert_thresholds", None))
            self.beds[bed_id] = b
            self.metrics.beds_active.set(len(self.beds))
            self.last_seen[bed_id] = time.monotonic()
        if waveform:
            self.last_seen[bed_id] = time.monotonic()
        return b


def _credentials(settings: Settings):
    import faust

    proto = settings.kafka_security_protocol
    ssl_context = None
    if proto in ("SSL", "SASL_SSL"):
        import ssl

        ssl_context = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None)
    if proto.startswith("SASL"):
        pw = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
        return faust.SASLCredentials(username=settings.kafka_sasl_username or "", password=pw,
                                     mechanism=settings.kafka_sasl_mechanism or "PLAIN",
                                     ssl_context=ssl_context)
    if ssl_context is not None:
        return faust.SSLCredentials(ssl_context)
    return None


def _set_fetch_max_wait(ms: int) -> None:
    """Faust builds its worker consumer with ``fetch_max_wait_ms=1500`` and no setting to change
    it. Apache Kafka answers a fetch as soon as data arrives, but the embedded Tansu broker holds
    it for the full wait, which put 150-250 ms into every forecast; so the worker consumer is
    given ``settings.fetch_max_wait_ms`` instead (aiokafka reads the value at consumer start)."""
    from faust.transport.drivers import aiokafka as driver

    original = getattr(driver.AIOKafkaConsumerThread._create_worker_consumer, "__wrapped__",
                       driver.AIOKafkaConsumerThread._create_worker_consumer)

    def create_worker_consumer(self, transport):
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = ms
        return consumer

    create_worker_consumer.__wrapped__ = original
    driver.AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer


def build_app(rt: Runtime):
    """Faust app with every stage registered. Nothing connects until the worker starts."""
    import faust

    s = rt.settings
    _set_fetch_max_wait(s.fetch_max_wait_ms)
    app = faust.App(
        s.app_id, broker=f"kafka://{s.bootstrap()}", broker_credentials=_credentials(s),
        store="memory://", autodiscover=False, web_enabled=False, topic_partitions=s.topic_partitions,
        broker_session_timeout=s.session_timeout_s, broker_heartbeat_interval=s.heartbeat_s,
        # Tansu understates the high watermark, so "latest" can skip data: read from the start.
        consumer_auto_offset_reset="earliest", producer_acks=-1, producer_linger=0.005,
        stream_wait_empty=False, worker_redirect_stdouts=False)

    def topic(t: topics.Topic):
        return app.topic(t.name, key_serializer="raw", value_serializer="raw", partitions=s.topic_partitions)

    t_wave, t_obs, t_pat, t_evt = (topic(topics.WAVEFORM_ABP), topic(topics.OBSERVATIONS),
                                   topic(topics.PATIENTS), topic(topics.EVENTS))
    t_fc, t_alert, t_belief = topic(topics.FORECASTS), topic(topics.ALERTS), topic(topics.BELIEFS)
    dlq = {name: app.topic(name, key_serializer="raw", value_serializer="raw")
           for name in (topics.DLQ_WAVEFORM.name, topics.DLQ_OBSERVATIONS.name, topics.DLQ_HL7.name)}

    async def dead_letter(source: str, step: str, reason_class: str, detail: str, raw: bytes, key) -> None:
        rt.metrics.dead_letter(source, reason_class)
        log.warning("%s: %s -> %s: %s", step, source, topics.dlq_for(source), detail)
        rec = DeadLetter.of(source, step, f"{reason_class}: {detail}", raw, key)
        await dlq[topics.dlq_for(source)].send(key=key, value=rec.dumps())

    async def publish(fc: Forecast, alerts: list[Alert]) -> None:
        key = fc.bed_id.encode()
        await t_fc.send(key=key, value=fc.dumps())
        rt.metrics.forecasts_total.labels(model=fc.model, signal_quality=fc.signal_quality).inc()
        if fc.source_wall_ns:
            rt.metrics.forecast_latency_seconds.observe(max(0.0, (time.time_ns() - fc.source_wall_ns) / 1e9))
        for a in alerts:
            await publish_alert(a)

    async def publish_alert(a: Alert) -> None:
        await t_alert.send(key=a.bed_id.encode(), value=a.dumps())
        rt.metrics.alerts_total.labels(kind=a.kind, action=a.action).inc()

    batcher = MicroBatcher(rt.beds, rt.forecaster, publish, max_size=s.microbatch_max_size,
                           max_wait_ms=s.microbatch_max_wait_ms, metrics=rt.metrics)

    @app.agent(t_wave, name="window")
    async def window(stream):
        async for event in stream.events():
            raw, key = event.value, event.key
            rt.state.last_event_wall_ns = time.time_ns()
            try:
                chunk = chunk_codec.decode(raw)
            except chunk_codec.ChunkError as exc:
                rt.metrics.chunks_total.labels(outcome="rejected").inc()
                await dead_letter(topics.WAVEFORM_ABP.name, "window", "decode", str(exc), raw, key)
                continue
            bed = rt.bed(chunk.bed_id, waveform=True)
            try:
                res = bed.add_chunk(chunk, wall_ns=int(event.message.timestamp * 1e9))
            except ChunkRejected as exc:
                rt.metrics.chunks_total.labels(outcome="late" if exc.reason == "late" else "rejected").inc()
                await dead_letter(topics.WAVEFORM_ABP.name, "window", exc.reason, str(exc), raw, key)
                continue
            except Exception as exc:  # one bad bed must never stop the others
                log.exception("window: bed %s failed on a chunk", chunk.bed_id)
                await dead_letter(topics.WAVEFORM_ABP.name, "window", "error", repr(exc), raw, key)
                continue
            outcome = res.outcome if res.outcome != "restarted" else "gap"
            rt.metrics.chunks_total.labels(outcome=outcome).inc()
            if res.outcome != "duplicate":
                rt.metrics.samples_total.inc(chunk.n - res.late_samples)
            if res.ticks:
                await batcher.submit(res.ticks)

    async def decoded(stream, model, source: str, step: str):
        """Messages of ``model`` from a JSON topic; anything that does not match the contract
        goes to the dead-letter topic with the reason."""
        async for event in stream.events():
            try:
                yield event, decode(model, event.value)
            except ContractError as exc:
                await dead_letter(source, step, "contract", str(exc), event.value, event.key)

    @app.agent(t_obs, name="numerics")
    async def numerics(stream):
        async for _, obs in decoded(stream, Observation, topics.OBSERVATIONS.name, "numerics"):
            rt.bed(obs.bed_id).add_observation(obs)

    @app.agent(t_pat, name="context")
    async def context(stream):
        loop = asyncio.get_running_loop()
        async for _, ctx in decoded(stream, PatientContext, topics.PATIENTS.name, "context"):
            prepare = getattr(rt.forecaster, "prepare_context", None)
            if prepare is not None and ctx.status != "discharged":
                # Encode the patient's description now, in a thread, so the first forecast
                # batch that sees this patient does not pay for the text encoder.
                try:
                    await loop.run_in_executor(None, prepare, ctx)
                except Exception:
                    log.exception("context: text encoding failed for bed %s; forecasts use the "
                                  "missing-text token", ctx.bed_id)
            for a in rt.bed(ctx.bed_id).set_context(ctx):
                await publish_alert(a)

    @app.agent(t_evt, name="beliefs")
    async def beliefs(stream):
        async for event, ev in decoded(stream, ClinicalEvent, topics.EVENTS.name, "beliefs"):
            if rt.beliefs is None:
                continue
            try:
                belief = rt.beliefs.update(ev.bed_id, ev)
            except Exception as exc:
                log.exception("beliefs: update failed for bed %s", ev.bed_id)
                await dead_letter(topics.EVENTS.name, "beliefs", "error", repr(exc), event.value, event.key)
                continue
            if belief is not None:
                await t_belief.send(key=ev.bed_id.encode(), value=belief.dumps())

    try:
        from agent import hl7_stage
    except ImportError:
        hl7_stage = None
    if hl7_stage is not None:
        hl7_stage.register(app, s, rt.metrics)

    @app.timer(30.0)
    async def prune_idle_beds():
        now = time.monotonic()
        for bed_id in [b for b, t in rt.last_seen.items() if now - t > BED_IDLE_S]:
            bed = rt.beds.pop(bed_id, None)
            rt.last_seen.pop(bed_id, None)
            log.info("bed %s without waveform for %.0f s: dropped from memory", bed_id, BED_IDLE_S)
            if bed is not None:
                # Close its open alerts rather than leave them open downstream.
                episode = bed.context.episode_id if bed.context is not None else bed.alerts.episode_id
                reason = f"no arterial waveform for {BED_IDLE_S / 60:.0f} min"
                for a in bed.alerts.reset(episode, bed.alerts.last_t_ns, reason=reason):
                    await publish_alert(a)
        rt.metrics.beds_active.set(len(rt.beds))

    health = HealthServer(s, rt.state, rt.metrics)

    @app.on_rebalance_complete.connect
    async def _joined(sender, **kwargs):
        rt.state.group_joined = True
        rt.state.broker_reachable = True

    from mode import Service

    class SideServices(Service):
        """The micro-batcher and the health server, started and stopped with the app."""

        async def on_start(self) -> None:
            batcher.start()
            try:
                await health.start()
            except OSError as exc:
                log.error("%s", exc)

        async def on_stop(self) -> None:
            await batcher.stop()
            await health.stop()

    app.add_dependency(SideServices())
    app.iohwatch_runtime = rt  # for tests and introspection
    return app


def load_runtime(settings: Settings) -> Runtime:
    """Forecaster (engine or named baseline), metrics and service state for one worker."""
    from agent.forecasting import BaselineForecaster

    metrics = Metrics()
    state = ServiceState.from_settings(settings)
    try:
        from models.forecaster import load_forecaster
    except ImportError:
        load_forecaster = None
    if load_forecaster is not None:
        forecaster = load_forecaster(settings)
    else:
        forecaster = BaselineForecaster(horizons_min=tuple(settings.horizons_min),
                                        fallback_reason="model support not installed")
    is_model = not forecaster.name.startswith("baseline")
    state.engine_loaded = is_model
    state.engine_name = f"{forecaster.name}:{forecaster.version}"
    state.fallback_reason = forecaster.fallback_reason
    metrics.engine_loaded.set(1 if is_model else 0)
    beliefs = None
    try:
        from agent.beliefs import load_belief_tracker
        beliefs = load_belief_tracker(settings)
    except ImportError:
        pass
    except Exception as exc:
        log.warning("belief decoder not loaded: %s", exc)
    return Runtime(settings=settings, forecaster=forecaster, metrics=metrics, state=state, beliefs=beliefs)


def run_worker(settings: Settings) -> None:
    """Start one Faust worker in this process; returns when it is stopped (SIGINT/SIGTERM)."""
    from faust.worker import Worker

    rt = load_runtime(settings)
    if rt.forecaster.fallback_reason:
        log.warning("forecaster: %s (%s)", rt.forecaster.name, rt.forecaster.fallback_reason)
    else:
        log.info("forecaster: %s %s on %s", rt.forecaster.name, rt.forecaster.version, rt.forecaster.backend)
    app = build_app(rt)
    worker = Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    worker.execute_from_commandline()

