"""Field scenarios end to end: simulator script → MQTT → ingest → rules → signed webhook → a real
HTTP receiver. Each checks what the farmer hears — one notice per change of a family's level, in
order, with its severity and Vietnamese text (docs/rules.md, "What farmers hear") — that every
notice arrives in a signed message, and that each alert resolves when its condition clears."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from alerts.config import WebhookSettings
from alerts.receiver import WebhookReceiver
from alerts.store import AlertStore
from contract.topics import Channel, device_topic
from ioc.servers import InfluxServer, ServerProcess, query
from simulators.scenarios import SALINITY_INTRUSION_SPAN_MS, SCENARIOS, scenario_fleet, within_one_day
from tests.helpers import PipelineThread, ingest_settings, publish
from tests.unit.test_alerts_store import AT_ONCE

FLEET = scenario_fleet()
BY_ID = FLEET.by_id()


@pytest.fixture
def pipeline(
    mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str, tmp_path: Path
) -> Iterator[tuple[PipelineThread, WebhookReceiver, AlertStore]]:
    from contract.fleet import dump_fleet

    fleet_file = tmp_path / "fleet.yaml"
    dump_fleet(FLEET, fleet_file)
    webhooks = WebhookSettings(  # type: ignore[call-arg]
        _env_file=None, alerts_db=tmp_path / "alerts.db", webhook_allow_hosts=["127.0.0.0/8"],
        webhook_backoff_initial_s=0.05, webhook_backoff_max_s=0.2, webhook_poll_interval_s=0.1,
    )  # fmt: skip
    settings = ingest_settings(
        mosquitto.port, influxd.url, influx_db, fleet=fleet_file, rules=True, webhooks=True,
        alerts_deliver_max_age_s=30 * 86_400, batch_max_age_ms=50,
    )  # fmt: skip
    store = AlertStore(webhooks.alerts_db, policy=webhooks.target_policy())
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    with WebhookReceiver(secret, quiet=True) as receiver:
        store.add_subscription(receiver.url, secret, language="vi", description="test farmer", pacing=AT_ONCE)
        with PipelineThread(settings, webhooks) as running:
            yield running, receiver, store


def play(port: int, scenario: str, end_ms: int) -> int:
    if scenario == "salinity_intrusion":  # in one local day, or SAL_RISE compares with yesterday's 0.30 ‰
        end_ms = within_one_day(end_ms, SALINITY_INTRUSION_SPAN_MS)
    items = []
    for device_id, channel, reading in SCENARIOS[scenario](end_ms):
        d = BY_ID[device_id]
        items.append((device_topic(d.province, d.kind, d.id, channel), msgspec.json.encode(reading)))
    publish(port, items, client_id=f"scenario-{scenario}")
    return len(items)


def delivered(receiver: WebhookReceiver, store: AlertStore, n: int) -> list[tuple[str, str, str, str]]:
    """The first ``n`` notices the farmer heard (rule, notice, severity, text), once every one of them
    arrived in a signed message — however ingest's batches happened to group them."""
    deadline = time.monotonic() + 30
    while True:
        notices = store.notices(limit=None)
        carried = [a["event_id"] for message in receiver.alerts for a in message["alerts"]]
        if len(notices) >= n and sorted(carried) == sorted(x.event_id for x in notices):
            break
        assert time.monotonic() < deadline, (
            f"{len(carried)} of {len(notices)} notices arrived ({n} expected): "
            f"{[(x.notice.value, x.message_seq, x.held) for x in notices]}, outbox "
            f"{[(r.seq, r.status.value, r.attempts, r.last_error) for r in store.outbox(limit=None)]}"
        )
        time.sleep(0.1)
    time.sleep(0.3)  # nothing more may come
    assert len(store.notices(limit=None)) == n
    return [(x.rule_id, x.notice.value, x.severity.label, x.message_vi) for x in notices]


NOW = int(time.time() * 1000)


def test_salinity_intrusion_reaches_a_durian_district(pipeline: Any, mosquitto: ServerProcess) -> None:
    _running, receiver, store = pipeline
    play(mosquitto.port, "salinity_intrusion", NOW - 60_000)
    got = delivered(receiver, store, 5)
    place = "Châu Thành, Tiền Giang"
    # the salinity family at a durian river: drinking water (1), fruit (2) and 1 ‰ (3) levels
    assert [g[:3] for g in got] == [
        ("SAL_FRUIT", "opened", "warning"),  # 0.61 ‰ fires drinking water and fruit at once: one message
        ("SAL_1PPT", "escalated", "warning"),
        ("SAL_FRUIT", "deescalated", "warning"),
        ("SAL_DOMESTIC", "deescalated", "warning"),
        ("SAL_DOMESTIC", "cleared", "warning"),
    ]
    assert got[0][3] == f"Mặn 0,61‰ tại {place} – không tưới sầu riêng, cây ăn trái."
    assert got[1][3] == f"Mặn 1,2‰ tại {place}, trên 1‰ – ngưng bơm nước vào ruộng, vườn; đóng cống."
    assert got[2][3].startswith(f"Giảm mức: còn mặn vượt 0,5‰ (cây ăn trái) tại {place}, hiện 0,9‰ (lúc ")
    assert got[2][3].endswith(") – không tưới sầu riêng.")
    assert got[4][3].startswith(f"Hết cảnh báo: nước nhiễm mặn, không dùng để uống tại {place}, hiện 209 mg/L (lúc ")
    events = [e for a in store.list(limit=None) for e in store.events(a.id)]
    assert len(events) == 6, "operators still have every rule's alert, fired and resolved"
    assert sum(e.notice == "inhibited" for e in events) == 1, "drinking water's start, under fruit's"
    assert store.active() == []


def test_shrimp_pond_oxygen_crash_at_dawn(pipeline: Any, mosquitto: ServerProcess) -> None:
    _running, receiver, store = pipeline
    play(mosquitto.port, "shrimp_dawn_oxygen_crash", NOW - 60_000)
    got = delivered(receiver, store, 4)
    assert [g[:3] for g in got] == [
        ("SH_DO_WARN", "opened", "warning"),
        ("SH_DO_CRIT", "escalated", "critical"),
        ("SH_DO_WARN", "deescalated", "warning"),
        ("SH_DO_WARN", "cleared", "warning"),
    ]
    assert got[0][3] == "Oxy ao tôm tại Trần Đề, Sóc Trăng thấp (3,8 mg/L) – bật quạt ngay."
    assert (
        got[1][3]
        == "Oxy ao tôm tại Trần Đề, Sóc Trăng chỉ còn 2,7 mg/L – tôm có thể nổi đầu: chạy hết quạt, ngưng cho ăn."
    )
    fired = [a for a in receiver.alerts if a["state"] == "firing"]
    local_hours = [(int(a["ts"][11:13]) + 7) % 24 for a in fired]  # ts is UTC; the Delta is UTC+7
    assert all(3 <= h <= 6 for h in local_hours), local_hours  # before and at dawn


def test_planthopper_peak_then_the_sowing_window(pipeline: Any, mosquitto: ServerProcess) -> None:
    _running, receiver, store = pipeline
    play(mosquitto.port, "planthopper_migration", NOW - 60_000)
    got = delivered(receiver, store, 6)
    place = "Tháp Mười, Đồng Tháp"
    assert [g[:3] for g in got] == [
        ("BPH_SURGE", "opened", "warning"),
        ("BPH_HIGH", "escalated", "critical"),
        ("BPH_SURGE", "deescalated", "warning"),
        ("BPH_SURGE", "cleared", "warning"),
        ("BPH_SOW_WINDOW", "opened", "info"),
        ("BPH_SOW_WINDOW", "cleared", "info"),
    ]
    assert got[0][3] == f"Rầy nâu vào đèn tại {place} tăng mạnh (260 con/đêm) – theo dõi lịch xuống giống né rầy."
    assert got[1][3] == f"Rầy nâu vào đèn tại {place} rất cao (1.240 con/đêm) – chưa xuống giống, thăm đồng."
    assert got[4][3] == f"Đỉnh rầy nâu vào đèn tại {place} đã qua – gieo sạ né rầy theo lịch của địa phương."


def test_camera_smoke_event(pipeline: Any, mosquitto: ServerProcess) -> None:
    _running, receiver, store = pipeline
    play(mosquitto.port, "market_smoke", NOW - 60_000)
    got = delivered(receiver, store, 2)
    assert [g[:3] for g in got] == [("CAM_FIRE", "opened", "critical"), ("CAM_FIRE", "cleared", "critical")]
    assert got[0][3].startswith("Phát hiện khói/lửa tại Ba Tri, Bến Tre (camera bt-cam-market) lúc ")
    assert got[0][3].endswith(" – gọi 114.")
    first = receiver.alerts[0]
    assert (first["device_id"], first["language"]) == ("bt-cam-market", "vi")
    assert first["alerts"][0]["value"] == 0.93


def test_device_going_silent_its_will_fires_then_it_returns(
    pipeline: Any, mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str
) -> None:
    _running, receiver, store = pipeline
    play(mosquitto.port, "quiet_rice_canal", NOW - 60_000)
    device = BY_ID["la-sal-rice"]
    status = device_topic(device.province, device.kind, device.id, Channel.STATUS)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=device.id, protocol=paho.MQTTv5)
    client.will_set(status, b'{"state":"offline"}', qos=1, retain=True)
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    client.publish(
        status, msgspec.json.encode({"state": "online", "ts": NOW - 30_000, "seq": 6}), qos=1
    ).wait_for_publish(5)
    client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"))
    client.loop_stop()
    got = delivered(receiver, store, 1)
    assert got == [
        (
            "SAL_SILENT",
            "opened",
            "warning",
            "Trạm đo mặn la-sal-rice tại Cần Đước, Long An mất tín hiệu – kiểm tra nguồn, đường truyền.",
        )
    ]
    back = {"ts": int(time.time() * 1000), "seq": 7, "salinity_ppt": 0.22}
    publish(
        mosquitto.port,
        [(device_topic(device.province, device.kind, device.id, "telemetry"), msgspec.json.encode(back))],
    )
    got = delivered(receiver, store, 2)
    assert got[1][:3] == ("SAL_SILENT", "cleared", "warning")
    offline = query(
        influxd.url, 'SELECT "online" FROM "device_status" WHERE "device_id" = \'la-sal-rice\'', db=influx_db
    )
    assert [row[1] for row in offline[0]["values"]] == [1, 0]  # type: ignore[index]
    annotations = query(influxd.url, 'SELECT "message_vi" FROM "alerts" GROUP BY "state"', db=influx_db)
    assert {s["tags"]["state"] for s in annotations} == {"firing", "resolved"}  # type: ignore[index]


def test_backtest_replays_stored_readings_through_the_pack(
    mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str, tmp_path: Path
) -> None:
    """Store the scenarios (rules off), then `ioc rules backtest` finds what would have fired."""
    import json
    import subprocess
    import sys

    from contract.fleet import dump_fleet
    from tests.helpers import IngestThread, count_points

    end = NOW - 60_000
    with IngestThread(ingest_settings(mosquitto.port, influxd.url, influx_db), FLEET) as ingest:
        n = sum(play(mosquitto.port, name, end) for name in SCENARIOS)
        ingest.wait_for(lambda: ingest.metric("ioc_ingest_readings_stored_total") >= n, what="scenarios stored")
    assert count_points(influxd.url, influx_db) == n
    fleet_file = tmp_path / "fleet.yaml"
    dump_fleet(FLEET, fleet_file)
    out = subprocess.run(
        [sys.executable, "-m", "ioc", "rules", "backtest", "--from", str(end - 15 * 86_400_000), "--to", str(NOW),
         "--fleet", str(fleet_file), "--influx-url", influxd.url, "--influx-db", influx_db],
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    report = json.loads(out.stdout.decode().splitlines()[-1])
    assert report["readings"] == n
    fired = {rule: r["firings"] for rule, r in report["rules"].items()}
    # The scripted devices report only during their scenarios: between them, by device time, the
    # no-data rules rightly find them silent. Every other rule fires exactly as it did live.
    silent = {rule: fired.pop(rule) for rule in list(fired) if rule.endswith(("_SILENT", "_OFFLINE"))}
    assert set(silent) == {"SAL_SILENT", "WQ_SILENT", "TRAP_OFFLINE", "CAM_OFFLINE"}
    assert fired == {
        "SAL_DOMESTIC": 1, "SAL_FRUIT": 1, "SAL_1PPT": 1, "SH_DO_WARN": 1, "SH_DO_CRIT": 1,
        "BPH_SURGE": 1, "BPH_HIGH": 1, "BPH_SOW_WINDOW": 1, "CAM_FIRE": 1,
    }  # fmt: skip
    assert report["rules"]["CAM_FIRE"]["top_devices"] == [["bt-cam-market", 1]]
