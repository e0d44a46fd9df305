"""ThingsBoard's device and gateway APIs through a real Mosquitto and InfluxDB: every corpus file has its
predicted outcome, and the broker plugin of ``deploy/mosquitto-plugin`` gives the device API its identity.

Device-API files are published as ThingsBoard devices publish them — to ``v1/devices/me/…``, logged in
with the device's user name (its access token) — on a broker running the plugin (built here into a
temp folder), a password file and an ACL file; gateway files by a gateway account. The corpus is read
in place from ``../shared/realworld/`` (CI has it); a clone without it skips.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contract.fleet import Fleet
from contract.topics import DLQ_PREFIX
from ingest.sources.config import parse_sources
from ioc.servers import InfluxServer, ServerProcess, find_binary, start_mosquitto
from tests.corpus import CORPUS, SourcesIngest, corpus_device, manifest, needs_corpus, rows, wait_until
from tests.helpers import Collector, ingest_settings, publish

PLUGIN_SOURCE = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto-plugin"
pytestmark = needs_corpus()

SOURCES = parse_sources(
    {
        "sources": [{"format": "ioc_v1"}, {"format": "thingsboard"}],
        "models": {
            "tb_salinity": {
                "fields": {
                    "ec_us_cm": "ec",
                    "salinity_ppt": "salinity",
                    "temp_c": ["temp", "temperature"],
                    "battery_v": "battery",
                }
            },
            "tb_docs": {  # the documentation's typed example, read by a light trap
                "fields": {
                    "lamp_on": "booleanKey",
                    "air_temp_c": "doubleKey",
                    "bph_count": "longKey",
                    "humidity_pct": "jsonKey.someNumber",  # inside a nested JSON value
                }
            },
            "tb_gateway": {
                "fields": {"air_temp_c": "temperature", "humidity_pct": "humidity", "battery_pct": "battery"}
            },
        },
    },
    "test sources",
)

DEVICE_FILES = {  # device-API file: the account (user name = access token) that publishes it
    "thingsboard/device_telemetry_minimal.json": "TB_TOKEN_MIN",
    "thingsboard/device_telemetry_object.json": "TB_TOKEN_OBJ",
    "thingsboard/device_telemetry_array.json": "TB_TOKEN_ARR",
    "thingsboard/device_telemetry_with_ts.json": "TB_TOKEN_TS",
    "thingsboard/device_attributes.json": "TB_TOKEN_ATTR",
    "thingsboard/derived_device_telemetry_ts_array_typecast.json": "TB_TOKEN_CAST",
}
GATEWAY = "tb-gateway"
PASSWORDS = {
    **{token: f"pw-{token.lower()}" for token in DEVICE_FILES.values()},
    GATEWAY: "pw-gateway",
    "bad/name": "pw",
}
ACL = """\
# Anonymous: ingest and the dead-letter collector (this test broker has no service accounts).
topic readwrite #
topic read $SYS/#

# Devices may write far more than a deployment grants (v1/#): what is refused is refused by the plugin.
pattern write v1/#

user tb-gateway
topic write v1/gateway/#
"""


FLEET = Fleet(
    devices=(
        corpus_device("tb-min", "salinity", "tb_salinity", site="river", thingsboard="TB_TOKEN_MIN"),
        corpus_device("tb-obj", "light_trap", "tb_docs", site="river", thingsboard="TB_TOKEN_OBJ"),
        corpus_device("tb-arr", "salinity", "tb_salinity", site="river", thingsboard="TB_TOKEN_ARR"),
        corpus_device("tb-ts", "light_trap", "tb_docs", site="river", thingsboard="TB_TOKEN_TS"),
        corpus_device("tb-attr", "salinity", "tb_salinity", site="river", thingsboard="TB_TOKEN_ATTR"),
        corpus_device("tb-cast", "salinity", "tb_salinity", site="river", thingsboard="TB_TOKEN_CAST"),
        # Gateway names are free text: the registry's external ids take inner spaces ("Device A").
        corpus_device("tb-gw-a", "light_trap", "tb_gateway", site="river", thingsboard="Device A"),
        corpus_device("tb-gw-b", "light_trap", "tb_gateway", site="river", thingsboard="Device B"),
    )
)

STORED = "stored"
IGNORED = "ignored"
GATEWAY_FILE = "gateway"
DOCS_TYPED = {"lamp_on": 1, "air_temp_c": 42.0, "bph_count": 73, "humidity_pct": 42.0}
EXPECTED: dict[str, tuple[str, Any]] = {
    # file: (outcome, [(measurement, device, ts or None for the receive time, fields)] | dead-letter reasons | event)
    "thingsboard/device_telemetry_minimal.json": (STORED, [("salinity", "tb-min", None, {"temp_c": 42.0})]),
    "thingsboard/device_telemetry_object.json": (STORED, [("light_trap", "tb-obj", None, DOCS_TYPED)]),
    "thingsboard/device_telemetry_array.json": ("dead", ["missing_field"]),  # key1, key2: nothing of ours
    "thingsboard/device_telemetry_with_ts.json": (STORED, [("light_trap", "tb-ts", 1451649600512, DOCS_TYPED)]),
    "thingsboard/device_attributes.json": (IGNORED, "attributes"),  # no status field among them
    # The gateway's files, stored for "Device A" and "Device B": what each stores is asserted together
    # by test_gateway_messages_and_the_plugin_refusals_through_the_broker (they add up per device).
    "thingsboard/gateway_connect.json": (GATEWAY_FILE, None),
    "thingsboard/gateway_telemetry.json": (GATEWAY_FILE, None),
    "thingsboard/gateway_telemetry_mosquitto_example.json": (GATEWAY_FILE, None),
    "thingsboard/gateway_attributes.json": (GATEWAY_FILE, None),
    "thingsboard/derived_device_telemetry_ts_array_typecast.json": (
        STORED,
        [  # numeric strings are numbers, null is no value, "status": "OK" is not ours
            ("salinity", "tb-cast", 1767240000000, {"ec_us_cm": 18350.0, "salinity_ppt": 10.8, "temp_c": 29.4}),
            ("salinity", "tb-cast", 1767240600000, {"ec_us_cm": 18420.0, "salinity_ppt": 10.9, "temp_c": 29.1}),
        ],
    ),
}


@pytest.fixture(scope="module")
def tb_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin, built with its Makefile into a temp folder (the checkout is left as it is)."""
    probe = "#include <mosquitto.h>\n#include <mosquitto_broker.h>\n#include <mosquitto_plugin.h>\n"
    cc, make = find_binary("cc"), find_binary("make")
    compiles = cc is not None and make is not None and subprocess.run(
        [cc, "-E", "-x", "c", "-", "-o", os.devnull], input=probe, capture_output=True, text=True, check=False
    ).returncode == 0  # fmt: skip
    if not compiles:  # make test installs them (scripts/ensure-servers.sh): missing is a broken setup, not a skip
        pytest.fail(
            "building the Mosquitto plugin needs make, a C compiler and the broker's and library's headers: "
            "apt-get install build-essential mosquitto-dev libmosquitto-dev"
        )
    out = tmp_path_factory.mktemp("tb-plugin")
    done = subprocess.run(["make", "-C", str(PLUGIN_SOURCE), f"OUT={out}"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"the plugin does not build:\n{done.stdout}{done.stderr}"
    return out / "mosquitto_tb_identity.so"


@pytest.fixture
def tb_broker(tmp_path: Path, tb_plugin: Path, _servers_installed: None) -> Iterator[ServerProcess]:
    """Mosquitto with the plugin, a password file (mosquitto_passwd) and an ACL file."""
    passwd = find_binary("mosquitto_passwd")
    assert passwd is not None, "mosquitto_passwd comes with Debian's mosquitto"
    passwords, acl = tmp_path / "passwords", tmp_path / "acl"
    passwords.touch()
    for user, password in PASSWORDS.items():
        subprocess.run([passwd, "-b", str(passwords), user, password], check=True, capture_output=True)
    acl.write_text(ACL, encoding="utf-8")
    extra = f"password_file {passwords}\nacl_file {acl}\nplugin {tb_plugin}"
    server = start_mosquitto(tmp_path / "mosquitto", extra_config=extra)
    yield server
    server.stop()


def publish_as(port: int, user: str | None, items: list[tuple[str, bytes]], *, timeout: float = 30) -> list[int]:
    """Publish (topic, payload) pairs with QoS 1 as ``user`` (MQTT 5); the PUBACK reason codes."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{user}", protocol=paho.MQTTv5)
    if user is not None:
        client.username_pw_set(user, PASSWORDS[user])
    codes: dict[int, int] = {}
    acked = threading.Condition()

    def on_publish(c: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with acked:
            codes[mid] = reason.value
            acked.notify_all()

    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        mids = [client.publish(t, p, qos=1).mid for t, p in items]
        with acked:
            if not acked.wait_for(lambda: set(mids) <= set(codes), timeout):
                raise TimeoutError(f"the broker did not acknowledge every message of {user}")
        return [codes[m] for m in mids]
    finally:
        client.disconnect()
        client.loop_stop()


def drop_with_will(port: int, user: str, topic: str, payload: bytes) -> None:
    """Log in as ``user`` with a will on ``topic`` and lose the connection (no DISCONNECT: the will is sent)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"will-{user}", protocol=paho.MQTTv5)
    client.username_pw_set(user, PASSWORDS[user])
    client.will_set(topic, payload, qos=1)
    connected = threading.Event()
    client.on_connect = lambda *args: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert connected.wait(10), f"{user} could not log in"
    finally:
        client.loop_stop()
    sock = client.socket()
    assert isinstance(sock, socket.socket)
    sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _rows(influxd: InfluxServer, db: str, measurement: str, device: str) -> list[dict[str, Any]]:
    return rows(influxd.url, db, f'SELECT * FROM "{measurement}" WHERE "device_id" = \'{device}\'')


def _wait(collector: Collector, count: int) -> None:
    wait_until(lambda: len(collector.messages) >= count)


def test_every_thingsboard_file_of_the_corpus_has_its_predicted_outcome(
    tb_broker: ServerProcess, influxd: InfluxServer, influx_db: str
) -> None:
    entries = manifest("thingsboard")
    assert {e["file"] for e in entries} == set(EXPECTED), "a corpus file without an expectation, or one gone"
    by_user: dict[str, list[tuple[str, bytes]]] = {}
    for e in entries:
        user = DEVICE_FILES[e["file"]] if e["topic"].startswith("v1/devices/me/") else GATEWAY
        by_user.setdefault(user, []).append((e["topic"], (CORPUS / e["file"]).read_bytes()))
    predicted_dead = {f: reasons for f, (o, reasons) in EXPECTED.items() if o == "dead"}
    dead = Collector(tb_broker.port, f"{DLQ_PREFIX}/#")
    try:
        with SourcesIngest(ingest_settings(tb_broker.port, influxd.url, influx_db), FLEET, SOURCES) as ingest:
            for user, items in by_user.items():
                assert publish_as(tb_broker.port, user, items) == [0] * len(items), user
            ingest.wait_for(
                lambda: ingest.metric("ioc_ingest_messages_acked_total") >= len(entries), what="every message acked"
            )
            ignored = ingest.metric("ioc_ingest_ignored_total", event="attributes")
        _wait(dead, sum(len(r) for r in predicted_dead.values()))
    finally:
        dead.close()

    texts = {(CORPUS / e["file"]).read_text(encoding="utf-8"): e["file"] for e in entries}
    seen: dict[str, list[str]] = {}
    for letter in dead.json():
        file = texts.get(letter.get("payload", ""))
        assert file is not None, f"a dead letter that is not a corpus file: {letter['reason']}: {letter['detail']}"
        seen.setdefault(file, []).append(letter["reason"])
        if file in DEVICE_FILES:  # the plugin put the device's user name in the topic
            assert letter["topic"].startswith(f"v1/devices/{DEVICE_FILES[file]}/"), letter
    assert seen == predicted_dead
    assert ignored == 1

    carries = {e["file"]: f"{e['file']} ({e['carries']})" for e in entries}
    for file, (outcome, readings) in EXPECTED.items():
        if outcome != STORED:
            continue
        for measurement, device, ts, want in readings:
            stored = _rows(influxd, influx_db, measurement, device)
            assert len(stored) == len([r for r in readings if r[1] == device]), carries[file]
            row = stored[0] if ts is None else next(r for r in stored if r["time"] == ts)
            assert {k: row[k] for k in want} == pytest.approx(want), carries[file]
            assert row["seq"] == 0


def test_gateway_messages_and_the_plugin_refusals_through_the_broker(
    tb_broker: ServerProcess, influxd: InfluxServer, influx_db: str
) -> None:
    """The corpus's gateway messages with names the registry can hold, a device's attributes, and what
    the plugin refuses: a device naming another (by a publish or a will), a client without a user
    name, a user name with '/', a topic that is not under v1/devices/me/."""
    files = [e for e in manifest("thingsboard") if e["topic"].startswith("v1/gateway/")]
    gateway = [(e["topic"], (CORPUS / e["file"]).read_bytes()) for e in files]
    dead = Collector(tb_broker.port, f"{DLQ_PREFIX}/#")
    try:
        with SourcesIngest(ingest_settings(tb_broker.port, influxd.url, influx_db), FLEET, SOURCES) as ingest:
            assert publish_as(tb_broker.port, GATEWAY, gateway) == [0] * len(gateway)
            refused = [
                publish_as(tb_broker.port, "TB_TOKEN_MIN", [("v1/devices/TB_TOKEN_CAST/telemetry", b'{"temp": 11}')]),
                publish_as(tb_broker.port, None, [("v1/devices/me/telemetry", b'{"temperature": 12}')]),
                publish_as(tb_broker.port, "bad/name", [("v1/devices/me/telemetry", b'{"temperature": 13}')]),
                publish_as(tb_broker.port, "TB_TOKEN_MIN", [("v1/devices/me", b'{"temperature": 14}')]),
            ]  # fmt: skip
            assert refused == [[0x87]] * 4  # MQTT 5 "Not authorized"
            own = publish_as(tb_broker.port, "TB_TOKEN_ATTR", [("v1/devices/me/attributes", b'{"battery": 3.61}')])
            assert own == [0]
            # Wills: to another device's topic, refused when the broker sends it; to v1/devices/me/…,
            # sent as it is (Mosquitto 2.0 gives plugins no will to rewrite): dead-lettered by ingest.
            drop_with_will(tb_broker.port, "TB_TOKEN_MIN", "v1/devices/TB_TOKEN_CAST/telemetry", b'{"temp": 15}')
            drop_with_will(tb_broker.port, "TB_TOKEN_ARR", "v1/devices/me/telemetry", b'{"temp": 16}')
            ingest.wait_for(
                lambda: ingest.metric("ioc_ingest_messages_acked_total") >= len(gateway) + 2, what="every message acked"
            )
        time.sleep(0.5)  # let a dead letter of the accepted messages arrive, if there were one
    finally:
        dead.close()
    assert _rows(influxd, influx_db, "salinity", "tb-cast") == []  # the device named by another: nothing
    [letter] = dead.json()  # the will to v1/devices/me/telemetry, and nothing else
    assert (letter["topic"], letter["reason"], letter["payload"]) == (
        "v1/devices/me/telemetry",
        "unknown_device",
        '{"temp": 16}',
    )

    a = {r["time"]: r for r in _rows(influxd, influx_db, "light_trap", "tb-gw-a")}
    assert {t: (r["air_temp_c"], r["humidity_pct"]) for t, r in a.items()} == {
        1483228800000: (42.0, 80.0),
        1483228801000: (43.0, 82.0),
        1700000000000: (23.5, 61.0),
    }
    b = _rows(influxd, influx_db, "light_trap", "tb-gw-b")
    assert [(r["time"], r["air_temp_c"], r["humidity_pct"]) for r in b] == [(1483228800000, 42.0, 80.0)]
    status = _rows(influxd, influx_db, "device_status", "tb-gw-a")  # connect, and the battery attribute
    assert {r["online"] for r in status} == {1}
    assert 87.0 in {r.get("battery_pct") for r in status}
    [attr] = _rows(influxd, influx_db, "device_status", "tb-attr")
    assert (attr["online"], attr["battery_v"]) == (1, 3.61)


def test_without_the_plugin_the_device_api_is_dead_lettered_naming_it(
    mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str
) -> None:
    payload = (CORPUS / "thingsboard/device_telemetry_minimal.json").read_bytes()
    dead = Collector(mosquitto.port, f"{DLQ_PREFIX}/#")
    try:
        with SourcesIngest(ingest_settings(mosquitto.port, influxd.url, influx_db), FLEET, SOURCES) as ingest:
            publish(mosquitto.port, [("v1/devices/me/telemetry", payload)])
            ingest.wait_for(lambda: ingest.metric("ioc_ingest_messages_acked_total") >= 1, what="the message acked")
        _wait(dead, 1)
    finally:
        dead.close()
    [letter] = dead.json()
    assert (letter["topic"], letter["reason"]) == ("v1/devices/me/telemetry", "unknown_device")
    assert "deploy/mosquitto-plugin (mosquitto_tb_identity.so)" in letter["detail"]
