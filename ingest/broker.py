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

Receiving is the hot path, and paho's own reader costs more than everything else ingest does per
message (three ``recv`` calls and one event-loop turn per packet, an MQTT v5 ``Properties`` object
and two message objects per PUBLISH, one packet and one wake-up per PUBACK). :class:`_FastPath`
replaces three of paho's steps on our client only, without changing what goes over the wire:
socket reads are buffered (one ``recv`` of up to 256 KiB, then packets are cut from memory, all
of them in one event-loop turn); a QoS 0/1 PUBLISH without properties becomes an
:class:`InMessage` directly (anything else goes the usual way through paho and aiomqtt); the
PUBACKs of a batch leave as one write. It relies on paho-mqtt 2.1/2.2 internals, pinned in
``pyproject.toml`` and exercised by every integration test.

Only this module touches aiomqtt's and paho's objects; the rest of ingest sees :class:`InMessage`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
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
            self._on_drop(message.topic, message.qos)
            return
        super()._on_message(client, userdata, message)


_PUBACK = struct.Struct("!BBH")
_READ_CHUNK = 262_144
_PACKETS_PER_TURN = 5_000
"""Packets handled in one event-loop turn before the writer and the ticker get to run."""


class _FastPath:
    """Buffered reads, direct :class:`InMessage` for plain PUBLISH packets, batched PUBACKs.

    It also stops reading from the socket while aiomqtt's queue is full, rather than let paho hand
    it messages it would have to drop: Receive Maximum alone is not enough, as Mosquitto 2.0.11
    was seen to exceed it after a long outage (20,000 messages sent with 500 allowed in flight).
    """

    def __init__(self, client: _CountingClient, generation: int, on_drop: Any) -> None:
        self._client = client
        self._paho: paho.Client = client._client
        self._generation = generation
        self._on_drop = on_drop
        self._v5 = self._paho._protocol == paho.MQTTv5
        self._buffer = b""
        self._pos = 0
        self._high_water = client._queue.maxsize - 1
        self.paused = False
        self._sock_recv = self._paho._sock_recv
        self._handle_publish = self._paho._handle_publish
        self._loop_rc_handle = self._paho._loop_rc_handle
        self._paho._sock_recv = self._recv  # type: ignore[method-assign]
        self._paho._handle_publish = self._publish  # type: ignore[method-assign]
        self._paho.loop_read = self._loop_read  # type: ignore[method-assign]

    def _recv(self, bufsize: int) -> bytes:
        buf, pos = self._buffer, self._pos
        if pos >= len(buf):
            buf = self._buffer = self._sock_recv(_READ_CHUNK)  # BlockingIOError, b"" (closed): as before
            pos = 0
        end = pos + bufsize
        self._pos = end
        return buf[pos:end]

    def _loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        p = self._paho
        queue = self._client._queue
        for _ in range(_PACKETS_PER_TURN):
            if p._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            if queue.qsize() >= self._high_water:
                self._pause()
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            rc = p._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        if self._pos < len(self._buffer):  # the socket may not wake us again for bytes we already hold
            self._client._loop.call_soon(self._read_later)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _read_later(self) -> None:
        """A read outside paho's own socket callback; errors end the connection as aiomqtt's do."""
        try:
            while True:
                self._loop_read()
                pending = getattr(self._paho._sock, "pending", None)
                if not self.paused and pending is not None and pending() > 0:  # TLS-decrypted bytes
                    continue
                break
        except Exception as exc:
            if not self._client._disconnected.done():
                self._client._disconnected.set_exception(exc)

    def _pause(self) -> None:
        """Stop reading: unread bytes wait in the kernel and the broker (TCP backpressure)."""
        sock = self._paho._sock
        if not self.paused and sock is not None:
            self._client._loop.remove_reader(sock.fileno())
            self.paused = True
            log.warning("receive queue full (%d messages): reading from the broker paused", self._high_water)

    def resume_if_drained(self) -> None:
        """Read again once the queue is down to half (called by the consumer while paused)."""
        if self._client._queue.qsize() > self._high_water // 2:
            return
        self.paused = False
        sock = self._paho._sock
        if sock is not None:
            self._client._loop.add_reader(sock.fileno(), self._read_later)
            self._client._loop.call_soon(self._read_later)
        log.info("ingest's receive queue drained: reading from the broker again")

    def _publish(self) -> MQTTErrorCode:
        packet = self._paho._in_packet
        command: int = packet["command"]
        data: bytearray = packet["packet"]
        qos = (command & 0x06) >> 1
        pos = 2 + ((data[0] << 8) | data[1])
        topic = data[2:pos]
        mid = 0
        if qos == 1:
            mid = (data[pos] << 8) | data[pos + 1]
            pos += 2
        elif qos != 0:
            return self._handle_publish()
        if self._v5:
            if data[pos] != 0:  # properties (a topic alias, say): paho's way
                return self._handle_publish()
            pos += 1
        try:
            topic_text = topic.decode()
        except UnicodeDecodeError:
            return self._handle_publish()
        queue = self._client._queue
        if queue.full():
            self._on_drop(topic_text, qos)
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        payload = bytes(memoryview(data)[pos:])
        msg = InMessage(topic_text, payload, bool(command & 0x01), AckHandle(self._generation, mid, qos))
        queue.put_nowait(msg)  # type: ignore[arg-type]  # aiomqtt's queue; messages() takes both
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def ack(self, mids: list[int]) -> None:
        """Queue the PUBACKs of ``mids`` as one write (4 bytes each: success, no properties)."""
        if mids:
            blob = b"".join([_PUBACK.pack(0x40, 2, mid) for mid in mids])
            self._paho._packet_queue(PacketTypes.PUBACK << 4, blob, 0, 0)


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
        self._fast = _FastPath(self._client, generation, self._dropped)

    def _dropped(self, topic: str, qos: int) -> None:
        self._metrics.dropped.inc()
        if qos > 0:  # cannot happen while Receive Maximum < queue size; never silent
            log.error("client queue full: QoS %d message on %s not acked, will be redelivered", qos, topic)

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
        fast = self._fast
        try:
            while True:
                # Take what is already queued without a task per message; wait only when empty.
                try:
                    m = queue.get_nowait()
                except asyncio.QueueEmpty:
                    m = await anext(pending)
                if fast.paused:
                    fast.resume_if_drained()
                if isinstance(m, InMessage):  # the fast path
                    msg = m
                else:  # a PUBLISH with properties, through paho and aiomqtt
                    payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
                    msg = InMessage(m.topic.value, payload, bool(m.retain), AckHandle(gen, m.mid, m.qos))
                if msg.topic == BROKER_DROPPED_TOPIC:
                    self._record_broker_dropped(msg.payload)
                    continue
                if msg.topic.startswith(DLQ_PREFIX):
                    self.ack([msg.ack])  # our own dead letters, echoed back by ioc/v1/#
                    continue
                yield msg
        except aiomqtt.MqttError as exc:
            raise BrokerError(str(exc)) from exc

    def _record_broker_dropped(self, payload: bytes) -> None:
        with contextlib.suppress(ValueError):
            self._metrics.broker_dropped.set(float(payload.decode()))

    def ack(self, handles: Iterable[AckHandle]) -> int:
        """Acknowledge messages (in the order given); returns how many were sent."""
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
        self._fast.ack(mids)
        return len(mids)

    async def publish(self, topic: str, payload: bytes) -> None:
        """Publish with QoS 1 and wait for the broker's PUBACK."""
        try:
            await self._client.publish(topic, payload, qos=1, timeout=30)
        except aiomqtt.MqttError as exc:
            raise BrokerError(str(exc)) from exc
