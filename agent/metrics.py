"""Prometheus metrics of one running service, in one registry per ``Metrics`` instance.

Conventions (https://prometheus.io/docs/practices/naming/): every name starts with ``iohwatch_``,
values are in base units (seconds, not milliseconds), counters end in ``_total`` and durations are
``_seconds`` histograms. Labels carry only small closed sets (outcome, topic, reason class, model,
backend); never a bed id, patient identifier or message id. The number of beds is a gauge.

There is no module-level registry: the service builds one ``Metrics`` and passes it down, and a
test builds its own, so two instances never share counts.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PREFIX = "iohwatch_"
CONTENT_TYPE = CONTENT_TYPE_LATEST

CHUNK_OUTCOMES = ("accepted", "duplicate", "late", "out_of_order", "gap", "rejected")
HL7_OUTCOMES = ("accepted", "rejected", "duplicate", "error")
# Short reason classes of dead letters; anything else is counted as "other" so a free-text
# reason can never explode the label set.
DEAD_LETTER_REASONS = frozenset({
    "decode", "contract", "late", "unknown_track", "unknown_bed", "artifact", "parse",
    "unsupported", "value", "oversize", "duplicate", "engine", "other",
})

# Sample-to-forecast wall latency: budget is p99 < 0.25 s; buckets resolve that and go to ~5 s.
FORECAST_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4,
                              0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
INFERENCE_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
HL7_ACK_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """All metrics of the agent and the ingest services, registered in ``self.registry``."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        # prometheus_client appends "_total" to counter names on exposition; give the base name.
        self.chunks_total = Counter(
            PREFIX + "waveform_chunks", "Waveform chunks seen by the window stage, by outcome.",
            ["outcome"], registry=r)
        self.samples_total = Counter(
            PREFIX + "waveform_samples", "Waveform samples accepted into bed windows.", registry=r)
        self.dead_letters_total = Counter(
            PREFIX + "dead_letters", "Records sent to a dead-letter topic, by source topic and reason class.",
            ["topic", "reason"], registry=r)
        self.forecasts_total = Counter(
            PREFIX + "forecasts", "Forecasts published, by model and signal quality.",
            ["model", "signal_quality"], registry=r)
        self.alerts_total = Counter(
            PREFIX + "alerts", "Alert lifecycle events published, by kind and action.",
            ["kind", "action"], registry=r)
        self.forecast_latency_seconds = Histogram(
            PREFIX + "forecast_latency_seconds",
            "Wall time from arrival of the newest sample in a window to publication of its forecast.",
            buckets=FORECAST_LATENCY_BUCKETS_S, registry=r)
        self.inference_seconds = Histogram(
            PREFIX + "inference_seconds", "Wall time of one inference micro-batch, by backend.",
            ["backend"], buckets=INFERENCE_BUCKETS_S, registry=r)
        self.batch_size = Histogram(
            PREFIX + "inference_batch_size", "Beds per inference micro-batch.",
            buckets=BATCH_SIZE_BUCKETS, registry=r)
        self.beds_active = Gauge(
            PREFIX + "beds_active", "Beds with a live window on this worker.", registry=r)
        self.hl7_messages_total = Counter(
            PREFIX + "hl7_messages", "HL7 messages received, by outcome.", ["outcome"], registry=r)
        self.hl7_ack_seconds = Histogram(
            PREFIX + "hl7_ack_seconds", "Wall time from the end of an MLLP frame to its ACK/NAK being sent.",
            buckets=HL7_ACK_BUCKETS_S, registry=r)
        self.engine_loaded = Gauge(
            PREFIX + "engine_loaded", "1 when a model engine is loaded, 0 when running the baseline.",
            registry=r)
        # Pre-create the closed label sets so dashboards see zeros rather than missing series.
        for outcome in CHUNK_OUTCOMES:
            self.chunks_total.labels(outcome=outcome)
        for outcome in HL7_OUTCOMES:
            self.hl7_messages_total.labels(outcome=outcome)

    def dead_letter(self, topic: str, reason: str) -> None:
        """Count one dead letter from ``topic``; ``reason`` is a short class, e.g. ``"decode"``.

        A reason outside ``DEAD_LETTER_REASONS`` is counted as ``"other"`` (label sets stay
        bounded); the full reason text belongs in the dead-letter record, not in a label.
        """
        cls = reason if reason in DEAD_LETTER_REASONS else "other"
        self.dead_letters_total.labels(topic=topic, reason=cls).inc()

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)
