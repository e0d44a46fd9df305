"""Settings of ``ioc api``: one typed object, validated once at start-up.

Every field is an ``IOC_<FIELD>`` environment variable. Fields the API shares with ingest and the
alert store keep their names (``IOC_INFLUX_URL``, ``IOC_REGISTRY_URL``, ``IOC_FLEET``, ``IOC_ALERTS_DB``…), so one
``.env`` serves every process; fields of the API alone start with ``api_`` (``IOC_API_PORT``,
``IOC_API_ADMIN_KEY``…).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from alerts.config import split_list
from alerts.targets import TargetPolicy
from contract.topics import parse_mqtt_url

MIN_ADMIN_KEY_CHARS = 32
DEFAULT_FLEET = Path("var/fleet.yaml")


class ApiSettings(BaseSettings):
    """Settings of ``ioc api``."""

    model_config = SettingsConfigDict(env_prefix="IOC_", env_file=".env", extra="ignore")

    influx_url: str = Field("http://127.0.0.1:8086", description="InfluxDB base URL (InfluxQL /query)")
    influx_db: str = Field("ioc", min_length=1, description="database (v1; on 2.x the DBRP-mapped name)")
    influx_username: str | None = Field(None, description="user (v1 auth)")
    influx_password: SecretStr | None = Field(None, description="password (v1 auth; on 2.x a token)")
    mqtt_url: str = Field("mqtt://127.0.0.1:1883", description="broker, mqtt://host:port")
    fleet: Path | None = Field(
        None, description="a fleet file (YAML or CSV) read into an in-memory registry (default var/fleet.yaml)"
    )
    registry_url: str | None = Field(
        None, description="the device registry database: sqlite:///var/registry.db or postgresql://… (instead of fleet)"
    )
    alerts_db: Path = Field(Path("var/alerts.db"), description="SQLite file of alerts, subscriptions and outbox")
    rules_pack: Path | None = Field(None, description="the rule pack, YAML (default: the built-in Mekong pack)")
    webhook_timeout_s: float = Field(10.0, gt=0, le=300, description="HTTP timeout of one delivery attempt")
    webhook_allow_private: bool = Field(
        False, description="allow webhooks to private, loopback and link-local addresses (never in production)"
    )
    webhook_allow_hosts: Annotated[list[str], NoDecode] = Field(
        [], description="CIDRs, addresses or host names webhooks may reach even if private"
    )

    api_host: str = Field("127.0.0.1", description="address the API listens on")
    api_port: int = Field(8000, ge=1, le=65_535, description="port the API listens on")
    api_admin_key: SecretStr | None = Field(
        None, description=f"bootstrap admin API key (at least {MIN_ADMIN_KEY_CHARS} characters), stored hashed on start"
    )
    api_max_body_bytes: int = Field(262_144, ge=1_024, le=16_777_216, description="larger request bodies get 413")
    api_cors_origins: Annotated[list[str], NoDecode] = Field(
        [], description="origins allowed by CORS (empty: CORS off)"
    )
    api_query_timeout_s: float = Field(30.0, gt=0, le=600, description="HTTP timeout of one InfluxQL query")
    api_ready_timeout_s: float = Field(2.0, gt=0, le=60, description="timeout of each /readyz check")
    api_offline_after_s: float = Field(
        3_600.0, gt=0, description="a device silent this long counts as offline (besides its will)"
    )
    api_max_points: int = Field(
        10_000,
        ge=10,
        le=1_000_000,
        description="history longer than this many buckets is refused (use a coarser every)",
    )
    api_backtest_max_hours: float = Field(168.0, gt=0, le=8_760, description="longest backtest range")

    @field_validator("influx_url")
    @classmethod
    def _influx_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"InfluxDB URL must look like http://host:port, got {v!r}")
        return v.rstrip("/")

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url(cls, v: str) -> str:
        parse_mqtt_url(v)
        return v

    @field_validator("webhook_allow_hosts", "api_cors_origins", mode="before")
    @classmethod
    def _lists(cls, v: Any) -> Any:
        return split_list(v)

    @field_validator("webhook_allow_hosts")
    @classmethod
    def _check_hosts(cls, v: list[str]) -> list[str]:
        TargetPolicy.parse(v)  # raises ValueError naming the bad entry
        return v

    @field_validator("api_admin_key")
    @classmethod
    def _admin_key(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value():
            return None
        if len(v.get_secret_value().strip()) < MIN_ADMIN_KEY_CHARS:
            raise ValueError(
                f"must be at least {MIN_ADMIN_KEY_CHARS} characters: generate one with "
                "`ioc api keys create --scope admin` or `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return v

    @model_validator(mode="after")
    def _one_registry(self) -> ApiSettings:
        if self.registry_url and self.fleet is not None:
            raise ValueError(
                "give the device registry once: --registry-url (IOC_REGISTRY_URL) or --fleet (IOC_FLEET), not both "
                "(import a fleet file with `ioc devices import FILE --registry-url …`)"
            )
        return self

    @property
    def fleet_file(self) -> Path:
        """The fleet file to read into an in-memory registry when there is no registry database."""
        return self.fleet or DEFAULT_FLEET

    @property
    def mqtt_host_port(self) -> tuple[str, int]:
        return parse_mqtt_url(self.mqtt_url)

    def target_policy(self) -> TargetPolicy:
        """Where subscription URLs may point (the same policy as the webhook sender's)."""
        return TargetPolicy.parse(self.webhook_allow_hosts, allow_private=self.webhook_allow_private)
