"""End-to-end check of the Node-RED peer against a real Mosquitto and InfluxDB 1.x.

Publishes (QoS 1) single-reading messages and gateway batches to
``ioc/v1/hau_giang/water_quality/wq-NNNN/telemetry``, waits until InfluxDB holds them all, then
checks the count of ``seq`` and every field value; prints OK with the counts or exits non-zero.
With ``--rate``, also offers that many single-reading messages/s for ``--seconds`` and reports how
fast they landed in InfluxDB.

    python -m bench.peers.nodered_smoke [--singles 2000 --gateways 20 --batch 100] [--rate 3000 --seconds 10]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.peers import nodered
from ioc.servers import start_influxd, start_mosquitto
from storage.influxql import query

DB = "nodered_smoke"
KIND = "water_quality"
TS0 = 1_700_000_000_000
DEVICES = 20


def topic(device: int) -> str:
    return f"ioc/v1/hau_giang/{KIND}/wq-{device:04d}/telemetry"


def reading(seq: int) -> dict[str, Any]:
    """Reading ``seq`` (timestamps are distinct per device since seq is global)."""
    return {
        "ts": TS0 + seq,
        "seq": seq,
        "ph": round(6.5 + (seq % 17) * 0.1, 2),
        "do_mg_l": round(4.0 + (seq % 29) * 0.125, 3),
        "temp_c": 27 + seq % 5,  # a JSON integer: stored as a float like every other number
        "salinity_ppt": (seq % 7) / 4,
    }


def count(url: str, where: str = "") -> int:
    series = query(url, f'SELECT count("seq") FROM "{KIND}" {where}', db=DB)
    return int(series[0]["values"][0][1]) if series else 0


def wait_count(url: str, expected: int, timeout_s: float) -> tuple[int, float]:
    """Poll until ``expected`` points are stored (or the count stalls past ``timeout_s``)."""
    start = time.monotonic()
    last, last_change = -1, start
    while True:
        n = count(url)
        now = time.monotonic()
        if n != last:
            last, last_change = n, now
        if n >= expected or now - last_change > timeout_s:
            return n, now - start
        time.sleep(0.05)


def connect(port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="nodered-smoke-publisher")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def publish_all(client: mqtt.Client, messages: list[tuple[str, bytes]]) -> None:
    infos = [client.publish(t, payload, qos=1) for t, payload in messages]
    for info in infos:
        info.wait_for_publish(60)


def check_values(url: str, expected: dict[int, tuple[str, dict[str, Any]]]) -> list[str]:
    """Every stored point against what was published; returns the mismatches."""
    rows: list[list[Any]] = []
    series = query(url, f'SELECT * FROM "{KIND}"', db=DB)
    columns: list[str] = series[0]["columns"] if series else []
    for s in series:
        rows.extend(s["values"])
    errors: list[str] = []
    for row in rows:
        got = dict(zip(columns, row, strict=True))
        seq = int(got["seq"])
        device, r = expected.get(seq, ("?", {}))
        want = {"time": r.get("ts"), "device_id": device, **{k: v for k, v in r.items() if k != "ts"}}
        if any(got.get(k) != v for k, v in want.items()):
            errors.append(f"seq {seq}: stored {got}, published {want}")
    if len(rows) != len(expected):
        errors.append(f"{len(rows)} rows stored, {len(expected)} published")
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--singles", type=int, default=2000)
    parser.add_argument("--gateways", type=int, default=20)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rate", type=float, default=0.0, help="then offer this many messages/s (0: skip)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, data)")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="nodered-smoke-"))
    mq = start_mosquitto(tmp / "mq")
    influx = start_influxd(tmp / "influx")
    proc = None
    try:
        influx.create_database(DB)
        t0 = time.monotonic()
        nodered.install()
        proc = nodered.start(mq.port, influx.url, DB, user_dir=tmp / "node-red", log_path=tmp / "node-red.log")
        print(f"node-red up in {time.monotonic() - t0:.1f} s (log {tmp / 'node-red.log'})")

        expected: dict[int, tuple[str, dict[str, Any]]] = {}
        messages: list[tuple[str, bytes]] = []
        seq = 0
        for i in range(args.singles):
            r = reading(seq)
            messages.append((topic(i % DEVICES), json.dumps(r).encode()))
            expected[seq] = (f"wq-{i % DEVICES:04d}", r)
            seq += 1
        for g in range(args.gateways):
            batch = [reading(seq + j) for j in range(args.batch)]
            device = f"wq-{DEVICES + g % DEVICES:04d}"
            messages.append((topic(DEVICES + g % DEVICES), json.dumps({"readings": batch}).encode()))
            expected.update({r["seq"]: (device, r) for r in batch})
            seq += args.batch
        client = connect(mq.port)
        t0 = time.monotonic()
        publish_all(client, messages)
        published_s = time.monotonic() - t0
        stored, took = wait_count(influx.url, len(expected), timeout_s=10)
        print(
            f"published {len(messages)} messages ({len(expected)} readings) in {published_s:.2f} s; "
            f"{stored} stored after {took:.2f} s"
        )
        errors = check_values(influx.url, expected)
        if stored != len(expected) or errors:
            print("FAIL", *errors[:10], sep="\n  ", file=sys.stderr)
            print(nodered._tail(tmp / "node-red.log"), file=sys.stderr)
            return 1
        keys = query(influx.url, f'SHOW FIELD KEYS FROM "{KIND}"', db=DB)[0]["values"]
        seq_type = dict(keys)["seq"]
        print(
            f'OK: count("seq") = {stored} = {args.singles} singles + {args.gateways} x {args.batch}; '
            f"values match; seq is a {seq_type} field"
        )

        if args.rate > 0:
            n = int(args.rate * args.seconds)
            base = count(influx.url)
            t0 = time.monotonic()
            for i in range(n):
                r = reading(seq + i)
                client.publish(topic(i % DEVICES), json.dumps(r).encode(), qos=1)
                ahead = t0 + (i + 1) / args.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            offered_s = time.monotonic() - t0
            stored, lag = wait_count(influx.url, base + n, timeout_s=10)
            stored -= base
            took = offered_s + lag
            print(
                f"offered {n} messages at {n / offered_s:.0f}/s for {offered_s:.1f} s; {stored} stored after "
                f"{took:.1f} s: {stored / took:.0f} messages/s end to end (lag after the last publish {lag:.1f} s)"
            )
        client.loop_stop()
        client.disconnect()
        return 0
    finally:
        if proc is not None:
            nodered.stop(proc)
        mq.stop()
        influx.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
