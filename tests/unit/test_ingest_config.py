"""IngestSettings: validated once, refuses bad values with a message that says the fix."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from ingest.config import IngestSettings
from ingest.mqtt_public import tls_parameters
from ioc.tls import CertPair, issue_client_cert, make_ca
from simulators.config import SimulateSettings


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


# --- TLS: mqtts:// with a CA and a client certificate, https:// InfluxDB with a CA ---------------


@pytest.fixture
def ca(tmp_path: Path) -> CertPair:
    return make_ca(tmp_path / "ca")


@pytest.fixture
def device(ca: CertPair, tmp_path: Path) -> CertPair:
    return issue_client_cert(ca, tmp_path / "devices", "bt-sal-1")


SETTINGS_CLASSES = [IngestSettings, SimulateSettings]


def build(cls: type[BaseSettings], **values: Any) -> BaseSettings:
    return cls(_env_file=None, **values)  # type: ignore[call-arg]


def refused_by(cls: type[BaseSettings], **values: Any) -> str:
    with pytest.raises(ValidationError) as info:
        build(cls, **values)
    return str(info.value)


def test_mqtts_with_a_ca_and_a_client_certificate(ca: CertPair, device: CertPair) -> None:
    s = settings(mqtt_url="mqtts://broker.example", mqtt_ca_file=ca.cert, mqtt_cert_file=device.cert,
                 mqtt_key_file=device.key)  # fmt: skip
    assert s.mqtt_tls
    assert s.mqtt_host_port == ("broker.example", 8883)
    params = tls_parameters(s)
    assert params is not None
    assert (params.ca_certs, params.certfile, params.keyfile) == (str(ca.cert), str(device.cert), str(device.key))
    assert tls_parameters(settings()) is None  # mqtt://: plaintext
    system = tls_parameters(settings(mqtt_url="mqtts://broker.example"))  # the system's CAs
    assert system is not None
    assert system.ca_certs is None


@pytest.mark.parametrize("cls", SETTINGS_CLASSES)
def test_tls_files_with_a_plaintext_url_are_refused(cls: type[BaseSettings], ca: CertPair, device: CertPair) -> None:
    text = refused_by(cls, mqtt_url="mqtt://broker", mqtt_ca_file=ca.cert)
    assert "--mqtt-ca-file (IOC_MQTT_CA_FILE) need a TLS broker URL, mqtts://host:port" in text
    assert "--mqtt-url (IOC_MQTT_URL)" in text
    text = refused_by(cls, mqtt_url="mqtt://broker", mqtt_cert_file=device.cert, mqtt_key_file=device.key)
    assert "--mqtt-cert-file (IOC_MQTT_CERT_FILE), --mqtt-key-file (IOC_MQTT_KEY_FILE) need" in text


@pytest.mark.parametrize("cls", SETTINGS_CLASSES)
@pytest.mark.parametrize("given", ["mqtt_cert_file", "mqtt_key_file"])
def test_a_certificate_and_its_key_come_together(cls: type[BaseSettings], given: str, device: CertPair) -> None:
    path = device.cert if given == "mqtt_cert_file" else device.key
    text = refused_by(cls, mqtt_url="mqtts://broker", **{given: path})
    assert "a client certificate needs both --mqtt-cert-file (IOC_MQTT_CERT_FILE) and --mqtt-key-file" in text


@pytest.mark.parametrize("cls", SETTINGS_CLASSES)
def test_tls_files_must_exist_and_be_what_they_say(
    cls: type[BaseSettings], ca: CertPair, device: CertPair, tmp_path: Path
) -> None:
    assert "no such file" in refused_by(cls, mqtt_url="mqtts://b", mqtt_ca_file=tmp_path / "nope.crt")
    assert "is not a file" in refused_by(cls, mqtt_url="mqtts://b", mqtt_ca_file=tmp_path)
    text = refused_by(cls, mqtt_url="mqtts://b", mqtt_ca_file=device.key)  # a key is no CA
    assert "--mqtt-ca-file (IOC_MQTT_CA_FILE)" in text
    assert "no PEM CA certificate" in text
    other = issue_client_cert(ca, tmp_path / "devices", "bt-sal-2")
    text = refused_by(cls, mqtt_url="mqtts://b", mqtt_cert_file=device.cert, mqtt_key_file=other.key)
    assert "not a PEM certificate and its unencrypted key" in text
    assert "key values mismatch" in text


def test_simulate_takes_a_certificate_per_device(ca: CertPair, device: CertPair, tmp_path: Path) -> None:
    folder = device.cert.parent
    s = build(SimulateSettings, mqtt_url="mqtts://b", mqtt_ca_file=ca.cert,
              mqtt_cert_file=folder / "{device_id}.crt", mqtt_key_file=folder / "{device_id}.key")  # fmt: skip
    assert isinstance(s, SimulateSettings)
    assert s.per_device_certs
    assert s.client_cert("bt-sal-9") == (folder / "bt-sal-9.crt", folder / "bt-sal-9.key")
    text = refused_by(SimulateSettings, mqtt_url="mqtts://b", mqtt_cert_file=folder / "{device_id}.crt",
                      mqtt_key_file=device.key)  # fmt: skip
    assert "name {device_id} in both paths" in text
    text = refused_by(SimulateSettings, mqtt_url="mqtts://b", mqtt_cert_file=tmp_path / "nope" / "{device_id}.crt",
                      mqtt_key_file=tmp_path / "nope" / "{device_id}.key")  # fmt: skip
    assert "does not exist" in text


def test_influx_ca_file_needs_https(ca: CertPair, device: CertPair) -> None:
    s = settings(influx_url="https://influx.example:8086", influx_ca_file=ca.cert)
    assert s.influx_ca_file == ca.cert
    assert settings(influx_url="https://influx.example:8086").influx_verify() is True
    assert settings(influx_url="http://influx:8086").influx_verify() is False  # no TLS: no CAs loaded
    text = refused(influx_url="http://influx:8086", influx_ca_file=ca.cert)
    assert "--influx-ca-file (IOC_INFLUX_CA_FILE) needs an https:// InfluxDB URL" in text
    assert "no PEM CA certificate" in refused(influx_url="https://influx", influx_ca_file=device.key)
