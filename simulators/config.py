"""Settings of ``ioc simulate``: one typed object, validated once at start-up (env ``IOC_*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.topics import parse_mqtt_url


class SimulateSettings(BaseSettings):
    """What the simulated fleet publishes, where, and how fast."""

    model_config = SettingsConfigDict(env_prefix="IOC_", env_file=".env", extra="ignore")

    mqtt_url: str = Field("mqtt://127.0.0.1:1883", description="broker, mqtt://host:port")
    fleet: Path = Field(Path("var/fleet.yaml"), description="the fleet file (device registry)")
    seed: int = Field(1, ge=0, description="random seed: the same seed gives the same fleet and signals")
    rate: float | None = Field(
        None, gt=0, description="live messages per second for the whole fleet (default: natural intervals)"
    )
    duration: float | None = Field(None, ge=0, description="seconds of live publishing, then stop")
    readings: int | None = Field(None, ge=1, description="stop after publishing this many readings")
    gateway_batch: int = Field(1, ge=1, le=10_000, description="readings per message (1: one reading per message)")
    backfill_hours: float = Field(0.0, ge=0, le=24 * 90, description="first publish this much history, fast")
    backfill_batch: int = Field(100, ge=1, le=10_000, description="readings per message during backfill")
    interval_s: float = Field(60.0, gt=0, description="live sampling interval of each sensor without --rate")
    malformed_share: float = Field(0.0, ge=0, le=1, description="share of messages replaced by malformed ones")
    max_outstanding: int = Field(5_000, ge=1, description="messages published but not yet acked, at most")
    device_secret_file: Path | None = Field(
        None, description="file with the fleet secret; device passwords are HMAC-SHA256(secret, device id)"
    )
    device_password: SecretStr | None = Field(None, description="one password for every device (tests)")
    record: Path | None = Field(None, description="write every published reading as JSON lines here")

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url(cls, v: str) -> str:
        parse_mqtt_url(v)
        return v

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
