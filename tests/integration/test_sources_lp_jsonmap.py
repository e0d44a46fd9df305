"""Line protocol and vendor JSON (``influx_lp``, ``json_map``) real payloads through real Mosquitto and
InfluxDB: each file of the corpus's ``influx_line_protocol`` and ``lorawan_codecs`` folders is stored
with the readings its README says it carries, dead-lettered with the reasons predicted, or counted as
carrying no reading — nothing else.

The corpus is read in place from ``../shared/realworld/`` (CI has it); a clone without it skips.
"""

from __future__ import annotations

import pytest

from contract.fleet import Fleet
from contract.topics import DLQ_PREFIX
from ingest.sources.config import parse_sources
from ioc.servers import InfluxServer, ServerProcess
from storage.influxql import query
from tests.corpus import CORPUS, SourcesIngest, corpus_device, manifest, needs_corpus, rows, wait_until
from tests.helpers import Collector, ingest_settings, publish

pytestmark = needs_corpus()

CHIRPSTACK_LP = {  # ChirpStack's InfluxDB integration: one measurement per decoded field, value=…
    "air_temp_c": "device_frmpayload_data_temperature_a.value",
    "humidity_pct": "device_frmpayload_data_humidity.value",
    "lamp_on": "device_frmpayload_data_active.value",  # a boolean: refused, never a made-up 1
    "rssi_dbm": "device_uplink.rssi",
}
SOURCES = parse_sources(
    {
        "sources": [
            {"format": "ioc_v1"},
            {"format": "influx_lp", "topics": ["lp/host/+"], "precision": "ns", "device": {"topic_level": 2}},
            {"format": "influx_lp", "topics": ["lp/s/+"], "precision": "s", "device": {"path": "room"}},
            {
                "format": "influx_lp",
                "topics": ["lp/ns/+"],
                "precision": "ns",
                "device": {"path": "room", "scheme": "thingsboard"},
            },
            {
                "format": "influx_lp",
                "topics": ["lp/chirpstack/+"],
                "precision": "ns",
                "device": {"path": "dev_eui", "scheme": "dev_eui"},
            },
            {"format": "json_map", "topics": ["codec/+/up"], "device": {"topic_level": 1}},
            {
                "format": "json_map",
                "topics": ["sensecap/+/up"],
                "device": {"topic_level": 1},
                "records": {"path": "output_data.messages", "name": "measurementId", "value": "measurementValue"},
            },
        ],
        "models": {
            "home": {"fields": {"air_temp_c": "home.temp", "humidity_pct": "hum"}},
            "chirpstack_lp": {"fields": CHIRPSTACK_LP},
            "telegraf_cases": {  # Telegraf's escape cases: each escaped key to a field of its own
                "fields": {
                    "temp_c": "cpu.value",
                    "ec_us_cm": "c pu.value",
                    "salinity_ppt": "c,pu.value",
                    "turbidity_ntu": "cpu.va lue",
                    "tss_mg_l": "cpu.va,lue",
                    "nh4_mg_l": "cpu.va=lue",
                    "battery_v": "cpu.va\\lue",
                }
            },
            "dragino_lse01": {
                "fields": {
                    "ec_us_cm": "output_data.conduct_SOIL",
                    "temp_c": "output_data.temp_SOIL",
                    "battery_v": {"path": "output_data.Bat", "unit": "V"},
                }
            },
            "dragino_lsph01": {  # TempC_DS18B20 "0.00" means no probe: left unmapped
                "fields": {
                    "ph": "output_data.PH1_SOIL",
                    "temp_c": "output_data.TEMP_SOIL",
                    "battery_v": "output_data.Bat",
                }
            },
            "dragino_ldds75": {"fields": {"water_level_cm": {"path": "output_data.distance", "unit": "mm"}}},
            "sensecap_s210x": {"fields": {"air_temp_c": "4097", "humidity_pct": "4098"}},
        },
    },
    "test sources",
)


FLEET = Fleet(
    devices=(
        corpus_device("Kitchen", "light_trap", "home"),
        corpus_device("bt-kitchen-ns", "light_trap", "home", thingsboard="Kitchen"),
        corpus_device("bt-cs-lp", "light_trap", "chirpstack_lp", dev_eui="0102030405060708"),
        corpus_device("bt-cs-loc", "light_trap", "chirpstack_lp"),
        corpus_device("bt-telegraf", "water_quality", "telegraf_cases"),
        corpus_device("bt-lse01", "water_quality", "dragino_lse01"),
        corpus_device("bt-lsph01", "water_quality", "dragino_lsph01"),
        corpus_device("bt-ldds75", "salinity", "dragino_ldds75"),
        corpus_device("bt-sensecap", "light_trap", "sensecap_s210x"),
    )
)

FORTY_TWO = dict.fromkeys(
    ("temp_c", "ec_us_cm", "salinity_ppt", "turbidity_ntu", "tss_mg_l", "nh4_mg_l", "battery_v"), 42.0
)
Reading = tuple[str, str, int | None, dict[str, float]]
"""(measurement, device, time in ms or None for the receive time, fields)."""
EXPECTED: dict[str, tuple[str, list[Reading], list[tuple[str, str]]]] = {
    # file: (topic, readings stored, dead letters as (reason, start of detail))
    "influx_line_protocol/influxdb_docs_home_precision_s.lp": (
        "lp/s/home",
        [
            ("light_trap", "Kitchen", 1641024000000, {"air_temp_c": 21.0, "humidity_pct": 35.9}),
            ("light_trap", "Kitchen", 1641027600000, {"air_temp_c": 23.0, "humidity_pct": 36.2}),
            ("light_trap", "Kitchen", 1641031200000, {"air_temp_c": 22.7, "humidity_pct": 36.1}),
        ],
        [("unknown_device", "tag room='Living Room' (lines 1, 3, 5) is not an active registered device")],
    ),
    "influx_line_protocol/influxdb_docs_home_precision_ns.lp": (  # the same points, in ns
        "lp/ns/home",
        [
            ("light_trap", "bt-kitchen-ns", 1641024000000, {"air_temp_c": 21.0, "humidity_pct": 35.9}),
            ("light_trap", "bt-kitchen-ns", 1641027600000, {"air_temp_c": 23.0, "humidity_pct": 36.2}),
        ],
        [("unknown_device", "tag room='Living Room' (lines 1, 3) is not an active registered device")],
    ),
    "influx_line_protocol/chirpstack_influxdb_integration_status.lp": (  # battery %, margin: not readings
        "lp/chirpstack/status",
        [],
        [("missing_field", "lines 1, 2: no field maps to ours")],
    ),
    "influx_line_protocol/chirpstack_influxdb_integration_uplink_nested.lp": (
        "lp/chirpstack/up",
        [("light_trap", "bt-cs-lp", None, {"air_temp_c": 20.5, "humidity_pct": 20.0, "rssi_dbm": -55.0})],
        [("bad_type", "lamp_on: bool 'True' is not a number; the rest of the reading was stored")],
    ),
    "influx_line_protocol/chirpstack_influxdb_integration_uplink_location.lp": (
        "lp/host/bt-cs-loc",
        [("light_trap", "bt-cs-loc", None, {"rssi_dbm": -55.0})],
        [("bad_type", "lamp_on: bool 'True' is not a number; the rest of the reading was stored")],
    ),
    "influx_line_protocol/telegraf_parser_valid_cases.lp": (
        "lp/host/bt-telegraf",
        [("water_quality", "bt-telegraf", None, FORTY_TWO)],
        [("bad_timestamp", "time 0 is before 2000")],  # its first line: `cpu value=42 0`
    ),
    "influx_line_protocol/telegraf_parser_string_with_newline.lp": (  # one line: "4\n2" is one value
        "lp/host/bt-telegraf",
        [],
        [("bad_type", "temp_c: '4\\n2' is not a number")],
    ),
    "influx_line_protocol/telegraf_parser_invalid_cases.lp": (
        "lp/host/bt-telegraf",
        [],
        [
            ("bad_shape", "line 1: field 'value': 9223372036854775808i is outside the 64-bit integer range"),
            ("bad_shape", "line 2: field 'value': 18446744073709551616u is outside the 64-bit unsigned range"),
            ("bad_shape", "line 3: 'cpu' has no field set"),
        ],
    ),
    "lorawan_codecs/dragino_lse01_soil_ec.json": (  # numeric strings are numbers
        "codec/bt-lse01/up",
        [("water_quality", "bt-lse01", None, {"ec_us_cm": 28200.0, "temp_c": 24.59, "battery_v": 3.625})],
        [],
    ),
    "lorawan_codecs/dragino_lsph01_soil_ph.json": (
        "codec/bt-lsph01/up",
        [("water_quality", "bt-lsph01", None, {"ph": 5.96, "temp_c": 24.9, "battery_v": 3.363})],
        [],
    ),
    "lorawan_codecs/dragino_ldds75_distance_no_sensor.json": (  # its only field is the sentinel
        "codec/bt-ldds75/up",
        [],
        [("bad_type", "water_level_cm: 'No Sensor' is not a number")],
    ),
    "lorawan_codecs/sensecap_s210x_telemetry.json": (
        "sensecap/bt-sensecap/up",
        [("light_trap", "bt-sensecap", None, {"air_temp_c": 21.4, "humidity_pct": 31.4})],
        [],
    ),
    "lorawan_codecs/sensecap_s210x_device_properties.json": ("sensecap/bt-sensecap/up", [], []),  # counted
}
IGNORED = {"no_records": 1, "empty": 0}


def test_every_line_protocol_and_codec_file_of_the_corpus_has_its_predicted_outcome(
    mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str
) -> None:
    entries = manifest("influx_line_protocol", "lorawan_codec_output")
    assert {e["file"] for e in entries} == set(EXPECTED), "a corpus file without an expectation, or one gone"
    items = [(EXPECTED[e["file"]][0], (CORPUS / e["file"]).read_bytes()) for e in entries]
    predicted_dead = {f: dead for f, (_, _, dead) in EXPECTED.items() if dead}
    dead = Collector(mosquitto.port, f"{DLQ_PREFIX}/#")
    try:
        with SourcesIngest(ingest_settings(mosquitto.port, influxd.url, influx_db), FLEET, SOURCES) as ingest:
            publish(mosquitto.port, items)
            ingest.wait_for(
                lambda: ingest.metric("ioc_ingest_messages_acked_total") >= len(items), what="every message acked"
            )
            ignored = {e: ingest.metric("ioc_ingest_ignored_total", event=e) for e in IGNORED}
        wait_until(lambda: len(dead.messages) >= sum(map(len, predicted_dead.values())))
    finally:
        dead.close()

    texts = {(CORPUS / e["file"]).read_text(encoding="utf-8"): e["file"] for e in entries}
    seen: dict[str, list[tuple[str, str]]] = {}
    for letter in dead.json():
        file = texts.get(letter.get("payload", ""))
        assert file is not None, f"a dead letter that is not a corpus file: {letter['reason']}: {letter['detail']}"
        want = dict(predicted_dead.get(file, []))
        detail = letter["detail"]
        start = next((s for r, s in predicted_dead.get(file, []) if r == letter["reason"] and detail.startswith(s)), "")
        seen.setdefault(file, []).append((letter["reason"], start or detail))
        assert want, f"{file}: an unpredicted dead letter {letter['reason']}: {detail}"
    assert {f: sorted(v) for f, v in seen.items()} == {f: sorted(v) for f, v in predicted_dead.items()}
    assert ignored == IGNORED

    for file, (_, readings, _) in EXPECTED.items():
        by_device: dict[tuple[str, str], list[Reading]] = {}
        for reading in readings:
            by_device.setdefault(reading[:2], []).append(reading)
        for (measurement, device), wanted in by_device.items():
            got = rows(influxd.url, influx_db, f'SELECT * FROM "{measurement}" WHERE "device_id" = \'{device}\'')
            assert got, f"{file}: nothing stored for {device}"
            assert len(got) == len(wanted), f"{file}: {device} has {len(got)} points, not {len(wanted)}"
            for point, (_, _, when, fields) in zip(got, wanted, strict=True):
                if when is not None:
                    assert point["time"] == when, file
                assert {k: point[k] for k in fields} == pytest.approx(fields), file
                assert {k for k, v in point.items() if v is not None} - {"time", "seq", "device_id", "province",
                        "district", "site", "crop"} == set(fields), file  # fmt: skip
    everything = query(influxd.url, "SELECT * FROM /.*/", db=influx_db)
    predicted = {(r[0], r[1], r[2]) for _, readings, _ in EXPECTED.values() for r in readings}
    assert sum(len(series["values"]) for series in everything) == len(predicted)  # and nothing else was stored
