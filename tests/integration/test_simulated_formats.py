"""``ioc simulate --format F`` → real Mosquitto → ``ioc ingest --sources deploy/sources.sim.yaml`` → real
InfluxDB: for every format (and the demo's mixed fleet) exactly the readings published are stored,
field by field; a Sparkplug edge node rebirths when a restarted ingest asks it to."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from contract.fields import Kind
from contract.fleet import Fleet, dump_fleet
from ingest.config import IngestSettings
from ingest.service import IngestService
from ingest.sources.config import load_sources
from ioc.servers import InfluxServer, ServerProcess, query
from simulators.config import SimulateSettings
from simulators.fleetgen import generate_fleet
from simulators.formats import CHOICES, NATIVE
from simulators.formats.sparkplug import EdgeNode
from simulators.publisher import FleetPublisher
from tests.helpers import Collector, IngestThread, LoopThread, count_points, ingest_settings
from tests.integration.test_simulated_fleet import run_simulate

SOURCES_FILE = Path(__file__).resolve().parents[2] / "deploy" / "sources.sim.yaml"
SOURCES = load_sources(SOURCES_FILE)


class SourcesIngest(IngestThread):
    """Ingest reading the simulated formats' sources file."""

    def __init__(self, settings: IngestSettings, fleet: Fleet) -> None:
        self.service = IngestService(settings, fleet, sources=SOURCES)
        LoopThread.__init__(self, self.service.run)


def stored_points(url: str, db: str) -> dict[tuple[str, int, str], dict[str, Any]]:
    """Every stored reading: (device, ts, camera event or "") → its fields."""
    points: dict[tuple[str, int, str], dict[str, Any]] = {}
    for kind in Kind:
        for series in query(url, f'SELECT * FROM "{kind.value}" GROUP BY "device_id"', db=db):
            device = series["tags"]["device_id"]  # type: ignore[index]
            for row in series["values"]:  # type: ignore[attr-defined]
                point = dict(zip(series["columns"], row, strict=True))  # type: ignore[call-overload]
                points[(device, point["time"], point.get("event") or "")] = point
    return points


def assert_equal_to_published(
    points: dict[tuple[str, int, str], dict[str, Any]], record: Path, fleet: Fleet
) -> set[str]:
    """Each published reading is a stored point with its values (1e-9 relative); returns the formats seen."""
    by_id = fleet.by_id()
    formats = set()
    for line in record.read_bytes().splitlines():
        item = msgspec.json.decode(line)
        device, reading = by_id[item["device"]], item["reading"]
        formats.add(item["format"])
        point = points[(device.id, reading["ts"], reading.get("event", ""))]
        for field, value in reading.items():
            if field in ("ts", "event"):
                continue
            got = point[field]
            same = got == value if isinstance(value, str) else math.isclose(got, value, rel_tol=1e-9, abs_tol=1e-9)
            assert same, (item["format"], device.id, field, got, value)
        assert (point["province"], point["crop"]) == (device.province, device.crop)
    return formats


@pytest.mark.parametrize("fmt", [c for c in CHOICES if c != NATIVE])
def test_each_format_stores_exactly_what_was_published(
    mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str, tmp_path: Path, fmt: str
) -> None:
    fleet = generate_fleet(20, seed=7)
    fleet_file = tmp_path / "fleet.yaml"
    dump_fleet(fleet, fleet_file)
    record = tmp_path / "published.jsonl"
    with SourcesIngest(ingest_settings(mosquitto.port, influxd.url, influx_db), fleet) as ingest:
        summary = run_simulate(
            [
                f"--mqtt-url=mqtt://127.0.0.1:{mosquitto.port}",
                f"--fleet={fleet_file}",
                f"--format={fmt}",
                "--seed=7",
                "--backfill-hours=12",
                "--backfill-batch=20",
                "--duration=0",
                f"--record={record}",
            ],
            tmp_path,
        )
        n = summary["published"]
        assert isinstance(n, int)
        assert n > 500
        ingest.wait_for(lambda: ingest.metric("ioc_ingest_readings_stored_total") >= n, what=f"{n} stored")
        assert ingest.service.metrics.rejected_total() == 0
        assert ingest.metric("ioc_ingest_readings_stored_total") == n
    assert count_points(influxd.url, influx_db) == n
    assert len(record.read_bytes().splitlines()) == n
    formats = assert_equal_to_published(stored_points(influxd.url, influx_db), record, fleet)
    if fmt == "mixed":
        assert formats == {NATIVE, "chirpstack_v4", "sparkplug_b", "senml"}
    else:
        assert fmt in formats


def test_sparkplug_edge_node_rebirths_for_a_restarted_ingest(
    mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str, tmp_path: Path
) -> None:
    from ingest.sources.sparkplug import REBIRTH_REASON

    whole = generate_fleet(40, seed=4)
    group_edge = next(d.external_ids.sparkplug for d in whole.devices if d.kind is not Kind.CAMERA)
    assert group_edge is not None
    node = group_edge.rsplit("/", 1)[0]
    fleet = Fleet(devices=tuple(d for d in whole.devices if (d.external_ids.sparkplug or "").startswith(node + "/")))
    fleet_file = tmp_path / "fleet.yaml"
    dump_fleet(fleet, fleet_file)
    settings = ingest_settings(mosquitto.port, influxd.url, influx_db)
    sim = SimulateSettings(  # type: ignore[call-arg]
        _env_file=None, mqtt_url=f"mqtt://127.0.0.1:{mosquitto.port}", fleet=fleet_file, seed=4,
        format="sparkplug_b", rate=400, duration=None, record=tmp_path / "published.jsonl",
    )  # fmt: skip
    publisher = FleetPublisher(fleet, sim)
    dlq = Collector(mosquitto.port, "ioc/v1/_dlq/#")
    ncmd = Collector(mosquitto.port, "spBv1.0/+/NCMD/#")
    births = Collector(mosquitto.port, "spBv1.0/+/NBIRTH/#")
    try:
        with SourcesIngest(settings, fleet) as first:
            thread = threading.Thread(target=publisher.run, daemon=True)
            thread.start()
            first.wait_for(lambda: first.metric("ioc_ingest_readings_stored_total") >= 50, what="readings stored")
        stored_before = first.metric("ioc_ingest_readings_stored_total")
        acked_before = publisher.stats.readings_acked
        deadline = time.monotonic() + 60
        while publisher.stats.readings_acked < acked_before + 20:  # published while no ingest runs: queued
            assert time.monotonic() < deadline, "the edge node stopped publishing"
            time.sleep(0.02)
        with SourcesIngest(settings, fleet) as second:  # same client id: its session's queue, no alias state
            second.wait_for(lambda: len(ncmd.messages) >= 1, what="a rebirth request")
            second.wait_for(  # the node answered with its births: what it publishes now is stored
                lambda: second.metric("ioc_ingest_readings_stored_total") > len(dlq.messages) + 20,
                what="readings stored after the rebirth",
            )
            publisher.stop.set()
            thread.join(60)
            assert not thread.is_alive()
            n = publisher.stats.readings_acked
            second.wait_for(
                lambda: stored_before + second.metric("ioc_ingest_readings_stored_total") + len(dlq.messages) >= n,
                what="every reading stored or dead-lettered",
            )
            stored_after = second.metric("ioc_ingest_readings_stored_total")
    finally:
        for c in (dlq, ncmd, births):
            c.close()
    letters = dlq.json()
    assert letters
    assert {d["reason"] for d in letters} == {REBIRTH_REASON.value}
    assert all("/DDATA/" in d["topic"] for d in letters)
    assert ncmd.messages[0][0] == f"spBv1.0/{node.replace('/', '/NCMD/')}"
    (edge,) = publisher.links
    assert isinstance(edge, EdgeNode)
    assert edge.rebirths >= 1
    assert len(births.messages) >= 2  # the first birth, and the rebirth
    assert stored_after > len(letters)  # data after the rebirth is stored
    assert stored_before + stored_after + len(letters) == n
    assert count_points(influxd.url, influx_db) == n - len(letters)
