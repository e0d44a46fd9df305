"""Nothing lost: ingest killed, the broker restarted, duplicates redelivered — counted by distinct
(device, seq) against what the broker acknowledged to the publisher. Real processes, loopback only."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import httpx
import msgspec
import pytest

from contract.fleet import dump_fleet
from ingest.broker import path_name
from ingest.config import IngestSettings
from ingest.mqtt_public import QUEUE_HEADROOM
from ioc.servers import InfluxServer, ServerProcess, free_port
from tests.corpus import wait_until
from tests.helpers import Collector, IngestThread, count_points, ingest_settings, publish
from tests.integration.test_pipeline import small_fleet, start_ingest, telemetry

BASE = int(time.time() * 1000) - 86_400_000


@pytest.fixture(autouse=True, params=["fast", "public"])
def mqtt_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs on both MQTT paths (ingest/broker.py): the fast path, required to load
    (``on``), and the public-API path (``off``). Settings and ``ioc ingest`` subprocesses read it."""
    monkeypatch.setenv("IOC_MQTT_FAST_PATH", "on" if request.param == "fast" else "off")
    return str(request.param)


def readings(device: str, first: int, n: int) -> list[tuple[str, bytes]]:
    return [
        (telemetry(device), msgspec.json.encode({"ts": BASE + i, "seq": i, "salinity_ppt": 0.3}))
        for i in range(first, first + n)
    ]


def distinct_seqs(url: str, db: str) -> set[int]:
    from storage.influxql import query

    series = query(url, 'SELECT "seq" FROM "salinity"', db=db)
    return {int(v[1]) for s in series for v in s["values"]}


def received_by(metrics_port: int) -> float:
    """Telemetry messages a running ``ioc ingest`` received, from its /metrics."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    line = next(x for x in text.splitlines() if x.startswith('ioc_ingest_messages_received_total{channel="telemetry"}'))
    return float(line.rsplit(" ", 1)[1])


def ingest_env(mosquitto: ServerProcess, influxd: InfluxServer, db: str, tmp_path: Path) -> dict[str, str]:
    fleet_file = tmp_path / "fleet.yaml"
    dump_fleet(small_fleet(), fleet_file)
    return {
        **os.environ, "IOC_MQTT_URL": f"mqtt://127.0.0.1:{mosquitto.port}", "IOC_INFLUX_URL": influxd.url,
        "IOC_INFLUX_DB": db, "IOC_FLEET": str(fleet_file), "IOC_METRICS_PORT": "0", "IOC_RULES": "false",
        "IOC_BATCH_MAX_READINGS": "200",
    }  # fmt: skip


def test_ingest_sigkilled_mid_stream_loses_nothing(
    mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str, tmp_path: Path
) -> None:
    env = ingest_env(mosquitto, influxd, influx_db, tmp_path)
    cmd = [sys.executable, "-m", "ioc", "ingest"]
    n = 20_000
    first = start_ingest(cmd, env, tmp_path)
    sender = threading.Thread(target=publish, args=(mosquitto.port, readings("bt-sal-1", 0, n)))
    sender.start()
    deadline = time.monotonic() + 30
    while count_points(influxd.url, influx_db) < 2000 and time.monotonic() < deadline:
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)  # no drain: acked batches are stored, the rest is not acked
    first.wait(10)
    sender.join()
    assert count_points(influxd.url, influx_db) < n  # killed mid-stream
    second = start_ingest(cmd, env, tmp_path)
    deadline = time.monotonic() + 60
    while len(distinct_seqs(influxd.url, influx_db)) < n and time.monotonic() < deadline:
        time.sleep(0.2)
    second.send_signal(signal.SIGTERM)
    assert second.wait(60) == 0
    assert distinct_seqs(influxd.url, influx_db) == set(range(n))  # no gap in the sequence


def test_negative_control_a_default_client_loses_what_came_while_it_was_down(
    mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str, tmp_path: Path
) -> None:
    """The same kill-and-restart with the tutorial consumer (paho defaults): the test can fail."""
    cmd = [sys.executable, "-m", "bench.peers.paho_naive", "--mqtt-port", str(mosquitto.port),
           "--influx-url", influxd.url, "--db", influx_db]  # fmt: skip
    root = Path(__file__).resolve().parents[2]
    first = start_ingest(cmd, dict(os.environ), root)
    publish(mosquitto.port, readings("bt-sal-1", 0, 300))
    deadline = time.monotonic() + 30
    while count_points(influxd.url, influx_db) < 300 and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    publish(mosquitto.port, readings("bt-sal-1", 300, 300), client_id="while-down")
    second = start_ingest(cmd, dict(os.environ), root)
    publish(mosquitto.port, readings("bt-sal-1", 600, 300), client_id="after")
    deadline = time.monotonic() + 30
    while count_points(influxd.url, influx_db) < 600 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1)
    second.send_signal(signal.SIGTERM)
    second.wait(10)
    seqs = distinct_seqs(influxd.url, influx_db)
    assert set(range(300)) <= seqs
    assert set(range(600, 900)) <= seqs
    assert not seqs & set(range(300, 600))  # everything published while it was down is gone


def test_broker_restart_reconnects_without_loss(
    mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str
) -> None:
    with IngestThread(ingest_settings(mosquitto.port, influxd.url, influx_db), small_fleet()) as ingest:
        publish(mosquitto.port, readings("bt-sal-1", 0, 1000))
        ingest.wait_for(lambda: ingest.metric("ioc_ingest_readings_stored_total") >= 1000, what="first 1000")
        mosquitto.stop()
        time.sleep(10)  # the broker is away for 10 s
        mosquitto.start()
        publish(mosquitto.port, readings("bt-sal-1", 1000, 1000), client_id="after-restart")
        ingest.wait_for(lambda: ingest.metric("ioc_ingest_readings_stored_total") >= 2000, timeout=60, what="all")
        assert ingest.metric("ioc_ingest_broker_reconnects_total") >= 1
    assert distinct_seqs(influxd.url, influx_db) == set(range(2000))


def test_redelivered_duplicates_leave_the_count_unchanged(
    mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str
) -> None:
    items = readings("bt-sal-2", 0, 500)
    with IngestThread(ingest_settings(mosquitto.port, influxd.url, influx_db), small_fleet()) as ingest:
        publish(mosquitto.port, items)
        publish(mosquitto.port, items, client_id="again")  # the same readings, as a redelivery would
        ingest.wait_for(lambda: ingest.metric("ioc_ingest_readings_stored_total") >= 1000, what="both copies")
    assert count_points(influxd.url, influx_db) == 500


def test_two_workers_on_a_shared_subscription_one_sigkilled(
    mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str, tmp_path: Path
) -> None:
    """$share/ingest/...: the broker splits the stream; a killed worker's unacked messages wait in
    its persistent session and are delivered when it comes back — stored == published."""
    base = ingest_env(mosquitto, influxd, influx_db, tmp_path)
    ports = [free_port(), free_port()]
    envs = [
        {**base, "IOC_MQTT_SHARED_GROUP": "ingest", "IOC_MQTT_CLIENT_ID": f"ioc-ingest-{i}", "IOC_METRICS_PORT": str(p)}
        for i, p in enumerate(ports)
    ]
    cmd = [sys.executable, "-m", "ioc", "ingest"]
    a, b = (start_ingest(cmd, env, tmp_path) for env in envs)
    n = 20_000
    sender = threading.Thread(target=publish, args=(mosquitto.port, readings("bt-sal-1", 0, n)))
    sender.start()
    deadline = time.monotonic() + 30
    while count_points(influxd.url, influx_db) < 2000 and time.monotonic() < deadline:
        time.sleep(0.01)
    received = [received_by(port) for port in ports]
    assert all(r > 0 for r in received), received  # the broker shares the stream between both
    a.send_signal(signal.SIGKILL)
    a.wait(10)
    sender.join()
    a = start_ingest(cmd, envs[0], tmp_path)
    deadline = time.monotonic() + 60
    while len(distinct_seqs(influxd.url, influx_db)) < n and time.monotonic() < deadline:
        time.sleep(0.2)
    for worker in (a, b):
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0
    assert distinct_seqs(influxd.url, influx_db) == set(range(n))


def test_influxdb_down_20s_during_a_steady_stream(mqtt_path: str, mosquitto: ServerProcess, tmp_path: Path) -> None:
    """InfluxDB stops for 20 s while 1,000 readings/s keep coming: acks stop, ingest holds no more
    than its own bounds (its batches, and its client queue: reading pauses, or on the public path
    the connection is renewed, before that overflows), the broker queues the rest; after the
    restart everything is stored and the ingest process never restarted.

    What the broker did is measured, not assumed: ``ioc_ingest_messages_unacked`` is how many QoS 1
    messages it had sent and ingest not yet acknowledged, against the Receive Maximum asked for."""
    from ioc.servers import start_influxd

    influx = start_influxd(tmp_path / "influx")
    try:
        influx.create_database("ioc")
        settings = ingest_settings(
            mosquitto.port, influx.url, "ioc", mqtt_receive_maximum=500, batch_max_readings=250, retry_max_s=1.0
        )
        n, rate = 26_000, 1000
        stop_at = time.monotonic() + 3
        with IngestThread(settings, small_fleet()) as ingest:

            def stream() -> None:
                for k in range(0, n, rate // 10):
                    publish(mosquitto.port, readings("bt-sal-1", k, rate // 10), client_id=f"stream-{k}")
                    time.sleep(0.1)

            sender = threading.Thread(target=stream)
            sender.start()
            while time.monotonic() < stop_at:
                time.sleep(0.05)
            influx.stop()
            assert path_name(ingest.service.broker_factory) == mqtt_path
            acked_at_stop = ingest.metric("ioc_ingest_messages_acked_total")
            peak_inflight = peak_unacked = 0.0
            for _ in range(200):  # 20 s
                time.sleep(0.1)
                peak_inflight = max(peak_inflight, ingest.metric("ioc_ingest_messages_inflight"))
                peak_unacked = max(peak_unacked, ingest.metric("ioc_ingest_messages_unacked"))
            acked_after = ingest.metric("ioc_ingest_messages_acked_total")
            influx.start()
            sender.join()
            ingest.wait_for(lambda: len(distinct_seqs(influx.url, "ioc")) >= n, timeout=120, what="all stored")
            assert ingest.metric("ioc_ingest_write_retries_total") > 5
        assert acked_after - acked_at_stop <= 250  # at most the batch in flight when it went down
        # Ingest's own bounds: the batches it holds (sealed and queued, being written, being built)…
        held_by_batches = (settings.write_queue_batches + settings.write_concurrency + 1) * settings.batch_max_readings
        assert 0 < peak_inflight <= held_by_batches
        # …and its client queue, which reading never overfills (nothing dropped, below).
        assert peak_unacked <= settings.mqtt_receive_maximum + QUEUE_HEADROOM
        print(f"\n{mqtt_path}: peak in ingest {peak_inflight:.0f}, broker unacked {peak_unacked:.0f}, RM 500")
        assert distinct_seqs(influx.url, "ioc") == set(range(n))
        assert ingest.metric("ioc_ingest_messages_dropped_total") == 0
    finally:
        influx.stop()


def test_a_thousand_poison_messages_then_good_traffic_flows(
    mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str
) -> None:
    poison = [(telemetry("bt-sal-1"), b'{"ts": 1700000000000, "seq": ' + str(i).encode() + b', "salinity_ppt": NaN}')
              for i in range(1000)]  # fmt: skip
    dlq = Collector(mosquitto.port, "ioc/v1/_dlq/#")
    try:
        with IngestThread(ingest_settings(mosquitto.port, influxd.url, influx_db), small_fleet()) as ingest:
            publish(mosquitto.port, poison)
            publish(mosquitto.port, readings("bt-sal-2", 0, 500), client_id="good")
            ingest.wait_for(lambda: ingest.metric("ioc_ingest_readings_stored_total") == 500, what="good traffic")
            ingest.wait_for(lambda: len(dlq.messages) == 1000, what="every poison message dead-lettered")
            assert ingest.metric("ioc_ingest_rejected_total", reason="bad_json") == 1000
    finally:
        dlq.close()


def test_payload_beyond_the_broker_limit_is_refused_by_the_broker(
    mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str
) -> None:
    """Over max_packet_size (1 MiB) the broker itself drops the sender; under it, ingest's own
    limit (256 KiB) dead-letters it as too_large. Either way the next good message is stored."""
    huge = b'{"ts": 1700000000000, "seq": 1, "pad": "' + b"x" * (1_100_000) + b'"}'
    with IngestThread(ingest_settings(mosquitto.port, influxd.url, influx_db), small_fleet()) as ingest:
        with pytest.raises(TimeoutError):
            publish(mosquitto.port, [(telemetry("bt-sal-1"), huge)], client_id="huge", timeout=3)
        publish(mosquitto.port, readings("bt-sal-1", 0, 1), client_id="next")
        ingest.wait_for(lambda: ingest.metric("ioc_ingest_readings_stored_total") == 1, what="the next message")
        assert ingest.metric("ioc_ingest_messages_received_total", channel="telemetry") == 1


def poisoned_backlog(mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str) -> IngestSettings:
    """Settings with Receive Maximum 10, and a backlog in their session: 2,000 good readings of
    bt-sal-2 (seq 0–1,999) with a poison message of bt-sal-1 (NaN, seq 0–199) after every tenth."""
    settings = ingest_settings(mosquitto.port, influxd.url, influx_db, mqtt_receive_maximum=10, batch_max_readings=5)
    with IngestThread(settings, small_fleet()):
        pass  # its persistent session queues what comes while it is away
    good = readings("bt-sal-2", 0, 2_000)
    poison = [(telemetry("bt-sal-1"), b'{"ts": 1700000000000, "seq": %d, "salinity_ppt": NaN}' % i) for i in range(200)]
    publish(mosquitto.port, [m for i in range(200) for m in (*good[10 * i : 10 * i + 10], poison[i])])
    return settings


def test_dead_letters_reach_the_broker_while_reading_is_paused_and_the_backlog_drains(
    mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str
) -> None:
    """A backlog far past Receive Maximum with poison among it: reading pauses with messages in flight
    whose acknowledgements wait for their dead letters, and those must still reach the broker. (The
    fast path once waited there for PUBACKs it could not read while paused, behind the broker's PUBLISH
    packets: `make demo` with its defaults stored 9,990 of 72,410 readings and stalled.)"""
    settings = poisoned_backlog(mosquitto, influxd, influx_db)
    dlq = Collector(mosquitto.port, "ioc/v1/_dlq/#")
    try:
        with IngestThread(settings, small_fleet()) as ingest:
            stored = lambda: ingest.metric("ioc_ingest_readings_stored_total") == 2_000  # noqa: E731
            ingest.wait_for(stored, timeout=30, what="the backlog")
            ingest.wait_for(lambda: len(dlq.messages) == 200, what="every poison message dead-lettered")
        assert distinct_seqs(influxd.url, influx_db) == set(range(2_000))
    finally:
        dlq.close()


def test_dead_letters_published_just_before_a_stop_reach_the_broker(
    mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str
) -> None:
    """Ingest stops the moment its last poison message is acknowledged, five times over: every dead
    letter arrives then, not only after the next start. (The fast path sends dead letters without
    waiting for their PUBACKs. Closing its socket with the broker's replies unread is a reset, in which
    Mosquitto dropped what ingest wrote last — dead letters and, after them, their messages' PUBACKs, so
    the messages came again next session; it did so in about half of such stops. It now reads until
    they are confirmed.) Each stop is a new session, so that nothing comes again across stops."""
    padding = "x" * 2_000  # dead letters carry their payload: more bytes for the broker to take in
    dlq = Collector(mosquitto.port, "ioc/v1/_dlq/#")
    try:
        for stop in range(5):
            settings = ingest_settings(mosquitto.port, influxd.url, influx_db, mqtt_client_id=f"ioc-stop-{stop}")
            refused = {"ts": BASE, "salinity_ppt": "NaN", "pad": padding, "stop": stop}  # not a number: refused
            poison = [(telemetry("bt-sal-1"), msgspec.json.encode({**refused, "seq": i})) for i in range(20)]
            with IngestThread(settings, small_fleet()) as ingest:
                acked = ingest.metric
                ingest.stop_when(lambda: acked("ioc_ingest_messages_acked_total") == 20)  # noqa: B023
                publish(mosquitto.port, poison)
                ingest.wait_for(lambda: not ingest.alive, what="ingest stopping once every message is acked")
            want = {(stop, i) for i in range(20)}

            def arrived() -> set[tuple[int, int]]:
                letters = [msgspec.json.decode(letter["payload"]) for letter in dlq.json()]
                return {(m["stop"], m["seq"]) for m in letters}

            assert wait_until(lambda: want <= arrived()), f"stop {stop + 1}: missing {sorted(want - arrived())}"  # noqa: B023
    finally:
        dlq.close()


def test_a_stop_while_reading_is_paused_leaves_the_rest_for_the_next_session(
    mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str
) -> None:
    """Stopped in the middle of a backlog far past Receive Maximum, with poison among it (reading
    pauses again and again): what ingest dead-lettered arrives at once, what it had not taken comes
    again to the next session, and after that every reading is stored and every poison message
    dead-lettered."""
    settings = poisoned_backlog(mosquitto, influxd, influx_db)
    dlq = Collector(mosquitto.port, "ioc/v1/_dlq/#")

    def poison_seqs() -> set[int]:  # the payload is not JSON (NaN): its seq read from the text
        return {int(letter["payload"].split('"seq": ')[1].split(",")[0]) for letter in dlq.json()}

    try:
        with IngestThread(settings, small_fleet()) as ingest:
            ingest.stop_when(lambda: ingest.service.metrics.rejected_total() >= 50)
            ingest.wait_for(lambda: not ingest.alive, what="ingest stopping at its 50th dead letter")
        sent = int(ingest.service.metrics.rejected_total())
        assert 50 <= sent < 200, f"stopped in the middle of the backlog, not after {sent} dead letters"
        assert wait_until(lambda: len(poison_seqs()) >= sent), f"{len(poison_seqs())} of {sent} dead letters arrived"
        with IngestThread(settings, small_fleet()) as ingest:
            ingest.wait_for(lambda: len(poison_seqs()) == 200, what="every poison message dead-lettered")
            ingest.wait_for(lambda: distinct_seqs(influxd.url, influx_db) == set(range(2_000)), what="the backlog")
    finally:
        dlq.close()
