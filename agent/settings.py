"""One typed, frozen settings object, built once at the entry point and passed down.

Every field can be set from the environment: ``IOHWATCH_<FIELD>`` (upper case), except
``KAFKA_BOOTSTRAP_SERVERS`` and the ``KAFKA_*`` security fields, which use the names Kafka
tooling already uses. ``env_table()`` renders the table shown in ``iohwatch run --help``
and ``deploy/README.md``; a test keeps the two in step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "IOHWATCH_"

# Fields whose environment variable does not carry the IOHWATCH_ prefix.
_UNPREFIXED = {
    "kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "kafka_security_protocol": "KAFKA_SECURITY_PROTOCOL",
    "kafka_sasl_mechanism": "KAFKA_SASL_MECHANISM",
    "kafka_sasl_username": "KAFKA_SASL_USERNAME",
    "kafka_sasl_password": "KAFKA_SASL_PASSWORD",
    "kafka_ssl_cafile": "KAFKA_SSL_CAFILE",
}


def _env(field: str) -> AliasChoices:
    return AliasChoices(_UNPREFIXED.get(field, ENV_PREFIX + field.upper()), field)


class Settings(BaseSettings):
    """Runtime configuration of the agent, the replayer, the ingest services and the demo."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    # --- Kafka -----------------------------------------------------------------------------
    kafka_bootstrap_servers: str | None = Field(
        None, validation_alias=_env("kafka_bootstrap_servers"),
        description="host:port[,host:port]; empty starts the embedded Tansu broker on loopback")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", validation_alias=_env("kafka_security_protocol"),
        description="Kafka security protocol")
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, validation_alias=_env("kafka_sasl_mechanism"), description="SASL mechanism")
    kafka_sasl_username: str | None = Field(
        None, validation_alias=_env("kafka_sasl_username"), description="SASL user name")
    kafka_sasl_password: SecretStr | None = Field(
        None, validation_alias=_env("kafka_sasl_password"), description="SASL password (secret)")
    kafka_ssl_cafile: Path | None = Field(
        None, validation_alias=_env("kafka_ssl_cafile"), description="CA bundle for TLS")
    embedded_broker_port: int = Field(
        19092, ge=0, le=65535, validation_alias=_env("embedded_broker_port"),
        description="loopback port of the embedded broker (0 picks a free port)")
    broker_wait_s: float = Field(30.0, ge=0, validation_alias=_env("broker_wait_s"),
                                 description="how long a command waits for Kafka at start before failing (s)")
    app_id: str = Field("iohwatch", validation_alias=_env("app_id"),
                        description="Faust application id (consumer group prefix)")
    topic_partitions: int = Field(4, ge=1, validation_alias=_env("topic_partitions"),
                                  description="partitions per keyed topic")
    session_timeout_s: float = Field(6.0, gt=0, validation_alias=_env("session_timeout_s"),
                                     description="consumer group session timeout")
    heartbeat_s: float = Field(1.0, gt=0, validation_alias=_env("heartbeat_s"),
                               description="consumer heartbeat interval")
    fetch_max_wait_ms: int = Field(
        20, ge=1, le=5000, validation_alias=_env("fetch_max_wait_ms"),
        description="longest a fetch waits for data; Tansu answers only when it expires, so keep it short there")

    # --- signal path -------------------------------------------------------------------------
    map_grid_s: float = Field(3.0, gt=0, validation_alias=_env("map_grid_s"),
                              description="spacing of the MAP series (s)")
    map_window_s: float = Field(900.0, gt=0, validation_alias=_env("map_window_s"),
                                description="MAP history given to the forecaster (s)")
    patch_s: float = Field(30.0, gt=0, validation_alias=_env("patch_s"),
                           description="length of one MAP patch (s)")
    wave_window_s: float = Field(30.0, gt=0, validation_alias=_env("wave_window_s"),
                                 description="waveform history given to the forecaster (s)")
    model_fs_hz: float = Field(100.0, gt=0, validation_alias=_env("model_fs_hz"),
                               description="waveform rate the models see (Hz)")
    allowed_lateness_s: float = Field(
        0.0, ge=0, validation_alias=_env("allowed_lateness_s"),
        description="extra wait for late chunks before a cell is final (s); adds to forecast latency")
    max_gap_s: float = Field(
        120.0, gt=0, validation_alias=_env("max_gap_s"),
        description="a jump in device time larger than this restarts the bed's window (s)")

    # --- forecasting --------------------------------------------------------------------------
    forecast_cadence_s: float = Field(2.0, gt=0, validation_alias=_env("forecast_cadence_s"),
                                      description="event-time interval between forecasts (s)")
    horizons_min: tuple[int, ...] = Field((5, 10, 15), validation_alias=_env("horizons_min"),
                                          description="forecast horizons (min), JSON list")
    engine_path: Path | None = Field(
        None, validation_alias=_env("engine_path"),
        description="engine directory (manifest.json + ONNX/TensorRT); empty uses the shipped default, 'none' the baseline")
    engine_cache: Path | None = Field(
        None, validation_alias=_env("engine_cache"),
        description="volume where the container entrypoint keeps engines built for this GPU; empty skips the build")
    engine_backend: Literal["auto", "tensorrt", "onnxruntime", "torch"] = Field(
        "auto", validation_alias=_env("engine_backend"),
        description="inference backend; auto prefers TensorRT, then ONNX Runtime")
    allow_baseline_fallback: bool = Field(
        False, validation_alias=_env("allow_baseline_fallback"),
        description="report ready (/readyz) while serving the baseline forecaster because no engine loaded")
    inference_threads: int = Field(
        1, ge=1, le=64, validation_alias=_env("inference_threads"),
        description="CPU threads of one inference session; 1 leaves the other cores to stream workers")
    microbatch_max_size: int = Field(64, ge=1, validation_alias=_env("microbatch_max_size"),
                                     description="largest inference micro-batch (beds)")
    microbatch_max_wait_ms: float = Field(20.0, ge=0, validation_alias=_env("microbatch_max_wait_ms"),
                                          description="longest wait to fill a micro-batch (ms)")

    # --- alerts -------------------------------------------------------------------------------
    alert_raise_risk: float = Field(0.5, gt=0, lt=1, validation_alias=_env("alert_raise_risk"),
                                    description="risk at which a forecast counts toward raising")
    alert_clear_risk: float = Field(0.3, gt=0, lt=1, validation_alias=_env("alert_clear_risk"),
                                    description="risk below which a forecast counts toward resolving")
    alert_escalate_risk: float = Field(0.8, gt=0, lt=1, validation_alias=_env("alert_escalate_risk"),
                                       description="5-min risk that escalates a raised alert to high")
    alert_confirm_updates: int = Field(2, ge=1, validation_alias=_env("alert_confirm_updates"),
                                       description="consecutive updates above raise risk to raise")
    alert_clear_updates: int = Field(3, ge=1, validation_alias=_env("alert_clear_updates"),
                                     description="consecutive updates below clear risk to resolve")
    alert_near_map_mmhg: float = Field(
        5.0, ge=0, validation_alias=_env("alert_near_map_mmhg"),
        description="MAP this close above the IOH threshold and falling escalates a predicted alert (mmHg)")
    alert_falling_mmhg_per_min: float = Field(
        0.5, ge=0, validation_alias=_env("alert_falling_mmhg_per_min"),
        description="MAP slope at or below minus this counts as falling (mmHg/min)")
    alert_quality_after_s: float = Field(
        30.0, gt=0, validation_alias=_env("alert_quality_after_s"),
        description="event time of continuous artifact before a signal-quality alert is raised (s)")
    ioh_map_mmhg: float = Field(65.0, gt=0, validation_alias=_env("ioh_map_mmhg"),
                                description="MAP threshold of hypotension (mmHg)")
    ioh_min_duration_s: float = Field(60.0, gt=0, validation_alias=_env("ioh_min_duration_s"),
                                      description="time below threshold that makes an IOH event (s)")

    # --- HL7 ingest ---------------------------------------------------------------------------
    hl7_default_timezone: str = Field(
        "UTC", validation_alias=_env("hl7_default_timezone"),
        description="IANA time zone of HL7 timestamps sent without a UTC offset (Vital Recorder sends local time)")
    hl7_max_frame_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, validation_alias=_env("hl7_max_frame_bytes"),
        description="largest MLLP frame accepted; a longer one is answered AR and skipped")
    hl7_max_inflight: int = Field(
        2048, ge=1, validation_alias=_env("hl7_max_inflight"),
        description="HL7 messages awaiting the broker's acknowledgement, all connections together")
    hl7_max_inflight_per_connection: int = Field(
        256, ge=1, validation_alias=_env("hl7_max_inflight_per_connection"),
        description="HL7 messages awaiting the broker's acknowledgement on one connection")
    hl7_dedup_window: int = Field(
        100_000, ge=0, validation_alias=_env("hl7_dedup_window"),
        description="recent message control ids remembered to acknowledge duplicates without re-writing")
    hl7_write_timeout_s: float = Field(
        10.0, gt=0, validation_alias=_env("hl7_write_timeout_s"),
        description="longest wait for the broker to acknowledge a write before answering AE")

    # --- service ------------------------------------------------------------------------------
    web_host: str = Field("127.0.0.1", validation_alias=_env("web_host"),
                          description="bind address of health and metrics")
    web_port: int = Field(6066, ge=0, le=65535, validation_alias=_env("web_port"),
                          description="port of /healthz, /readyz and /metrics (0 disables)")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", validation_alias=_env("log_level"), description="log level")
    data_dir: Path = Field(Path(".iohwatch"), validation_alias=_env("data_dir"),
                           description="working directory for worker state and demo data")

    @model_validator(mode="after")
    def _check(self) -> "Settings":
        if self.alert_clear_risk >= self.alert_raise_risk:
            raise ValueError(
                f"alert_clear_risk ({self.alert_clear_risk}) must be below alert_raise_risk "
                f"({self.alert_raise_risk}) to give hysteresis")
        cells_per_patch = self.patch_s / self.map_grid_s
        if abs(cells_per_patch - round(cells_per_patch)) > 1e-9:
            raise ValueError(f"patch_s ({self.patch_s}) must be a multiple of map_grid_s ({self.map_grid_s})")
        patches = self.map_window_s / self.patch_s
        if abs(patches - round(patches)) > 1e-9:
            raise ValueError(f"map_window_s ({self.map_window_s}) must be a multiple of patch_s ({self.patch_s})")
        if self.kafka_bootstrap_servers == "":
            object.__setattr__(self, "kafka_bootstrap_servers", None)
        return self

    @property
    def cells_per_window(self) -> int:
        return int(round(self.map_window_s / self.map_grid_s))

    @property
    def cells_per_patch(self) -> int:
        return int(round(self.patch_s / self.map_grid_s))

    @property
    def uses_embedded_broker(self) -> bool:
        return not self.kafka_bootstrap_servers

    def bootstrap(self) -> str:
        """The bootstrap address to connect to (the embedded broker when none is configured)."""
        return self.kafka_bootstrap_servers or f"127.0.0.1:{self.embedded_broker_port}"


def env_var(field: str) -> str:
    """Environment variable that sets ``field``."""
    return _UNPREFIXED.get(field, ENV_PREFIX + field.upper())


def env_table() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every settings field, in declaration order."""
    rows = []
    for name, info in Settings.model_fields.items():
        default = info.default
        if isinstance(default, tuple):
            default = "[" + ",".join(str(v) for v in default) + "]"
        rows.append((env_var(name), "" if default is None else str(default), info.description or ""))
    return rows
