"""Settings come from the environment under documented names and fail loudly on bad values."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsError

from agent.settings import ENV_PREFIX, Settings, env_table, env_var


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No IOHWATCH_* or KAFKA_* variable of the developer's shell leaks into these tests."""
    import os
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX) or name.startswith("KAFKA_"):
            monkeypatch.delenv(name)


def test_defaults_build():
    s = Settings()
    assert s.uses_embedded_broker
    assert s.bootstrap() == f"127.0.0.1:{s.embedded_broker_port}"
    assert s.cells_per_window == 300 and s.cells_per_patch == 10


def test_prefixed_env_vars(monkeypatch):
    monkeypatch.setenv("IOHWATCH_WEB_PORT", "7001")
    monkeypatch.setenv("IOHWATCH_WEB_HOST", "0.0.0.0")
    monkeypatch.setenv("IOHWATCH_FORECAST_CADENCE_S", "5")
    monkeypatch.setenv("IOHWATCH_HORIZONS_MIN", "[5,10]")
    monkeypatch.setenv("IOHWATCH_ENGINE_PATH", "/engines/fuse")
    monkeypatch.setenv("IOHWATCH_ALLOW_BASELINE_FALLBACK", "true")
    monkeypatch.setenv("IOHWATCH_LOG_LEVEL", "debug")
    s = Settings()
    assert (s.web_port, s.web_host, s.forecast_cadence_s) == (7001, "0.0.0.0", 5.0)
    assert s.horizons_min == (5, 10)
    assert s.engine_path == Path("/engines/fuse")
    assert s.allow_baseline_fallback is True
    assert s.log_level == "debug"


def test_kafka_env_vars_are_unprefixed(monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-0:9093,kafka-1:9093")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "iohwatch-agent")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "s3cret-Pa55")
    monkeypatch.setenv("KAFKA_SSL_CAFILE", "/etc/kafka-ca/ca.crt")
    s = Settings()
    assert not s.uses_embedded_broker
    assert s.bootstrap() == "kafka-0:9093,kafka-1:9093"
    assert s.kafka_security_protocol == "SASL_SSL" and s.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert isinstance(s.kafka_sasl_password, SecretStr)
    assert s.kafka_sasl_password.get_secret_value() == "s3cret-Pa55"
    assert s.kafka_ssl_cafile == Path("/etc/kafka-ca/ca.crt")
    # the secret never shows in repr/str, and so never in a log line that prints settings
    for text in (repr(s), str(s), repr(s.kafka_sasl_password), s.model_dump_json()):
        assert "s3cret-Pa55" not in text


def test_empty_bootstrap_means_embedded(monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "")
    assert Settings().uses_embedded_broker


def test_prefixed_name_does_not_set_kafka_fields(monkeypatch):
    """Only the documented name works: IOHWATCH_KAFKA_BOOTSTRAP_SERVERS is not an alias."""
    monkeypatch.setenv("IOHWATCH_KAFKA_BOOTSTRAP_SERVERS", "wrong:9092")
    assert Settings().uses_embedded_broker


def test_settings_are_frozen():
    s = Settings()
    with pytest.raises(ValidationError):
        s.web_port = 1


@pytest.mark.parametrize("var,value,needle", [
    ("IOHWATCH_WEB_PORT", "abc", "IOHWATCH_WEB_PORT"),
    ("IOHWATCH_WEB_PORT", "70000", "IOHWATCH_WEB_PORT"),
    ("KAFKA_SECURITY_PROTOCOL", "TLS", "KAFKA_SECURITY_PROTOCOL"),
    ("IOHWATCH_ENGINE_BACKEND", "cuda", "IOHWATCH_ENGINE_BACKEND"),
    # not JSON: pydantic-settings fails before validation and names the field
    ("IOHWATCH_HORIZONS_MIN", "5,10", 'field "horizons_min"'),
    ("IOHWATCH_ALERT_CLEAR_RISK", "0.6", "alert_clear_risk (0.6) must be below alert_raise_risk (0.5)"),
    ("IOHWATCH_PATCH_S", "31", "patch_s (31.0) must be a multiple of map_grid_s (3.0)"),
    ("IOHWATCH_MAP_WINDOW_S", "905", "map_window_s (905.0) must be a multiple of patch_s (30.0)"),
])
def test_bad_values_name_the_variable_or_the_numbers(monkeypatch, var, value, needle):
    monkeypatch.setenv(var, value)
    with pytest.raises((ValidationError, SettingsError)) as info:
        Settings()
    assert needle in str(info.value)


def test_env_table_covers_every_field_once():
    rows = env_table()
    names = [r[0] for r in rows]
    assert len(names) == len(set(names)) == len(Settings.model_fields)
    for field, (var, default, description) in zip(Settings.model_fields, rows):
        assert var == env_var(field)
        assert var.startswith(ENV_PREFIX) or var.startswith("KAFKA_"), var
        assert description, f"{field} has no description"
    assert ("IOHWATCH_HORIZONS_MIN", "[5,10,15]") == rows[names.index("IOHWATCH_HORIZONS_MIN")][:2]
    assert rows[names.index("KAFKA_BOOTSTRAP_SERVERS")][1] == ""


def test_every_env_var_in_table_sets_its_field(monkeypatch):
    """Round trip: each documented variable really reaches its field."""
    samples = {bool: "true", int: "7", float: "0.7"}
    for field, info in Settings.model_fields.items():
        ann = info.annotation
        if ann not in samples:
            continue
        monkeypatch.setenv(env_var(field), samples[ann])
        try:
            value = Settings().model_dump()[field]
        except ValidationError as exc:  # a constraint of that field rejects the sample value
            assert env_var(field) in str(exc) or field in str(exc)
        else:
            assert value == ann(samples[ann]) if ann is not bool else value is True, field
        monkeypatch.delenv(env_var(field))
