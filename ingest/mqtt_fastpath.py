"""The MQTT fast path: the public path's connection with paho's packet reader replaced on our client.

Receiving is the hot path, and paho's own reader costs more than everything else ingest does per
message (three ``recv`` calls and one event-loop turn per packet, an MQTT v5 ``Properties`` object
and two message objects per PUBLISH, one packet and one wake-up per PUBACK). :class:`_FastPath`
replaces three of paho's steps on our client only, without changing what goes over the wire:
socket reads are buffered (one ``recv`` of up to 256 KiB) and packets are cut from that buffer by
our own framing (the fixed header's type and remaining length), all of them in one event-loop
turn; a QoS 0/1 PUBLISH without properties becomes an :class:`InMessage` directly, any other packet
goes to paho's own handler (and a PUBLISH with properties on through aiomqtt); the PUBACKs of a
batch leave as one write.

It also enforces the in-flight bound itself: it stops reading from the socket while the messages
queued in aiomqtt's queue and those taken from it but not yet acknowledged reach Receive Maximum
(or the queue is full), rather than let paho hand it messages it would have to hold or drop.
Receive Maximum alone is not enough: Mosquitto 2.0.11 sends past it (under overload, 100,000
messages in flight against a Receive Maximum of 20,000: 1 KB of memory each).

Over TLS (``mqtts://``, :func:`ingest.mqtt_public.tls_parameters`) it is the same code: paho's
``_sock_recv`` reads the TLS socket, and a read of 256 KiB takes all of one TLS record's plaintext,
so none is left inside the TLS object (``pending()``), where no readiness event would announce it
(``_read_later`` drains it anyway after a pause, and aiomqtt's reader callback loops on it).
tests/integration/test_tls.py stores a simulated fleet over TLS on this path and makes it pause.

It stands on private attributes of aiomqtt (``_queue``, ``_client``, ``_loop``, ``_disconnected``)
and paho (``_sock``, ``_sock_recv``, ``_packet_read``, ``_packet_handle``, ``_in_packet``,
``_handle_publish``, ``_loop_rc_handle``, ``_packet_queue``, ``_protocol``, ``_msgtime_mutex``,
``_last_bytes_received``, ``_out_messages``). This module therefore refuses to import
(:class:`FastPathUnavailable`) under any version but those it was written and tested against, and
:func:`ingest.broker.broker_factory` falls back to :mod:`ingest.mqtt_public`.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterable
from importlib.metadata import version
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.exception import MalformedPacket
from paho.mqtt.packettypes import PacketTypes

from contract.topics import SUBSCRIPTION
from ingest.broker import AckHandle, BrokerError, InMessage
from ingest.config import IngestSettings
from ingest.metrics import IngestMetrics
from ingest.mqtt_public import PublicBroker, from_aiomqtt

log = logging.getLogger(__name__)

WRITTEN_FOR = {"aiomqtt": ("2.5.1",), "paho-mqtt": ("2.1.0", "2.2.0")}
"""The exact versions whose internals this module was written against and tested with."""


class FastPathUnavailable(ImportError):
    """The installed aiomqtt or paho-mqtt is not a version the fast path was written for."""


def check_versions(installed: dict[str, str] | None = None) -> None:
    """Raise :class:`FastPathUnavailable` unless every installed version is one of :data:`WRITTEN_FOR`."""
    for dist, known in WRITTEN_FOR.items():
        have = (installed or {}).get(dist) or version(dist)
        if have not in known:
            raise FastPathUnavailable(f"written for {dist} {' or '.join(known)}, found {have}")


check_versions()


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
_PUBLISH = PacketTypes.PUBLISH << 4
_READ_CHUNK = 262_144
_PACKETS_PER_TURN = 5_000
"""Packets handled in one event-loop turn before the writer and the sealer get to run."""
_NEVER = 1 << 62
"""A queue size never reached: no pause while closing."""
CONFIRM_WAIT_S = 10.0
"""How long a closing connection waits for the PUBACKs of its publishes."""


class _FastPath:
    """Buffered reads, direct :class:`InMessage` for plain PUBLISH packets, batched PUBACKs, read pause."""

    def __init__(
        self, client: aiomqtt.Client, generation: int, on_drop: Any, *, limit: int, unacked: Callable[[], int]
    ) -> None:
        self._client = client
        self._paho: paho.Client = client._client
        self._generation = generation
        self._on_drop = on_drop
        self._v5 = self._paho._protocol == paho.MQTTv5
        self._buffer = b""
        self._pos = 0
        self._high_water = client._queue.maxsize - 1
        self._limit = limit
        """Messages in flight at most: queued, or taken and not yet acknowledged (Receive Maximum)."""
        self._unacked = unacked
        """Messages taken from the queue and not yet acknowledged."""
        self.paused = False
        self.closing = False
        """Set by :meth:`read_to_close`: PUBLISH packets are read and dropped unacknowledged (the broker
        sends them again next session), never queued."""
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
        """Cut whole packets from the read buffer (reading the socket when it runs short) and handle
        up to :data:`_PACKETS_PER_TURN`: a plain PUBLISH here, any other packet by paho's handler."""
        p = self._paho
        if p._in_packet["command"]:  # a packet paho began reading itself (before we took over)
            rc = p._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        queue = self._client._queue
        high_water = min(self._high_water, self._limit - self._unacked())  # none are acked meanwhile
        take = self._take
        if self.closing:  # read everything, take nothing: the broker's replies are what is wanted
            high_water, take = _NEVER, self._leave
        buf, pos = self._buffer, self._pos
        try:
            for _ in range(_PACKETS_PER_TURN):
                if p._sock is None:
                    return MQTTErrorCode.MQTT_ERR_NO_CONN
                if queue.qsize() >= high_water:
                    self._pause()
                    return MQTTErrorCode.MQTT_ERR_SUCCESS
                end = len(buf)
                i = pos + 1  # the remaining length: 1 to 4 bytes, 7 bits each, low first
                length = shift = 0
                while i < end:
                    byte = buf[i]
                    i += 1
                    length |= (byte & 0x7F) << shift
                    if byte < 0x80:
                        break
                    shift += 7
                    if shift > 21:
                        return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_PROTOCOL)
                else:
                    i = end + 1  # the header is not complete yet
                if i + length > end:
                    try:
                        more = self._sock_recv(_READ_CHUNK)
                    except BlockingIOError:
                        return MQTTErrorCode.MQTT_ERR_SUCCESS
                    except OSError:
                        return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
                    if not more:
                        return self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
                    buf = buf[pos:] + more if pos < end else more
                    pos = 0
                    with p._msgtime_mutex:
                        p._last_bytes_received = time.monotonic()
                    continue
                command = buf[pos]
                data = buf[i : i + length]
                pos = i + length
                if command & 0xF0 == _PUBLISH and take(command, data):
                    continue
                rc = self._paho_handles(command, data)
                if rc > 0:
                    return self._loop_rc_handle(rc)
            if pos < len(buf):  # the socket may not wake us again for bytes we already hold
                self._client._loop.call_soon(self._read_later)
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        finally:
            self._buffer, self._pos = buf, pos

    def _paho_handles(self, command: int, data: bytes) -> MQTTErrorCode:
        """A whole packet that is not a plain PUBLISH, by paho's own handler, as its reader would."""
        p = self._paho
        p._in_packet = {
            "command": command, "have_remaining": 1, "remaining_count": [], "remaining_mult": 1,
            "remaining_length": len(data), "packet": bytearray(data), "to_process": 0, "pos": 0,
        }  # fmt: skip
        try:
            handle = self._handle_publish if command & 0xF0 == _PUBLISH else p._packet_handle
            return handle()
        except MalformedPacket:
            return MQTTErrorCode.MQTT_ERR_PROTOCOL
        finally:
            p._in_packet = {
                "command": 0, "have_remaining": 0, "remaining_count": [], "remaining_mult": 1,
                "remaining_length": 0, "packet": bytearray(b""), "to_process": 0, "pos": 0,
            }  # fmt: skip

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

    def read_to_close(self) -> None:
        """Read again, whatever is in flight, only for the broker's replies before disconnecting (the
        PUBACKs of our publishes): PUBLISH packets from now on are not taken and never acknowledged,
        so the broker sends them again on the next connection."""
        self.closing = True
        if self.paused:
            self._resume()

    @staticmethod
    def _leave(command: int, data: bytes | bytearray) -> bool:
        """A PUBLISH read while closing: not taken, never acknowledged, so delivered again next session."""
        return True

    def _pause(self) -> None:
        """Stop reading: unread bytes wait in the kernel and the broker (TCP backpressure)."""
        sock = self._paho._sock
        if not self.paused and sock is not None:
            self._client._loop.remove_reader(sock.fileno())
            self.paused = True
            # Under overload this is every few batches: debug, not a warning (the unacked gauge shows it).
            log.debug("%d messages in flight: reading from the broker paused", self._limit)

    def resume_if_drained(self) -> None:
        """Read again once the queue is down to half and what is in flight to 7/8 of the limit (called
        by the consumer, and by each acknowledgement while paused: an acknowledged batch makes room;
        taking a message from the queue does not, and must not resume reading for one packet)."""
        queued = self._client._queue.qsize()
        if queued > self._high_water // 2 or queued + self._unacked() > self._limit - self._limit // 8:
            return
        self._resume()
        log.debug("messages in flight down to 7/8 of the limit: reading from the broker again")

    def _resume(self) -> None:
        """Read from the socket again (and now: bytes may already be waiting)."""
        self.paused = False
        sock = self._paho._sock
        if sock is not None:
            self._client._loop.add_reader(sock.fileno(), self._read_later)
            self._client._loop.call_soon(self._read_later)

    def _publish(self) -> MQTTErrorCode:
        """paho's PUBLISH handler on our client, for a packet paho read itself."""
        packet = self._paho._in_packet
        take = self._leave if self.closing else self._take
        if take(packet["command"], packet["packet"]):
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return self._handle_publish()

    def _take(self, command: int, data: bytes | bytearray) -> bool:
        """A QoS 0/1 PUBLISH without properties, as an :class:`InMessage` into the queue (or counted
        as dropped); False: any other PUBLISH, for paho's handler."""
        qos = (command & 0x06) >> 1
        pos = 2 + ((data[0] << 8) | data[1])
        topic = data[2:pos]
        mid = 0
        if qos == 1:
            mid = (data[pos] << 8) | data[pos + 1]
            pos += 2
        elif qos != 0:
            return False
        if self._v5:
            if data[pos] != 0:  # properties (a topic alias, say): paho's way
                return False
            pos += 1
        try:
            topic_text = topic.decode()
        except UnicodeDecodeError:
            return False
        queue = self._client._queue
        if queue.full():
            self._on_drop(topic_text, qos)
            return True
        msg = InMessage(topic_text, bytes(data[pos:]), bool(command & 0x01), AckHandle(self._generation, mid, qos))
        queue.put_nowait(msg)  # type: ignore[arg-type]  # aiomqtt's queue; messages() takes both
        return True

    def ack(self, mids: list[int]) -> None:
        """Queue the PUBACKs of ``mids`` as one write (4 bytes each: success, no properties)."""
        if mids:
            blob = b"".join([_PUBACK.pack(0x40, 2, mid) for mid in mids])
            self._paho._packet_queue(PacketTypes.PUBACK << 4, blob, 0, 0)


class FastPathBroker(PublicBroker):
    """:class:`PublicBroker` with :class:`_FastPath` on its paho client."""

    PATH = "fast"

    def __init__(
        self,
        settings: IngestSettings,
        metrics: IngestMetrics,
        generation: int,
        topics: tuple[str, ...] = (SUBSCRIPTION,),
    ) -> None:
        super().__init__(settings, metrics, generation, topics)
        self._fast = _FastPath(
            self._client, generation, self._dropped, limit=settings.mqtt_receive_maximum,
            unacked=lambda: self._consumed_unacked,
        )  # fmt: skip
        self._paho.max_inflight_messages_set(0)  # every publish goes on the wire at once, in order

    def _make_client(self) -> _CountingClient:
        return _CountingClient(**self._client_options(), on_drop=self._dropped)

    async def publish(self, topic: str, payload: bytes) -> None:
        """Publish with QoS 1, on the wire ahead of every acknowledgement sent after this returns,
        without waiting for the broker's PUBACK.

        The broker takes a connection's packets in order, so a dead letter published before its
        message's PUBACK has reached the broker whenever that PUBACK has; if the connection drops
        first, the message is delivered again and refused again. (paho's in-flight limit is off, so it
        never holds a publish back while a later acknowledgement goes out.) Waiting for the PUBACK
        instead deadlocks: while reading pauses at Receive Maximum, acknowledgements would wait for
        dead letters whose PUBACKs wait, unread, behind the broker's PUBLISH packets (Mosquitto 2.0
        sends past Receive Maximum). :meth:`__aexit__` waits for those PUBACKs before disconnecting.
        """
        info = self._paho.publish(topic, payload, qos=1)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise BrokerError(f"could not publish on {topic}: {paho.error_string(info.rc)}")

    def unconfirmed(self) -> int:
        """Our publishes whose PUBACK has not been read yet (paho keeps each until then)."""
        return len(self._paho._out_messages)

    async def __aexit__(self, *exc: object) -> None:
        """Disconnect once the broker has confirmed our publishes (reading again for their PUBACKs),
        or after :data:`CONFIRM_WAIT_S`; closing with replies unread would reset the connection, and
        the broker could lose what we sent last."""
        try:
            if self.unconfirmed() and self._paho.is_connected():
                self._fast.read_to_close()
                deadline = time.monotonic() + CONFIRM_WAIT_S
                gone = self._client._disconnected
                while self.unconfirmed() and self._paho.is_connected() and not gone.done():
                    if time.monotonic() > deadline:
                        log.warning(
                            "disconnecting with %d publishes unconfirmed; a message whose dead letter the"
                            " broker lost is delivered again (its acknowledgement was sent after it)",
                            self.unconfirmed(),
                        )  # fmt: skip
                        break
                    await asyncio.sleep(0.01)
        finally:
            await super().__aexit__(*exc)

    def _dropped(self, topic: str, qos: int) -> None:
        self._metrics.dropped.inc()
        if qos > 0:  # cannot happen while reading pauses below the queue's size; never silent
            log.error("client queue full: QoS %d message on %s not acked, will be redelivered", qos, topic)

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
                if self._subscribing is not None:
                    self._check_subscription()
                # Ours from the fast path; a PUBLISH with properties came through paho and aiomqtt.
                msg = m if isinstance(m, InMessage) else from_aiomqtt(m, gen)
                self._consumed_unacked += msg.ack.qos
                if self.screen(msg):
                    yield msg
        except aiomqtt.MqttError as exc:
            raise BrokerError(str(exc)) from exc

    def waiting(self) -> int:
        """Messages queued, not yet taken (:meth:`messages` takes all of them in one turn)."""
        return self._client._queue.qsize()

    def ack(self, handles: Iterable[AckHandle]) -> int:
        """Acknowledge messages (in the order given) as one write; returns how many were sent."""
        mids = self._current_mids(handles)
        self._fast.ack(mids)
        self._consumed_unacked -= len(mids)
        if self._fast.paused:  # paused with nothing queued: only an acknowledgement can resume it
            self._fast.resume_if_drained()
        return len(mids)
