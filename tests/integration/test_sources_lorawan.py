"""LoRaWAN network servers' real payloads (ChirpStack v4, The Things Stack v3) through real Mosquitto
and InfluxDB: each corpus file is stored with the readings its README says it carries, dead-lettered
with the reason predicted, or acknowledged as carrying no reading — nothing else.

The corpus is read in place from ``../shared/realworld/`` (CI has it); a clone without it skips.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import msgspec
import pytest

from contract.fleet import Fleet
from contract.topics import DLQ_PREFIX
from ingest.sources.config import parse_sources
from ioc.servers import InfluxServer, ServerProcess
from storage.influxql import query
from tests.corpus import CORPUS, SourcesIngest, corpus_device, manifest, needs_corpus, rows, wait_until
from tests.helpers import Collector, ingest_settings, publish

pytestmark = needs_corpus()

SOURCES = parse_sources(
    {
        "sources": [
            {"format": "ioc_v1"},
            {"format": "chirpstack_v4"},
            {"format": "tts_v3", "topics": ["v3/+/devices/+/up", "v3/+/devices/+/join"]},  # joins: counted
        ],
        "models": {
            "dragino_lse01_lsph01": {  # both Dragino soil probes' codecs (LSE01: EC; LSPH01: pH)
                "fields": {
                    "ec_us_cm": "conduct_SOIL",
                    "ph": "PH1_SOIL",
                    "temp_c": ["temp_SOIL", "TEMP_SOIL"],
                    "battery_v": {"path": "Bat", "unit": "V"},
                }
            },
            "chirpstack_influx_test": {"fields": {"temp_c": {"path": "temperature.a", "unit": "Cel"}}},
            "dragino_lht65": {"fields": {"air_temp_c": "Tem", "humidity_pct": "Hum", "battery_v": "BatV"}},
            "tts_dev1": {
                "fields": {
                    "temp_c": ["temp_SOIL", "Temperature", "temperature"],
                    "ec_us_cm": "conduct_SOIL",
                    "battery_v": ["Bat", "battery"],
                }
            },
        },
    },
    "test sources",
)


FLEET = Fleet(
    devices=(
        corpus_device("bt-soil-1", "water_quality", "dragino_lse01_lsph01", dev_eui="0101010101010101"),
        corpus_device("bt-wq-9", "water_quality", "chirpstack_influx_test", dev_eui="0102030405060708"),
        corpus_device("bt-trap-9", "light_trap", "dragino_lht65", dev_eui="a84041c3d185ee46"),
        corpus_device("bt-wq-tts", "water_quality", "tts_dev1", tts_device_id="dev1", dev_eui="0004a30b001c0530"),
    )
)

STORED = "stored"
IGNORED = "ignored"
EXPECTED: dict[str, tuple[str, Any]] = {
    # file: (what happens, the readings stored as (measurement, device, seq, fields) or the dead-letter reason)
    "chirpstack_v4/docs_up.json": ("missing_field", None),  # no codec output: only raw bytes
    "chirpstack_v4/docs_status.json": (STORED, ("device_status", "bt-soil-1", None, {"battery_pct": 88.3})),
    "chirpstack_v4/docs_join.json": (IGNORED, "join"),
    "chirpstack_v4/docs_log.json": (IGNORED, "log"),
    "chirpstack_v4/issue43_up_as923_2_first_uplink_no_fcnt.json": ("unknown_device", None),  # masked DevEUI
    "chirpstack_v4/issue349_up_v4_6_nulls.json": ("unknown_device", None),  # masked DevEUI
    "chirpstack_v4/tb5658_up_dragino_object_strings.json": (
        STORED,
        ("light_trap", "bt-trap-9", 57, {"air_temp_c": 32.2, "humidity_pct": 66.4, "battery_v": 4.002}),
    ),
    "chirpstack_v4/derived_up_dragino_lse01_object.json": (
        STORED,
        (
            "water_quality",
            "bt-soil-1",
            7,
            {"ec_us_cm": 28200.0, "temp_c": 24.59, "battery_v": 3.625, "rssi_dbm": -36.0},
        ),
    ),
    "chirpstack_v4/derived_up_dragino_lsph01_object.json": (
        STORED,
        ("water_quality", "bt-soil-1", 8, {"ph": 5.96, "temp_c": 24.9, "battery_v": 3.363, "rssi_dbm": -36.0}),
    ),
    "chirpstack_v4/derived_up_nested_object_3_gateways.json": (
        STORED,
        ("water_quality", "bt-wq-9", 10, {"temp_c": 20.5, "rssi_dbm": -55.0}),  # the best of 3 gateways
    ),
    "chirpstack_v4/derived_status_external_power.json": (STORED, ("device_status", "bt-soil-1", None, {})),
    "chirpstack_v4/derived_status_battery_unavailable.json": (STORED, ("device_status", "bt-soil-1", None, {})),
    "tts_v3/docs_data_formats_up.json": (STORED, ("water_quality", "bt-wq-tts", 1, {"temp_c": 1.0})),
    "tts_v3/docs_data_formats_join.json": (IGNORED, "join"),
    "tts_v3/docs_mqtt_up_no_formatter.json": ("missing_field", None),
    "tts_v3/docs_mqtt_join.json": (IGNORED, "join"),
    "tts_v3/derived_issue3874_up_first_uplink_no_fcnt.json": (
        STORED,
        ("water_quality", "bt-wq-tts", 0, {"temp_c": 26.3, "battery_v": 3.649}),  # absent f_cnt = 0
    ),
    "tts_v3/tbgw407_up_float32_artifacts_truncated.json": ("unknown_device", None),  # dev4: not ours
    "tts_v3/derived_up_sensecap_s210x_messages.json": ("missing_field", None),  # messages[]: needs json_map
    "tts_v3/derived_up_dragino_lse01.json": (
        STORED,
        ("water_quality", "bt-wq-tts", 7, {"ec_us_cm": 28200.0, "temp_c": 24.59, "battery_v": 3.625}),
    ),
}


def _ms(rfc3339: str) -> int:
    return int(msgspec.json.decode(msgspec.json.encode(rfc3339), type=datetime).timestamp() * 1000)


def test_every_lorawan_file_of_the_corpus_has_its_predicted_outcome(
    mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str
) -> None:
    entries = manifest("chirpstack_v4", "tts_v3")
    assert {e["file"] for e in entries} == set(EXPECTED), "a corpus file without an expectation, or one gone"
    items = [(e["topic"], (CORPUS / e["file"]).read_bytes()) for e in entries]
    dead = Collector(mosquitto.port, f"{DLQ_PREFIX}/#")
    try:
        with SourcesIngest(ingest_settings(mosquitto.port, influxd.url, influx_db), FLEET, SOURCES) as ingest:
            publish(mosquitto.port, items)
            ingest.wait_for(
                lambda: ingest.metric("ioc_ingest_messages_acked_total") >= len(items), what="every message acked"
            )
            ignored = {e: ingest.metric("ioc_ingest_ignored_total", event=e) for e in ("join", "log")}
        predicted_dead = {f: [o] for f, (o, _) in EXPECTED.items() if o not in (STORED, IGNORED)}
        wait_until(lambda: len(dead.messages) >= len(predicted_dead))
    finally:
        dead.close()

    texts = {(CORPUS / e["file"]).read_text(encoding="utf-8"): e["file"] for e in entries}
    seen: dict[str, list[str]] = {}
    for letter in dead.json():
        file = texts.get(letter.get("payload", ""))
        assert file is not None, f"a dead letter that is not a corpus file: {letter['reason']}: {letter['detail']}"
        seen.setdefault(file, []).append(letter["reason"])
    assert seen == predicted_dead
    assert ignored == {"join": 3, "log": 1}

    # Readings of one device at one time are one point: a later one merges into it, field by field
    # (InfluxDB's rule; the corpus's derived files reuse one envelope, so some share a time).
    points: dict[tuple[str, str, int], dict[str, float]] = {}
    carries: dict[tuple[str, str, int], list[str]] = {}
    for entry in entries:
        outcome, reading = EXPECTED[entry["file"]]
        if outcome != STORED:
            continue
        measurement, device, seq, fields = reading
        doc = json.loads((CORPUS / entry["file"]).read_text(encoding="utf-8"))
        key = (measurement, device, _ms(doc.get("time") or doc.get("received_at")))
        points.setdefault(key, {}).update(fields, **({"seq": seq} if seq is not None else {}))
        carries.setdefault(key, []).append(f"{entry['file']} ({entry['carries']})")
    for (measurement, device, when), want in points.items():
        found = rows(
            influxd.url,
            influx_db,
            f'SELECT * FROM "{measurement}" WHERE "device_id" = \'{device}\' AND time = {when}ms',
        )
        assert found, f"{carries[(measurement, device, when)]}: nothing stored"
        got = found[0]
        assert {k: got[k] for k in want} == pytest.approx(want), carries[(measurement, device, when)]
        if measurement == "device_status":
            assert got["online"] == 1
    everything = query(influxd.url, "SELECT * FROM /.*/", db=influx_db)
    assert sum(len(series["values"]) for series in everything) == len(points)  # and nothing else was stored
