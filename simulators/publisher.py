"""Publish a simulated fleet over MQTT with paho-mqtt: one connection per device or gateway, one thread.

In the native contract (``--format ioc_v1``) every device has its own MQTT v5 connection (client id
and user name = device id, its MQTT will setting its retained status offline), as a real fleet does
under per-device ACLs. In another format (:mod:`simulators.formats`) a device publishes over its
format's :class:`~simulators.formats.base.Link`: its own connection (SenML) or its gateway's, network
server's or edge node's, shared by the devices behind it (its will, births and commands are the
link's). All connections are driven from one thread with paho's external-loop API
(``loop_read``/``loop_write``/``loop_misc`` over a selector), so hundreds of devices cost no threads.

Counts are by broker acknowledgement (PUBACK): a reading is *published* when the broker took it
(a message carrying several readings counts them all; births, gateway connects and other control
messages count none); one the broker refused (an MQTT v5 PUBACK with a failure reason code: not authorised by its ACL,
say) is counted as *refused* instead.

With an ``mqtts://`` URL every connection is TLS: the broker's certificate is verified (against
``mqtt_ca_file`` or the system's CAs) and its host name checked; with ``mqtt_cert_file`` and
``mqtt_key_file`` each device presents a client certificate — its own when the paths contain
``{device_id}`` (``certs/{device_id}.crt``, as ``ioc devices issue-cert`` writes them).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import selectors
import ssl
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import msgspec
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from contract.fleet import Device, Fleet
from contract.topics import Channel, device_topic, mqtt_endpoint
from simulators.config import SimulateSettings
from simulators.malformed import malformed_message
from simulators.model import FleetModel, SimMessage

if TYPE_CHECKING:
    from simulators.formats.base import Link, Message

log = logging.getLogger(__name__)

BACKFILL_INTERVAL_S = 600.0
"""Sampling interval of the history published by ``--backfill-hours``."""


def device_password(secret: bytes, device_id: str) -> str:
    """A device's broker password: hex HMAC-SHA256 of its id under the fleet secret."""
    return hmac.new(secret, device_id.encode(), hashlib.sha256).hexdigest()


@dataclass
class PublishStats:
    """What the publisher sent and what the broker acknowledged."""

    messages_sent: int = 0
    readings_sent: int = 0
    messages_acked: int = 0
    readings_acked: int = 0
    statuses_acked: int = 0
    malformed_sent: int = 0
    malformed_acked: int = 0
    malformed_refused: int = 0
    """Malformed messages the broker itself refused (published under another device's id)."""
    malformed_by_reason: Counter[str] = field(default_factory=Counter)
    readings_refused: int = 0
    """Readings in messages the broker answered with a failure reason code (not authorised, say)."""
    messages_refused: int = 0
    devices_offline: int = 0
    wills: int = 0
    """Connections dropped with an MQTT will: messages the broker publishes for them (ingest receives each)."""
    started: float = field(default_factory=time.monotonic)

    def summary(self) -> dict[str, Any]:
        return {
            "published": self.readings_acked,
            "messages": self.messages_acked,
            "statuses": self.statuses_acked,
            "malformed": self.malformed_acked,
            "malformed_by_reason": dict(self.malformed_by_reason),
            "malformed_refused_by_broker": self.malformed_refused,
            "refused": self.readings_refused,
            "devices_offline": self.devices_offline,
            "seconds": round(time.monotonic() - self.started, 3),
        }


@dataclass
class _Conn:
    device: Device
    """The device (native), or the first of the link's."""
    client: paho.Client
    link: Link | None = None
    """The format's connection (a gateway's, an edge node's); None: a native device's own."""
    connected: bool = False
    offline: bool = False
    refused: bool = False
    """The broker refused one of its publishes (logged once)."""
    pending: dict[int, tuple[int, str]] = field(default_factory=dict)
    """mid → (readings in the message, what it was: reading/status/malformed)."""


class FleetPublisher:
    """Publishes a fleet's simulated messages; :meth:`run` blocks until done or stopped."""

    def __init__(
        self,
        fleet: Fleet,
        settings: SimulateSettings,
        *,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.fleet = fleet
        self.settings = settings
        self.stats = PublishStats()
        self.stop = stop or threading.Event()
        self._clock = clock
        self._model = FleetModel(fleet, seed=settings.seed, interval_s=BACKFILL_INTERVAL_S)
        self._rng = random.Random(settings.seed ^ 0x5EED)
        self._selector = selectors.DefaultSelector()
        self._conns: dict[str, _Conn] = {}
        """By client id."""
        self._by_device: dict[str, _Conn] = {}
        self._devices = fleet.by_id()
        self._gone: set[str] = set()
        """Devices of a shared link that went offline."""
        self._buffers: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._record: IO[bytes] | None = None
        self._secret = settings.device_secret_file.read_bytes().strip() if settings.device_secret_file else None
        self._shared_tls: ssl.SSLContext | None = None
        self._last_misc = 0.0
        self.live = False
        """True once the backfill is published and the fleet runs in real time."""

    @property
    def links(self) -> list[Link]:
        """The format links connected (gateways, edge nodes, network servers; none for ``ioc_v1``)."""
        return [c.link for c in self._conns.values() if c.link is not None]

    # -- connections -------------------------------------------------------------------------

    def _password(self, device_id: str) -> str | None:
        if self._secret is not None:
            return device_password(self._secret, device_id)
        if self.settings.device_password is not None:
            return self.settings.device_password.get_secret_value()
        return None

    def _tls_context(self, device_id: str) -> ssl.SSLContext:
        """The TLS settings of one device's connection: one shared context, or its own for ``{device_id}`` paths."""
        s = self.settings
        per_device = s.per_device_certs
        if self._shared_tls is not None and not per_device:
            return self._shared_tls
        context = ssl.create_default_context(cafile=str(s.mqtt_ca_file) if s.mqtt_ca_file else None)
        pair = s.client_cert(device_id)
        if pair is not None:
            try:
                context.load_cert_chain(*pair)
            except (OSError, ssl.SSLError) as exc:
                raise ConnectionError(
                    f"device {device_id}: cannot load its client certificate {pair[0]} and key {pair[1]} "
                    f"({getattr(exc, 'strerror', None) or exc}): check --mqtt-cert-file and --mqtt-key-file"
                ) from None
        if not per_device:
            self._shared_tls = context
        return context

    def _links(self) -> list[tuple[str, Sequence[Device], Link | None]]:
        """(client id, devices, link) of every connection: native devices' own, and their formats' links."""
        if self.settings.format == "ioc_v1":
            return [(d.id, (d,), None) for d in self.fleet.devices]
        from simulators.formats import connections

        try:
            return connections(self.fleet.devices, self.settings.format)
        except ValueError as exc:  # a device without the external id its format names it by
            raise ConnectionError(f"--format {self.settings.format}: {exc}") from None

    def _connect_all(self) -> None:
        endpoint = mqtt_endpoint(self.settings.mqtt_url)
        host, port = endpoint.host, endpoint.port
        for client_id, devices, link in self._links():
            device = devices[0]
            client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
            conn = _Conn(device, client, link)
            client.user_data_set(conn)
            client.username_pw_set(client_id, self._password(client_id))
            if link is None:
                will_topic = device_topic(device.province, device.kind, device.id, Channel.STATUS)
                client.will_set(will_topic, msgspec.json.encode(FleetModel.will_payload()), qos=1, retain=True)
            elif (will := link.will()) is not None:
                client.will_set(will.topic, will.payload, qos=1, retain=will.retain)
            client.max_inflight_messages_set(1000)
            client.on_connect = self._on_connect
            client.on_publish = self._on_publish
            client.on_message = self._on_message
            if endpoint.tls:
                client.tls_set_context(self._tls_context(client_id))
            try:
                client.connect(host, port, keepalive=60, clean_start=True)
            except ssl.SSLCertVerificationError as exc:
                why = str(exc.verify_message or exc.reason)
                fix = "--mqtt-url (IOC_MQTT_URL)" if "mismatch" in why.lower() else "--mqtt-ca-file (IOC_MQTT_CA_FILE)"
                raise ConnectionError(
                    f"the broker at {self.settings.mqtt_url} presents a certificate we do not accept ({why}): "
                    f"check {fix}"
                ) from None
            except ssl.SSLError as exc:
                raise ConnectionError(
                    f"TLS with the broker at {self.settings.mqtt_url} failed ({exc.reason or exc})"
                ) from None
            sock = client.socket()
            if sock is None:
                raise ConnectionError(f"{client_id}: no socket after connect")
            self._selector.register(sock, selectors.EVENT_READ, conn)
            self._conns[client_id] = conn
            for d in devices:
                self._by_device[d.id] = conn
        deadline = time.monotonic() + 30
        while not all(c.connected for c in self._conns.values()):
            if time.monotonic() > deadline:
                missing = [self._name(c) for c in self._conns.values() if not c.connected][:5]
                raise ConnectionError(f"devices not connected after 30 s (refused credentials?): {missing}")
            self._pump(0.05)

    @staticmethod
    def _name(conn: _Conn) -> str:
        return conn.device.id if conn.link is None else f"{conn.link.format} {conn.link.client_id}"

    def _on_connect(self, client: paho.Client, conn: _Conn, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            log.error("%s refused by the broker: %s", self._name(conn), rc)
            return
        conn.connected = True
        now_ms = int(self._clock() * 1000)
        if conn.link is None:
            status = self._model.online_status(conn.device, now_ms)
            self._send(conn, Channel.STATUS, msgspec.json.encode(status), 0, "status", retain=True)
            return
        for topic in conn.link.subscriptions():
            client.subscribe(topic, qos=1)
        self._send_all(conn, conn.link.start(now_ms, self._model.online_status))

    def _on_message(self, client: paho.Client, conn: _Conn, message: paho.MQTTMessage) -> None:
        """A command to a link (a Sparkplug rebirth request): its answer is published at once."""
        if conn.link is not None and not conn.offline:
            self._send_all(conn, conn.link.command(message.topic, bytes(message.payload), int(self._clock() * 1000)))

    def _on_publish(self, client: paho.Client, conn: _Conn, mid: int, rc: Any, props: Any) -> None:
        readings, what = conn.pending.pop(mid, (0, ""))
        s = self.stats
        s.messages_acked += 1
        if getattr(rc, "is_failure", False):
            s.messages_refused += 1
            s.readings_refused += readings
            if what not in ("reading", "status"):  # a malformed message on another id: refused, as it should be
                s.malformed_refused += 1
                return
            if not conn.refused:
                conn.refused = True
                log.warning("%s: the broker refused a publish (%s)", self._name(conn), rc)
            return
        if what == "reading":
            s.readings_acked += readings
        elif what == "status":
            s.statuses_acked += 1
        elif what and what != "control":
            s.malformed_acked += 1
            s.malformed_by_reason[what] += 1

    def _pump(self, timeout: float) -> None:
        for conn in self._conns.values():
            if conn.client.want_write():
                conn.client.loop_write()
        for key, _ in self._selector.select(timeout):
            conn = key.data
            conn.client.loop_read()
        now = time.monotonic()
        if now - self._last_misc > 1.0:
            self._last_misc = now
            for conn in self._conns.values():
                conn.client.loop_misc()

    # -- sending -----------------------------------------------------------------------------

    def _send(
        self,
        conn: _Conn,
        channel: Channel,
        payload: bytes,
        readings: int,
        what: str,
        *,
        retain: bool = False,
        topic: str | None = None,
    ) -> None:
        d = conn.device
        topic = topic or device_topic(d.province, d.kind, d.id, channel)
        info = conn.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS and info.rc != paho.MQTT_ERR_NO_CONN:
            raise ConnectionError(f"publish on {topic} failed: {paho.error_string(info.rc)}")
        conn.pending[info.mid] = (readings, what)
        self.stats.messages_sent += 1
        if what == "reading":
            self.stats.readings_sent += readings

    def _send_all(self, conn: _Conn, messages: list[Message]) -> None:
        """Publish a link's messages, recording the readings each carries as ingest must store them."""
        for m in messages:
            if self._record is not None and conn.link is not None:
                for p in m.readings:
                    line = {"topic": m.topic, "device": p.device.id, "format": conn.link.format, "reading": p.reading}
                    self._record.write(msgspec.json.encode(line) + b"\n")
            self._send(conn, Channel.TELEMETRY, m.payload, len(m.readings), m.what, retain=m.retain, topic=m.topic)

    def _wait_outstanding(self, limit: int) -> None:
        while self.stats.messages_sent - self.stats.messages_acked > limit:
            self._pump(0.01)

    def _emit(self, msg: SimMessage, batch: int) -> None:
        """Queue one simulated message; publish the device's buffer when it holds ``batch``."""
        conn = self._by_device[msg.device.id]
        if conn.offline or msg.device.id in self._gone:
            return
        if msg.channel is Channel.STATUS:
            self._flush_device(conn, msg.device)
            if conn.link is not None:
                self._send_all(conn, conn.link.offline(msg.device, int(self._clock() * 1000)))
                if len(conn.link.devices) > 1:
                    self._gone.add(msg.device.id)
                    self.stats.devices_offline += 1
                    return
            self._go_offline(conn)
            return
        if conn.link is not None:
            buf = self._buffers[msg.device.id]
            buf.append(msg.reading)
            if len(buf) >= min(batch, conn.link.max_batch):
                self._flush_device(conn, msg.device)
            return
        if self.settings.malformed_share and self._rng.random() < self.settings.malformed_share:
            # Wall-clock time: "minutes ahead" must be ahead of the ingest clock, even in backfill.
            bad = malformed_message(self._rng, msg.device, int(self._clock() * 1000))
            self._send(conn, msg.channel, bad.payload, 0, bad.reason.value, topic=bad.topic)
            self.stats.malformed_sent += 1
            return
        if msg.channel is Channel.EVENT or batch == 1:
            self._publish_readings(conn, msg.channel, [msg.reading])
            return
        buf = self._buffers[msg.device.id]
        buf.append(msg.reading)
        if len(buf) >= batch:
            self._flush_device(conn, msg.device)

    def _publish_readings(self, conn: _Conn, channel: Channel, readings: list[dict[str, Any]]) -> None:
        if self._record is not None:
            d = conn.device
            topic = device_topic(d.province, d.kind, d.id, channel)
            for r in readings:
                line = {"topic": topic, "device": d.id, "format": "ioc_v1", "reading": r}
                self._record.write(msgspec.json.encode(line) + b"\n")
        payload = msgspec.json.encode(readings[0] if len(readings) == 1 else {"readings": readings})
        self._send(conn, channel, payload, len(readings), "reading")
        self._wait_outstanding(self.settings.max_outstanding)

    def _flush_device(self, conn: _Conn, device: Device) -> None:
        buf = self._buffers.pop(device.id, None)
        if not buf:
            return
        if conn.link is None:
            self._publish_readings(conn, Channel.TELEMETRY, buf)
            return
        self._send_all(conn, conn.link.readings(device, buf, int(self._clock() * 1000)))
        self._wait_outstanding(self.settings.max_outstanding)

    def _flush_all(self) -> None:
        for device_id in list(self._buffers):
            self._flush_device(self._by_device[device_id], self._devices[device_id])

    def _go_offline(self, conn: _Conn) -> None:
        """Drop the connection so that the broker publishes the device's will."""
        conn.offline = True
        self.stats.devices_offline += 1
        if conn.link is None or conn.link.will() is not None:
            self.stats.wills += 1
        self._wait_for_acks_of(conn)
        rc = ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message")
        sock = conn.client.socket()
        conn.client.disconnect(reasoncode=rc)
        if sock is not None:
            self._selector.unregister(sock)

    def _wait_for_acks_of(self, conn: _Conn, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while conn.pending and time.monotonic() < deadline:
            self._pump(0.01)

    # -- the run -----------------------------------------------------------------------------

    def _limit_reached(self) -> bool:
        limit = self.settings.readings
        return limit is not None and self.stats.readings_sent >= limit

    def _publish_window(self, t0_ms: int, t1_ms: int, batch: int) -> None:
        limit = self.settings.readings
        for msg in self._model.between(t0_ms, t1_ms):
            if self.stop.is_set():
                return
            queued = self.stats.readings_sent + sum(map(len, self._buffers.values()))
            if limit is not None and queued >= limit and msg.channel is not Channel.STATUS:
                self._flush_all()
                return
            self._emit(msg, batch)

    def run(self) -> PublishStats:
        """Connect the fleet, publish the backfill, then live; wait for every ack; disconnect."""
        s = self.settings
        self._record = s.record.open("wb") if s.record else None
        try:
            self._connect_all()
            now_ms = int(self._clock() * 1000)
            if s.backfill_hours > 0:
                self._publish_window(now_ms - int(s.backfill_hours * 3_600_000), now_ms, s.backfill_batch)
                self._flush_all()
            self._run_live(now_ms)
            self._flush_all()
            self._wait_outstanding(0)
        finally:
            self._close()
        return self.stats

    def _run_live(self, start_ms: int) -> None:
        s = self.settings
        if s.rate:
            self._model.interval_s = max(0.001, len(self.fleet.devices) / s.rate)
        else:
            self._model.interval_s = s.interval_s
        tick_ms = 200
        t = start_ms
        self.live = True
        started = time.monotonic()
        while not self.stop.is_set() and not self._limit_reached():
            if s.duration is not None and time.monotonic() - started >= s.duration:
                return
            wall_ms = int(self._clock() * 1000)
            if wall_ms < t + tick_ms:
                self._pump(min(0.05, (t + tick_ms - wall_ms) / 1000))
                continue
            self._publish_window(t, t + tick_ms, s.gateway_batch)
            t += tick_ms
            self._pump(0)

    def _close(self) -> None:
        now_ms = int(self._clock() * 1000)
        for conn in self._conns.values():
            if conn.link is not None and conn.connected and not conn.offline:
                self._send_all(conn, conn.link.stop(now_ms))
        deadline = time.monotonic() + 10
        while self.stats.messages_sent > self.stats.messages_acked and time.monotonic() < deadline:
            self._pump(0.01)
        for conn in self._conns.values():
            if not conn.offline:
                sock = conn.client.socket()
                conn.client.disconnect()
                if sock is not None:
                    self._selector.unregister(sock)
        self._selector.close()
        if self._record is not None:
            self._record.close()
