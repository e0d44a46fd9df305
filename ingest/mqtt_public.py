"""The public MQTT path: aiomqtt's public API, with paho's manual acknowledgements.

aiomqtt 2.x acknowledges on arrival; we switch its paho client to manual ack (``manual_ack_set``)
and send each PUBACK (paho's public ``ack``) only after the message's readings are stored or
dead-lettered. aiomqtt exposes its paho client only as ``Client._client``, the one handle this
module takes (aiomqtt issue #345 documents it as the way to manual acks until aiomqtt has its own).

What keeps the promise:

* **Receive Maximum** in CONNECT: the broker should not have more unacknowledged QoS 1 messages in
  flight to us than that, and aiomqtt's incoming queue is sized above it (headroom for QoS 0).
* The broker may still exceed it (Mosquitto 2.0.11 does after a long stall, see
  docs/reliability.md). aiomqtt then discards the message and logs a warning; we count that
  warning (``ioc_ingest_messages_dropped``). The discarded message was never acknowledged, so the
  broker sends it again on the next connection: once everything this connection delivered has
  been acknowledged and its queue is empty, we end it (paho's ``disconnect``) and the service
  reconnects. Ending it at once instead would throw away the work in flight and meet the same
  flood again. Bounded, counted, redelivered — never lost.
* On a resumed session (CONNACK's session-present flag, read through paho's public ``on_connect``)
  the subscriptions are still there, so we do not subscribe again: waiting for a SUBACK queued
  behind the broker's backlog would time out before the first message is consumed.
* A PUBACK is only valid on the connection that received the message: every handle carries the
  connection's generation, and acks for an older one are skipped (the broker redelivers those;
  a redelivered reading overwrites itself in InfluxDB).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from contract.topics import DLQ_PREFIX, SUBSCRIPTION
from ingest.broker import AckHandle, BrokerError, InMessage
from ingest.config import IngestSettings
from ingest.metrics import IngestMetrics

log = logging.getLogger(__name__)

BROKER_DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"
QUEUE_HEADROOM = 10_000
"""Client queue slots above Receive Maximum (QoS 0: $SYS, stray publishes)."""
_QUEUE_FULL = "Message queue is full"


def from_aiomqtt(m: aiomqtt.Message, generation: int) -> InMessage:
    """aiomqtt's message as ours, at the edge."""
    payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
    return InMessage(m.topic.value, payload, bool(m.retain), AckHandle(generation, m.mid, m.qos))


class _DropCounter(logging.Filter):
    """Counts aiomqtt's "queue full, discarding" warnings on the logger we hand it."""

    def __init__(self) -> None:
        super().__init__()
        self.dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING and str(record.msg).startswith(_QUEUE_FULL):
            self.dropped += 1
        return True


class PublicBroker:
    """One connection to the broker, through public APIs only (see the module docstring)."""

    PATH = "public"

    def __init__(self, settings: IngestSettings, metrics: IngestMetrics, generation: int) -> None:
        self._settings = settings
        self._metrics = metrics
        self.generation = generation
        self._drops = _DropCounter()
        # A logger of this connection's own (not registered: nothing to clean up), at WARNING so
        # paho's per-packet debug lines stay off; its records go on to this module's logger.
        self._logger = logging.Logger(f"{__name__}.aiomqtt", logging.WARNING)
        self._logger.parent = log
        self._logger.addFilter(self._drops)
        self._client = self._make_client()
        self._paho: paho.Client = self._client._client
        self._paho.manual_ack_set(True)
        self._consumed_unacked = 0
        self._drops_seen = 0
        self._overflowed = False
        metrics.unacked.set_function(self.unacked)
        self._session_present = False
        on_connect = self._paho.on_connect  # aiomqtt's
        assert on_connect is not None

        def note_session(client: paho.Client, userdata: Any, flags: Any, *rest: Any) -> None:
            self._session_present = bool(flags.session_present)
            on_connect(client, userdata, flags, *rest)

        self._paho.on_connect = note_session

    def _make_client(self) -> aiomqtt.Client:
        return aiomqtt.Client(**self._client_options())

    def _client_options(self) -> dict[str, Any]:
        """aiomqtt's options: our persistent session, Receive Maximum, and the queue sized above it."""
        s = self._settings
        host, port = s.mqtt_host_port
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = s.mqtt_session_expiry_s
        props.ReceiveMaximum = s.mqtt_receive_maximum
        return {
            "hostname": host,
            "port": port,
            "identifier": s.mqtt_client_id,
            "username": s.mqtt_username,
            "password": s.mqtt_password.get_secret_value() if s.mqtt_password else None,
            "protocol": aiomqtt.ProtocolVersion.V5,
            "clean_start": False,
            "properties": props,
            "keepalive": 30,
            "max_queued_incoming_messages": s.mqtt_receive_maximum + QUEUE_HEADROOM,
            "logger": self._logger,
        }

    def unacked(self) -> int:
        """QoS 1 messages taken from the broker and not yet acknowledged, plus those still queued."""
        return self._consumed_unacked + len(self._client.messages)

    async def __aenter__(self) -> PublicBroker:
        try:
            await self._client.__aenter__()
            if self._session_present:
                log.info("resumed the broker session: its subscriptions stand")
                return self
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
        try:
            async for m in self._client.messages:
                if self._drops.dropped != self._drops_seen:
                    self._note_drops()
                msg = from_aiomqtt(m, gen)
                self._consumed_unacked += msg.ack.qos
                if self.screen(msg):
                    yield msg
        except aiomqtt.MqttError as exc:
            raise BrokerError(str(exc)) from exc

    def screen(self, msg: InMessage) -> bool:
        """False for what is ours to consume here: the broker's drop counter, our echoed dead letters."""
        if msg.topic == BROKER_DROPPED_TOPIC:
            with contextlib.suppress(ValueError):
                self._metrics.broker_dropped.set(float(msg.payload.decode()))
            return False
        if msg.topic.startswith(DLQ_PREFIX):
            self.ack([msg.ack])  # our own dead letters, echoed back by ioc/v1/#
            return False
        return True

    def ack(self, handles: Iterable[AckHandle]) -> int:
        """Acknowledge messages (in the order given); returns how many were sent."""
        mids = self._current_mids(handles)
        for mid in mids:
            self._paho.ack(mid, 1)
        self._consumed_unacked -= len(mids)
        if self._overflowed and self._consumed_unacked == 0 and len(self._client.messages) == 0:
            self._renew()
        return len(mids)

    def _note_drops(self) -> None:
        new = self._drops.dropped - self._drops_seen
        self._drops_seen = self._drops.dropped
        self._metrics.dropped.inc(new)
        if not self._overflowed:
            log.error(
                "client queue full (the broker exceeded Receive Maximum): messages discarded unacknowledged;"
                " the connection is renewed, to have them again, once what it delivered is acknowledged"
            )
        self._overflowed = True

    def _renew(self) -> None:
        """End the connection (the service reconnects and the broker redelivers what was discarded)."""
        self._overflowed = False
        log.warning("renewing the broker connection to receive the discarded messages again")
        self._paho.disconnect()

    def _current_mids(self, handles: Iterable[AckHandle]) -> list[int]:
        """The QoS 1 message ids of this connection; older generations are counted as skipped."""
        mids = []
        skipped = 0
        gen = self.generation
        for h in handles:
            if h.qos == 0:
                continue
            if h.generation != gen:
                skipped += 1
                continue
            mids.append(h.mid)
        if skipped:
            self._metrics.ack_skipped.inc(skipped)
        return mids

    async def publish(self, topic: str, payload: bytes) -> None:
        """Publish with QoS 1 and wait for the broker's PUBACK."""
        try:
            await self._client.publish(topic, payload, qos=1, timeout=30)
        except aiomqtt.MqttError as exc:
            raise BrokerError(str(exc)) from exc
