"""Settings of the alert store and the webhook sender: one typed object, validated once at start-up.

Every field can be set from the environment as ``IOC_<FIELD>`` (e.g. ``IOC_ALERTS_DB``,
``IOC_WEBHOOK_MAX_ATTEMPTS``). ``IOC_WEBHOOK_ALLOW_HOSTS`` takes a comma-separated list (or a JSON
list) of CIDRs, addresses, host names and ``*.domain`` wildcards. ``IOC_ALERTS_DB`` is a SQLite
file or a ``postgresql://`` URL (:data:`AlertsDb`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, PlainSerializer, PlainValidator, WithJsonSchema, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from alerts.database import Location, PostgresUrl, parse_location
from alerts.targets import Resolver, TargetPolicy
from contract.settings import usable_folder


def _dump_location(location: Location) -> str:
    return location.conninfo if isinstance(location, PostgresUrl) else str(location)


def _alerts_db(value: Any) -> Location:
    """A SQLite file whose folder can be made, or a ``postgresql://`` URL (:func:`parse_location`)."""
    location = parse_location(value)
    if isinstance(location, Path):
        try:
            usable_folder(location.parent)
        except ValueError as exc:
            raise ValueError(f"{location}: {exc}") from None
    return location


AlertsDb = Annotated[
    Location,
    PlainValidator(_alerts_db),
    PlainSerializer(_dump_location, return_type=str),
    WithJsonSchema({"type": "string"}),
]
"""The alert store: a SQLite file path, or ``postgresql://user:password@host:5432/db`` (never a mangled ``Path``)."""
ALERTS_DB_HELP = (
    "alert store: a SQLite file, or postgresql://user:password@host:5432/db shared by several ingest machines"
)


def split_list(v: Any) -> Any:
    """``a,b`` or ``["a", "b"]`` from the environment → a list (anything else is left as it is)."""
    if isinstance(v, str):
        text = v.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a JSON list: {exc}") from None
        return [part.strip() for part in text.split(",") if part.strip()]
    return v


class WebhookTargets(BaseSettings):
    """Where webhooks may go and how long one attempt may take (the sender's and the API's test route)."""

    webhook_timeout_s: float = Field(10.0, gt=0, le=300, description="HTTP timeout of one delivery attempt")
    webhook_allow_private: bool = Field(
        False, description="allow webhooks to private, loopback and link-local addresses (never in production)"
    )
    webhook_allow_hosts: Annotated[list[str], NoDecode] = Field(
        [], description="CIDRs, addresses or host names webhooks may reach even if private"
    )

    @field_validator("webhook_allow_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, v: Any) -> Any:
        return split_list(v)

    @field_validator("webhook_allow_hosts")
    @classmethod
    def _check_hosts(cls, v: list[str]) -> list[str]:
        TargetPolicy.parse(v)  # raises ValueError naming the bad entry
        return v

    def target_policy(self, *, resolver: Resolver | None = None) -> TargetPolicy:
        """The outbound-target policy these settings describe."""
        return TargetPolicy.parse(self.webhook_allow_hosts, allow_private=self.webhook_allow_private, resolver=resolver)


class WebhookSettings(WebhookTargets):
    """Settings of the alert store and the webhook sender."""

    # hide_input_in_errors: a refused IOC_ALERTS_DB may be a URL with a password in it
    model_config = SettingsConfigDict(env_prefix="IOC_", env_file=".env", extra="ignore", hide_input_in_errors=True)

    alerts_db: AlertsDb = Field(Path("var/alerts.db"), description=ALERTS_DB_HELP)
    alerts_busy_timeout_s: float = Field(
        30.0, gt=0, le=600, description="how long one alert-store write waits for a lock before it is retried"
    )
    webhook_max_attempts: int = Field(20, ge=1, le=1_000, description="attempts before an event is dead-lettered")
    webhook_max_age_s: float = Field(
        86_400.0, gt=0, description="an event still failing this long after it was queued is dead-lettered"
    )
    webhook_backoff_initial_s: float = Field(2.0, gt=0, description="first back-off after a failed delivery")
    webhook_backoff_max_s: float = Field(900.0, gt=0, description="longest back-off between attempts")
    webhook_poll_interval_s: float = Field(
        1.0, gt=0, le=60, description="how often the sender looks for new outbox rows when not notified"
    )
    webhook_concurrency: int = Field(8, ge=1, le=256, description="subscribers delivered to at the same time")

    @model_validator(mode="after")
    def _backoff(self) -> WebhookSettings:
        if self.webhook_backoff_max_s < self.webhook_backoff_initial_s:
            raise ValueError("webhook_backoff_max_s must be at least webhook_backoff_initial_s")
        return self
