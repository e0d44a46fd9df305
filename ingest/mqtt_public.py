"""The public MQTT path: aiomqtt's public API, with paho's manual acknowledgements.

aiomqtt 2.x acknowledges on arrival; we switch its paho client to manual ack (``manual_ack_set``)
and send each PUBACK (paho's public ``ack``) only after the message's readings are stored or
dead-lettered. aiomqtt exposes its paho client only as ``Client._client``, the one handle this
module takes (aiomqtt issue #345 documents it as the way to manual acks until aiomqtt has its own).

What keeps the promise:

* **Receive Maximum** in CONNECT: the broker should not have more unacknowledged QoS 1 messages in
  flight to us than that, and aiomqtt's incoming queue is sized above it (headroom for QoS 0).
* The broker may still exceed it (Mosquitto 2.0.11 does after a long stall, see
  docs/reliability.md). aiomqtt then discards the message; we count PUBLISH packets as paho hands
  them over (its public ``on_message``) against what we take, so every discard is counted
  (``ioc_ingest_messages_dropped``). A discarded message was never acknowledged, so the broker
  sends it again on the next connection: after the first discard we take at most one more
  queue's worth (what is already queued), then nothing, and once what we took is acknowledged the
  connection ends and the service reconnects. Every connection so makes progress, and a discarded
  message waits at most that long. Bounded, counted, redelivered — never lost.
* On a resumed session (CONNACK's session-present flag, through paho's public ``on_connect``) the
  broker may send the session's backlog ahead of the SUBACK, so we subscribe without waiting for
  it and consume meanwhile; a refused or failed subscription still ends the connection.
* A PUBACK is only valid on the connection that received the message: every handle carries the
  connection's generation, and acks for an older one are skipped (the broker redelivers those;
  a redelivered reading overwrites itself in InfluxDB).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
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
KEEPALIVE_S = 30
"""MQTT keep-alive: a PINGREQ after this long without sending, or the broker drops the connection."""


def tls_parameters(settings: IngestSettings) -> aiomqtt.TLSParameters | None:
    """TLS for an ``mqtts://`` broker (None: plaintext): the broker's certificate is verified, against
    ``mqtt_ca_file`` or else the system's CAs, and its host name checked; ``mqtt_cert_file`` and
    ``mqtt_key_file`` are our client certificate for mutual TLS."""
    if not settings.mqtt_tls:
        return None

    def path(p: Path | None) -> str | None:
        return None if p is None else str(p)

    return aiomqtt.TLSParameters(
        ca_certs=path(settings.mqtt_ca_file),
        certfile=path(settings.mqtt_cert_file),
        keyfile=path(settings.mqtt_key_file),
        cert_reqs=ssl.CERT_REQUIRED,
    )


def from_aiomqtt(m: aiomqtt.Message, generation: int) -> InMessage:
    """aiomqtt's message as ours, at the edge."""
    payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
    return InMessage(m.topic.value, payload, bool(m.retain), AckHandle(generation, m.mid, m.qos))


class PublicBroker:
    """One connection to the broker, through public APIs only (see the module docstring)."""

    PATH = "public"

    def __init__(
        self,
        settings: IngestSettings,
        metrics: IngestMetrics,
        generation: int,
        topics: tuple[str, ...] = (SUBSCRIPTION,),
    ) -> None:
        self._settings = settings
        self._topics = topics
        self._metrics = metrics
        self.generation = generation
        # A logger of this connection's own (not registered: nothing to clean up), at WARNING so
        # paho's per-packet debug lines stay off; its records go on to this module's logger.
        self._logger = logging.Logger(f"{__name__}.aiomqtt", logging.WARNING)
        self._logger.parent = log
        self._client = self._make_client()
        self._paho: paho.Client = self._client._client
        self._paho.manual_ack_set(True)
        self._consumed_unacked = 0
        self._arrived = 0  # PUBLISH packets paho handed to aiomqtt (the public path's)
        self._taken = 0  # messages taken from aiomqtt's queue
        self._discarded = 0
        self._overflowed = False
        self._overflow_budget = 0
        self._renewal = asyncio.Event()
        self._session_present = False
        self._subscribing: asyncio.Task[None] | None = None
        metrics.unacked.set_function(self.unacked)
        self._wrap_paho_callbacks()

    def _wrap_paho_callbacks(self) -> None:
        """Note CONNACK's session-present flag and count arrivals, then call aiomqtt's own callbacks."""
        on_connect, on_message = self._paho.on_connect, self._paho.on_message
        assert on_connect is not None
        assert on_message is not None

        def connected(client: paho.Client, userdata: Any, flags: Any, *rest: Any) -> None:
            self._session_present = bool(flags.session_present)
            on_connect(client, userdata, flags, *rest)

        def arrived(client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
            self._arrived += 1
            on_message(client, userdata, message)

        self._paho.on_connect = connected
        self._paho.on_message = arrived

    def _make_client(self) -> aiomqtt.Client:
        return aiomqtt.Client(**self._client_options())

    def _client_options(self) -> dict[str, Any]:
        """aiomqtt's options: our persistent session, Receive Maximum, the queue sized above it, and TLS."""
        s = self._settings
        host, port = s.mqtt_host_port
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = s.mqtt_session_expiry_s
        props.ReceiveMaximum = s.mqtt_receive_maximum
        return {
            "tls_params": tls_parameters(s),
            "hostname": host,
            "port": port,
            "identifier": s.mqtt_client_id,
            "username": s.mqtt_username,
            "password": s.mqtt_password.get_secret_value() if s.mqtt_password else None,
            "protocol": aiomqtt.ProtocolVersion.V5,
            "clean_start": False,
            "properties": props,
            "keepalive": KEEPALIVE_S,
            "max_queued_incoming_messages": s.mqtt_receive_maximum + QUEUE_HEADROOM,
            "logger": self._logger,
        }

    def waiting(self) -> int:
        """Messages in aiomqtt's queue, not yet taken (one is taken per event-loop turn)."""
        return len(self._client.messages)

    def unacked(self) -> int:
        """Messages taken from the broker and not yet acknowledged (QoS 1), plus those still queued."""
        return self._consumed_unacked + len(self._client.messages)

    async def __aenter__(self) -> PublicBroker:
        try:
            await self._client.__aenter__()
            if self._session_present:
                # The broker may be sending our session's backlog ahead of the SUBACK: consume it
                # meanwhile (the subscriptions most likely stand) and check the SUBACK when it comes.
                self._subscribing = asyncio.create_task(self._subscribe(math.inf), name="mqtt-subscribe")
            else:
                await self._subscribe(None)
        except aiomqtt.MqttError as exc:
            raise BrokerError(str(exc)) from exc
        return self

    async def _subscribe(self, suback_wait_s: float | None) -> None:
        group = self._settings.mqtt_shared_group
        topics = [(f"$share/{group}/{t}" if group else t, 1) for t in self._topics]
        for name, qos in (*topics, (BROKER_DROPPED_TOPIC, 0)):
            granted = await self._client.subscribe(name, qos=qos, timeout=suback_wait_s)
            refused = [code for code in granted if getattr(code, "is_failure", False)]
            if refused:
                raise BrokerError(f"the broker refused the subscription to {name}: {refused[0]}")

    def _check_subscription(self) -> None:
        task = self._subscribing
        if task is not None and task.done():
            self._subscribing = None
            exc = task.exception()
            if exc is not None:
                raise BrokerError(f"subscribing failed: {exc}") from exc

    async def __aexit__(self, *exc: object) -> None:
        if self._subscribing is not None:
            self._subscribing.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError, BrokerError):
                await self._subscribing
        try:
            await self._client.__aexit__(None, None, None)
        except aiomqtt.MqttError as err:
            log.debug("disconnect: %s", err)

    async def messages(self) -> AsyncIterator[InMessage]:
        """Device messages, in arrival order; ends with :class:`BrokerError` on disconnect."""
        gen = self.generation
        queue = self._client.messages
        try:
            async for m in queue:
                self._taken += 1
                if self._subscribing is not None:
                    self._check_subscription()
                if self._arrived - self._taken - len(queue) > self._discarded:
                    self._note_drops(self._arrived - self._taken - len(queue))
                if self._overflowed:
                    self._overflow_budget -= 1
                    if self._overflow_budget < 0 or len(queue) == 0:  # ``m`` comes again next connection
                        await self._renewed()
                msg = from_aiomqtt(m, gen)
                self._consumed_unacked += msg.ack.qos
                if self.screen(msg):
                    yield msg
        except aiomqtt.MqttError as exc:
            raise BrokerError(str(exc)) from exc

    def _note_drops(self, dropped: int) -> None:
        self._metrics.dropped.inc(dropped - self._discarded)
        self._discarded = dropped
        if not self._overflowed:
            log.error(
                "client queue full (the broker exceeded Receive Maximum): messages discarded unacknowledged;"
                " the connection is renewed, to have them again, once what it delivered is acknowledged"
            )
            # Take what is already queued (at most a queue's worth), so every connection makes progress.
            self._overflow_budget = self._settings.mqtt_receive_maximum + QUEUE_HEADROOM
        self._overflowed = True

    async def _renewed(self) -> None:
        """Take nothing more; once what was taken is acknowledged, end the connection so the broker
        sends the discarded messages again (the service reconnects)."""
        if self._consumed_unacked > 0:
            while not self._renewal.is_set() and self._paho.is_connected():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._renewal.wait(), 1.0)
        log.warning("renewing the broker connection to receive the discarded messages again")
        raise BrokerError("connection renewed after the client queue overflowed")

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
        if self._overflowed and self._consumed_unacked <= 0:
            self._renewal.set()
        return len(mids)

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
