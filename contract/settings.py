"""Settings groups that several processes share, each defined once.

Every process's settings class (``IngestSettings``, ``ApiSettings``, ``SimulateSettings``, …)
inherits the groups it needs, so one ``IOC_*`` variable means the same thing — name, default,
validation, description — wherever it is read, and one ``.env`` serves every process. (Webhook
targets are a group too: :class:`alerts.config.WebhookTargets`, beside the policy it builds.)

The field types below refuse, when the settings are built, what would otherwise fail later
without naming the setting: :data:`Text` and :data:`Secret` a control character (a line break
pasted with a password breaks the request that carries it), :data:`Folder` a folder that cannot be
one, :data:`RegistryUrl` a URL that is no database.
"""

from __future__ import annotations

import ssl
import unicodedata
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings

from contract.topics import mqtt_endpoint, parse_mqtt_url, readable_file

DEFAULT_FLEET = Path("var/fleet.yaml")


def printable(text: str) -> str:
    """``text`` if it has no control character (a tab, a line break); ``ValueError`` otherwise."""
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise ValueError("contains a control character (a line break copied with it?)")
    return text


def _printable_secret(secret: SecretStr) -> SecretStr:
    printable(secret.get_secret_value())
    return secret


def usable_folder(path: Path) -> Path:
    """``path`` if it is a folder or can be made one (its nearest existing parent is a folder)."""
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                raise ValueError(f"{folder} is not a folder" + ("" if folder == path else f" (for {path})"))
            break
    return path


def fleet_file(path: Path) -> Path:
    """``path`` if it is a readable file; ``ValueError`` naming it as the fleet file."""
    try:
        return readable_file(path)
    except ValueError as exc:
        raise ValueError(f"cannot read the fleet file: {exc}") from None


REGISTRY_URL_HELP = "use sqlite:///var/registry.db or postgresql://user:password@host:5432/db"


def check_registry_url(url: str | None) -> str | None:
    """``url`` if it names a SQLite or PostgreSQL database (the password is never repeated)."""
    if url:
        scheme, sep, _ = url.strip().partition("://")
        if not sep or scheme.lower().partition("+")[0] not in ("sqlite", "postgresql"):
            raise ValueError(f"not a database URL: {REGISTRY_URL_HELP}")
    return url


Text = Annotated[str, AfterValidator(printable)]
"""A name, user or host: any text without control characters."""
Secret = Annotated[SecretStr, AfterValidator(_printable_secret)]
"""A password or token: never shown, without control characters."""
Folder = Annotated[Path, AfterValidator(usable_folder)]
"""A folder that exists, or can be made (no file in its way)."""
RegistryUrl = Annotated[str, AfterValidator(check_registry_url)]
"""The device registry's database: ``sqlite:///…`` or ``postgresql://…``."""


class BrokerUrl(BaseSettings):
    """Where the MQTT broker is, and the CA its TLS certificate is checked against."""

    mqtt_url: str = Field("mqtt://127.0.0.1:1883", description="broker, mqtt://host:port or mqtts://host:port (TLS)")
    mqtt_ca_file: Path | None = Field(
        None, description="mqtts://: trust this CA (PEM) for the broker's certificate instead of the system's CAs"
    )

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url(cls, v: str) -> str:
        parse_mqtt_url(v)
        return v

    @field_validator("mqtt_ca_file")
    @classmethod
    def _mqtt_ca_file(cls, v: Path | None) -> Path | None:
        return None if v is None else readable_file(v)

    @property
    def mqtt_host_port(self) -> tuple[str, int]:
        return parse_mqtt_url(self.mqtt_url)

    @property
    def mqtt_tls(self) -> bool:
        """Whether the broker URL is ``mqtts://`` (TLS)."""
        return mqtt_endpoint(self.mqtt_url).tls


class InfluxUrl(BaseSettings):
    """Where InfluxDB is (``ioc rules backtest`` needs no more)."""

    influx_url: str = Field("http://127.0.0.1:8086", description="InfluxDB base URL, http(s)://host:port")

    @field_validator("influx_url")
    @classmethod
    def _influx_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"InfluxDB URL must look like http://host:port, got {v!r}")
        return v.rstrip("/")


class InfluxConnection(InfluxUrl):
    """Where InfluxDB is, how to log in, and the CA its TLS certificate is checked against."""

    influx_username: Text | None = Field(None, description="user (v1 auth)")
    influx_password: Secret | None = Field(None, description="password (v1 auth; on 2.x a token)")
    influx_ca_file: Path | None = Field(
        None, description="https://: trust this CA (PEM) for InfluxDB's certificate instead of the system's CAs"
    )

    @field_validator("influx_ca_file")
    @classmethod
    def _influx_ca_file(cls, v: Path | None) -> Path | None:
        return None if v is None else readable_file(v)

    @model_validator(mode="after")
    def _influx_tls(self) -> InfluxConnection:
        if self.influx_ca_file is None:
            return self
        if urlsplit(self.influx_url).scheme != "https":
            raise ValueError(
                "--influx-ca-file (IOC_INFLUX_CA_FILE) needs an https:// InfluxDB URL in --influx-url "
                f"(IOC_INFLUX_URL); got {self.influx_url}"
            )
        try:
            ssl.create_default_context(cafile=str(self.influx_ca_file))
        except ssl.SSLError as exc:
            raise ValueError(
                f"--influx-ca-file (IOC_INFLUX_CA_FILE): {self.influx_ca_file} holds no PEM CA certificate "
                f"({exc.reason or exc})"
            ) from None
        return self

    def influx_verify(self) -> ssl.SSLContext | bool:
        """httpx's ``verify=`` for InfluxDB: a context trusting ``influx_ca_file``, else the system's CAs;
        False for an ``http://`` URL, which has no certificate to verify (each client would otherwise
        load the system's CAs into a context of its own: 3 MiB that a process keeps)."""
        if urlsplit(self.influx_url).scheme != "https":
            return False
        if self.influx_ca_file is None:
            return True
        return ssl.create_default_context(cafile=str(self.influx_ca_file))


class RegistryChoice(BaseSettings):
    """The device registry a service runs on: a database, or a fleet file read into memory."""

    registry_url: RegistryUrl | None = Field(
        None, description="the device registry database: sqlite:///var/registry.db or postgresql://… (instead of fleet)"
    )
    fleet: Path | None = Field(
        None, description="a fleet file (YAML or CSV) read into an in-memory registry (default var/fleet.yaml)"
    )

    @model_validator(mode="after")
    def _one_registry(self) -> RegistryChoice:
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


class DeviceSecretFile(BaseSettings):
    """The fleet secret device passwords are derived from (``ioc simulate``, ``ioc devices sync-broker``:
    each reads and checks it when it needs it)."""

    device_secret_file: Path | None = Field(
        None, description="file with the fleet secret; device passwords are HMAC-SHA256(secret, device id)"
    )
