"""The MQTT side of ingest: aiomqtt with manual acknowledgements.

aiomqtt 2.x acknowledges nothing itself here: we switch its paho client to manual ack and send
each PUBACK only after the message's readings are stored or dead-lettered. Two more things keep
that promise:

* We announce a *Receive Maximum* in CONNECT. The broker then never has more unacknowledged QoS 1
  messages in flight to us than that, so aiomqtt's incoming queue, sized above it, cannot overflow
  (aiomqtt discards silently when it does). When the writer stalls, acks stop, the broker stops
  sending and keeps the rest in our persistent session's queue: backpressure reaches the broker.
* A PUBACK is only valid on the connection that received the message. Every handle carries the
  connection's generation; acks for an older connection are skipped (the broker redelivers those
  messages, and a redelivered reading overwrites itself in InfluxDB).

Only this module touches aiomqtt's and paho's objects; the rest of ingest sees :class:`InMessage`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contract.topics import DLQ_PREFIX, SUBSCRIPTION
from ingest.config import IngestSettings
from ingest.metrics import IngestMetrics

log = logging.getLogger(__name__)

BROKER_DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"


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


class _CountingClient(aiomqtt.Client):
    """aiomqtt's client, counting (instead of only logging) what its full queue discards."""

    def __init__(self, *args: Any, on_drop: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_drop = on_drop

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        if self._queue.full():
            self._on_drop(message)
            return
        super()._on_message(client, userdata, message)


class BrokerError(Exception):
    """The broker connection failed or was lost; reconnect."""


class Broker:
    """One connection to the broker (an async context manager); see the module docstring."""

    def __init__(self, settings: IngestSettings, metrics: IngestMetrics, generation: int) -> None:
        self._settings = settings
        self._metrics = metrics
        self.generation = generation
        host, port = settings.mqtt_host_port
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = settings.mqtt_session_expiry_s
        props.ReceiveMaximum = settings.mqtt_receive_maximum
        password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
        self._client = _CountingClient(
            host,
            port,
            identifier=settings.mqtt_client_id,
            username=settings.mqtt_username,
            password=password,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=props,
            keepalive=30,
            # Above Receive Maximum: QoS 1 can never overflow it; headroom for QoS 0 ($SYS, strays).
            max_queued_incoming_messages=settings.mqtt_receive_maximum + 10_000,
            on_drop=self._dropped,
        )
        self._paho: paho.Client = self._client._client
        self._paho.manual_ack_set(True)

    def _dropped(self, message: paho.MQTTMessage) -> None:
        self._metrics.dropped.inc()
        if message.qos > 0:  # cannot happen while Receive Maximum < queue size; never silent
            log.error(
                "client queue full: QoS %d message on %s not acked, will be redelivered", message.qos, message.topic
            )

    async def __aenter__(self) -> Broker:
        try:
            await self._client.__aenter__()
            topic = SUBSCRIPTION
            if self._settings.mqtt_shared_group:
                topic = f"$share/{self._settings.mqtt_shared_group}/{SUBSCRIPTION}"
            await self._client.subscribe(topic, qos=1)
            await self._client.subscribe(BROKER_DROPPED_TOPIC, qos=0)
        except aiomqtt.MqttError as exc:
            raise BrokerError(str(exc)) from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._client.__aexit__(None, None, None)
        except aiomqtt.MqttError as err:
            log.debug("disconnect: %s", err)

    async def messages(self) -> AsyncIterator[InMessage]:
        """Device messages, in arrival order; ends with :class:`BrokerError` on disconnect."""
        gen = self.generation
        queue = self._client._queue
        pending = self._client.messages
        try:
            while True:
                # Take what is already queued without a task per message; wait only when empty.
                try:
                    m = queue.get_nowait()
                except asyncio.QueueEmpty:
                    m = await anext(pending)
                topic = m.topic.value
                payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
                if topic == BROKER_DROPPED_TOPIC:
                    self._record_broker_dropped(payload)
                    continue
                handle = AckHandle(gen, m.mid, m.qos)
                if topic.startswith(DLQ_PREFIX):
                    self.ack([handle])  # our own dead letters, echoed back by ioc/v1/#
                    continue
                yield InMessage(topic, payload, bool(m.retain), handle)
        except aiomqtt.MqttError as exc:
            raise BrokerError(str(exc)) from exc

    def _record_broker_dropped(self, payload: bytes) -> None:
        with contextlib.suppress(ValueError):
            self._metrics.broker_dropped.set(float(payload.decode()))

    def ack(self, handles: Iterable[AckHandle]) -> int:
        """Acknowledge messages (in the order given); returns how many were sent."""
        sent = 0
        for h in handles:
            if h.qos == 0:
                continue
            if h.generation != self.generation:
                self._metrics.ack_skipped.inc()
                continue
            self._paho.ack(h.mid, h.qos)
            sent += 1
        return sent

    async def publish(self, topic: str, payload: bytes) -> None:
        """Publish with QoS 1 and wait for the broker's PUBACK."""
        try:
            await self._client.publish(topic, payload, qos=1, timeout=30)
        except aiomqtt.MqttError as exc:
            raise BrokerError(str(exc)) from exc
