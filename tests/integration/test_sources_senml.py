"""SenML (RFC 8428) real payloads, JSON and CBOR, through real Mosquitto and InfluxDB: each of the
RFC's examples in the corpus is stored with exactly the points it carries, or dead-lettered with the
reasons predicted — nothing else.

The corpus is read in place from ``../shared/realworld/senml`` (CI has it); a clone without it skips.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from contract.clock import now_ms
from contract.fleet import Fleet
from contract.topics import DLQ_PREFIX
from ingest.sources.config import parse_sources
from ioc.servers import InfluxServer, ServerProcess, query
from tests.corpus import CORPUS, SourcesIngest, corpus_device, needs_corpus, rows, wait_until
from tests.helpers import Collector, ingest_settings, publish

SENML = CORPUS / "senml"
"""The RFC's examples in the corpus (``../shared/realworld/senml``)."""
pytestmark = needs_corpus("senml/README.md")

SOURCES = parse_sources(
    {
        "sources": [{"format": "ioc_v1"}, {"format": "senml", "topics": ["senml/#"]}],
        "models": {
            "senml_ow": {  # the RFC's 1-wire device, as a light trap's weather kit
                "fields": {
                    "air_temp_c": ["temp", "Cel"],  # a record named temp, or the unnamed one in Cel
                    "humidity_pct": "%RH",
                    "battery_v": "voltage",
                    "battery_pct": "%EL",
                }
            },
            "senml_ipv6": {"fields": {"air_temp_c": "temperature", "humidity_pct": "humidity"}},
        },
    },
    "test sources",
)


FLEET = Fleet(
    devices=(
        corpus_device("bt-trap-ow", "light_trap", "senml_ow", senml="urn:dev:ow:10e2073a01080063"),
        # ex3's id is one digit shorter (an RFC typo); of ex6's devices ::2 is registered, ::1 is not
        corpus_device("bt-trap-ow6", "light_trap", "senml_ow", senml="urn:dev:ow:10e2073a0108006"),
        corpus_device("bt-trap-v6", "light_trap", "senml_ipv6", senml="2001:db8::2"),
    )
)

FLEET_TAGS = frozenset(("crop", "device_id", "district", "province", "site"))
ARRIVAL = -1
"""A point at the message's arrival time (the pack's times are relative to "now")."""
HUMIDITY_EX4 = (21.2, 21.3, 21.4, 21.4, 21.5, 21.5, 21.5, 21.6, 21.7, 21.5, 21.5, 21.5)
OW_TRAP, OW_TRAP6, V6_TRAP = "bt-trap-ow", "bt-trap-ow6", "bt-trap-v6"
TOO_HIGH = "battery_v: 120.1 is outside 0..60 V"  # the RFC's 120.1 V is mains, not a battery
EXPECTED: dict[str, tuple[list[tuple[str, str]], list[tuple[str, int, dict[str, float]]]]] = {
    # file: (its dead letters (reason, detail), its points (device, time ms, fields)), in publishing order
    "rfc8428_ex1.json": ([], [(OW_TRAP, ARRIVAL, {"air_temp_c": 23.1})]),  # no bn: the name is the device
    "rfc8428_ex10.json": ([], [(OW_TRAP, 1_276_020_076_000, {"air_temp_c": 23.5}),
                               (OW_TRAP, 1_276_020_091_000, {"air_temp_c": 23.6})]),
    "rfc8428_ex11.json": ([], [(OW_TRAP, 1_276_020_076_000, {"air_temp_c": 23.5}),
                               (OW_TRAP, 1_276_020_091_000, {"air_temp_c": 23.6})]),
    "rfc8428_ex13.json": ([("unknown_device", "SenML device '2001:db8::3' is not an active registered device "
                                              "(external id senml)"),
                           ("unknown_device", "SenML device '2001:db8::4' is not an active registered device "
                                              "(external id senml)")], []),
    "rfc8428_ex2.json": ([("out_of_range", TOO_HIGH)], []),  # and current (A): no field of ours
    "rfc8428_ex3.cbor": ([("out_of_range", TOO_HIGH)], []),  # at 1276020076.001; current alone at the others
    "rfc8428_ex3.json": ([("out_of_range", TOO_HIGH)], []),
    "rfc8428_ex4.json": ([], [(OW_TRAP, 1_320_067_464_000 + t * 1000, {"humidity_pct": v})
                              for t, v in zip((0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 91, 92), HUMIDITY_EX4,
                                              strict=True)]),
    "rfc8428_ex5.json": (
        [],  # %EL at t=150: battery_pct of a device_status point (asserted below)
        [(OW_TRAP, 1_320_067_464_000 + t * 1000, {"humidity_pct": v})  # lat/lon: no field of ours
         for t, v in ((0, 20.0), (60, 20.3), (120, 20.7), (180, 21.2))],
    ),
    "rfc8428_ex6.json": (
        [("unknown_device", "SenML device '2001:db8::1' is not an active registered device (external id senml)")],
        [(V6_TRAP, 1_320_078_429_000, {"air_temp_c": 25.2, "humidity_pct": 30.0})],
    ),
    "rfc8428_ex7.json": ([], [(OW_TRAP, ARRIVAL, {"air_temp_c": 23.1})]),  # vs, vb, vd: not mapped, left out
}  # fmt: skip


def _rows(url: str, db: str, device: str) -> list[dict[str, Any]]:
    return rows(url, db, f'SELECT * FROM "light_trap" WHERE "device_id" = \'{device}\'')


def test_every_senml_file_of_the_corpus_has_its_predicted_outcome(
    mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str
) -> None:
    files = sorted(p.name for p in SENML.iterdir() if p.suffix in (".json", ".cbor") and ".resolved." not in p.name)
    assert set(files) == set(EXPECTED), "a corpus file without an expectation, or one gone"
    payloads = {name: (SENML / name).read_bytes() for name in files}
    dead = Collector(mosquitto.port, f"{DLQ_PREFIX}/#")
    try:
        with SourcesIngest(ingest_settings(mosquitto.port, influxd.url, influx_db), FLEET, SOURCES) as ingest:
            sent_from = now_ms()
            publish(mosquitto.port, [(f"senml/{name}", payloads[name]) for name in files])
            ingest.wait_for(
                lambda: ingest.metric("ioc_ingest_messages_acked_total") >= len(files), what="every message acked"
            )
            acked_by = now_ms()
        predicted = sum(len(letters) for letters, _ in EXPECTED.values())
        wait_until(lambda: len(dead.messages) >= predicted)
        time.sleep(0.2)  # and nothing more comes
    finally:
        dead.close()

    by_payload = {payload: name for name, payload in payloads.items()}
    seen: dict[str, list[tuple[str, str]]] = {}
    for letter in dead.json():
        raw = letter["payload"].encode() if "payload" in letter else base64.b64decode(letter["payload_b64"])
        assert raw in by_payload, f"a dead letter that is not a corpus file: {letter['reason']}: {letter['detail']}"
        seen.setdefault(by_payload[raw], []).append((letter["reason"], letter["detail"]))
    assert seen == {name: letters for name, (letters, _) in EXPECTED.items() if letters}

    # One device's readings at one time are one point: a later file's fields overwrite an earlier's
    # (InfluxDB's rule; ex4 and ex5 share two times, ex10 and ex11 carry the same readings).
    want: dict[tuple[str, int], dict[str, float]] = {}
    at_arrival: dict[str, list[dict[str, float]]] = {}
    for name in files:
        for device, when, fields in EXPECTED[name][1]:
            if when == ARRIVAL:
                at_arrival.setdefault(device, []).append(fields)
            else:
                want.setdefault((device, when), {}).update(fields)
    for device in (OW_TRAP, OW_TRAP6, V6_TRAP):
        got: dict[int, dict[str, float]] = {}
        for row in _rows(influxd.url, influx_db, device):
            values = {k: v for k, v in row.items() if v is not None}
            assert values.pop("seq") == 0  # SenML has no counter
            when = values.pop("time")
            got[when] = {k: v for k, v in values.items() if k not in FLEET_TAGS}
        now_points = {t: fields for t, fields in got.items() if sent_from <= t <= acked_by}
        absolute = {t: f for t, f in got.items() if t not in now_points}
        assert absolute == {t: f for (d, t), f in want.items() if d == device}, device  # floats round-trip
        # ex1 and ex7 both say 23.1 °C "now": one point each, or one if they arrived in the same ms
        arrivals = at_arrival.get(device, [])
        assert 1 <= len(now_points) <= len(arrivals) if arrivals else not now_points, device
        assert all(fields in arrivals for fields in now_points.values()), device
    [status] = query(influxd.url, 'SELECT "online", "battery_pct" FROM "device_status"', db=influx_db)
    assert status["values"] == [[1_320_067_614_000, 1, 98.0]]  # ex5's %EL: remaining battery energy
