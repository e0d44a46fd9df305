"""The operators' desk (``GET /``) in real Chromium, against a demo-like stack.

Everything is real: Mosquitto, InfluxDB 1.x, ingest with the rule pack and the alert store (a
thread, as in production), a fleet whose generated devices published 24 h of history through the
broker, and ``ioc api``'s app served by uvicorn over HTTP on a loopback port, with a read key and
an operate key. Debian's Chromium is driven by playwright-core (tests/browser/desk.mjs) through the
page's contract hooks; expectations come from the registry, the alert store and InfluxDB directly.

The tests share one browser session and run in file order: those that need the alert the live test
opens skip, saying so, when it is missing (a test run on its own). The page's pure helpers
(api/desk/lib.js) are tested apart under ``node --test`` (tests/browser/lib.test.mjs).

Screenshots: var/artifacts/desk-1920x1080.png and var/artifacts/desk-390x844.png.
"""

from __future__ import annotations

import contextlib
import math
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from fastapi import FastAPI

from alerts.config import WebhookSettings
from alerts.store import Alert, AlertStore
from api.config import ApiSettings
from api.main import create_app
from api.serve import ApiThread
from contract.fields import Kind
from contract.fleet import Device, Fleet, dump_fleet
from contract.topics import device_topic
from ioc.demo import demo_fleet
from ioc.servers import InfluxServer, start_mosquitto
from simulators.config import SimulateSettings
from simulators.publisher import FleetPublisher
from simulators.scenarios import Message, market_smoke, quiet_rice_canal, salinity_intrusion, scenario_fleet
from storage.influxql import query
from tests.browser.node import ROOT, NodeSession, run_node_tests
from tests.helpers import PipelineThread, ingest_settings, publish

ARTIFACTS = ROOT / "var" / "artifacts"
ADMIN = "admin-" + "d" * 40
LIVE_WITHIN_MS = 5_000
SCRIPTED = "tg-sal-durian"  # the salinity front reaching a durian orchard (simulators/scenarios.py)
CAMERA = "bt-cam-market"  # the market camera that sees smoke
HOUR_MS = 3_600_000
LOCAL_MS = 7 * HOUR_MS  # history buckets start at local midnight, UTC+7
RANKS = {"none": 0, "info": 1, "warning": 2, "critical": 3}  # labels of rules.model.Severity


@dataclass
class Stack:
    base_url: str
    app: FastAPI
    fleet: Fleet
    generated: tuple[Device, ...]
    influx_url: str
    db: str
    broker_port: int
    store: AlertStore
    keys: dict[str, str]
    names: dict[str, str]
    state: dict[str, Any] = field(default_factory=dict)
    """What one test leaves for the next (the page is one browser session for the module)."""

    def get(self, path: str, role: str = "read") -> Any:
        r = httpx.get(self.base_url + path, headers={"Authorization": f"Bearer {self.keys[role]}"}, timeout=10)
        r.raise_for_status()
        return r.json()


@pytest.fixture(scope="module")
def stack(influxd: InfluxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("desk")
    broker = start_mosquitto(root / "mosquitto")
    db = "desk"
    influxd.create_database(db)
    fleet = demo_fleet(20, 5)  # 15 generated devices and the 5 scripted ones
    fleet_file = root / "fleet.yaml"
    dump_fleet(fleet, fleet_file)
    scripted = {d.id for d in scenario_fleet().devices}
    generated = tuple(d for d in fleet.devices if d.id not in scripted)
    alerts_db = root / "alerts.db"
    webhooks = WebhookSettings(_env_file=None, alerts_db=alerts_db)
    settings = ingest_settings(
        broker.port, influxd.url, db, fleet=fleet_file, rules=True, webhooks=False, batch_max_age_ms=50
    )
    with contextlib.ExitStack() as stop:
        stop.callback(broker.stop)
        pipeline = stop.enter_context(PipelineThread(settings, webhooks))
        sim = SimulateSettings(
            _env_file=None, mqtt_url=f"mqtt://127.0.0.1:{broker.port}", fleet=fleet_file, seed=5,
            backfill_hours=24, duration=0, rate=100,
        )  # fmt: skip
        n = FleetPublisher(Fleet(devices=generated), sim).run().readings_acked
        now = int(time.time() * 1000)
        n += publish_script(broker.port, quiet_rice_canal(now - 2 * HOUR_MS), "desk-quiet")
        n += publish_script(broker.port, market_smoke(now - 60_000), "desk-smoke")
        pipeline.wait_for(lambda: pipeline.metric("ioc_ingest_readings_stored_total") >= n, what="history stored")
        api_settings = ApiSettings(
            _env_file=None, influx_url=influxd.url, influx_db=db, fleet=fleet_file, alerts_db=alerts_db,
            mqtt_url=f"mqtt://127.0.0.1:{broker.port}", api_admin_key=ADMIN, api_ready_timeout_s=1.0,
        )  # fmt: skip
        app = create_app(api_settings)
        api = stop.enter_context(ApiThread(app, socket.create_server(("127.0.0.1", 0))))
        base_url = api.base_url
        keys, names = {}, {}
        for role in ("read", "operate"):
            names[role] = f"desk-{role}"
            _, keys[role] = app.state.services.keys.create(names[role], role)
        store = AlertStore(alerts_db)
        stop.callback(store.close)
        yield Stack(base_url, app, fleet, generated, influxd.url, db, broker.port, store, keys, names)


@pytest.fixture(scope="module")
def desk(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeSession]:
    """One Chromium page on the desk for the module's tests, in their order."""
    session = NodeSession("desk.mjs", tmp_path_factory.mktemp("desk-browser") / "desk.log")
    try:
        session.call("open", url=stack.base_url + "/", width=1920, height=1080)
        yield session
    finally:
        session.close()


def publish_script(port: int, messages: list[Message], client_id: str) -> int:
    """Publish a scenario's messages as its devices would (QoS 1, every PUBACK awaited)."""
    by_id = scenario_fleet().by_id()
    items = []
    for device_id, channel, reading in messages:
        d = by_id[device_id]
        items.append((device_topic(d.province, d.kind, d.id, channel), msgspec.json.encode(reading)))
    publish(port, items, client_id=client_id)
    return len(items)


def logged_in(desk: NodeSession, stack: Stack, role: str) -> None:
    """The page holds ``role``'s key (logging out and in again if it holds another)."""
    held = desk.call("eval", expression="sessionStorage.getItem('ioc.key')")["value"]
    if held == stack.keys[role]:
        return
    if held is not None:
        assert desk.call("logout")["session_key"] is None, "logout forgets the key"
    got = desk.call("login", key=stack.keys[role])
    assert not got["form_visible"], got


def scripted_alerts(stack: Stack) -> list[Alert]:
    return [a for a in stack.store.active() if a.device_id == SCRIPTED]


def live_alert(stack: Stack) -> Alert:
    """The most severe alert the live test opened (skips, saying why, when that test did not run)."""
    if "alert" not in stack.state:
        pytest.skip("needs the alert test_a_scripted_alert_appears_within_5_s_of_being_recorded opens: run the module")
    alert: Alert = stack.state["alert"]
    return alert


# -- the page's pure helpers ----------------------------------------------------------------------


def test_the_pages_helpers_pass_their_node_tests() -> None:
    """api/desk/lib.js under ``node --test``: SSE parsing in any chunking, alert order, severities,
    reconnection back-off bounds, the map projection (tests/browser/lib.test.mjs)."""
    report = run_node_tests("lib.test.mjs")
    passed = re.findall(r"^ok \d+ ", report, re.MULTILINE)
    assert len(passed) >= 18, report  # every test of the file ran


# -- the key --------------------------------------------------------------------------------------


def test_the_key_is_asked_for_once_and_kept_in_the_session(desk: NodeSession, stack: Stack) -> None:
    assert desk.call("eval", expression="document.documentElement.lang")["value"] == "vi"
    asked = desk.call("requests")["requests"]
    assert {r["path"] for r in asked if r["path"].startswith("/v1/")} <= {"/v1/desk/config"}, "no data without a key"
    assert {r["path"] for r in asked} >= {"/"}
    wrong = desk.call("login", key="ioc_" + "x" * 40, expect="refused")
    assert wrong["form_visible"], wrong
    assert wrong["error_visible"], wrong
    assert wrong["error_text"], wrong
    assert wrong["session_key"] is None
    assert wrong["input_type"] == "password"
    assert desk.call("eval", expression="document.querySelectorAll('svg#map .station').length")["value"] == 0

    got = desk.call("login", key=stack.keys["read"])
    assert not got["form_visible"], got
    assert got["session_key"] == stack.keys["read"]
    again = desk.call("reload")
    assert again["session_key"] == stack.keys["read"]
    assert desk.call("eval", expression="document.querySelector('form#key-form').hidden")["value"] is True
    desk.call("stations", count=len(stack.fleet.devices))
    # everything from the API's own host: no CDN, no font or script service (and no tiles configured)
    assert desk.call("origins")["origins"] == [stack.base_url]


# -- the map --------------------------------------------------------------------------------------


def test_the_map_shows_every_station_of_the_registry(desk: NodeSession, stack: Stack) -> None:
    logged_in(desk, stack, "read")
    ids = sorted(d.id for d in stack.fleet.devices)
    desk.call("live", state="open")  # the stream's snapshot of the active alerts colours the map
    shown = desk.call("stations", count=len(ids))["stations"]
    assert sorted(s["id"] for s in shown) == ids  # each once
    devices = {d["id"]: d for d in stack.get("/v1/devices")}
    status = {s["id"]: s["status"] for s in shown}
    # online and offline as the API says (a device never heard from is "unknown" there: not compared)
    known = {i: devices[i]["status"] for i in ids if devices[i]["status"] in ("online", "offline")}
    assert {i: status[i] for i in known} == known
    assert status["la-sal-rice"] == "offline", "silent for 2 h"
    assert "online" in known.values()
    assert all(s["title"] for s in shown), "each station has a <title> for hover"
    for s in shown:
        worst = devices[s["id"]]["worst_severity"]
        assert s["severity"] == (worst or "none"), (s, worst)


# -- live alerts ----------------------------------------------------------------------------------


def test_a_scripted_alert_appears_within_5_s_of_being_recorded(desk: NodeSession, stack: Stack) -> None:
    logged_in(desk, stack, "read")
    desk.call("live", state="open")
    assert scripted_alerts(stack) == []
    # the salinity front's rise at the durian river, up to 0.97 ‰, its last reading a minute ago
    readings = salinity_intrusion(int(time.time() * 1000) - 60_000 + 21 * 600_000)[:9]
    published_ms = int(time.time() * 1000)
    publish_script(stack.broker_port, readings, "desk-scenario")
    deadline = time.monotonic() + 30
    while not (opened := scripted_alerts(stack)):
        assert time.monotonic() < deadline, "ingest recorded no alert for the scripted salinity front"
        time.sleep(0.02)
    time.sleep(0.3)  # alerts of one batch land together
    opened = scripted_alerts(stack)
    worst = max(opened, key=lambda a: a.severity.value)
    for alert in opened:
        shown = desk.call("wait_alert", alert_id=alert.id, timeout_ms=10_000)
        late = shown["seen_ms"] - alert.created_at_ms
        print(f"{alert.rule_id}: on the page {late} ms after the store recorded it "
              f"({shown['seen_ms'] - published_ms} ms after publishing)")  # fmt: skip
        assert late <= LIVE_WITHIN_MS, f"{alert.rule_id} showed {late} ms after it was recorded"
        assert shown["severity"] == alert.severity.label
        assert (shown["province"], shown["kind"]) == (alert.province, alert.kind)
        assert shown["acknowledged"] == "false"
        assert shown["has_ack_button"]
        assert alert.message_vi in shown["text"], (alert.message_vi, shown["text"])
    # most severe first, then newest first (as the API has them)
    fired = {a["id"]: -a["fired_at_ms"] for a in stack.get("/v1/alerts?active=true&limit=1000")}
    assert {o["id"] for o in shown["order"]} <= set(fired), "only active alerts are listed"
    ranks = {"critical": 0, "warning": 1, "info": 2}  # labels of rules.model.Severity
    keys = [(ranks[o["severity"]], fired[o["id"]]) for o in shown["order"]]
    assert keys == sorted(keys), shown["order"]
    # the map recolours the station as live: its worst alert's severity (or worse), within 5 s
    painted = desk.call("painted", device_id=SCRIPTED, at_least=worst.severity.label, timeout_ms=10_000)
    assert RANKS[painted["severity"]] >= RANKS[worst.severity.label], painted
    assert painted["painted_ms"] is not None, painted
    late = painted["painted_ms"] - worst.created_at_ms
    print(f"{SCRIPTED} painted {painted['severity']} {late} ms after {worst.rule_id} was recorded")
    assert late <= LIVE_WITHIN_MS, f"the map painted {SCRIPTED} {late} ms after the alert was recorded: {painted}"
    stack.state["alert"] = worst
    stack.state["opened"] = opened


def test_the_filters_narrow_the_list(desk: NodeSession, stack: Stack) -> None:
    alert = live_alert(stack)
    active = stack.get("/v1/alerts?active=true&limit=1000")
    every_id = sorted(a["id"] for a in active)
    everything = desk.call("filter", expect_ids=every_id)
    assert sorted(i["id"] for i in everything["items"]) == every_id
    assert everything["count"] == str(len(active))
    expected = sorted(a["id"] for a in active if (a["province"], a["kind"]) == (alert.province, alert.kind))
    place = desk.call("filter", province=alert.province, kind=alert.kind, expect_ids=expected)
    assert sorted(i["id"] for i in place["items"]) == expected
    assert place["count"] == str(len(expected))
    assert alert.id in expected
    critical = sorted(a["id"] for a in active if a["severity"] == "critical")
    severe = desk.call("filter", severity="critical", expect_ids=critical)
    assert sorted(i["id"] for i in severe["items"]) == critical
    assert len(severe["items"]) < len(active)
    assert sorted(i["id"] for i in desk.call("filter", expect_ids=every_id)["items"]) == every_id


# -- acknowledge ----------------------------------------------------------------------------------


def test_acknowledge_with_a_read_key_shows_why_it_failed(desk: NodeSession, stack: Stack) -> None:
    alert = live_alert(stack)
    logged_in(desk, stack, "read")
    desk.call("wait_alert", alert_id=alert.id)
    got = desk.call("ack", alert_id=alert.id, expect="error")
    assert got["ack_error"], got
    assert got["acknowledged"] == "false"
    assert stack.get(f"/v1/alerts/{alert.id}")["acknowledged_by"] is None


def test_acknowledge_with_an_operate_key_shows_on_the_api(desk: NodeSession, stack: Stack) -> None:
    alert = live_alert(stack)
    logged_in(desk, stack, "operate")
    desk.call("wait_alert", alert_id=alert.id)
    got = desk.call("ack", alert_id=alert.id, expect="acknowledged")
    assert got["acknowledged"] == "true"
    assert got["ack_error"] is None
    assert stack.names["operate"] in got["text"], got["text"]  # the item shows who acknowledged
    assert stack.get(f"/v1/alerts/{alert.id}")["acknowledged_by"] == stack.names["operate"]


# -- a station ------------------------------------------------------------------------------------


def _every_ms(every: str) -> int:
    m = re.fullmatch(r"(\d+)([smhd])", every)
    assert m, every
    return int(m[1]) * {"s": 1_000, "m": 60_000, "h": HOUR_MS, "d": 24 * HOUR_MS}[m[2]]


def test_a_station_chart_draws_the_points_influxdb_holds(desk: NodeSession, stack: Stack) -> None:
    """The chart draws one point per 15 min bucket holding readings, as counted from InfluxDB's raw
    readings; the means it draws (the History the page received: the SVG exposes no values) are
    InfluxDB's MEAN() per bucket; one threshold line per threshold of the field's rules."""
    logged_in(desk, stack, "read")
    device = next(d for d in stack.generated if d.kind == Kind.SALINITY)
    name = "salinity_ppt"
    got = desk.call("station", device_id=device.id, field=name)
    assert got["requests"], "the page asked the API for no history of the field"
    history = got["requests"][-1]["body"]
    start, end, every = history["from_ms"], history["to_ms"], history["every"]
    assert end - start >= 71 * HOUR_MS, "the chart covers the last 72 h"
    # independently: the stored readings in that range, counted per bucket (local midnight, UTC+7)
    where = f"\"device_id\" = '{device.id}' AND time >= {start}ms AND time < {end}ms"
    series = query(stack.influx_url, f'SELECT "{name}" FROM "salinity" WHERE {where}', db=stack.db)
    times = [int(row[0]) for s in series for row in s["values"]]
    assert len(times) >= 100, "24 h of history at 10 min"
    buckets = {(t + LOCAL_MS) // _every_ms(every) for t in times}
    print(f"chart {device.id} {name}: {got['points']} points of {every}, thresholds {got['thresholds']}")
    assert got["points"] == len(buckets) == len(history["points"]), (got["points"], len(buckets), every)
    # the values: the page draws the API's bucket means (it exposes no values of its own), and
    # those are InfluxDB's MEAN() per bucket over the same range (buckets at local midnight)
    offset_ms = -LOCAL_MS % _every_ms(every)
    group = f"time({every}, {offset_ms}ms)" if offset_ms else f"time({every})"
    means = query(
        stack.influx_url,
        f'SELECT MEAN("{name}") FROM "salinity" WHERE {where} GROUP BY {group} fill(none)',
        db=stack.db,
    )
    expected = {int(row[0]): float(row[1]) for s in means for row in s["values"]}
    drawn = {p["time_ms"]: p["mean"] for p in history["points"]}
    assert sorted(drawn) == sorted(expected), "the same buckets"
    assert len(expected) >= 24
    for t in sorted(expected)[:: max(1, len(expected) // 12)]:  # a dozen buckets across the range
        assert drawn[t] is not None
        assert math.isclose(drawn[t], expected[t], rel_tol=1e-9, abs_tol=1e-9), (t, drawn[t], expected[t])
    assert name in got["charts"]
    assert name in got["latest_fields"]
    # one line per level: a range rule draws both ends, critical_above one more
    expected_rules = [t["rule_id"] for t in stack.get(f"/v1/devices/{device.id}/thresholds") if t["field"] == name]
    assert expected_rules, "the pack has thresholds on salinity"
    assert sorted(got["thresholds"]) == sorted(expected_rules)


def test_a_station_chart_shows_its_alert_history(desk: NodeSession, stack: Stack) -> None:
    """The span of each alert of the station, on the chart of the field its rule watches."""
    live_alert(stack)
    logged_in(desk, stack, "read")
    fields = {t["rule_id"]: t["field"] for t in stack.get(f"/v1/devices/{SCRIPTED}/thresholds")}
    opened: list[Alert] = stack.state["opened"]
    charted = [a for a in opened if a.rule_id in fields]
    assert charted, f"no alert of {SCRIPTED} has a threshold rule: {[a.rule_id for a in opened]}"
    alert = max(charted, key=lambda a: a.severity.value)
    field = fields[alert.rule_id]
    got = desk.call("station", device_id=SCRIPTED, field=field, span_alert_id=alert.id)
    assert alert.id in got["history_ids"], "listed in the station's alert history"
    spans = {s["id"]: s["severity"] for s in got["spans"]}
    assert spans.get(alert.id, "missing") == alert.severity.label, (alert.id, field, got["spans"])
    # only alerts of rules watching this field
    for other in opened:
        if other.id in spans:
            assert fields.get(other.rule_id) == field, (other.rule_id, field)


def test_a_camera_station_lists_its_events(desk: NodeSession, stack: Stack) -> None:
    logged_in(desk, stack, "read")
    got = desk.call("station", device_id=CAMERA, camera=True)
    expected = stack.get(f"/v1/devices/{CAMERA}/camera-events?hours=72")
    assert len(expected) == 3, "the market's three smoke sightings (simulators/scenarios.py)"
    assert len(got["camera_events"]) == len(expected), got["camera_events"]
    for text, event in zip(got["camera_events"], expected, strict=True):  # newest first, as the API
        assert f"{round(event['confidence'] * 100)}" in text, (text, event)
    assert got["history_items"] >= 1, "the smoke alert, fired and resolved"


# -- language, layout, accessibility ---------------------------------------------------------------


def _untranslated(shown: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    """The marked nodes (and the title and language button) whose text is not the table's."""
    wrong = [
        (n["key"], n["text"], n["expected"]) for n in shown["texts"] + shown["labels"] if n["text"] != n["expected"]
    ]
    if shown["title"] != f"{shown['expected_title']} — Mekong IOC":
        wrong.append(("<title>", shown["title"], shown["expected_title"]))
    if shown["toggle"] != shown["expected_toggle"]:
        wrong.append(("lang-toggle", shown["toggle"], shown["expected_toggle"]))
    return wrong


def test_the_language_toggle_switches_every_label(desk: NodeSession, stack: Stack) -> None:
    alert = live_alert(stack)
    item = f'ul#alerts li.alert[data-alert-id="{alert.id}"]'
    vi = desk.call("i18n", lang="vi")
    assert vi["lang"] == "vi"
    assert len(vi["texts"]) >= 20, "the header, key form, panels' headings and filter labels are marked"
    assert _untranslated(vi) == []
    vi_heading = desk.call("text", selector="#map-heading")["text"]
    assert alert.message_vi in desk.call("text", selector=item)["text"]

    assert desk.call("lang")["lang"] == "en"
    en = desk.call("i18n", lang="en")
    assert en["lang"] == "en"
    assert [n["key"] for n in en["texts"]] == [n["key"] for n in vi["texts"]]
    assert _untranslated(en) == [], "every marked text in English after the toggle"
    changed = [n["key"] for n, v in zip(en["texts"], vi["texts"], strict=True) if n["text"] != v["text"]]
    assert len(changed) >= len(en["texts"]) - 3, "nearly every label differs between the languages"
    assert alert.message_en in desk.call("text", selector=item)["text"]

    desk.call("reload")  # the choice is kept
    assert desk.call("eval", expression="document.documentElement.lang")["value"] == "en"
    assert alert.message_en in desk.call("wait_alert", alert_id=alert.id)["text"]
    assert _untranslated(desk.call("i18n", lang="en")) == []
    back = desk.call("lang")
    assert (back["lang"], back["stored"]) == ("vi", "vi")
    assert _untranslated(desk.call("i18n", lang="vi")) == []
    assert desk.call("text", selector="#map-heading")["text"] == vi_heading
    assert alert.message_vi in desk.call("text", selector=item)["text"]


@pytest.mark.parametrize(("width", "height"), [(1920, 1080), (390, 844)])
def test_screenshot_layout_and_accessibility(desk: NodeSession, stack: Stack, width: int, height: int) -> None:
    shot = desk.call("screenshot", file=str(ARTIFACTS / f"desk-{width}x{height}.png"), width=width, height=height)
    print(f"screenshot: {shot['file']}")
    assert Path(shot["file"]).stat().st_size > 10_000
    assert shot["inner_width"] == width
    assert shot["scroll_width"] <= shot["inner_width"], f"horizontal scroll at {width}×{height}: {shot}"
    violations = desk.call("axe")["violations"]
    for v in violations:
        print(f"axe {v['impact']}: {v['id']} — {v['help']}: {v['nodes']}")
    serious = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert serious == [], serious


def test_the_page_raised_no_script_error_and_left_its_host(desk: NodeSession, stack: Stack) -> None:
    assert desk.call("errors")["errors"] == []
    assert desk.call("origins")["origins"] == [stack.base_url], "every request of the session went to the API"
