"""The alert store fails under a steady stream; no alert transition is lost or doubled, ingest's loop
never stands still.

Real Mosquitto, real InfluxDB, ``ioc ingest``'s own process assembly (rules, alert store, webhook
sender) and a real HTTP receiver. 24 salinity stations publish 12,000 single-reading messages at
about 1,000 a second. Meanwhile another process either holds an exclusive write lock on the alert
SQLite file for 6 s (longer than the store's busy timeout, set to 1 s here; 30 s by default), or
installs a trigger that makes every write to it fail for 6 s. Afterwards: every reading is stored;
the transitions in the store are exactly those the engine gives on the same input when nothing
fails, each once; every webhook arrived once per ``webhook-id``, in the order the store recorded
them; and the event loop never lagged 1 s (``ioc_ingest_loop_lag_seconds``, sampled every 50 ms).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import msgspec
import paho.mqtt.client as paho
import pytest
import yaml

from alerts.config import WebhookSettings
from alerts.notify import Pacing
from alerts.receiver import WebhookReceiver
from contract.fields import CAMERA_EVENTS, Kind
from contract.fleet import Device, Fleet, dump_fleet
from contract.topics import Channel, device_topic
from ingest.batch import BatchBuilder
from ingest.decode import Decoder
from ingest.devices import device_infos
from ingest.registry import Registry
from ioc.servers import InfluxServer, ServerProcess
from rules.engine import Engine
from rules.pack import DEFAULT_PACK, load_pack
from simulators.signals import ec25_from_salinity
from tests.helpers import PipelineThread, count_points, ingest_settings

pytestmark = pytest.mark.integration

AT_ONCE = Pacing.make(group_wait_s=0, group_interval_s=0)
"""Every notice as soon as it is due: this test counts deliveries, not pacing."""

DEVICES = 24
READINGS = 500  # per device: 12,000 messages
RATE = 1_000  # messages per second
FAULT_AT_S = 3.0
FAULT_FOR_S = 6.0
FRESH, SALTY = 80, 20  # readings per salinity cycle: 0.2 ‰, then 1.5 ‰
STEP_MS = 600_000  # device time between two readings of a station
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

FLEET = Fleet(
    devices=tuple(
        Device(
            id=f"tg-sal-{i:02d}",
            kind=Kind.SALINITY,
            province="tien_giang",
            district="chau_thanh_tg",
            site="river",
            crop="durian",
            lat=10.3 + i / 100,
            lon=106.3,
        )
        for i in range(DEVICES)
    )
)

LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN EXCLUSIVE")
print("faulty", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""

FAIL_WRITES = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute(
    "CREATE TRIGGER injected_fault BEFORE INSERT ON events"
    " BEGIN SELECT RAISE(ABORT, 'injected write fault'); END"
)
print("faulty", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("DROP TRIGGER injected_fault")
"""


def messages(start_ms: int) -> list[tuple[str, bytes]]:
    """Round-robin over the devices, one reading per message, device time ``STEP_MS`` apart."""
    out = []
    for i in range(READINGS):
        salinity = 1.5 if i % (FRESH + SALTY) >= FRESH else 0.2
        reading = {
            "ts": start_ms + i * STEP_MS,
            "seq": i,
            "salinity_ppt": salinity,
            "ec_us_cm": round(float(ec25_from_salinity(salinity)), 1),
            "temp_c": 29.5,
            "battery_v": 12.6,
        }
        for d in FLEET.devices:
            topic = device_topic(d.province, d.kind, d.id, Channel.TELEMETRY)
            out.append((topic, msgspec.json.encode(reading)))
    return out


def threshold_pack(path: Path) -> Path:
    """The default pack's salinity threshold rules alone (see :func:`reference_transitions`)."""
    doc = yaml.safe_load(DEFAULT_PACK.read_text())
    doc["rules"] = [r for r in doc["rules"] if r["kind"] == "salinity" and r["condition"]["type"] == "threshold"]
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    return path


def reference_transitions(
    items: list[tuple[str, bytes]], pack: Path, now_ms: int
) -> Counter[tuple[str, str, str, int]]:
    """What the engine produces on the same input, all at once, with nothing failing.

    The pack holds threshold rules only (consecutive readings), whose transitions do not depend on
    how readings are cut into batches; the fresh spell (13 h 20 min) outlasts every
    rule's ``min_gap`` (SAL_DOMESTIC's is 12 h). Window and change conditions, and fires held back by
    ``min_gap``, are decided per batch (docs/rules.md), and a fault changes the batches.
    """
    decoder = Decoder(Registry.from_fleet(FLEET), max_payload_bytes=262_144, max_readings=10_000)
    builder = BatchBuilder()
    for topic, payload in items:
        builder.note_message(None)
        decoder.decode(topic, payload, retained=False, now_ms=now_ms, out=builder)
    engine = Engine(load_pack(pack), device_infos(FLEET), event_classes=CAMERA_EVENTS, start_ms=now_ms)
    out = engine.evaluate(builder.seal().columns(), now_ms=now_ms)
    return Counter((t.rule_id, t.device_id, f"alert.{t.state.value}", t.ts_ms) for t in out)


def stored_transitions(db: Path) -> tuple[Counter[tuple[str, str, str, int]], list[str]]:
    """Every event in the store (as the reference counts them), and the event ids in recording order."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT e.id, a.rule_id, a.device_id, e.type, e.ts_ms FROM events e JOIN alerts a ON a.id = e.alert_id"
            " ORDER BY e.rowid"
        ).fetchall()
        doubled = conn.execute(
            "SELECT rule_id, device_id, fired_at_ms FROM alerts GROUP BY 1, 2, 3 HAVING count(*) > 1"
        ).fetchall()
    assert doubled == [], f"alerts recorded twice: {doubled[:5]}"
    return Counter((r[1], r[2], r[3], r[4]) for r in rows), [r[0] for r in rows]


def sent_messages(db: Path, *, timeout_s: float) -> int:
    """The outbox's messages, once no notice waits for one (the sender dispatches them)."""
    deadline = time.monotonic() + timeout_s
    with sqlite3.connect(db) as conn:
        while conn.execute("SELECT count(*) FROM notices WHERE message_seq IS NULL").fetchone()[0]:
            assert time.monotonic() < deadline, "notices still waiting for a message"
            time.sleep(0.1)
        return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])


def heard_events(db: Path) -> list[str]:
    """The events a farmer hears of: every one but the lower levels of a family (inhibited)."""
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM events WHERE notice != 'inhibited' ORDER BY rowid")]


def publish_steadily(port: int, items: list[tuple[str, bytes]], done: threading.Event) -> None:
    """QoS 1 at ``RATE`` messages a second, every PUBACK awaited at the end."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="steady-pub", protocol=paho.MQTTv5)
    client.max_queued_messages_set(0)
    client.max_inflight_messages_set(1_000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = []
        started = time.monotonic()
        chunk = RATE // 20
        for at in range(0, len(items), chunk):
            lag = started + at / RATE - time.monotonic()
            if lag > 0:
                time.sleep(lag)
            infos += [client.publish(t, p, qos=1) for t, p in items[at : at + chunk]]
        for info in infos:
            info.wait_for_publish(60)
            assert info.is_published(), f"broker did not acknowledge message {info.mid}"
    finally:
        client.disconnect()
        client.loop_stop()
        done.set()


@pytest.mark.parametrize("fault", ["locked", "failing"])
def test_a_faulty_alert_store_loses_no_transition_and_never_stalls_ingest(
    fault: str, mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str, tmp_path: Path
) -> None:
    fleet_file = tmp_path / "fleet.yaml"
    dump_fleet(FLEET, fleet_file)
    pack = threshold_pack(tmp_path / "pack.yaml")
    webhooks = WebhookSettings(  # type: ignore[call-arg]
        _env_file=None, alerts_db=tmp_path / "alerts.db", alerts_busy_timeout_s=1.0,
        webhook_allow_hosts=["127.0.0.0/8"], webhook_backoff_initial_s=0.05, webhook_backoff_max_s=0.2,
        webhook_poll_interval_s=0.1,
    )  # fmt: skip
    settings = ingest_settings(
        mosquitto.port, influxd.url, influx_db, fleet=fleet_file, rules=True, webhooks=True,
        rules_pack=pack, alerts_deliver_max_age_s=30 * 86_400,
    )  # fmt: skip
    now_ms = int(time.time() * 1000)
    items = messages(now_ms - READINGS * STEP_MS)
    expected = reference_transitions(items, pack, now_ms)
    assert sum(expected.values()) > 500  # the input makes the engine work (fires and resolves)

    with WebhookReceiver(SECRET, quiet=True) as receiver:
        pipeline = PipelineThread(settings, webhooks)
        assert pipeline.process.alerting is not None
        pipeline.process.alerting.store.add_subscription(receiver.url, SECRET, language="vi", pacing=AT_ONCE)
        with pipeline:
            lags: list[float] = []
            published = threading.Event()
            publisher = threading.Thread(target=publish_steadily, args=(mosquitto.port, items, published))
            publisher.start()
            time.sleep(FAULT_AT_S)
            script = LOCK if fault == "locked" else FAIL_WRITES
            faulty = subprocess.Popen(
                [sys.executable, "-c", script, str(webhooks.alerts_db), str(FAULT_FOR_S)],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert faulty.stdout is not None
            assert faulty.stdout.readline().strip() == "faulty"
            stored_during_fault = []
            while faulty.poll() is None or not published.is_set():
                lags.append(pipeline.metric("ioc_ingest_loop_lag_seconds"))
                if faulty.poll() is None:
                    stored_during_fault.append(pipeline.metric("ioc_ingest_readings_stored_total"))
                time.sleep(0.05)
            assert faulty.wait() == 0
            publisher.join()
            pipeline.wait_for(
                lambda: (
                    pipeline.metric("ioc_ingest_readings_stored_total") >= len(items)
                    and pipeline.metric("ioc_ingest_messages_inflight") == 0
                    and pipeline.metric("ioc_alerts_transitions_unrecorded") == 0
                ),
                timeout=90,
                what="everything stored and recorded",
            )
            store_errors = pipeline.metric("ioc_alerts_store_errors_total")
            worst_lag = pipeline.metric("ioc_ingest_loop_lag_max_seconds")
            got, event_ids = stored_transitions(webhooks.alerts_db)
            sent = sent_messages(webhooks.alerts_db, timeout_s=60)
            assert receiver.wait_for(sent, timeout=60), f"{len(receiver.alerts)} of {sent}"
            time.sleep(0.5)  # nothing more may come
            heard = heard_events(webhooks.alerts_db)

    # The fault happened, and held the batches back while it lasted.
    assert store_errors >= 2, "the alert store never failed: the test did not test anything"
    # Every reading stored.
    assert count_points(influxd.url, influx_db, ["salinity"]) == len(items)
    # Exactly the transitions the engine gives without the fault: none lost, none doubled.
    assert got == expected
    assert len(event_ids) == len(set(event_ids)) == sum(expected.values())
    # Webhooks: every event a farmer is to hear (not a lower level of a family: inhibited) in exactly
    # one message, each message once per webhook-id effect. A delivery whose attempt could not be
    # recorded (the store failed right after the POST) is sent again with the same webhook-id,
    # which the receiver takes as the redelivery it is.
    carried = [a["event_id"] for message in receiver.alerts for a in message["alerts"]]
    assert sorted(carried) == sorted(heard)
    assert len(heard) > 100, "families inhibit some events, not the test"
    assert len(receiver.alerts) == sent
    redelivered = [r for r in receiver.requests if r.duplicate]
    assert all(r.webhook_id in set(event_ids) for r in redelivered)
    # The event loop kept running through the fault.
    assert max(lags) < 1.0, f"loop lag reached {max(lags):.2f} s"
    assert worst_lag < 1.0, f"loop lag reached {worst_lag:.2f} s"
    during = stored_during_fault or [0.0]
    print(
        f"\n{fault}: {len(items)} readings stored, {len(event_ids)} transitions = reference "
        f"{sum(expected.values())}, {int(store_errors)} store errors, loop lag max {worst_lag * 1000:.0f} ms, "
        f"{len(redelivered)} webhooks redelivered, stored while faulty {int(during[0])}→{int(during[-1])}"
    )
