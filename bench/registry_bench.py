"""The registry at province scale and beyond: 1,000, 10,000 and 100,000 devices.

    python -m bench.registry_bench [--sizes 1000,10000,100000]

Per size, with real processes on this machine (Mosquitto and InfluxDB 1.x on free ports):

- ``import_s``: ``ioc devices import fleet.csv`` into a new SQLite registry, whole process;
- ``ready_s``: ``ioc ingest --registry-url …`` from spawn until a status report of the registry's
  last device is stored (subscribed, registry loaded, rule engine built, first batch written);
  the median of three starts (``ready_s_min_max``: the other two bound it);
- ``ingest_rss_mib``: ingest's resident memory then (``VmRSS``), and its growth over the smallest size;
- ``api_page_ms``: ``GET /v1/devices?limit=100`` from ``ioc api`` on the same registry, median of 20
  requests after one warm-up (a page from the middle of the id order).

Targets (issue 12): import ≤ 30 s and ready ≤ 3 s at 100k; RSS growth ≤ 100 MB from 1k to 100k;
a page ≤ 100 ms. Printed as a table and returned as a dict for ``bench.run``.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec

from bench.procstat import rss_mib, tree
from contract.topics import device_topic
from ioc.servers import free_port, start_influxd, start_mosquitto
from registry.files import write_devices
from simulators.fleetgen import generate_fleet
from storage.influxql import query
from storage.layout import DEVICE_ID, STATUS_MEASUREMENT, STATUS_ONLINE

SIZES = (1_000, 10_000, 100_000)
STARTS = 3
"""Ingest is started this many times per size; ``ready_s`` is the median."""
BIN = Path(sys.executable).parent
ADMIN_KEY = "bench-admin-key-0123456789abcdefghijklmnop"


def _publish_until_stored(mqtt_port: int, influx_url: str, db: str, device: Any, deadline: float) -> bool:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-registry", protocol=paho.MQTTv5)
    client.connect("127.0.0.1", mqtt_port)
    client.loop_start()
    topic = device_topic(device.province, device.kind.value, device.id, "status")
    try:
        seq = 0
        while time.monotonic() < deadline:
            body = {"ts": int(time.time() * 1000), "seq": seq, "state": "online"}
            client.publish(topic, msgspec.json.encode(body), qos=1).wait_for_publish(5)
            seq += 1
            stored = (
                f'SELECT count("{STATUS_ONLINE}") FROM "{STATUS_MEASUREMENT}" WHERE "{DEVICE_ID}" = \'{device.id}\''
            )
            rows = query(influx_url, stored, db=db)
            if rows:
                return True
            time.sleep(0.02)
        return False
    finally:
        client.disconnect()
        client.loop_stop()


def measure(n: int, work: Path) -> dict[str, Any]:
    """The figures for one registry size."""
    fleet = generate_fleet(n, 1)
    csv_file = work / f"fleet-{n}.csv"
    write_devices(fleet.devices, csv_file)
    url = f"sqlite:///{work / f'registry-{n}.db'}"
    started = time.monotonic()
    subprocess.run([str(BIN / "ioc"), "devices", "import", str(csv_file), "--registry-url", url], check=True,
                   capture_output=True, timeout=600)  # fmt: skip
    import_s = time.monotonic() - started

    broker = start_mosquitto(work / f"mosquitto-{n}")
    influx = start_influxd(work / f"influx-{n}")
    figures: dict[str, Any] = {"devices": n, "import_s": round(import_s, 2)}
    ready: list[float] = []
    try:
        for start in range(STARTS):  # each start on a fresh database, under a client id of its own
            db = f"bench{start}"
            influx.create_database(db)
            env = dict(
                os.environ, IOC_MQTT_URL=f"mqtt://127.0.0.1:{broker.port}", IOC_INFLUX_URL=influx.url,
                IOC_INFLUX_DB=db, IOC_REGISTRY_URL=url, IOC_ALERTS_DB=str(work / f"alerts-{n}-{start}.db"),
                IOC_METRICS_PORT="0", IOC_MQTT_CLIENT_ID=f"bench-ingest-{n}-{start}", IOC_WEBHOOKS="false",
            )  # fmt: skip
            env.pop("IOC_FLEET", None)
            started = time.monotonic()
            ingest = subprocess.Popen([str(BIN / "ioc"), "ingest"], env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
            try:
                if _publish_until_stored(broker.port, influx.url, db, fleet.devices[-1], started + 120):
                    ready.append(time.monotonic() - started)
                if start == STARTS - 1:
                    figures["ingest_rss_mib"] = rss_mib(tree(ingest.pid))
                    figures["api_page_ms"] = _api_page_ms(url, work, n, fleet.devices[n // 2].id, influx.url, db)
            finally:
                ingest.send_signal(signal.SIGTERM)
                ingest.wait(60)
    finally:
        broker.stop()
        influx.stop()
    figures["ready_s"] = round(statistics.median(ready), 2) if len(ready) == STARTS else None
    figures["ready_s_min_max"] = [round(min(ready), 2), round(max(ready), 2)] if ready else None
    return figures


def _api_page_ms(url: str, work: Path, n: int, middle: str, influx_url: str, db: str) -> float | None:
    port = free_port()
    env = dict(os.environ, IOC_REGISTRY_URL=url, IOC_API_PORT=str(port), IOC_API_ADMIN_KEY=ADMIN_KEY,
               IOC_ALERTS_DB=str(work / f"api-alerts-{n}.db"), IOC_INFLUX_URL=influx_url, IOC_INFLUX_DB=db)  # fmt: skip
    env.pop("IOC_FLEET", None)
    api = subprocess.Popen([str(BIN / "ioc"), "api"], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            else:
                return None
            params: dict[str, str | int] = {"limit": 100, "after": middle}
            if client.get("/v1/devices", params=params).status_code != 200:
                return None
            times = []
            for _ in range(20):
                t = time.perf_counter()
                client.get("/v1/devices", params=params).raise_for_status()
                times.append((time.perf_counter() - t) * 1000)
            return round(statistics.median(times), 1)
    finally:
        api.send_signal(signal.SIGTERM)
        api.wait(60)


def run(sizes: tuple[int, ...] = SIZES) -> dict[str, Any]:
    """Every size in one run; RSS growth over the smallest."""
    with tempfile.TemporaryDirectory(prefix="bench-registry-") as tmp:
        rows = [measure(n, Path(tmp)) for n in sizes]
    base = rows[0]["ingest_rss_mib"]
    for row in rows:
        row["rss_growth_mib"] = round(row["ingest_rss_mib"] - base, 1)
    return {"sizes": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(str(s) for s in SIZES))
    args = parser.parse_args()
    result = run(tuple(int(s) for s in args.sizes.split(",")))
    print(f"{'devices':>8} {'import s':>9} {'ready s':>8} {'RSS MiB':>8} {'growth':>7} {'page ms':>8}")
    for r in result["sizes"]:
        print(f"{r['devices']:>8,} {r['import_s']:>9} {r['ready_s']!s:>8} {r['ingest_rss_mib']:>8} "
              f"{r['rss_growth_mib']:>7} {r['api_page_ms']!s:>8}")  # fmt: skip
    print(msgspec.json.encode(result).decode())


if __name__ == "__main__":
    main()
