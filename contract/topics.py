"""MQTT topics of the device contract: ``ioc/v1/{province}/{kind}/{device_id}/{channel}``.

Also the broker's address, ``mqtt://host:port`` or ``mqtts://host:port`` (TLS), and the checks
of a client's TLS files that every command connecting to the broker shares.
"""

from __future__ import annotations

import enum
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from contract.fields import Kind

PREFIX: Final = "ioc/v1"
DLQ_PREFIX: Final = f"{PREFIX}/_dlq"
SUBSCRIPTION: Final = f"{PREFIX}/#"
DEVICE_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
SLUG_RE: Final = re.compile(r"[a-z0-9][a-z0-9_]{0,63}")
MQTT_URL_FLAG: Final = "--mqtt-url (IOC_MQTT_URL)"
CA_FLAG: Final = "--mqtt-ca-file (IOC_MQTT_CA_FILE)"
CERT_FLAG: Final = "--mqtt-cert-file (IOC_MQTT_CERT_FILE)"
KEY_FLAG: Final = "--mqtt-key-file (IOC_MQTT_KEY_FILE)"
"""The flags (and variables) of a client's broker connection, the same in every command that has them."""


class Channel(enum.StrEnum):
    """The last topic level: what a message carries."""

    TELEMETRY = "telemetry"
    STATUS = "status"
    EVENT = "event"


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    """A parsed device topic."""

    province: str
    kind: Kind
    device_id: str
    channel: Channel


class TopicError(ValueError):
    """A topic that is not a device topic of this contract."""


_KINDS: Final = {k.value: k for k in Kind}
_CHANNELS: Final = {c.value: c for c in Channel}


def device_topic(province: str, kind: Kind | str, device_id: str, channel: Channel | str) -> str:
    """The topic a device publishes ``channel`` on."""
    return f"{PREFIX}/{province}/{Kind(kind).value}/{device_id}/{Channel(channel).value}"


def dlq_topic(reason: str) -> str:
    """The dead-letter topic for ``reason``."""
    return f"{DLQ_PREFIX}/{reason}"


def parse_device_topic(topic: str) -> DeviceTopic:
    """Parse a device topic; raise :class:`TopicError` when it is not one."""
    parts = topic.split("/")
    if len(parts) != 6 or parts[0] != "ioc" or parts[1] != "v1":
        raise TopicError("topic is not ioc/v1/{province}/{kind}/{device_id}/{channel}")
    _, _, province, kind, device_id, channel = parts
    if not SLUG_RE.fullmatch(province):
        raise TopicError("province level is not a slug [a-z0-9][a-z0-9_]*")
    if kind not in _KINDS:
        raise TopicError(f"unknown kind {kind[:32]!r}")
    if not DEVICE_ID_RE.fullmatch(device_id):
        raise TopicError("device id does not match ^[A-Za-z0-9_-]{1,64}$")
    if channel not in _CHANNELS:
        raise TopicError(f"unknown channel {channel[:32]!r}")
    return DeviceTopic(province, _KINDS[kind], device_id, _CHANNELS[channel])


MQTT_DEFAULT_PORTS: Final = {"mqtt": 1883, "mqtts": 8883}
"""The URL schemes of a broker and their default ports: ``mqtts`` is MQTT over TLS."""


@dataclass(frozen=True, slots=True)
class MqttEndpoint:
    """A broker address from an ``mqtt://`` or ``mqtts://`` URL."""

    host: str
    port: int
    tls: bool
    """``mqtts://``: connect with TLS and verify the broker's certificate."""


def mqtt_endpoint(url: str) -> MqttEndpoint:
    """``mqtt://host:port`` (port 1883) or ``mqtts://host:port`` (TLS, port 8883) → :class:`MqttEndpoint`."""
    parts = urlsplit(url)
    if parts.scheme not in MQTT_DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"MQTT URL must look like mqtt://host:port or mqtts://host:port (TLS), got {url!r}")
    return MqttEndpoint(parts.hostname, parts.port or MQTT_DEFAULT_PORTS[parts.scheme], parts.scheme == "mqtts")


def parse_mqtt_url(url: str) -> tuple[str, int]:
    """``mqtt://host:port`` or ``mqtts://host:port`` → (host, port); see :func:`mqtt_endpoint` for TLS."""
    endpoint = mqtt_endpoint(url)
    return endpoint.host, endpoint.port


def mqtt_tls_problem(
    url: str,
    ca_file: Path | None,
    cert_file: Path | None,
    key_file: Path | None,
    *,
    url_flag: str = MQTT_URL_FLAG,
    load_pair: bool = True,
) -> str | None:
    """Why these TLS files do not go with ``url`` (None: they do), naming the flags to fix.

    A CA or a client certificate with a plaintext ``mqtt://`` URL would be silently unused; a
    certificate needs its key and a key its certificate; both must load together (the key is the
    certificate's; ``load_pair=False`` skips that, for paths that are templates). The files
    themselves are checked by :func:`readable_file` first.
    """
    given = [flag for flag, path in ((CA_FLAG, ca_file), (CERT_FLAG, cert_file), (KEY_FLAG, key_file)) if path]
    if given and not mqtt_endpoint(url).tls:
        return f"{', '.join(given)} need a TLS broker URL, mqtts://host:port, in {url_flag}; got {url}"
    if (cert_file is None) != (key_file is None):
        return f"a client certificate needs both {CERT_FLAG} and {KEY_FLAG}"
    if not given:
        return None
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (ssl.SSLError, OSError) as exc:
        return f"{CA_FLAG}: {ca_file} holds no PEM CA certificate ({_ssl_reason(exc)})"
    if cert_file is not None and key_file is not None and load_pair:
        try:
            context.load_cert_chain(cert_file, key_file)
        except (ssl.SSLError, OSError) as exc:
            return (
                f"{CERT_FLAG} and {KEY_FLAG}: {cert_file} and {key_file} are not a PEM certificate and its "
                f"unencrypted key ({_ssl_reason(exc)})"
            )
    return None


def _ssl_reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc).lower().replace("_", " ")


def readable_file(path: Path) -> Path:
    """``path`` if it is a file we can read; ``ValueError`` saying why not."""
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path} is not a file")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    return path
