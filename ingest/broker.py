"""The MQTT seam of ingest: our message type, the connection interface, and how one is chosen.

:class:`IngestService` never touches aiomqtt or paho. It takes a :data:`BrokerFactory` (as
Telegraf's mqtt_consumer takes a ClientFactory) and sees only :class:`BrokerConnection`: an async
context manager that yields :class:`InMessage` and acknowledges :class:`AckHandle` later.

Two implementations, chosen once at start-up by :func:`broker_factory`:

* :mod:`ingest.mqtt_public` — aiomqtt's public API with paho's manual acknowledgements: works
  with any aiomqtt 2.x / paho-mqtt 2.x, and is what runs when the fast path is unavailable.
* :mod:`ingest.mqtt_fastpath` — the same connection with paho's packet reader replaced on our
  client (buffered reads, PUBLISH straight to :class:`InMessage`, one write per batch of PUBACKs).
  It relies on private internals, so it checks at import the exact aiomqtt and paho-mqtt versions
  it was written against and refuses to load under any other.

``IOC_MQTT_FAST_PATH`` (``--mqtt-fast-path``): ``auto`` (the fast path when it loads, else the
public path, with a warning), ``on`` (refuse to start without it), ``off`` (the public path).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from ingest.config import IngestSettings
from ingest.errors import ConfigError
from ingest.metrics import IngestMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AckHandle:
    """What is needed to acknowledge one message later."""

    generation: int
    mid: int
    qos: int


@dataclass(frozen=True, slots=True)
class InMessage:
    """A received message, in our own type."""

    topic: str
    payload: bytes
    retained: bool
    ack: AckHandle


class BrokerError(Exception):
    """The broker connection failed or was lost; reconnect."""


class BrokerConnection(Protocol):
    """One connection to the broker, subscribed to the device topics while open."""

    generation: int
    """Counts connections; a handle of an older generation is never acknowledged on this one."""

    async def __aenter__(self) -> BrokerConnection: ...

    async def __aexit__(self, *exc: object) -> None: ...

    def messages(self) -> AsyncIterator[InMessage]:
        """Device messages in arrival order; ends with :class:`BrokerError` on disconnect."""
        ...

    def waiting(self) -> int:
        """Messages already received that :meth:`messages` has not yet handed over (the sealer
        lets a batch grow while more are here: the public path hands over one per loop turn)."""
        ...

    def ack(self, handles: Iterable[AckHandle]) -> int:
        """Acknowledge messages in the order given; returns how many PUBACKs were sent."""
        ...

    async def publish(self, topic: str, payload: bytes) -> None:
        """Publish with QoS 1: on return the broker has it, or has it before any acknowledgement sent
        after this returns (the fast path's ordering); :class:`BrokerError` if it could not be sent."""
        ...


BrokerFactory = Callable[[IngestSettings, IngestMetrics, int, tuple[str, ...]], BrokerConnection]
"""Makes connection number ``generation`` (1, 2, …) with the service's settings and metrics,
subscribed to the given topic filters (the native contract's, and the sources file's)."""


def broker_factory(settings: IngestSettings) -> BrokerFactory:
    """The implementation ``settings.mqtt_fast_path`` asks for; :class:`ConfigError` if it cannot be had."""
    from ingest.mqtt_public import PublicBroker

    if settings.mqtt_fast_path == "off":
        return PublicBroker
    try:
        from ingest.mqtt_fastpath import FastPathBroker
    except ImportError as exc:  # FastPathUnavailable included: versions it was not written for
        if settings.mqtt_fast_path == "on":
            raise ConfigError(f"--mqtt-fast-path on (IOC_MQTT_FAST_PATH): {exc}") from None
        log.warning("MQTT fast path unavailable (%s); using the public aiomqtt/paho path", exc)
        return PublicBroker
    return FastPathBroker


def path_name(factory: BrokerFactory) -> str:
    """``fast`` or ``public``: which path a factory gives (for logs and benchmarks)."""
    return str(getattr(factory, "PATH", "custom"))
