"""Session-level attacks by a device with valid credentials, against the compose broker config.

Mosquitto runs ``deploy/mosquitto/mosquitto.conf`` — the dynamic security plugin, TLS — with the
accounts compose's init jobs create (``start_compose_broker`` in ``tests/unit/test_compose.py``);
every client connects over TLS, trusting the compose CA. Ingest runs for real with the
``ioc-ingest`` account and writes to a real InfluxDB. The attacker is one device of the fleet
(``bt-sal-2``) with its own password. What the broker does in each case is written down in
``deploy/mosquitto/README.md``.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from contract.topics import DLQ_PREFIX, SUBSCRIPTION, device_topic
from ioc.servers import InfluxServer, ServerProcess
from simulators.config import SimulateSettings
from simulators.publisher import FleetPublisher
from tests.helpers import IngestThread, ingest_settings
from tests.integration.test_pipeline import small_fleet, telemetry
from tests.integration.test_reliability import distinct_seqs, readings
from tests.unit.test_compose import DEVICE_SECRET, MOSQUITTO_CONF_PATH, ComposeBroker, fleet_path, start_compose_broker

INGEST = "ioc-ingest"
OPERATOR = "ioc-operator"
"""The read-only account people watch the stream with."""
DEVICE = "bt-sal-1"
"""The honest device whose readings stream."""
ATTACKER = "bt-sal-2"
"""A device of the same fleet, with its own valid password."""
NOT_AUTHORIZED = 0x87
NO_SUBSCRIBERS = 0x10
"""PUBACK: accepted (and kept if retained), nobody subscribed."""


@dataclass
class Broker:
    server: ServerProcess
    passwords: dict[str, str]
    ca_file: Path | None = None
    """Set: clients connect over TLS to the server's ``tls_port``, trusting this CA (the compose
    broker). None: plaintext to its ``port``."""
    compose: ComposeBroker | None = None
    """The compose broker's init-job view (its admin API), when it is one."""

    @property
    def port(self) -> int:
        if self.ca_file is not None:
            assert self.server.tls_port is not None
            return self.server.tls_port
        return self.server.port

    @property
    def mqtt_url(self) -> str:
        return f"{'mqtts' if self.ca_file is not None else 'mqtt'}://127.0.0.1:{self.port}"

    @classmethod
    def from_compose(cls, broker: ComposeBroker) -> Broker:
        return cls(broker.server, broker.passwords, broker.ca_file, broker)

    def final_log(self) -> str:
        """Stop the broker and return its log (Mosquitto buffers its stdout until it exits)."""
        self.server.stop()
        return self.server.log_path.read_text(errors="replace")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """The compose broker config, with the test fleet's device accounts."""
    started = start_compose_broker(tmp_path, fleet=small_fleet())
    yield Broker.from_compose(started)
    started.stop()


class Device:
    """A paho MQTT v5 client logged in with one account (any client id, clean start, will)."""

    def __init__(
        self,
        broker: Broker,
        user: str,
        *,
        client_id: str | None = None,
        clean_start: bool = True,
        will_topic: str | None = None,
    ) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.acks: dict[int, int] = {}
        self.connack: Any = None
        self.session_present: bool | None = None
        self._cond = threading.Condition()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id or user, protocol=MQTTProtocolVersion.MQTTv5
        )
        if broker.ca_file is not None:
            self.client.tls_set(ca_certs=str(broker.ca_file))
        self.client.username_pw_set(user, broker.passwords[user])
        if will_topic is not None:
            self.client.will_set(will_topic, b'{"state": "offline"}', qos=1, retain=True)
        self.client.max_inflight_messages_set(100)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.suback: list[int] | None = None
        self.client.connect("127.0.0.1", broker.port, clean_start=clean_start)
        self.client.loop_start()
        self._wait(lambda: self.connack is not None, "CONNACK")

    def _wait(self, predicate: Any, what: str, timeout: float = 10) -> None:
        with self._cond:
            assert self._cond.wait_for(predicate, timeout), f"no {what}"

    def _on_connect(self, _c: Any, _u: Any, flags: Any, rc: Any, _p: Any) -> None:
        with self._cond:
            self.connack, self.session_present = rc, flags.session_present
            self._cond.notify_all()

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        with self._cond:
            self.acks[mid] = int(rc.value)
            self._cond.notify_all()

    def _on_subscribe(self, _c: Any, _u: Any, _mid: int, rcs: Any, _p: Any) -> None:
        with self._cond:
            self.suback = [int(rc.value) for rc in rcs]
            self._cond.notify_all()

    def _on_message(self, _c: Any, _u: Any, m: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((m.topic, bytes(m.payload), bool(m.retain)))
            self._cond.notify_all()

    def publish_all(self, items: list[tuple[str, bytes]], *, retain: bool = False) -> list[int]:
        """Publish at QoS 1 and wait for every PUBACK; their reason codes."""
        infos = [self.client.publish(t, p, qos=1, retain=retain) for t, p in items]
        self._wait(lambda: all(i.mid in self.acks for i in infos), "PUBACK", timeout=60)
        return [self.acks[i.mid] for i in infos]

    def subscribe(self, topic: str) -> list[int]:
        """Subscribe at QoS 1; the SUBACK reason codes."""
        self.suback = None
        self.client.subscribe(topic, qos=1)
        self._wait(lambda: self.suback is not None, "SUBACK")
        assert self.suback is not None
        return self.suback

    def wait_for(self, topic: str, timeout: float = 10) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: any(t == topic for t, _, _ in self.messages), timeout)

    def vanish(self) -> None:
        """Drop the connection without DISCONNECT, as a device that loses power (the will fires)."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def ingest_thread(broker: Broker, influxd: InfluxServer, db: str, **overrides: Any) -> IngestThread:
    tls = {"mqtt_url": broker.mqtt_url, "mqtt_ca_file": broker.ca_file} if broker.ca_file is not None else {}
    settings = ingest_settings(
        broker.port,
        influxd.url,
        db,
        **tls,
        mqtt_client_id=INGEST,
        mqtt_username=INGEST,
        mqtt_password=broker.passwords[INGEST],
        **overrides,
    )
    return IngestThread(settings, small_fleet())


class Stream:
    """The honest device publishes ``n`` readings (seq 0..n-1) from a thread."""

    def __init__(self, broker: Broker, n: int) -> None:
        self.codes: list[int] = []
        self._thread = threading.Thread(target=self._run, args=(broker, n))
        self._thread.start()

    def _run(self, broker: Broker, n: int) -> None:
        device = Device(broker, DEVICE)
        try:
            self.codes = device.publish_all(readings(DEVICE, 0, n))
        finally:
            device.close()

    def join(self) -> set[int]:
        """Wait until every reading is acknowledged; the PUBACK reason codes seen."""
        self._thread.join()
        return set(self.codes)


def take_over(broker: Broker, times: int) -> list[Device]:
    """The attacker logs in ``times`` with its own password, ingest's client id, clean start off."""
    attempts = []
    for _ in range(times):
        attacker = Device(broker, ATTACKER, client_id=INGEST, clean_start=False)
        time.sleep(0.3)
        attacker.close()
        attempts.append(attacker)
        time.sleep(0.2)
    return attempts


TAKEN_OVER = re.compile(rf"Client {INGEST} already connected, closing old connection")


# --- the client-id takeover -----------------------------------------------------------------------


def test_a_device_with_ingests_client_id_gets_its_own_session_and_ingest_loses_nothing(
    broker: Broker, influxd: InfluxServer, influx_db: str
) -> None:
    """The compose config: the TLS listener makes the user name the client id before the plugin
    checks the account's bound id, so the device is let in under its own id."""
    n = 16_000
    with ingest_thread(broker, influxd, influx_db) as ingest:
        sender = Stream(broker, n)
        ingest.wait_for(lambda: ingest.metric("ioc_ingest_readings_stored_total") >= 500, what="streaming")
        attempts = take_over(broker, times=6)
        assert sender.join() == {0}, "every reading acknowledged, a subscriber always there"
        ingest.wait_for(lambda: ingest.metric("ioc_ingest_readings_stored_total") >= n, what="all stored")
        assert ingest.metric("ioc_ingest_broker_reconnects_total") == 0
        assert ingest.service.connected
    assert all(not a.connack.is_failure for a in attempts), "the device is let in, under its own id"
    assert attempts[0].session_present is False, "it did not get ingest's session"
    assert distinct_seqs(influxd.url, influx_db) == set(range(n))
    log = broker.final_log()
    assert not TAKEN_OVER.search(log), "ingest was thrown off"
    assert f"as {ATTACKER} (p5, c0, k60, u'{ATTACKER}')" in log


def _compose_broker_without_listener_binding(tmp_path: Path) -> tuple[Broker, ComposeBroker]:
    conf = MOSQUITTO_CONF_PATH.read_text()
    assert "use_username_as_clientid true" in conf
    started = start_compose_broker(
        tmp_path, fleet=small_fleet(), conf=conf.replace("use_username_as_clientid true", "")
    )
    return Broker.from_compose(started), started


def test_without_the_listener_option_the_plugin_refuses_a_device_with_ingests_client_id(
    influxd: InfluxServer, influx_db: str, tmp_path: Path
) -> None:
    """The second lock alone (as on ``ioc demo``'s broker): the plugin binds each account's client
    id, and a device sending ingest's is refused at CONNECT."""
    broker, started = _compose_broker_without_listener_binding(tmp_path)
    try:
        n = 4_000
        with ingest_thread(broker, influxd, influx_db) as ingest:
            sender = Stream(broker, n)
            ingest.wait_for(lambda: ingest.metric("ioc_ingest_readings_stored_total") >= 200, what="streaming")
            attempts = take_over(broker, times=4)
            assert sender.join() == {0}
            ingest.wait_for(lambda: ingest.metric("ioc_ingest_readings_stored_total") >= n, what="all stored")
            assert ingest.metric("ioc_ingest_broker_reconnects_total") == 0
        assert [str(a.connack) for a in attempts] == ["Not authorized"] * 4
        assert distinct_seqs(influxd.url, influx_db) == set(range(n))
        assert not TAKEN_OVER.search(broker.final_log())
    finally:
        started.stop()


def test_negative_control_an_unbound_account_throws_ingest_off(
    influxd: InfluxServer, influx_db: str, tmp_path: Path
) -> None:
    """Both locks off — no ``use_username_as_clientid``, and the attacker's account without a bound
    client id (``setClientId`` with none, as an account made by hand without ``-c``): the takeover
    works, so the two tests above can fail."""
    broker, started = _compose_broker_without_listener_binding(tmp_path)
    try:
        with started.admin() as accounts:
            accounts.run([{"command": "setClientId", "username": ATTACKER}])
        with ingest_thread(broker, influxd, influx_db) as ingest:
            sender = Stream(broker, 4_000)
            ingest.wait_for(lambda: ingest.metric("ioc_ingest_readings_stored_total") >= 200, what="streaming")
            take_over(broker, times=2)
            assert sender.join() <= {0, NO_SUBSCRIBERS}, "acknowledged (0x10: no subscriber at that moment)"
            ingest.wait_for(lambda: ingest.metric("ioc_ingest_broker_reconnects_total") >= 1, what="thrown off")
        log = broker.final_log()
        assert TAKEN_OVER.search(log)
        assert f"as {INGEST} (p5, c0, k60, u'{ATTACKER}')" in log, "the device got ingest's session"
    finally:
        started.stop()


def test_the_simulated_fleet_still_connects_and_is_stored(
    broker: Broker, influxd: InfluxServer, influx_db: str, tmp_path: Path
) -> None:
    """The simulators log in over TLS with user name = client id = device id and the password
    derived from the fleet secret, as broker-accounts derived it."""
    secret = tmp_path / "device_secret"
    secret.write_text(DEVICE_SECRET + "\n")
    settings = SimulateSettings(  # type: ignore[call-arg]
        _env_file=None,
        mqtt_url=broker.mqtt_url,
        mqtt_ca_file=broker.ca_file,
        fleet=fleet_path(tmp_path),  # written by start_compose_broker, imported by ioc-init
        device_secret_file=secret,
        readings=1_000,
        rate=2_000,
    )
    with ingest_thread(broker, influxd, influx_db) as ingest:
        stats = FleetPublisher(small_fleet(), settings).run()
        assert stats.readings_acked >= 1_000
        assert stats.statuses_acked == len(small_fleet().devices), "every device connected"
        stored = "ioc_ingest_readings_stored_total"
        ingest.wait_for(lambda: ingest.metric(stored) >= stats.readings_acked, what="all stored")
        assert ingest.metric("ioc_ingest_broker_reconnects_total") == 0


# --- shared subscriptions -------------------------------------------------------------------------


@pytest.mark.parametrize("shared_group", [None, secrets.token_hex(8)], ids=["no-group", "secret-group"])
def test_a_device_subscribing_in_a_shared_group_steals_nothing(
    broker: Broker, influxd: InfluxServer, influx_db: str, shared_group: str | None
) -> None:
    """The plugin refuses every subscription of a device (its role allows none)."""
    n = 3_000
    thief = Device(broker, ATTACKER)
    try:
        guesses = ["ingest", INGEST, "ioc", "workers"]
        for group in guesses:
            assert thief.subscribe(f"$share/{group}/{SUBSCRIPTION}") == [NOT_AUTHORIZED]
        assert thief.subscribe("#") == [NOT_AUTHORIZED]
        with ingest_thread(broker, influxd, influx_db, mqtt_shared_group=shared_group) as ingest:
            assert Stream(broker, n).join() == {0}
            ingest.wait_for(lambda: ingest.metric("ioc_ingest_readings_stored_total") >= n, what="all stored")
            assert ingest.metric("ioc_ingest_broker_reconnects_total") == 0
        assert thief.messages == []
    finally:
        thief.close()
    assert distinct_seqs(influxd.url, influx_db) == set(range(n))


def test_a_device_that_knows_the_shared_group_is_refused_and_the_group_loses_nothing(broker: Broker) -> None:
    """With ``acl_file`` (the config before), Mosquitto 2.0 granted this subscription, served the
    device its turn of the round robin, refused the delivery, and gave the message to no other
    member: every second message was lost. The plugin checks SUBSCRIBE: the device is refused
    (SUBACK 0x87), never joins the group, and the worker gets every message.

    The plugin matches the whole filter, ``$share/<group>/…``, against the role's patterns: ingest's
    role allows ``$share/+/ioc/v1/#`` (any group: only ingest accounts have that role)."""
    group = "known"
    worker = Device(broker, INGEST)
    thief = Device(broker, ATTACKER)
    publisher = Device(broker, DEVICE)
    try:
        assert worker.subscribe(f"$share/{group}/{SUBSCRIPTION}") == [1]
        assert thief.subscribe(f"$share/{group}/{SUBSCRIPTION}") == [NOT_AUTHORIZED]
        n = 40
        assert set(publisher.publish_all(readings(DEVICE, 0, n))) == {0}
        assert publisher.publish_all([(telemetry(DEVICE), b'{"last": true}')]) == [0]
        assert worker.wait_for(telemetry(DEVICE))
        time.sleep(1.0)
        received = [p for t, p, _ in worker.messages if t == telemetry(DEVICE)]
        assert thief.messages == []
        assert len(received) == n + 1, "nothing lost"
    finally:
        for client in (worker, thief, publisher):
            client.close()


# --- wills ----------------------------------------------------------------------------------------


def test_a_will_on_another_devices_topic_or_a_dead_letter_topic_is_not_delivered(broker: Broker) -> None:
    watcher = Device(broker, OPERATOR)
    try:
        assert watcher.subscribe(SUBSCRIPTION) == [1]
        foreign = device_topic("ben_tre", "salinity", DEVICE, "status")
        fake_dlq = f"{DLQ_PREFIX}/bad_json"
        for topic in (foreign, fake_dlq):
            attacker = Device(broker, ATTACKER, will_topic=topic)
            assert not attacker.connack.is_failure, "Mosquitto accepts the CONNECT; it checks the will later"
            attacker.vanish()
        own = device_topic("ben_tre", "salinity", ATTACKER, "status")
        control = Device(broker, ATTACKER, will_topic=own)
        control.vanish()
        assert watcher.wait_for(own), "the device's own will arrives: the broker did fire wills"
        assert [t for t, _, _ in watcher.messages] == [own]
    finally:
        watcher.close()
    fresh = Device(broker, OPERATOR)
    try:
        fresh.subscribe(SUBSCRIPTION)
        assert fresh.wait_for(own)
        assert {t for t, _, retained in fresh.messages if retained} == {own}, "no foreign will was retained"
    finally:
        fresh.close()


# --- retained status ------------------------------------------------------------------------------


def test_retained_status_on_another_device_is_refused_and_its_own_does_not_disturb_ingest(
    broker: Broker, influxd: InfluxServer, influx_db: str
) -> None:
    attacker = Device(broker, ATTACKER)
    foreign = device_topic("ben_tre", "salinity", DEVICE, "status")
    own = device_topic("ben_tre", "salinity", ATTACKER, "status")
    try:
        assert attacker.publish_all([(foreign, b'{"state": "offline"}')], retain=True) == [NOT_AUTHORIZED]
        assert attacker.publish_all([(own, b"{not json")], retain=True) == [NO_SUBSCRIBERS], "kept"
    finally:
        attacker.close()
    n = 2_000
    for _ in range(2):  # ingest restarts: the retained message comes again with every SUBSCRIBE
        with ingest_thread(broker, influxd, influx_db) as ingest:
            ingest.wait_for(lambda: ingest.metric("ioc_ingest_rejected_total", reason="bad_json") >= 1, what="dlq")
            assert Stream(broker, n).join() == {0}
            ingest.wait_for(lambda: ingest.metric("ioc_ingest_readings_stored_total") >= n, what="all stored")
            assert ingest.metric("ioc_ingest_broker_reconnects_total") == 0
            assert ingest.metric("ioc_ingest_messages_received_total", channel="status") == 1
    assert distinct_seqs(influxd.url, influx_db) == set(range(n))
    fresh = Device(broker, OPERATOR, client_id="watch")
    try:
        fresh.subscribe(f"ioc/v1/+/+/{DEVICE}/status")
        time.sleep(0.5)
        assert fresh.messages == [], "no retained status was planted on the other device"
    finally:
        fresh.close()
