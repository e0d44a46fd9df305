"""The ingest service's settings: one typed object, validated once at start-up.

Every field can be set from the environment as ``IOC_<FIELD>`` (``.env.example`` lists them all)
or from the matching ``ioc ingest`` flag.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from contract.settings import BrokerUrl, InfluxConnection, RegistryChoice, Secret, Text
from contract.topics import mqtt_tls_problem, readable_file


class IngestSettings(RegistryChoice, InfluxConnection, BrokerUrl):
    """Settings of ``ioc ingest`` (the broker, InfluxDB and registry groups: :mod:`contract.settings`)."""

    # hide_input_in_errors: a refused password or token is never repeated
    model_config = SettingsConfigDict(env_prefix="IOC_", env_file=".env", extra="ignore", hide_input_in_errors=True)

    mqtt_client_id: str = Field(
        "ioc-ingest",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="fixed client id (persistent session); = user name where the broker binds them",
    )
    mqtt_username: Text | None = Field(None, description="broker user name")
    mqtt_password: Secret | None = Field(None, description="broker password")
    mqtt_session_expiry_s: int = Field(
        86_400, gt=0, description="how long the broker keeps our session and queue while we are away"
    )
    mqtt_receive_maximum: int = Field(
        10_000,
        ge=10,
        le=65_535,
        description="unacknowledged messages the broker may send us at once (a batch holds a quarter at most)",
    )
    mqtt_fast_path: Literal["auto", "on", "off"] = Field(
        "auto", description="MQTT receive fast path: auto (when its aiomqtt/paho versions match), on, off (public APIs)"
    )
    mqtt_shared_group: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="subscribe as $share/<group>/... (several workers, an account each)",
    )
    mqtt_cert_file: Path | None = Field(
        None, description="mqtts://: our client certificate (PEM), for a broker that requires one (mutual TLS)"
    )
    mqtt_key_file: Path | None = Field(None, description="the private key of mqtt_cert_file (PEM, unencrypted)")

    influx_api: Literal["v1", "v2"] = Field("v1", description="write dialect: v1 /write or v2 (influxdb-client)")
    influx_db: Text | None = Field("ioc", description="database (v1)")
    influx_bucket: Text | None = Field(None, description="bucket (v2)")
    influx_org: Text | None = Field(None, description="organisation (v2)")
    influx_token: Secret | None = Field(None, description="API token (v2)")

    registry_poll_s: float = Field(1.0, gt=0, le=60, description="how often a running ingest looks for device changes")

    batch_max_readings: int = Field(
        10_000,
        ge=1,
        le=100_000,
        description="write a batch at this many readings (or a quarter of the receive maximum's messages)",
    )
    batch_max_age_ms: int = Field(
        200,
        ge=1,
        le=60_000,
        description="while batches are being stored, the next grows this long at most (none: sealed at once)",
    )
    write_queue_batches: int = Field(2, ge=1, le=64, description="sealed batches waiting for the writer")
    write_concurrency: int = Field(
        3, ge=1, le=16, description="batches being written to InfluxDB at once (finished and acked in order)"
    )
    write_timeout_s: float = Field(10.0, gt=0, description="HTTP timeout of one write")
    retry_initial_s: float = Field(0.2, gt=0, description="first back-off after a failed write")
    retry_max_s: float = Field(10.0, gt=0, description="longest back-off between write attempts")

    sources: Path | None = Field(
        None, description="the sources file: topics of other payload formats (default: the ioc/v1 contract alone)"
    )
    max_payload_bytes: int = Field(262_144, ge=256, description="larger payloads are dead-lettered")
    max_readings_per_message: int = Field(10_000, ge=1, description="gateway batches beyond this are refused")
    dlq_payload_cap: int = Field(4_096, ge=64, description="bytes of the original payload kept in a dead letter")

    rules: bool = Field(True, description="evaluate the rule pack on every stored batch")
    rules_pack: Path | None = Field(None, description="the rule pack, YAML (default: the built-in Mekong pack)")
    webhooks: bool = Field(True, description="deliver alert webhooks from this process")
    alerts_deliver_max_age_s: float = Field(
        3600.0, gt=0, description="alerts on readings older than this are recorded, not sent to farmers"
    )

    metrics_host: str = Field("127.0.0.1", description="Prometheus metrics address")
    metrics_port: int = Field(9108, ge=0, le=65_535, description="Prometheus metrics port (0: off)")

    @field_validator("mqtt_cert_file", "mqtt_key_file", "sources", "rules_pack")
    @classmethod
    def _readable(cls, v: Path | None) -> Path | None:
        return None if v is None else readable_file(v)

    @model_validator(mode="after")
    def _dialect(self) -> IngestSettings:
        if self.influx_api == "v1" and not self.influx_db:
            raise ValueError("--influx-api v1 needs --influx-db (IOC_INFLUX_DB)")
        if self.influx_api == "v2":
            missing = [n for n in ("influx_bucket", "influx_org", "influx_token") if not getattr(self, n)]
            if missing:
                flags = ", ".join("--" + m.replace("_", "-") for m in missing)
                raise ValueError(f"--influx-api v2 needs {flags}")
        if self.retry_max_s < self.retry_initial_s:
            raise ValueError("retry_max_s must be at least retry_initial_s")
        return self

    @model_validator(mode="after")
    def _tls(self) -> IngestSettings:
        problem = mqtt_tls_problem(self.mqtt_url, self.mqtt_ca_file, self.mqtt_cert_file, self.mqtt_key_file)
        if problem:
            raise ValueError(problem)
        return self
