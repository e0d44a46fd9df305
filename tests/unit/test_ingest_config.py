"""IngestSettings: validated once, refuses bad values with a message that says the fix."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ingest.config import IngestSettings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No IOC_* variable of the developer's shell leaks into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("IOC_"):
            monkeypatch.delenv(name)


def settings(**values: Any) -> IngestSettings:
    return IngestSettings(_env_file=None, **values)  # type: ignore[call-arg]


def refused(**values: Any) -> str:
    with pytest.raises(ValidationError) as info:
        settings(**values)
    return str(info.value)


def test_defaults_are_valid() -> None:
    s = settings()
    assert s.mqtt_url == "mqtt://127.0.0.1:1883"
    assert s.mqtt_host_port == ("127.0.0.1", 1883)
    assert s.influx_api == "v1"
    assert s.influx_db == "ioc"
    assert s.influx_url == "http://127.0.0.1:8086"
    assert s.fleet is None
    assert s.registry_url is None
    assert s.fleet_file == Path("var/fleet.yaml")
    assert s.retry_initial_s <= s.retry_max_s


def test_a_registry_and_a_fleet_file_at_once_are_refused() -> None:
    message = refused(registry_url="sqlite:///var/registry.db", fleet=Path("fleet.yaml"))
    assert "--registry-url" in message
    assert "--fleet" in message


@pytest.mark.parametrize("url", ["http://broker:1883", "broker:1883", "mqtt://", "mqtt://:1883", "", "tcp://h"])
def test_bad_mqtt_url(url: str) -> None:
    text = refused(mqtt_url=url)
    assert "mqtt_url" in text
    assert "mqtt://host:port" in text


def test_mqtt_url_port() -> None:
    assert settings(mqtt_url="mqtt://broker.local").mqtt_host_port == ("broker.local", 1883)
    assert settings(mqtt_url="mqtt://10.0.0.5:18830").mqtt_host_port == ("10.0.0.5", 18830)


@pytest.mark.parametrize("url", ["ftp://influx:8086", "influx:8086", "http://", "", "http:///x"])
def test_bad_influx_url(url: str) -> None:
    text = refused(influx_url=url)
    assert "influx_url" in text
    assert "http://host:port" in text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://influx:8086/", "http://influx:8086"),
        ("https://cloud.example/", "https://cloud.example"),
        ("http://h:8086", "http://h:8086"),
    ],
)
def test_influx_url_trailing_slash_stripped(url: str, expected: str) -> None:
    assert settings(influx_url=url).influx_url == expected


@pytest.mark.parametrize("db", [None, ""])
def test_v1_needs_db(db: str | None) -> None:
    text = refused(influx_api="v1", influx_db=db)
    assert "--influx-db" in text
    assert "IOC_INFLUX_DB" in text


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({}, ["--influx-bucket", "--influx-org", "--influx-token"]),
        ({"influx_bucket": "b"}, ["--influx-org", "--influx-token"]),
        ({"influx_org": "o", "influx_token": "t"}, ["--influx-bucket"]),
        ({"influx_bucket": "b", "influx_org": "o"}, ["--influx-token"]),
    ],
)
def test_v2_names_missing_flags(given: dict[str, str], missing: list[str]) -> None:
    text = refused(influx_api="v2", **given)
    assert f"--influx-api v2 needs {', '.join(missing)}" in text
    for flag in {"--influx-bucket", "--influx-org", "--influx-token"} - set(missing):
        assert flag not in text


def test_v2_complete() -> None:
    s = settings(influx_api="v2", influx_bucket="ioc", influx_org="mekong", influx_token="s3cret", influx_db=None)
    assert s.influx_token is not None
    assert s.influx_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)  # secrets stay out of logs


@pytest.mark.parametrize("empty", ["influx_bucket", "influx_org", "influx_token"])
def test_v2_refuses_empty_values(empty: str) -> None:
    values = {"influx_bucket": "b", "influx_org": "o", "influx_token": "t", empty: ""}
    text = refused(influx_api="v2", **values)
    assert "--" + empty.replace("_", "-") in text


def test_retry_max_below_initial() -> None:
    text = refused(retry_initial_s=5.0, retry_max_s=1.0)
    assert "retry_max_s must be at least retry_initial_s" in text
    assert settings(retry_initial_s=1.0, retry_max_s=1.0).retry_max_s == 1.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mqtt_client_id", "bad id"),
        ("mqtt_client_id", ""),
        ("mqtt_shared_group", "a/b"),
        ("mqtt_session_expiry_s", 0),
        ("mqtt_receive_maximum", 5),
        ("mqtt_receive_maximum", 70_000),
        ("influx_api", "v3"),
        ("batch_max_readings", 0),
        ("batch_max_age_ms", 0),
        ("write_queue_batches", 0),
        ("write_timeout_s", 0),
        ("retry_initial_s", 0),
        ("max_payload_bytes", 100),
        ("max_readings_per_message", 0),
        ("dlq_payload_cap", 10),
        ("metrics_port", 70_000),
    ],
)
def test_field_bounds(field: str, value: object) -> None:
    assert field in refused(**{field: value})


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IOC_MQTT_URL", "mqtt://broker.example:2883")
    monkeypatch.setenv("IOC_INFLUX_API", "v2")
    monkeypatch.setenv("IOC_INFLUX_URL", "https://influx.example/")
    monkeypatch.setenv("IOC_INFLUX_BUCKET", "readings")
    monkeypatch.setenv("IOC_INFLUX_ORG", "mekong")
    monkeypatch.setenv("IOC_INFLUX_TOKEN", "tok")
    monkeypatch.setenv("IOC_BATCH_MAX_READINGS", "1234")
    monkeypatch.setenv("IOC_RETRY_MAX_S", "2.5")
    monkeypatch.setenv("IOC_FLEET", str(tmp_path / "fleet.yaml"))
    monkeypatch.setenv("IOC_MQTT_SHARED_GROUP", "workers")
    s = settings()
    assert s.mqtt_host_port == ("broker.example", 2883)
    assert s.influx_api == "v2"
    assert s.influx_url == "https://influx.example"
    assert s.influx_bucket == "readings"
    assert s.influx_token is not None
    assert s.influx_token.get_secret_value() == "tok"
    assert s.batch_max_readings == 1234
    assert s.retry_max_s == 2.5
    assert s.fleet == tmp_path / "fleet.yaml"
    assert s.mqtt_shared_group == "workers"


def test_environment_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_MQTT_URL", "http://nope")
    assert "mqtt://host:port" in refused()
    monkeypatch.setenv("IOC_MQTT_URL", "mqtt://ok")
    monkeypatch.setenv("IOC_BATCH_MAX_READINGS", "lots")
    assert "batch_max_readings" in refused()


def test_keyword_overrides_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_INFLUX_DB", "from_env")
    assert settings().influx_db == "from_env"
    assert settings(influx_db="from_flag").influx_db == "from_flag"


def test_unrelated_environment_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFLUX_DB", "not_ours")
    monkeypatch.setenv("IOC_SOMETHING_ELSE", "x")  # extra="ignore"
    assert settings().influx_db == "ioc"


def test_env_file_is_read(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("IOC_INFLUX_DB=from_file\nIOC_METRICS_PORT=0\n", encoding="utf-8")
    s = IngestSettings(_env_file=env)  # type: ignore[call-arg]
    assert s.influx_db == "from_file"
    assert s.metrics_port == 0
