"""The ingest service against real Mosquitto and InfluxDB 1.x: storage, dead letters, draining."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import msgspec
import pytest

from contract.fields import TELEMETRY_FIELDS, Kind
from contract.fleet import Device, Fleet, dump_fleet
from contract.topics import device_topic
from ioc.servers import InfluxServer, ServerProcess, free_port, query
from tests.corpus import rows
from tests.helpers import Collector, IngestThread, count_points, ingest_settings, publish

NOW_MS = int(time.time() * 1000)


def small_fleet() -> Fleet:
    def dev(i: str, kind: str, site: str, crop: str = "none") -> Device:
        return Device(
            id=i,
            kind=kind,
            province="ben_tre",
            district="ba_tri",
            site=site,
            crop=crop,  # type: ignore[arg-type]
            lat=10.04,
            lon=106.6,
        )

    return Fleet(
        devices=(
            dev("bt-sal-1", "salinity", "river", "rice"),
            dev("bt-sal-2", "salinity", "canal", "durian"),
            dev("bt-wq-1", "water_quality", "pond", "shrimp"),
            dev("bt-trap-1", "light_trap", "field", "rice"),
            dev("bt-cam-1", "camera", "road"),
        )
    )


def telemetry(device: str, kind: str = "salinity") -> str:
    return device_topic("ben_tre", kind, device, "telemetry")


def test_readings_are_stored_exactly_once_with_their_values(
    mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str
) -> None:
    fleet = small_fleet()
    base = NOW_MS - 3_600_000
    singles = [
        (
            telemetry("bt-sal-1"),
            {"ts": base + i * 1000, "seq": i, "salinity_ppt": round(0.1 * i, 3), "ec_us_cm": 250.5 + i},
        )
        for i in range(300)
    ]
    gateway = {
        "readings": [
            {"ts": base + i * 1000, "seq": i, "do_mg_l": 4.25, "ph": 7.81, "temp_c": 29.5 + i / 1000}
            for i in range(250)
        ]
    }
    event = {
        "ts": base,
        "seq": 0,
        "event": "smoke_fire",
        "confidence": 0.93,
        "frames": 3,
        "image_url": 'https://cam.example.invalid/a "b"\\c.jpg',
    }
    items = [(t, msgspec.json.encode(p)) for t, p in singles]
    items.append((telemetry("bt-wq-1", "water_quality"), msgspec.json.encode(gateway)))
    items.append((device_topic("ben_tre", "camera", "bt-cam-1", "event"), msgspec.json.encode(event)))
    with IngestThread(ingest_settings(mosquitto.port, influxd.url, influx_db), fleet) as ingest:
        publish(mosquitto.port, items)
        # Stored is counted just before the batch is acked: wait for both (the test reads from another thread).
        ingest.wait_for(
            lambda: (
                ingest.metric("ioc_ingest_readings_stored_total") >= 551
                and ingest.metric("ioc_ingest_messages_inflight") == 0
            ),
            what="551 stored and acknowledged",
        )
        assert ingest.metric("ioc_ingest_messages_acked_total") == len(items)
    assert count_points(influxd.url, influx_db) == 551

    rows = query(
        influxd.url, 'SELECT "salinity_ppt", "ec_us_cm", "seq", "device_id", "crop" FROM "salinity"', db=influx_db
    )
    values = rows[0]["values"]
    assert len(values) == 300  # type: ignore[arg-type]
    for (_topic, sent), row in zip(singles, values, strict=True):  # type: ignore[call-overload]
        assert row == [sent["ts"], sent["salinity_ppt"], sent["ec_us_cm"], sent["seq"], "bt-sal-1", "rice"]
    wq = query(influxd.url, 'SELECT "temp_c" FROM "water_quality" WHERE "site" = \'pond\'', db=influx_db)
    assert [v[1] for v in wq[0]["values"]] == [r["temp_c"] for r in gateway["readings"]]  # type: ignore[index,union-attr]
    cam = query(influxd.url, 'SELECT "confidence", "image_url" FROM "camera" GROUP BY "event"', db=influx_db)
    assert cam[0]["tags"] == {"event": "smoke_fire"}
    assert cam[0]["values"] == [[base, 0.93, event["image_url"]]]


def test_gateway_batches_store_every_value_exactly(
    mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str
) -> None:
    """A gateway batch of full readings is formatted whole (msgspec's float text, ``2.5e-7`` where
    ``repr`` gives ``2.5e-07``), a sparse one reading by reading: InfluxDB must store every value
    exactly either way, ints as ints, a field left out as absent."""
    fleet = small_fleet()
    base = NOW_MS - 3_600_000
    edges = [2.5e-7, 1e-5, 0.0001, 0.1 + 0.2, 1 / 3, 49.99999999999999, 5e-324, -0.0, 1e-300, 4.0]
    sal = [
        {"ts": base + i, "seq": i, "ec_us_cm": 99_999.99999999999 - i, "salinity_ppt": v, "temp_c": -4.5e-9 * i,
         "water_level_cm": -999.875 + i, "battery_v": 3.1 + v, "rssi_dbm": -v}
        for i, v in enumerate(edges)
    ]  # fmt: skip
    names = [s.name for s in TELEMETRY_FIELDS[Kind.LIGHT_TRAP]]
    full = [
        {"ts": base + i, "seq": i, **{n: (i * 99_999 if s.type == "int" else edges[i] + s.lo * 0.5)
                                      for n, s in zip(names, TELEMETRY_FIELDS[Kind.LIGHT_TRAP], strict=True)}}
        for i in range(10)
    ]  # fmt: skip
    for r in full:
        r["lamp_on"] = r["seq"] % 2
        r["interval_s"] = 86_400
    sparse = [{"ts": base + 10 + i, "seq": 10 + i, "battery_v": 3.9 + edges[i], "lamp_on": 0} for i in range(10)]
    items = [
        (telemetry("bt-sal-2"), msgspec.json.encode({"readings": sal})),
        (telemetry("bt-trap-1", "light_trap"), msgspec.json.encode({"readings": full})),
        (telemetry("bt-trap-1", "light_trap"), msgspec.json.encode({"readings": sparse})),
    ]
    with IngestThread(ingest_settings(mosquitto.port, influxd.url, influx_db), fleet) as ingest:
        publish(mosquitto.port, items)
        ingest.wait_for(
            lambda: ingest.metric("ioc_ingest_messages_acked_total") == 3, what="the gateway messages acknowledged"
        )
        assert ingest.metric("ioc_ingest_readings_stored_total") == 30
    for measurement, sent in (("salinity", sal), ("light_trap", full + sparse)):
        stored = rows(influxd.url, influx_db, f'SELECT * FROM "{measurement}"')
        fields = [s.name for s in TELEMETRY_FIELDS[Kind(measurement)]] + ["seq"]
        assert [{f: row[f] for f in fields} for row in stored] == [{f: r.get(f) for f in fields} for r in sent]
        assert [row["time"] for row in stored] == [r["ts"] for r in sent]
    kinds = dict(query(influxd.url, 'SHOW FIELD KEYS FROM "light_trap"', db=influx_db)[0]["values"])  # type: ignore[arg-type]
    assert kinds == {s.name: s.type.replace("int", "integer") for s in TELEMETRY_FIELDS[Kind.LIGHT_TRAP]} | {
        "seq": "integer"
    }


def test_bad_messages_are_dead_lettered_with_their_reason(
    mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str
) -> None:
    fleet = small_fleet()
    ok = {"ts": NOW_MS, "seq": 1, "salinity_ppt": 0.4}
    cases: list[tuple[str, bytes, str]] = [
        (telemetry("bt-sal-1"), b'{"ts": 1700000000000, "seq": ', "bad_json"),
        (telemetry("bt-sal-1"), b'{"ts": 1700000000000, "seq": 1, "salinity_ppt": NaN}', "bad_json"),
        (telemetry("bt-sal-1"), b'{"ts": 1700000000000, "seq": 1, "salinity_ppt": Infinity}', "bad_json"),
        (telemetry("bt-sal-1"), b'{"ts": 1700000000000, "seq": 1, "salinity_ppt": "\xff\xfe"}', "bad_utf8"),
        (telemetry("bt-sal-1"), b'{"ts": 1700000000000, "seq": 1, "salinity_ppt": "1.2"}', "bad_type"),
        (telemetry("bt-sal-1"), b'{"ts": 1700000000000, "seq": 1, "salinity_ppt": null}', "bad_type"),
        (telemetry("bt-sal-1"), b'{"seq": 1, "salinity_ppt": 1.0}', "missing_field"),
        (telemetry("bt-sal-1"), b'{"ts": 1700000000000, "seq": 1, "salinity_ppt": 1.0, "mood": 3}', "unknown_field"),
        (telemetry("bt-sal-1"), b'{"ts": 1700000000000, "seq": 1, "salinity_ppt": 1e300}', "out_of_range"),
        (telemetry("bt-sal-1"), b'{"ts": 0, "seq": 1, "salinity_ppt": 1.0}', "bad_timestamp"),
        (telemetry("bt-sal-1"), b'{"ts": 1700000000, "seq": 1, "salinity_ppt": 1.0}', "bad_timestamp"),
        (
            telemetry("bt-sal-1"),
            msgspec.json.encode({"ts": NOW_MS + 3_600_000, "seq": 1, "salinity_ppt": 1.0}),
            "bad_timestamp",
        ),
        (telemetry("bt-sal-1"), b'{"ts": 99999999999999999999, "seq": 1, "salinity_ppt": 1.0}', "bad_timestamp"),
        (telemetry("bt-sal-1"), b"[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]", "bad_shape"),
        (
            telemetry("bt-sal-1"),
            b'{"ts": 1700000000000, "seq": 1, "salinity_ppt": 1.0, "pad": "' + b"x" * 300_000 + b'"}',
            "too_large",
        ),
        (telemetry("nobody"), msgspec.json.encode(ok), "unknown_device"),
        (telemetry("bt-wq-1"), msgspec.json.encode(ok), "topic_mismatch"),
        (device_topic("long_an", "salinity", "bt-sal-1", "telemetry"), msgspec.json.encode(ok), "topic_mismatch"),
        ("ioc/v1/ben_tre/salinity/bt-sal-1,province=x/telemetry", msgspec.json.encode(ok), "bad_topic"),
        ("ioc/v1/ben_tre/salinity/bt-sal-1 x=1/telemetry", msgspec.json.encode(ok), "bad_topic"),
        ("ioc/v1/ben_tre/salinity/a=b/telemetry", msgspec.json.encode(ok), "bad_topic"),
        ("ioc/v1/ben_tre/salinity/bt-sal-1/telemetry/extra", msgspec.json.encode(ok), "bad_topic"),
    ]
    dlq = Collector(mosquitto.port, "ioc/v1/_dlq/#")
    try:
        with IngestThread(ingest_settings(mosquitto.port, influxd.url, influx_db), fleet) as ingest:
            before = query(influxd.url, "SHOW MEASUREMENTS", db=influx_db)
            publish(mosquitto.port, [(t, p) for t, p, _ in cases])
            ingest.wait_for(lambda: len(dlq.messages) >= len(cases), what="dead letters")
            # Control characters (a newline to inject a line) never get past the broker: it drops the sender.
            injection = "ioc/v1/ben_tre/salinity/bt-sal-1\nsalinity,device_id=x v=1/telemetry"
            with pytest.raises(TimeoutError):
                publish(mosquitto.port, [(injection, msgspec.json.encode(ok))], client_id="injector", timeout=2)
            publish(mosquitto.port, [(telemetry("bt-sal-1"), msgspec.json.encode(ok))], client_id="after")
            ingest.wait_for(lambda: ingest.metric("ioc_ingest_readings_stored_total") == 1, what="good reading")
    finally:
        dlq.close()
    letters = dlq.json()
    got = [(d["topic"], d["reason"]) for d in letters]
    assert got == [(t, r) for t, _, r in cases], "\n".join(map(str, got))
    for letter, (_, payload, _) in zip(letters, cases, strict=True):
        assert letter["detail"]
        assert letter["truncated"] == (len(payload) > 4096)
        if "payload" in letter:
            assert letter["payload"].encode() == payload[:4096]
        else:
            assert letter["payload_b64"]
    assert before == []
    assert query(influxd.url, "SHOW MEASUREMENTS", db=influx_db)[0]["values"] == [["salinity"]]
    series = query(influxd.url, "SHOW SERIES", db=influx_db)[0]["values"]
    assert series == [["salinity,crop=rice,device_id=bt-sal-1,district=ba_tri,province=ben_tre,site=river"]]


def start_ingest(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    """Start ``ioc ingest`` and return once it has subscribed (its log says so)."""
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    lines = []
    for raw in proc.stderr:
        lines.append(raw.decode(errors="replace"))
        if "subscribed to" in lines[-1]:
            # keep draining stderr so the process never blocks on a full pipe
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc
    raise AssertionError("ingest exited before subscribing:\n" + "".join(lines))


def test_sigterm_drains_everything_acknowledged(
    mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str, tmp_path: Path
) -> None:
    """SIGTERM mid-stream: ingest exits 0; what it acked is stored, the rest stays with the broker."""
    fleet_file = tmp_path / "fleet.yaml"
    dump_fleet(small_fleet(), fleet_file)
    metrics_port = free_port()
    env = {
        **os.environ,
        "IOC_MQTT_URL": f"mqtt://127.0.0.1:{mosquitto.port}",
        "IOC_INFLUX_URL": influxd.url,
        "IOC_INFLUX_DB": influx_db,
        "IOC_FLEET": str(fleet_file),
        "IOC_METRICS_PORT": str(metrics_port),
        "IOC_BATCH_MAX_READINGS": "500",
    }
    cmd = [sys.executable, "-m", "ioc", "ingest"]
    base = NOW_MS - 86_400_000
    n = 20_000
    items = [
        (telemetry("bt-sal-2"), msgspec.json.encode({"ts": base + i, "seq": i, "salinity_ppt": 0.3})) for i in range(n)
    ]

    first = start_ingest(cmd, env, tmp_path)
    publisher = threading.Thread(target=publish, args=(mosquitto.port, items))
    publisher.start()
    deadline = time.monotonic() + 30
    while count_points(influxd.url, influx_db) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    assert "ioc_ingest_readings_stored_total" in metrics
    assert "ioc_broker_messages_dropped" in metrics
    first.send_signal(signal.SIGTERM)  # mid-stream: the publisher is still sending
    publisher.join()
    assert first.wait(timeout=60) == 0
    stored_after_first = count_points(influxd.url, influx_db)
    assert 0 < stored_after_first < n

    second = start_ingest(cmd, env, tmp_path)
    deadline = time.monotonic() + 60
    while count_points(influxd.url, influx_db) < n and time.monotonic() < deadline:
        time.sleep(0.2)
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=60) == 0
    assert count_points(influxd.url, influx_db) == n
    seqs = query(influxd.url, 'SELECT "seq" FROM "salinity"', db=influx_db)[0]["values"]
    assert sorted(v[1] for v in seqs) == list(range(n))  # type: ignore[union-attr,index]


@pytest.mark.parametrize("outage_s", [3.0])
def test_influxdb_outage_applies_backpressure_and_loses_nothing(
    mosquitto: ServerProcess, tmp_path: Path, outage_s: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingest import mqtt_public
    from ioc.servers import start_influxd

    monkeypatch.setattr(mqtt_public, "QUEUE_HEADROOM", 0)  # the client queue holds Receive Maximum

    influx = start_influxd(tmp_path / "influx")
    try:
        influx.create_database("ioc")
        fleet = small_fleet()
        settings = ingest_settings(mosquitto.port, influx.url, "ioc", mqtt_receive_maximum=100, batch_max_readings=50)
        base = NOW_MS - 86_400_000
        with IngestThread(settings, fleet) as ingest:
            publish(
                mosquitto.port,
                [
                    (telemetry("bt-sal-1"), msgspec.json.encode({"ts": base + i, "seq": i, "salinity_ppt": 1.0}))
                    for i in range(200)
                ],
            )
            ingest.wait_for(lambda: ingest.metric("ioc_ingest_readings_stored_total") == 200, what="first 200")
            influx.stop()
            publish(
                mosquitto.port,
                [
                    (telemetry("bt-sal-1"), msgspec.json.encode({"ts": base + i, "seq": i, "salinity_ppt": 1.0}))
                    for i in range(200, 3000)
                ],
                client_id="pub2",
            )
            ingest.wait_for(lambda: ingest.metric("ioc_ingest_write_retries_total") >= 3, what="retries")
            time.sleep(outage_s)
            # Acks stopped; what ingest holds is bounded by its own limits, not by the broker's good
            # will: the batches it holds (sealed, being written, being built). Mosquitto 2.0.11 mostly
            # honours Receive Maximum (100) here, but was seen sending 101 and 102 (docs/reliability.md).
            assert ingest.metric("ioc_ingest_messages_acked_total") == 200
            inflight = ingest.metric("ioc_ingest_messages_inflight")
            sys_reports = ingest.metric("ioc_ingest_messages_received_total", channel="other")  # QoS 0, no readings
            held_by_batches = (
                settings.write_queue_batches + settings.write_concurrency + 1
            ) * settings.batch_max_readings
            assert inflight > 0
            assert inflight - sys_reports <= held_by_batches
            print(f"\nheld in ingest during the outage: {inflight:.0f} (Receive Maximum 100)")
            # …and its client queue (sized Receive Maximum + QUEUE_HEADROOM, 0 here): the rest of the
            # 2,800 waits in the broker.
            assert ingest.metric("ioc_ingest_messages_unacked") <= settings.mqtt_receive_maximum + held_by_batches
            influx.start()
            ingest.wait_for(lambda: ingest.metric("ioc_ingest_readings_stored_total") == 3000, what="all stored")
        assert count_points(influx.url, "ioc") == 3000
        assert ingest.metric("ioc_ingest_messages_dropped_total") == 0
    finally:
        influx.stop()


def test_broker_drops_are_visible_in_ingest_metrics(influxd: InfluxServer, influx_db: str, tmp_path: Path) -> None:
    """A broker queue that overflows drops silently; ingest exports the broker's own counter."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from ioc.servers import start_mosquitto

    broker = start_mosquitto(tmp_path / "small-queue", extra_config="max_queued_messages 10")
    try:
        # A persistent session that is away: the broker queues for it, up to 10 messages.
        away = paho.Client(CallbackAPIVersion.VERSION2, client_id="away", protocol=paho.MQTTv5)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        away.connect("127.0.0.1", broker.port, clean_start=False, properties=props)
        away.loop_start()
        away.subscribe("other/#", qos=1)
        time.sleep(0.5)
        away.disconnect()
        away.loop_stop()
        publish(broker.port, [("other/x", b"1")] * 100)
        with IngestThread(ingest_settings(broker.port, influxd.url, influx_db), small_fleet()) as ingest:
            ingest.wait_for(lambda: ingest.metric("ioc_broker_messages_dropped") >= 90, timeout=15, what="$SYS")
    finally:
        broker.stop()
