"""Settings of ``ioc simulate``: one typed object, validated once at start-up (env ``IOC_*``).

:class:`SimulateSettings` when it publishes; :class:`FleetFileSettings` when it generates a fleet
file (``--write-fleet``) and exits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.settings import BrokerUrl, DeviceSecretFile
from contract.topics import CERT_FLAG, KEY_FLAG, mqtt_tls_problem, readable_file

SimFormat = Literal[
    "ioc_v1", "chirpstack_v4", "tts_v3", "sparkplug_b", "senml", "thingsboard", "influx_lp", "json_map", "mixed"
]
"""What ``ioc simulate --format`` publishes: the native contract, another payload format (for every
device of a kind it carries), or ``mixed`` (the demo's fleet: :func:`simulators.formats.mixed_format`)."""

DEVICE_PLACEHOLDER = "{device_id}"
"""In ``mqtt_cert_file`` and ``mqtt_key_file``: each device's own id (a certificate per device)."""


class Seed(BaseSettings):
    """The random seed of a simulated fleet and its signals."""

    seed: int = Field(1, ge=0, description="random seed: the same seed gives the same fleet and signals")


class FleetFileSettings(Seed):
    """The fleet file ``ioc simulate --write-fleet`` generates."""

    model_config = SettingsConfigDict(env_prefix="IOC_", env_file=".env", extra="ignore")

    devices: int = Field(200, ge=1, le=100_000, description="devices in a generated fleet (--write-fleet)")


class SimulateSettings(DeviceSecretFile, Seed, BrokerUrl):
    """What the simulated fleet publishes, where, and how fast."""

    model_config = SettingsConfigDict(env_prefix="IOC_", env_file=".env", extra="ignore")

    mqtt_cert_file: Path | None = Field(
        None,
        description="mqtts://: client certificate (PEM) for mutual TLS; {device_id} in the path: one per device",
    )
    mqtt_key_file: Path | None = Field(
        None, description="the private key of mqtt_cert_file (PEM, unencrypted; {device_id} as there)"
    )
    fleet: Path = Field(Path("var/fleet.yaml"), description="the fleet file (YAML or CSV)")
    format: SimFormat = Field(
        "ioc_v1", description="payload format: ioc_v1, another format ingest reads (--sources), or mixed"
    )
    rate: float | None = Field(
        None, gt=0, description="live messages per second for the whole fleet (default: natural intervals)"
    )
    duration: float | None = Field(None, ge=0, description="seconds of live publishing, then stop")
    readings: int | None = Field(None, ge=1, description="stop after publishing this many readings")
    gateway_batch: int = Field(1, ge=1, le=10_000, description="readings per message (1: one reading per message)")
    backfill_hours: float = Field(0.0, ge=0, le=24 * 90, description="first publish this much history, fast")
    backfill_batch: int = Field(100, ge=1, le=10_000, description="readings per message during backfill")
    interval_s: float = Field(60.0, gt=0, description="live sampling interval of each sensor without --rate")
    malformed_share: float = Field(0.0, ge=0, le=1, description="share of native messages replaced by malformed ones")
    max_outstanding: int = Field(5_000, ge=1, description="messages published but not yet acked, at most")
    device_password: SecretStr | None = Field(None, description="one password for every device (tests)")
    record: Path | None = Field(None, description="write every published reading as JSON lines here")

    @field_validator("mqtt_cert_file", "mqtt_key_file")
    @classmethod
    def _tls_file(cls, v: Path | None) -> Path | None:
        if v is not None and DEVICE_PLACEHOLDER in str(v):
            if not v.parent.is_dir():  # the files themselves are checked per device when it connects
                raise ValueError(f"folder {v.parent} does not exist")
            return v
        return None if v is None else readable_file(v)

    @property
    def per_device_certs(self) -> bool:
        """Whether every device has a certificate of its own (``{device_id}`` in the paths)."""
        return self.mqtt_cert_file is not None and DEVICE_PLACEHOLDER in str(self.mqtt_cert_file)

    def client_cert(self, device_id: str) -> tuple[Path, Path] | None:
        """The client certificate and key ``device_id`` presents (None: none)."""
        if self.mqtt_cert_file is None or self.mqtt_key_file is None:
            return None
        cert, key = (
            Path(str(p).replace(DEVICE_PLACEHOLDER, device_id)) for p in (self.mqtt_cert_file, self.mqtt_key_file)
        )
        return cert, key

    @model_validator(mode="after")
    def _tls(self) -> SimulateSettings:
        if self.per_device_certs != (self.mqtt_key_file is not None and DEVICE_PLACEHOLDER in str(self.mqtt_key_file)):
            raise ValueError(
                f"{CERT_FLAG} and {KEY_FLAG}: name {DEVICE_PLACEHOLDER} in both paths (a certificate per device) "
                "or in neither (one for all)"
            )
        problem = mqtt_tls_problem(
            self.mqtt_url, self.mqtt_ca_file, self.mqtt_cert_file, self.mqtt_key_file,
            load_pair=not self.per_device_certs,
        )  # fmt: skip
        if problem:
            raise ValueError(problem)
        return self

    @field_validator("device_secret_file")
    @classmethod
    def _readable(cls, v: Path | None) -> Path | None:
        if v is not None and not v.is_file():
            raise ValueError(f"{v} is not a readable file")
        return v

    @field_validator("record")
    @classmethod
    def _writable_folder(cls, v: Path | None) -> Path | None:
        if v is not None and not v.parent.is_dir():
            raise ValueError(f"folder {v.parent} does not exist")
        return v
