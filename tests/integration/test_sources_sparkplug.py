"""Sparkplug B edge nodes' real payloads through real Mosquitto and InfluxDB: every corpus file, in
the order an edge node publishes (births before data), is stored with the readings and statuses it
carries, dead-lettered with the reason predicted, or counted as carrying no reading — and a node
whose DATA cannot be read is asked to rebirth on the broker.

The corpus is read in place from ``../shared/realworld/sparkplug_b`` (CI has it); a clone without it
skips. The benthos-umh vectors carry no topic: they are published under group ``umh``.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from contract.fields import Kind
from contract.fleet import DeviceTags
from contract.topics import DLQ_PREFIX
from ingest.sources.config import parse_sources
from ingest.sources.sparkplug import REBIRTH_REASON
from ingest.sources.sparkplug_b_pb2 import DataType, Payload
from ioc.servers import InfluxServer, ServerProcess
from storage.influxql import query
from tests.corpus import CORPUS, SourcesIngest, needs_corpus, wait_until
from tests.helpers import Collector, ingest_settings, publish

SPB = CORPUS / "sparkplug_b"
pytestmark = needs_corpus("sparkplug_b/README.md")

SOURCES = parse_sources(
    {
        "sources": [{"format": "ioc_v1"}, {"format": "sparkplug_b"}],
        "models": {
            "wq_spb": {
                "fields": {
                    "ec_us_cm": "Water/Conductivity",
                    "salinity_ppt": "Water/Salinity",
                    "temp_c": "Water/Temperature",
                    "water_level_cm": "Water/Level",
                    "rssi_dbm": "Radio/RSSI",
                }
            },
            "gw_spb": {"fields": {"battery_v": "Battery"}},
            "tahu_node": {"fields": {"water_level_cm": "Node Metric2"}},  # its engUnit is "MyCustomUnits"
            "tahu_dev": {"fields": {"lamp_on": "input/Device Metric1", "air_temp_c": "output/Device Metric2"}},
            "umh_node": {"fields": {"temp_c": "Temperature"}},
        },
    },
    "test sources",
)

TAHU_G, TAHU_E, TAHU_D = "Sparkplug B Devices", "Python Edge Node 1", "Emulated Device"


def _device(device_id: str, kind: Kind, model: str, sparkplug: str) -> DeviceTags:
    return DeviceTags(device_id, kind, "ca_mau", "dam_doi", "field", "none", "active", model, sparkplug=sparkplug)


# DeviceTags, as the registry hands them to ingest (Tahu's example names have spaces: external ids take them).
DEVICES = [
    _device("cm-gw-07", Kind.SALINITY, "gw_spb", "ca_mau/cm-gw-07"),
    _device("cm-sal-0031", Kind.SALINITY, "wq_spb", "ca_mau/cm-gw-07/cm-sal-0031"),
    _device("tahu-node", Kind.SALINITY, "tahu_node", f"{TAHU_G}/{TAHU_E}"),
    _device("tahu-dev", Kind.LIGHT_TRAP, "tahu_dev", f"{TAHU_G}/{TAHU_E}/{TAHU_D}"),
    _device("umh-a", Kind.WATER_QUALITY, "umh_node", "umh/umh-a"),
    _device("umh-b", Kind.WATER_QUALITY, "umh_node", "umh/umh-b"),
    _device("umh-c", Kind.WATER_QUALITY, "umh_node", "umh/umh-c"),
]

BASE = 1_767_240_000_000  # the synthetic node's NBIRTH time (gen_sparkplug.py)
UMH_T = 1_750_855_643_474  # the benthos-umh vectors' payload timestamp


def _corpus(name: str, topic: str | None = None) -> tuple[str, bytes]:
    """A corpus file as published: its topic (the .json beside it says it) and its bytes."""
    if topic is None:
        topic = json.loads((SPB / f"{name}.json").read_text(encoding="utf-8"))["topic"]
    return topic, (SPB / f"{name}.bin").read_bytes()


def _data(topic: str, seq: int, ts: int, alias: int, **value: Any) -> tuple[str, bytes]:
    """A DATA message the test makes (the seq between two corpus files), alias only, no datatype."""
    p = Payload(timestamp=ts, seq=seq)
    p.metrics.add(alias=alias, **value)
    return topic, p.SerializeToString()


def _umh(name: str, edge: str) -> tuple[str, bytes]:
    kind = name.split("_")[0]
    return _corpus(f"umh_{name}", f"spBv1.0/umh/{kind}/{edge}")


SYN_DDATA = "spBv1.0/ca_mau/DDATA/cm-gw-07/cm-sal-0031"
TAHU_DEV = f"spBv1.0/{TAHU_G}/{{}}/{TAHU_E}/{TAHU_D}"
TAHU_NODE = f"spBv1.0/{TAHU_G}/{{}}/{TAHU_E}"

MESSAGES: list[tuple[str, bytes]] = [
    # the synthetic water-quality node: births, seq 2..254 (made here), 255 → 0 wrap, deaths
    _corpus("synthetic_wq_NBIRTH"),
    _corpus("synthetic_wq_DBIRTH"),
    *(_data(SYN_DDATA, seq, BASE + seq * 1_000, 14, int_value=2**32 - 90) for seq in range(2, 255)),
    _corpus("synthetic_wq_DDATA_seq255"),
    _corpus("synthetic_wq_DDATA_seq0_wrap_historical"),
    _corpus("synthetic_wq_DDEATH"),
    _corpus("synthetic_wq_NDEATH"),  # bdSeq 3 = the NBIRTH's: the node goes offline
    # Tahu's example_simple.py session (no aliases, no names), then example.py's (aliases)
    _corpus("tahu_NBIRTH"),
    _corpus("tahu_DBIRTH"),
    _corpus("tahu_simple_DDATA_no_name_no_alias"),
    _corpus("tahu_NBIRTH"),
    _corpus("tahu_DBIRTH"),
    _corpus("tahu_DDATA_alias_only"),
    _corpus("tahu_NDEATH"),  # bdSeq 0 = the NBIRTH's
    # benthos-umh: a gap and a stale will (umh-a), data before any birth (umh-b), a wrap (umh-c)
    _umh("NBIRTH_V1", "umh-a"),
    _umh("NDATA_V1", "umh-a"),
    _umh("NDATA_GAP", "umh-a"),
    _umh("NDEATH_V1", "umh-a"),  # bdSeq 0, the birth said 88: an older session's will
    _umh("NDATA_BEFORE_BIRTH", "umh-b"),
    _umh("NBIRTH_V1", "umh-c"),
    *(_data("spBv1.0/umh/NDATA/umh-c", seq, UMH_T + seq, 100, double_value=20.0 + seq / 100) for seq in range(1, 256)),
    _umh("NDATA_WRAPAROUND", "umh-c"),
]

DEAD: dict[str, list[str]] = {
    "tahu_NBIRTH": ["bad_unit", "bad_unit"],  # "MyCustomUnits", once per session
    "tahu_simple_DDATA_no_name_no_alias": ["bad_shape"],
    "umh_NDATA_GAP": [REBIRTH_REASON.value],
    "umh_NDATA_BEFORE_BIRTH": [REBIRTH_REASON.value],
}
"""Each corpus file's dead letters; every other message is stored or counted."""

POINTS: dict[tuple[str, str, int], dict[str, Any]] = {
    # (measurement, device, time): the fields of the stored point (readings at one time merge)
    ("salinity", "cm-gw-07", BASE): {"battery_v": 12.6, "seq": 0},
    ("salinity", "cm-sal-0031", BASE + 20): {
        "ec_us_cm": 18350.0, "salinity_ppt": 10.8, "temp_c": 29.4, "water_level_cm": -12.0, "rssi_dbm": -97.0,
        "seq": 1,
    },
    ("salinity", "cm-sal-0031", BASE + 254_000): {"rssi_dbm": -90.0, "seq": 254},
    ("salinity", "cm-sal-0031", BASE + 599_000): {
        "ec_us_cm": 18420.0, "salinity_ppt": 10.9, "water_level_cm": -15.0, "seq": 255,
    },
    ("salinity", "cm-sal-0031", BASE + 1_199_000): {"ec_us_cm": 18510.0, "temp_c": 29.1, "seq": 0},  # historical
    ("device_status", "cm-sal-0031", BASE + 20): {"online": 1},
    ("device_status", "cm-sal-0031", BASE + 1_800_000): {"online": 0},  # DDEATH
    ("device_status", "cm-gw-07", BASE): {"online": 1},
    ("light_trap", "tahu-dev", 1_699_999_998_766): {"lamp_on": 0, "air_temp_c": 16.0, "seq": 2},  # the DDATA last
    ("device_status", "tahu-node", 1_700_000_000_000): {"online": 1},
    ("device_status", "tahu-dev", 1_700_000_000_010): {"online": 1},
    ("water_quality", "umh-a", UMH_T): {"temp_c": 22.5, "seq": 1},  # the birth's 21.5, then NDATA_V1
    ("water_quality", "umh-c", UMH_T): {"temp_c": 30.0, "seq": 0},  # the birth's 21.5, then the wrap
    ("water_quality", "umh-c", UMH_T + 255): {"temp_c": 22.55, "seq": 255},
    ("device_status", "umh-a", UMH_T): {"online": 1},
}  # fmt: skip
READINGS = (1 + 1 + 253 + 1 + 1) + (2 + 1) + (1 + 1) + (1 + 255 + 1)
"""Readings stored (some merge into one point), births' values too: the synthetic node and device,
Tahu's two DBIRTHs and its DDATA (its NBIRTHs map only a refused unit), umh-a, umh-c."""
STATUSES = 4 + 6 + 2
"""The synthetic births, DDEATH and NDEATH (the device had died already); Tahu's births of two
sessions and the NDEATH of node and device; the umh births."""
LAST_ONLINE = {
    "cm-gw-07": 0, "cm-sal-0031": 0, "tahu-node": 0, "tahu-dev": 0, "umh-a": 1, "umh-c": 1,
}  # fmt: skip
"""Each device's latest status: the stale umh will left umh-a online."""


def test_every_sparkplug_file_of_the_corpus_has_its_predicted_outcome(
    mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str
) -> None:
    files = {p.stem for p in SPB.glob("*.bin")}
    published = {raw: name for name in files for raw in [(SPB / f"{name}.bin").read_bytes()]}
    assert {published.get(raw) for _, raw in MESSAGES} - {None} == files, "a corpus file is not published"
    dead = Collector(mosquitto.port, f"{DLQ_PREFIX}/#")
    asked = Collector(mosquitto.port, "spBv1.0/+/NCMD/#")
    try:
        with SourcesIngest(ingest_settings(mosquitto.port, influxd.url, influx_db), DEVICES, SOURCES) as ingest:
            publish(mosquitto.port, MESSAGES)
            assert wait_until(lambda: len(asked.messages) >= 2), "timed out waiting for the rebirth requests"
            # ingest reads its own NCMDs back (spBv1.0/#): every message and both echoes acknowledged
            ingest.wait_for(
                lambda: ingest.metric("ioc_ingest_messages_acked_total") >= len(MESSAGES) + 2, what="every ack"
            )
            ignored = {
                e: ingest.metric("ioc_ingest_ignored_total", event=e) for e in ("NCMD", "NDEATH_stale", "NBIRTH")
            }
            stored = (
                ingest.metric("ioc_ingest_readings_stored_total"),
                ingest.metric("ioc_ingest_statuses_stored_total"),
            )
        assert wait_until(lambda: len(dead.messages) >= sum(map(len, DEAD.values()))), "timed out: the dead letters"
        time.sleep(0.2)  # no more than predicted
    finally:
        dead.close()
        asked.close()

    seen: dict[str, list[str]] = {}
    for letter in dead.json():
        raw = base64.b64decode(letter["payload_b64"]) if "payload_b64" in letter else letter["payload"].encode()
        name = published.get(raw)
        assert name is not None, f"a dead letter of no corpus file: {letter['reason']}: {letter['detail']}"
        seen.setdefault(name, []).append(letter["reason"])
    assert seen == DEAD
    assert ignored == {"NCMD": 2, "NDEATH_stale": 1, "NBIRTH": 0}
    assert stored == (READINGS, STATUSES)

    requests = sorted((topic, Payload.FromString(raw)) for topic, raw in asked.messages)
    assert [t for t, _ in requests] == ["spBv1.0/umh/NCMD/umh-a", "spBv1.0/umh/NCMD/umh-b"]
    for _, request in requests:
        [m] = request.metrics
        assert (m.name, m.datatype, m.boolean_value) == ("Node Control/Rebirth", DataType.Boolean, True)

    for (measurement, device, when), want in POINTS.items():
        rows = query(
            influxd.url, f'SELECT * FROM "{measurement}" WHERE "device_id" = \'{device}\' AND time = {when}ms',
            db=influx_db,
        )  # fmt: skip
        assert rows, f"{measurement} {device} {when}: nothing stored"
        got = dict(zip(rows[0]["columns"], rows[0]["values"][0], strict=True))
        assert {k: got[k] for k in want} == pytest.approx(want), (measurement, device, when)
    for device, online in LAST_ONLINE.items():
        rows = query(
            influxd.url, f"SELECT last(\"online\") FROM device_status WHERE device_id = '{device}'", db=influx_db
        )
        assert rows[0]["values"][0][1] == online, device
    assert not query(influxd.url, "SELECT * FROM device_status WHERE device_id = 'umh-b'", db=influx_db)


def test_data_before_a_birth_asks_the_node_to_rebirth_and_its_answer_is_read(
    mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str
) -> None:
    """After a restart ingest knows no session: the first DATA is refused and the node asked (NCMD);
    the node answers with its births, and its DATA is read from then on."""
    node, device = "spBv1.0/ca_mau/{}/cm-gw-07", "spBv1.0/ca_mau/{}/cm-gw-07/cm-sal-0031"
    early = _data(device.format("DDATA"), 41, BASE + 41_000, 10, float_value=18000.0)
    asked = Collector(mosquitto.port, "spBv1.0/ca_mau/NCMD/cm-gw-07")
    dead = Collector(mosquitto.port, f"{DLQ_PREFIX}/#")
    try:
        with SourcesIngest(ingest_settings(mosquitto.port, influxd.url, influx_db), DEVICES, SOURCES) as ingest:
            publish(mosquitto.port, [early])
            assert wait_until(lambda: bool(asked.messages)), "timed out waiting for the rebirth request"
            [(topic, raw)] = asked.messages
            request = Payload.FromString(raw)
            assert [(m.name, m.boolean_value) for m in request.metrics] == [("Node Control/Rebirth", True)]
            # the edge node answers: NBIRTH (seq 0), DBIRTH (seq 1), then its data goes on (seq 2)
            publish(mosquitto.port, [_corpus("synthetic_wq_NBIRTH"), _corpus("synthetic_wq_DBIRTH")])
            publish(mosquitto.port, [_data(device.format("DDATA"), 2, BASE + 42_000, 10, float_value=18100.0)])
            ingest.wait_for(lambda: ingest.metric("ioc_ingest_readings_stored_total") >= 3, what="the readings")
        assert wait_until(lambda: bool(dead.messages)), "timed out waiting for the dead letter"
    finally:
        asked.close()
        dead.close()
    [letter] = dead.json()
    assert letter["reason"] == REBIRTH_REASON.value
    assert "no NBIRTH seen since ingest started" in letter["detail"]
    assert node.format("NCMD") == topic
    rows = query(influxd.url, f"SELECT ec_us_cm FROM salinity WHERE time = {BASE + 42_000}ms", db=influx_db)
    assert rows[0]["values"][0][1] == 18100.0
