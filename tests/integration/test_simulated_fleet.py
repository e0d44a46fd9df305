"""The simulators through the real pipeline: exact counts and values, the malformed corpus, v2 writes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import msgspec
import pytest

from contract.fields import Kind
from contract.fleet import dump_fleet
from ioc.servers import InfluxServer, ServerProcess, query
from simulators.fleetgen import generate_fleet
from simulators.malformed import corpus
from tests.helpers import Collector, IngestThread, count_points, ingest_settings, publish


def run_simulate(args: list[str], cwd: Path) -> dict[str, object]:
    """``ioc simulate`` as a process; returns its JSON summary (the last stdout line)."""
    out = subprocess.run([sys.executable, "-m", "ioc", "simulate", *args], cwd=cwd, capture_output=True, timeout=300)
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    summary: dict[str, object] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return summary


@pytest.mark.parametrize("gateway_batch", [1, 50])
def test_simulated_readings_are_stored_exactly_with_their_values(
    mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str, tmp_path: Path, gateway_batch: int
) -> None:
    fleet = generate_fleet(40, seed=7)
    fleet_file = tmp_path / "fleet.yaml"
    dump_fleet(fleet, fleet_file)
    record = tmp_path / "published.jsonl"
    n = 3000
    with IngestThread(ingest_settings(mosquitto.port, influxd.url, influx_db), fleet) as ingest:
        summary = run_simulate(
            [
                f"--mqtt-url=mqtt://127.0.0.1:{mosquitto.port}",
                f"--fleet={fleet_file}",
                "--seed=7",
                "--backfill-hours=48",
                f"--backfill-batch={gateway_batch}",
                f"--gateway-batch={gateway_batch}",
                f"--readings={n}",
                "--rate=2000",
                f"--record={record}",
            ],
            tmp_path,
        )
        assert summary["published"] == n
        ingest.wait_for(lambda: ingest.metric("ioc_ingest_readings_stored_total") >= n, what=f"{n} stored")
        assert ingest.service.metrics.rejected_total() == 0
    assert count_points(influxd.url, influx_db) == n

    published = [msgspec.json.decode(line) for line in record.read_bytes().splitlines()]
    assert len(published) == n
    by_id = {d.id: d for d in fleet.devices}
    stored: dict[tuple[str, int, str], dict[str, object]] = {}
    for kind in Kind:
        for series in query(influxd.url, f'SELECT * FROM "{kind.value}" GROUP BY "device_id"', db=influx_db):
            columns = series["columns"]
            device_id = series["tags"]["device_id"]  # type: ignore[index]
            for row in series["values"]:  # type: ignore[attr-defined]
                point = dict(zip(columns, row, strict=True))  # type: ignore[call-overload]
                stored[(device_id, point["time"], point.get("event") or "")] = point
    for item in published:
        topic, reading = item["topic"], item["reading"]
        device = by_id[topic.split("/")[4]]
        point = stored[(device.id, reading["ts"], reading.get("event", ""))]
        for field, value in reading.items():
            if field not in ("ts", "event"):
                assert point[field] == value, (topic, field)
        assert (point["province"], point["crop"]) == (device.province, device.crop)


def test_every_malformed_case_is_dead_lettered_and_good_traffic_flows(
    mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str
) -> None:
    fleet = generate_fleet(8, seed=3)
    now = int(time.time() * 1000)
    cases = [case for device in fleet.devices for case in corpus(device, now)]
    kinds = {d.kind for d in fleet.devices}
    assert kinds == set(Kind)
    dlq = Collector(mosquitto.port, "ioc/v1/_dlq/#")
    try:
        with IngestThread(ingest_settings(mosquitto.port, influxd.url, influx_db), fleet) as ingest:
            publish(mosquitto.port, [(c.topic, c.payload) for c in cases])
            ingest.wait_for(lambda: len(dlq.messages) >= len(cases), what="every dead letter")
            assert ingest.metric("ioc_ingest_readings_stored_total") == 0
            good = fleet.devices[0]
            topic = f"ioc/v1/{good.province}/{good.kind.value}/{good.id}/telemetry"
            from simulators.malformed import valid_reading

            publish(mosquitto.port, [(topic, msgspec.json.encode(valid_reading(good, now)))], client_id="good")
            ingest.wait_for(lambda: ingest.metric("ioc_ingest_readings_stored_total") == 1, what="good reading")
    finally:
        dlq.close()
    got = sorted((d["topic"], d["reason"]) for d in dlq.json())
    assert got == sorted((c.topic, c.reason.value) for c in cases)
    measurements = query(influxd.url, "SHOW MEASUREMENTS", db=influx_db)[0]["values"]
    assert measurements == [[fleet.devices[0].kind.value]]
    assert len(query(influxd.url, "SHOW SERIES", db=influx_db)[0]["values"]) == 1  # type: ignore[arg-type]


def test_v2_write_path_through_influxdb_client(
    mosquitto: ServerProcess, victoria_metrics: ServerProcess, tmp_path: Path
) -> None:
    """``--influx-api v2``: influxdb-client's write API against a real /api/v2/write server."""
    fleet = generate_fleet(20, seed=5)
    url = f"http://127.0.0.1:{victoria_metrics.port}"
    settings = ingest_settings(
        mosquitto.port, url, "unused", influx_api="v2", influx_bucket="ioc", influx_org="mekong", influx_token="t0ken"
    )
    base = int(time.time() * 1000) - 3_600_000
    salinity = [d for d in fleet.devices if d.kind is Kind.SALINITY]
    items = [
        (
            f"ioc/v1/{d.province}/salinity/{d.id}/telemetry",
            msgspec.json.encode({"ts": base + i * 1000, "seq": i, "salinity_ppt": 0.25 + i / 1000, "ec_us_cm": 500.0}),
        )
        for d in salinity
        for i in range(100)
    ]
    with IngestThread(settings, fleet) as ingest:
        publish(mosquitto.port, items)
        ingest.wait_for(lambda: ingest.metric("ioc_ingest_readings_stored_total") == len(items), what="stored")
    httpx.get(f"{url}/internal/force_flush", timeout=10)
    resp = httpx.get(f"{url}/api/v1/export", params={"match[]": '{__name__="salinity_seq"}'}, timeout=30)
    samples = [json.loads(line) for line in resp.text.splitlines()]
    seen = {(s["metric"]["device_id"], v) for s in samples for v in s["values"]}
    assert len(seen) == len(items)
    assert {s["metric"]["province"] for s in samples} == {d.province for d in salinity}
