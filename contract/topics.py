"""MQTT topics of the device contract: ``ioc/v1/{province}/{kind}/{device_id}/{channel}``."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from contract.fields import Kind

PREFIX: Final = "ioc/v1"
DLQ_PREFIX: Final = f"{PREFIX}/_dlq"
SUBSCRIPTION: Final = f"{PREFIX}/#"
DEVICE_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
SLUG_RE: Final = re.compile(r"[a-z0-9][a-z0-9_]{0,63}")


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


def parse_mqtt_url(url: str) -> tuple[str, int]:
    """``mqtt://host:port`` → (host, port); the port defaults to 1883."""
    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname:
        raise ValueError(f"MQTT URL must look like mqtt://host:port, got {url!r}")
    return parts.hostname, parts.port or 1883
