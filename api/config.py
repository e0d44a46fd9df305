"""Settings of ``ioc api``: one typed object, validated once at start-up.

Every field is an ``IOC_<FIELD>`` environment variable. Fields the API shares with ingest and the
alert store keep their names (``IOC_INFLUX_URL``, ``IOC_REGISTRY_URL``, ``IOC_FLEET``, ``IOC_ALERTS_DB``…), so one
``.env`` serves every process; fields of the API alone start with ``api_`` (``IOC_API_PORT``,
``IOC_API_ADMIN_KEY``…).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from alerts.config import ALERTS_DB_HELP, AlertsDb, WebhookTargets, split_list
from contract.settings import BrokerUrl, InfluxConnection, RegistryChoice, Text
from contract.topics import readable_file
from registry.broker_accounts import BrokerAdmin

MIN_ADMIN_KEY_CHARS = 32


class ApiSettings(BrokerAdmin, WebhookTargets, RegistryChoice, InfluxConnection, BrokerUrl):
    """Settings of ``ioc api`` (shared groups: :mod:`contract.settings`, :class:`alerts.config.WebhookTargets`)."""

    # hide_input_in_errors: a refused IOC_ALERTS_DB may be a URL with a password in it
    model_config = SettingsConfigDict(env_prefix="IOC_", env_file=".env", extra="ignore", hide_input_in_errors=True)

    influx_db: Text = Field("ioc", min_length=1, description="database (v1; on 2.x the DBRP-mapped name)")
    alerts_db: AlertsDb = Field(Path("var/alerts.db"), description=ALERTS_DB_HELP)
    rules_pack: Path | None = Field(None, description="the rule pack, YAML (default: the built-in Mekong pack)")

    api_host: Text = Field("127.0.0.1", description="address the API listens on")
    api_port: int = Field(8000, ge=1, le=65_535, description="port the API listens on")
    api_log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = Field(
        "info", description="uvicorn's log level: critical, error, warning, info, debug or trace"
    )
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
        3_600.0,
        gt=0,
        description="a device silent this long counts as offline (besides its will), unless the rule pack's "
        "no-data rules that read it say how long",
    )
    api_max_points: int = Field(
        10_000,
        ge=10,
        le=1_000_000,
        description="history longer than this many buckets is refused (use a coarser every)",
    )
    api_backtest_max_hours: float = Field(168.0, gt=0, le=8_760, description="longest backtest range")
    api_stream_poll_s: float = Field(
        1.0,
        ge=0.05,
        le=60,
        description="how often the live alert stream's one watcher asks the alert store what changed, seconds",
    )
    api_desk_tile_url: str | None = Field(
        None,
        description="base-map tiles for the alert desk, https://host/{z}/{x}/{y}.png ({s} in the host: "
        "subdomain a; default none: the map works offline, without tiles)",
    )

    @field_validator("rules_pack")
    @classmethod
    def _rules_pack(cls, v: Path | None) -> Path | None:
        return None if v is None else readable_file(v)

    @field_validator("api_desk_tile_url")
    @classmethod
    def _tile_url(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        v = v.strip()
        host = urlsplit(v.replace("{s}", "a", 1)).netloc  # {s}: a subdomain, "a" (as the desk's page has it)
        if (
            not v.startswith(("https://", "http://"))
            or not v.isascii()  # it goes into the page's Content-Security-Policy header
            or not all(f"{{{p}}}" in v for p in "zxy")
            or any(c.isspace() or c in "'\";,<>" for c in v)
            or not host
            or "{" in host
            or "}" in host
        ):
            raise ValueError(
                "must be an ASCII http(s) URL with {z}, {x} and {y} in its path (and at most {s} in its host), "
                "e.g. https://{s}.tile.example/{z}/{x}/{y}.png"
            )
        return v

    @field_validator("api_cors_origins", mode="before")
    @classmethod
    def _lists(cls, v: Any) -> Any:
        return split_list(v)

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
