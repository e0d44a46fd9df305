"""The operators' API against real services: the InfluxDB and alert store of ``simulated_data``.

The app runs in-process (Starlette's TestClient, lifespan included); everything behind it is real:
InfluxDB 1.x with 48 h of a simulated fleet stored by ingest, a copy of the alert store that ingest
wrote (so tests may acknowledge), a real Mosquitto for readiness, a real webhook receiver.
Expected values are computed independently, straight from InfluxDB and SQLite.
"""

from __future__ import annotations

import asyncio
import csv
import io
import sqlite3
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import FastAPI

from alerts.config import WebhookSettings
from alerts.receiver import WebhookReceiver
from alerts.sender import WebhookSender
from alerts.signing import generate_secret
from api.config import ApiSettings
from api.keys import hash_token
from api.main import create_app
from api.services import Services
from contract.fields import Kind, field_specs
from ingest.backtest import backtest
from ingest.devices import device_infos
from ioc.servers import ServerProcess, free_port, start_mosquitto
from rules.model import Severity, State, Transition
from rules.pack import DEFAULT_PACK, load_pack
from storage.influxql import query
from tests.conftest import SimulatedData

with warnings.catch_warnings():  # Starlette 1.x nudges towards httpx2; httpx is what the project has
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ADMIN = "admin-" + "k" * 40


def copy_store(src: Path, dst: Path) -> Path:
    """A consistent copy of a live SQLite store in WAL mode (a file copy would miss the WAL)."""
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    target = sqlite3.connect(dst)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return dst


def api_settings(data: SimulatedData, db: Path, pack: Path, mqtt_port: int, **overrides: Any) -> ApiSettings:
    values: dict[str, Any] = {
        "influx_url": data.influx_url,
        "influx_db": data.db,
        "fleet": data.fleet_file,
        "alerts_db": db,
        "rules_pack": pack,
        "mqtt_url": f"mqtt://127.0.0.1:{mqtt_port}",
        "api_admin_key": ADMIN,
        "webhook_allow_hosts": ["127.0.0.1"],
        "webhook_timeout_s": 5.0,
        "api_ready_timeout_s": 1.0,
        **overrides,
    }
    return ApiSettings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class Api:
    client: TestClient
    app: FastAPI
    data: SimulatedData
    settings: ApiSettings
    keys: dict[str, str]
    """Tokens by role: admin, read, operate, ben_tre (operate, limited to Bến Tre)."""
    pack: Path

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services

    def h(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def get(self, path: str, role: str = "read", **kw: Any) -> httpx.Response:
        return self.client.get(path, headers={**self.h(role), **kw.pop("headers", {})}, **kw)

    def post(self, path: str, role: str = "operate", **kw: Any) -> httpx.Response:
        return self.client.post(path, headers={**self.h(role), **kw.pop("headers", {})}, **kw)

    def influx(self, q: str) -> list[dict[str, Any]]:
        return query(self.data.influx_url, q, db=self.data.db)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_mosquitto(tmp_path_factory.mktemp("api-broker"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api(
    simulated_data: SimulatedData, broker: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("api")
    db = copy_store(simulated_data.alerts_db, root / "alerts.db")
    pack = root / "pack.yaml"
    pack.write_text(DEFAULT_PACK.read_text(encoding="utf-8"), encoding="utf-8")
    settings = api_settings(simulated_data, db, pack, broker.port)
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        keys = app.state.services.keys
        tokens = {"admin": ADMIN}
        for role, scope, provinces in (
            ("read", "read", None),
            ("operate", "operate", None),
            ("ben_tre", "operate", ["ben_tre"]),
            ("read_ben_tre", "read", ["ben_tre"]),
        ):
            _, tokens[role] = keys.create(f"{role}-operator", scope, provinces=provinces)
        yield Api(client, app, simulated_data, settings, tokens, pack)


# -- auth -------------------------------------------------------------------------------------


def test_missing_or_bad_key_is_401(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer ioc_nope"}, {"X-API-Key": "ioc_nope"}, {"Authorization": "Basic x"}):
        r = api.client.get("/v1/devices", headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["error"]
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_x_api_key_header_works(api: Api) -> None:
    assert api.client.get("/v1/devices", headers={"X-API-Key": api.keys["read"]}).status_code == 200


@pytest.mark.parametrize(
    ("role", "method", "path", "body"),
    [
        ("read", "POST", "/v1/alerts/x/acknowledge", None),
        ("read", "POST", "/v1/rules/reload", None),
        ("read", "GET", "/v1/subscriptions", None),
        ("operate", "GET", "/v1/keys", None),
        ("operate", "POST", "/v1/keys", {"name": "x", "scope": "admin"}),
    ],
)
def test_wrong_scope_is_403(api: Api, role: str, method: str, path: str, body: Any) -> None:
    r = api.client.request(method, path, headers=api.h(role), json=body)
    assert r.status_code == 403
    assert "scope" in r.json()["error"]


# -- devices ----------------------------------------------------------------------------------


def test_devices_list_the_registry_with_state(api: Api) -> None:
    r = api.get("/v1/devices")
    assert r.status_code == 200
    devices = r.json()
    fleet = api.data.fleet.devices
    assert [d["id"] for d in devices] == sorted(d.id for d in fleet)  # by id: the order pages follow
    store = api.services.store
    active: dict[str, list[int]] = {}
    for a in store.active():
        active.setdefault(a.device_id, []).append(int(a.severity))
    status = {
        s["tags"]["device_id"]: s["values"][0]
        for s in api.influx('SELECT last("online") FROM "device_status" GROUP BY "device_id"')
    }
    for d in devices:
        assert d["active_alerts"] == len(active.get(d["id"], []))
        if active.get(d["id"]):
            assert d["worst_severity"] == Severity(max(active[d["id"]])).label
        assert d["status"] in ("online", "offline", "unknown")
        if d["id"] in status:
            assert d["last_status"] == ("online" if status[d["id"]][1] else "offline")
    online = [d for d in devices if d["status"] == "online"]
    assert len(online) >= len(fleet) // 2  # the data ends now: most devices have just reported
    assert all(d["last_seen_ms"] is not None for d in online)
    assert all(d["battery_v"] > 0 for d in online if d["kind"] != "camera")


def test_device_last_seen_and_battery_match_influx(api: Api) -> None:
    device = next(d for d in api.data.fleet.devices if d.kind is Kind.SALINITY)
    d = api.get(f"/v1/devices/{device.id}").json()
    newest = max(
        s["values"][0][0]
        for s in api.influx(f'SELECT last("seq") FROM "salinity","device_status" WHERE "device_id" = \'{device.id}\'')
    )
    assert d["last_seen_ms"] == newest
    battery = api.influx(
        f'SELECT last("battery_v") FROM "salinity","device_status" WHERE "device_id" = \'{device.id}\''
    )
    assert d["battery_v"] == max((s["values"][0] for s in battery), key=lambda v: v[0])[1]
    assert {f["name"] for f in d["fields"]} == set(field_specs(Kind.SALINITY))
    assert d["province_name"]


@pytest.mark.parametrize("filters", [{"province": "ben_tre"}, {"kind": "salinity"}, {"site": "pond"},
                                     {"province": "ca_mau", "kind": "water_quality"}])  # fmt: skip
def test_device_filters(api: Api, filters: dict[str, str]) -> None:
    got = [d["id"] for d in api.get("/v1/devices", params=filters).json()]
    want = sorted(
        d.id
        for d in api.data.fleet.devices
        if all((d.kind.value if k == "kind" else getattr(d, k)) == v for k, v in filters.items())
    )
    assert got == want


def test_device_district_filter_and_unknowns(api: Api) -> None:
    one = api.data.fleet.devices[0]
    got = api.get("/v1/devices", params={"district": one.district}).json()
    assert one.id in [d["id"] for d in got]
    assert all(d["district"] == one.district for d in got)
    assert api.get("/v1/devices", params={"province": "atlantis"}).json() == []
    r = api.get("/v1/devices/no-such-device")
    assert r.status_code == 404
    assert r.json() == {"error": "no device 'no-such-device' in the registry", "detail": None}
    assert api.get("/v1/devices", params={"kind": "toaster"}).status_code == 422


def test_limited_key_sees_its_province_only(api: Api) -> None:
    got = api.get("/v1/devices", role="read_ben_tre").json()
    assert got
    assert {d["province"] for d in got} == {"ben_tre"}
    other = next(d for d in api.data.fleet.devices if d.province != "ben_tre")
    assert api.get(f"/v1/devices/{other.id}", role="read_ben_tre").status_code == 404
    assert api.get("/v1/devices", role="read_ben_tre", params={"province": other.province}).status_code == 403


def _without_ids(text: str, ids: dict[str, str]) -> str:
    for value in ids.values():
        text = text.replace(value, "ID")
    return text


def test_a_limited_key_learns_nothing_of_a_device_outside_its_provinces(api: Api) -> None:
    """Asked about another province's device, alert or subscription, the answer is the one for a missing one."""
    other = next(d for d in api.data.fleet.devices if d.province != "ben_tre" and d.kind is Kind.SALINITY)
    alert = next(a for a in api.services.store.list(limit=1000) if a.province != "ben_tre")
    sub = api.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/all"}).json()["id"]
    missing = {"device": "bt-no-such-device", "alert": "no-such-alert", "sub": "sub_no_such"}
    real = {"device": other.id, "alert": alert.id, "sub": sub}
    requests = [
        ("GET", "/v1/devices/{device}", None),
        ("GET", "/v1/readings/{device}/salinity_ppt", None),
        ("GET", "/v1/readings/latest?device_id={device}", None),
        ("GET", "/v1/alerts/{alert}", None),
        ("POST", "/v1/alerts/{alert}/acknowledge", None),
        ("GET", "/v1/subscriptions/{sub}", None),
        ("PATCH", "/v1/subscriptions/{sub}", {"enabled": False}),
        ("DELETE", "/v1/subscriptions/{sub}", None),
        ("POST", "/v1/subscriptions/{sub}/test", None),
    ]
    try:
        for method, path, body in requests:
            seen = api.client.request(method, path.format(**real), headers=api.h("ben_tre"), json=body)
            absent = api.client.request(method, path.format(**missing), headers=api.h("ben_tre"), json=body)
            assert (seen.status_code, absent.status_code) == (404, 404), path
            assert _without_ids(seen.text, real) == _without_ids(absent.text, missing), path  # the same words
            for secret in (other.province, other.district, alert.province, alert.rule_id):
                assert secret not in seen.text, (path, seen.text)
        assert api.services.store.get(alert.id).acknowledged_by is None
        assert api.services.store.get_subscription(sub).enabled
    finally:
        api.client.delete(f"/v1/subscriptions/{sub}", headers=api.h("operate"))


# -- readings ---------------------------------------------------------------------------------


def test_latest_per_device_matches_influx(api: Api) -> None:
    r = api.get("/v1/readings/latest", params={"province": "ben_tre"})
    assert r.status_code == 200
    readings = r.json()
    ben_tre = {d.id: d for d in api.data.fleet.devices if d.province == "ben_tre"}
    assert {x["device_id"] for x in readings} <= set(ben_tre)
    assert len(readings) >= len(ben_tre) - 1
    for x in readings:
        kind = ben_tre[x["device_id"]].kind.value
        event = " AND \"event\" = ''" if kind == "camera" else ""
        newest = api.influx(
            f'SELECT * FROM "{kind}" WHERE "device_id" = \'{x["device_id"]}\'{event} ORDER BY time DESC LIMIT 1'
        )[0]
        row = dict(zip(newest["columns"], newest["values"][0], strict=True))
        assert x["time_ms"] == row["time"]
        for name, value in x["values"].items():
            assert value == row[name]
        assert set(x["values"]) <= set(field_specs(Kind(kind)))


def test_latest_filters_and_csv(api: Api) -> None:
    device = next(d for d in api.data.fleet.devices if d.kind is Kind.WATER_QUALITY)
    one = api.get("/v1/readings/latest", params={"device_id": device.id}).json()
    assert [x["device_id"] for x in one] == [device.id]
    assert "do_mg_l" in one[0]["values"]
    r = api.get("/v1/readings/latest", params={"kind": "salinity", "format": "csv"})
    assert r.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(r.text)))
    salinity = [d.id for d in api.data.fleet.devices if d.kind is Kind.SALINITY]
    assert sorted(row["device_id"] for row in table) == sorted(salinity)
    assert "salinity_ppt" in table[0]
    assert "do_mg_l" not in table[0]  # only fields some row has
    assert api.get("/v1/readings/latest", params={"device_id": "ghost"}).status_code == 404
    assert api.get("/v1/readings/latest", params={"since": "forever"}).status_code == 422
    assert api.get("/v1/readings/latest", params={"since": "9999d"}).status_code == 422


def test_area_summary(api: Api) -> None:
    rows = api.get("/v1/readings/areas", params={"kind": "salinity"}).json()
    latest = api.get("/v1/readings/latest", params={"kind": "salinity"}).json()
    for row in (r for r in rows if r["field"] == "salinity_ppt"):
        values = [x["values"]["salinity_ppt"] for x in latest if x["province"] == row["province"]]
        assert row["devices"] == len(values)
        assert row["min"] == min(values)
        assert row["max"] == max(values)
        assert row["mean"] == pytest.approx(sum(values) / len(values))
    by_district = api.get("/v1/readings/areas", params={"level": "district", "province": "ben_tre"}).json()
    assert by_district
    assert all(r["district"] and r["province"] == "ben_tre" for r in by_district)
    assert api.get("/v1/readings/areas", role="read_ben_tre", params={"province": "ca_mau"}).status_code == 403


def test_history_is_downsampled_in_influx(api: Api) -> None:
    device = next(d for d in api.data.fleet.devices if d.kind is Kind.SALINITY)
    start, end = api.data.end_ms - 12 * 3_600_000, api.data.end_ms
    r = api.get(f"/v1/readings/{device.id}/salinity_ppt", params={"from": str(start), "to": str(end), "every": "1h"})
    assert r.status_code == 200
    h = r.json()
    assert (h["device_id"], h["field"], h["unit"], h["every"], h["from_ms"], h["to_ms"]) == (
        device.id, "salinity_ppt", "‰", "1h", start, end,
    )  # fmt: skip
    raw = api.influx(
        f'SELECT "salinity_ppt" FROM "salinity" WHERE "device_id" = \'{device.id}\''
        f" AND time >= {start}ms AND time < {end}ms"
    )[0]["values"]
    buckets: dict[int, list[float]] = {}
    for t, v in raw:
        buckets.setdefault(t - t % 3_600_000, []).append(v)
    assert [p["time_ms"] for p in h["points"]] == sorted(buckets)
    for p in h["points"]:
        values = buckets[p["time_ms"]]
        assert p["count"] == len(values)
        assert p["min"] == min(values)
        assert p["max"] == max(values)
        assert p["mean"] == pytest.approx(sum(values) / len(values))
    assert sum(p["count"] for p in h["points"]) == len(raw) > 0


def test_history_as_csv(api: Api) -> None:
    device = next(d for d in api.data.fleet.devices if d.kind is Kind.WATER_QUALITY)
    path = f"/v1/readings/{device.id}/do_mg_l"
    params = {"from": "-6h", "every": "15m"}
    as_json = api.get(path, params=params).json()["points"]
    for r in (
        api.get(path, params={**params, "format": "csv"}),
        api.get(path, params=params, headers={"Accept": "text/csv"}),
    ):
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/csv; charset=utf-8"
        assert f"{device.id}_do_mg_l_15m.csv" in r.headers["content-disposition"]
        table = list(csv.DictReader(io.StringIO(r.text)))
        assert list(table[0]) == ["time", "time_ms", "mean", "min", "max", "count"]
        assert [int(row["time_ms"]) for row in table] == [p["time_ms"] for p in as_json]
        assert [float(row["mean"]) for row in table] == pytest.approx([p["mean"] for p in as_json])


@pytest.mark.parametrize(
    ("path", "params", "status", "text"),
    [
        ("/v1/readings/{sal}/ph", {}, 404, "not a field of salinity"),
        ("/v1/readings/{sal}/salinity_ppt", {"every": "2h"}, 422, "invalid request"),
        ("/v1/readings/{sal}/salinity_ppt", {"from": "now", "to": "-1h"}, 422, "after"),
        ("/v1/readings/{sal}/salinity_ppt", {"from": "yesterday"}, 422, "invalid request: query.from"),
        ("/v1/readings/{sal}/salinity_ppt", {"from": "-30d", "every": "1m"}, 422, "coarser"),
        ("/v1/readings/ghost/salinity_ppt", {}, 404, "no device"),
        ('/v1/readings/{sal}/x") FROM "alerts', {}, 422, "invalid request"),
        ("/v1/readings/{sal}/salinity_ppt", {"from": "2025-02-29"}, 422, "invalid request"),
    ],
)
def test_history_refuses(api: Api, path: str, params: dict[str, str], status: int, text: str) -> None:
    sal = next(d.id for d in api.data.fleet.devices if d.kind is Kind.SALINITY)
    r = api.get(path.format(sal=sal), params=params)
    assert r.status_code == status
    body = r.json()
    assert text in body["error"] or text in str(body["detail"])


def test_history_area_scope(api: Api) -> None:
    other = next(d for d in api.data.fleet.devices if d.province != "ben_tre" and d.kind is Kind.SALINITY)
    assert api.get(f"/v1/readings/{other.id}/salinity_ppt", role="read_ben_tre").status_code == 404


# -- alerts -----------------------------------------------------------------------------------


def test_alerts_list_and_filters_match_the_store(api: Api) -> None:
    store = api.services.store
    everything = api.get("/v1/alerts", params={"limit": 1000}).json()
    assert [a["id"] for a in everything] == [a.id for a in store.list(limit=1000)]
    assert len(everything) > 10
    active = api.get("/v1/alerts", params={"active": "true", "limit": 1000}).json()
    assert {a["id"] for a in active} == {a.id for a in store.active()}
    assert all(a["state"] == "firing" and a["active"] for a in active)
    resolved = api.get("/v1/alerts", params={"active": "false", "limit": 1000}).json()
    assert all(a["state"] == "resolved" and a["resolved_at_ms"] for a in resolved)
    critical = api.get("/v1/alerts", params={"severity": "warning", "limit": 1000}).json()
    assert {a["id"] for a in critical} == {a.id for a in store.list(severity_min=2, limit=1000)}
    rule = everything[0]["rule_id"]
    by_rule = api.get("/v1/alerts", params={"rule_id": rule}).json()
    assert by_rule
    assert {a["rule_id"] for a in by_rule} == {rule}
    middle = sorted(a["fired_at_ms"] for a in everything)[len(everything) // 2]
    since = api.get("/v1/alerts", params={"since": str(middle), "limit": 1000}).json()
    assert {a["id"] for a in since} == {a["id"] for a in everything if a["fired_at_ms"] >= middle}
    until = api.get("/v1/alerts", params={"until": str(middle), "limit": 1000}).json()
    assert len(since) + len(until) == len(everything)
    assert len(api.get("/v1/alerts", params={"limit": 2}).json()) == 2
    assert api.get("/v1/alerts", params={"since": "last tuesday"}).status_code == 422


def test_alert_detail_with_events(api: Api) -> None:
    alert = api.services.store.list(state=State.RESOLVED, limit=1)[0]
    d = api.get(f"/v1/alerts/{alert.id}").json()
    assert d["id"] == alert.id
    assert [e["type"] for e in d["events"]] == ["alert.firing", "alert.resolved"]
    assert api.get("/v1/alerts/no-such-alert").status_code == 404


def test_acknowledge_records_the_key_and_time(api: Api) -> None:
    alert = next(a for a in api.services.store.active() if a.acknowledged_by is None)
    r = api.post(f"/v1/alerts/{alert.id}/acknowledge")
    assert r.status_code == 200
    body = r.json()
    assert body["acknowledged_by"] == "operate-operator"
    assert abs(body["acknowledged_at_ms"] - api.data.end_ms) < 3_600_000
    again = api.post(f"/v1/alerts/{alert.id}/acknowledge", role="admin").json()
    assert again["acknowledged_by"] == "operate-operator"  # the first acknowledgement stands
    assert api.services.store.get(alert.id).acknowledged_by == "operate-operator"
    acked = api.get("/v1/alerts", params={"acknowledged": "true"}).json()
    assert alert.id in [a["id"] for a in acked]
    assert api.post("/v1/alerts/no-such-alert/acknowledge").status_code == 404


def test_area_scoped_key_on_alerts(api: Api) -> None:
    store = api.services.store
    mine = api.get("/v1/alerts", role="ben_tre", params={"limit": 1000}).json()
    assert mine
    assert {a["province"] for a in mine} == {"ben_tre"}
    assert len(mine) == len(store.list(province="ben_tre", limit=1000))
    r = api.get("/v1/alerts", role="ben_tre", params={"province": "ca_mau"})
    assert r.status_code == 403
    assert "ben_tre" in r.json()["error"]
    other = next(a for a in store.active() if a.province != "ben_tre" and a.acknowledged_by is None)
    assert api.post(f"/v1/alerts/{other.id}/acknowledge", role="ben_tre").status_code == 404
    assert api.get(f"/v1/alerts/{other.id}", role="ben_tre").status_code == 404
    assert store.get(other.id).acknowledged_by is None
    own = next(a for a in store.active() if a.province == "ben_tre" and a.acknowledged_by is None)
    r = api.post(f"/v1/alerts/{own.id}/acknowledge", role="ben_tre")
    assert r.status_code == 200
    assert r.json()["acknowledged_by"] == "ben_tre-operator"


# -- rules ------------------------------------------------------------------------------------


def test_rules_list_the_loaded_pack(api: Api) -> None:
    pack = load_pack(DEFAULT_PACK)
    body = api.get("/v1/rules").json()
    assert body["name"] == pack.name
    assert body["count"] == len(pack.rules) == len(body["rules"])
    assert [r["id"] for r in body["rules"]] == [r.id for r in pack.rules]
    sal = next(r for r in body["rules"] if r["id"] == "SAL_FRUIT")
    assert (sal["condition"], sal["field"], sal["severity"]) == ("threshold", "salinity_ppt", "warning")


def test_validate_a_posted_pack(api: Api) -> None:
    text = DEFAULT_PACK.read_text(encoding="utf-8")
    r = api.post("/v1/rules/validate", content=text.encode(), headers={"content-type": "application/yaml"})
    assert r.status_code == 200
    assert r.json()["count"] == len(load_pack(DEFAULT_PACK).rules)
    broken = yaml.safe_load(text)
    broken["rules"][1]["condition"]["op"] = "=="
    rule_id = broken["rules"][1]["id"]
    r = api.post("/v1/rules/validate", content=yaml.safe_dump(broken, allow_unicode=True).encode())
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid rule pack"
    assert f"rule {rule_id}: condition.op" in body["detail"]
    assert api.post("/v1/rules/validate", content=b"rules: [").status_code == 422
    assert api.post("/v1/rules/validate", content=b"a: &x [1]\nb: *x\n").status_code == 422
    assert api.post("/v1/rules/validate", content=b"").status_code == 422


def test_reload_from_disk_keeps_the_old_pack_when_broken(api: Api) -> None:
    original = api.pack.read_text(encoding="utf-8")
    try:
        smaller = yaml.safe_load(original)
        smaller["rules"] = smaller["rules"][:5]
        api.pack.write_text(yaml.safe_dump(smaller, allow_unicode=True), encoding="utf-8")
        r = api.post("/v1/rules/reload")
        assert r.status_code == 200
        assert r.json()["count"] == 5
        api.pack.write_text("name: x\nrules: [{id: bad}]\n", encoding="utf-8")
        r = api.post("/v1/rules/reload")
        assert r.status_code == 422
        assert "rule bad" in r.json()["detail"]
        assert api.get("/v1/rules").json()["count"] == 5
        assert api.post("/v1/rules/reload", role="ben_tre").status_code == 403
    finally:
        api.pack.write_text(original, encoding="utf-8")
        assert api.post("/v1/rules/reload").json()["count"] == len(load_pack(DEFAULT_PACK).rules)


def test_backtest_matches_a_direct_run(api: Api) -> None:
    start, end = api.data.end_ms - 6 * 3_600_000, api.data.end_ms
    r = api.post("/v1/rules/backtest", json={"from": str(start), "to": str(end)})
    assert r.status_code == 200
    body = r.json()
    report = backtest(
        load_pack(DEFAULT_PACK), api.data.fleet, url=api.data.influx_url, db=api.data.db, start_ms=start, end_ms=end
    ).summary()
    assert body["readings"] == report["readings"] > 0
    assert body["firings"] == report["firings"]
    assert {k: v["firings"] for k, v in body["rules"].items()} == {k: v["firings"] for k, v in report["rules"].items()}
    assert body["devices"] == len(api.data.fleet.devices)
    limited = api.post("/v1/rules/backtest", role="ben_tre", json={"from": str(start), "to": str(end)}).json()
    assert limited["devices"] == sum(d.province == "ben_tre" for d in api.data.fleet.devices)
    for rule in limited["rules"].values():
        assert all(t["device_id"].startswith("bt-") for t in rule["top_devices"])
    assert api.post("/v1/rules/backtest", json={"from": "-30d"}).status_code == 422
    assert api.post("/v1/rules/backtest", json={"from": "now", "to": "-1h"}).status_code == 422
    assert api.post("/v1/rules/backtest", json={"from": "-1h", "pack": "name: x\nrules: 3"}).status_code == 422


# -- subscriptions ----------------------------------------------------------------------------


def test_subscription_lifecycle_and_test_delivery(api: Api) -> None:
    secret = generate_secret()
    with WebhookReceiver(secret, quiet=True) as rx:
        r = api.post(
            "/v1/subscriptions",
            json={
                "url": rx.url,
                "secret": secret,
                "language": "en",
                "provinces": ["ben_tre"],
                "min_severity": "warning",
            },
        )
        assert r.status_code == 201
        created = r.json()
        assert created["secret"] == secret
        sub_id = created["id"]
        assert created["filters"]["provinces"] == ["ben_tre"]
        listed = api.get("/v1/subscriptions", role="operate").json()
        assert sub_id in [s["id"] for s in listed]
        assert all(s["secret"] is None for s in listed)
        one = api.get(f"/v1/subscriptions/{sub_id}", role="operate")
        assert one.json()["secret"] is None
        assert secret not in one.text

        r = api.post(f"/v1/subscriptions/{sub_id}/test")
        assert r.status_code == 200
        result = r.json()
        assert (result["delivered"], result["status"], result["error"]) == (True, 200, None)
        assert rx.wait_for(1)
        received = rx.requests[0]
        assert received.verified
        assert received.webhook_id == result["webhook_id"]
        assert received.payload is not None
        assert received.payload["type"] == "test.ping"
        assert api.services.store.outbox(subscription_id=sub_id) == []  # a test is not queued

        r = api.client.patch(
            f"/v1/subscriptions/{sub_id}",
            headers=api.h("operate"),
            json={"min_severity": "critical", "description": "co-op", "rotate_secret": True},
        )
        assert r.status_code == 200
        patched = r.json()
        assert patched["filters"]["min_severity"] == "critical"
        assert patched["filters"]["provinces"] == ["ben_tre"]
        assert patched["description"] == "co-op"
        assert patched["secret"].startswith("whsec_")
        assert patched["secret"] != secret
        r = api.post(f"/v1/subscriptions/{sub_id}/test")  # the receiver still has the old secret
        assert (r.json()["delivered"], r.json()["status"]) == (False, 401)
        disabled = api.client.patch(f"/v1/subscriptions/{sub_id}", headers=api.h("operate"), json={"enabled": False})
        assert disabled.json()["enabled"] is False
        assert disabled.json()["disabled_reason"]

    closed = api.post(f"/v1/subscriptions/{sub_id}/test").json()  # the receiver has stopped
    assert closed["delivered"] is False
    assert closed["status"] is None
    assert closed["error"]
    assert api.client.delete(f"/v1/subscriptions/{sub_id}", headers=api.h("operate")).status_code == 204
    assert api.get(f"/v1/subscriptions/{sub_id}", role="operate").status_code == 404
    assert api.client.delete(f"/v1/subscriptions/{sub_id}", headers=api.h("operate")).status_code == 404


def test_subscription_refusals(api: Api) -> None:
    for body, text in (
        ({"url": "http://10.1.2.3/hook"}, "refused"),
        ({"url": "ftp://example.org/"}, "invalid request: body.url"),
        ({"url": "http://no-such-host.invalid/hook"}, "refused"),
        ({"url": "http://127.0.0.1:9/x", "secret": "hunter2"}, "whsec_"),
        ({"url": "http://127.0.0.1:9/x", "language": "fr"}, "invalid request"),
    ):
        r = api.post("/v1/subscriptions", json=body)
        assert r.status_code == 422, body
        assert text in r.json()["error"] or text in str(r.json()["detail"])


def test_area_scoped_subscriptions(api: Api) -> None:
    everywhere = api.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/all"}).json()
    r = api.post("/v1/subscriptions", role="ben_tre", json={"url": "http://127.0.0.1:9/bt"})
    assert r.status_code == 201
    mine = r.json()
    assert mine["filters"]["provinces"] == ["ben_tre"]  # defaults to the key's provinces
    assert (
        api.post(
            "/v1/subscriptions", role="ben_tre", json={"url": "http://127.0.0.1:9/x", "provinces": ["ca_mau"]}
        ).status_code
        == 403
    )
    seen = [s["id"] for s in api.get("/v1/subscriptions", role="ben_tre").json()]
    assert mine["id"] in seen
    assert everywhere["id"] not in seen
    assert api.get(f"/v1/subscriptions/{everywhere['id']}", role="ben_tre").status_code == 404
    assert api.client.delete(f"/v1/subscriptions/{everywhere['id']}", headers=api.h("ben_tre")).status_code == 404
    r = api.client.patch(f"/v1/subscriptions/{mine['id']}", headers=api.h("ben_tre"), json={"provinces": ["ca_mau"]})
    assert r.status_code == 403
    for sub in (everywhere, mine):
        api.client.delete(f"/v1/subscriptions/{sub['id']}", headers=api.h("operate"))


def test_subscriptions_by_crop_and_point_and_radius(api: Api) -> None:
    near = {"lat": 10.04, "lon": 106.6, "radius_km": 15}
    body = {"url": "http://127.0.0.1:9/ba-tri", "crops": ["Durian"], "near": near}
    r = api.post("/v1/subscriptions", json=body)
    assert r.status_code == 201, r.text
    sub = r.json()
    assert sub["filters"]["crops"] == ["durian"]
    assert sub["filters"]["near"] == {"lat": 10.04, "lon": 106.6, "radius_km": 15.0}
    assert api.get(f"/v1/subscriptions/{sub['id']}", role="operate").json()["filters"] == sub["filters"]

    def patch(role: str = "operate", **fields: Any) -> httpx.Response:
        return api.client.patch(f"/v1/subscriptions/{sub['id']}", headers=api.h(role), json=fields)

    moved = patch(near={"lat": 9.6, "lon": 106.0, "radius_km": 500}).json()["filters"]
    assert moved["near"] == {"lat": 9.6, "lon": 106.0, "radius_km": 500.0}
    assert moved["crops"] == ["durian"], "a filter not given stays"
    assert patch(description="co-op").json()["filters"]["near"] == moved["near"]
    cleared = patch(near=None, crops=[]).json()["filters"]
    assert cleared["near"] is None
    assert cleared["crops"] == []

    for fields, where in (
        ({"near": {"lat": 91, "lon": 106, "radius_km": 5}}, "body.near.lat"),
        ({"near": {"lat": 10, "lon": -180.5, "radius_km": 5}}, "body.near.lon"),
        ({"near": {"lat": 10, "lon": 106, "radius_km": 0}}, "body.near.radius_km"),
        ({"near": {"lat": 10, "lon": 106, "radius_km": 500.5}}, "body.near.radius_km"),
        ({"near": {"lat": 10, "lon": 106}}, "body.near.radius_km"),
        ({"crops": ["durain"]}, "crops: unknown crop 'durain'"),
    ):
        for r in (api.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/x", **fields}), patch(**fields)):
            assert r.status_code == 422, (fields, r.text)
            assert where in r.json()["error"], r.json()
    assert api.get(f"/v1/subscriptions/{sub['id']}", role="operate").json()["filters"] == cleared

    # a province-limited key: its subscriptions stay within its provinces, near or not
    r = api.post("/v1/subscriptions", role="ben_tre", json={"url": "http://127.0.0.1:9/bt", "near": body["near"]})
    assert r.status_code == 201
    mine = r.json()
    assert mine["filters"]["provinces"] == ["ben_tre"]
    assert mine["filters"]["near"]["radius_km"] == 15.0
    r = api.client.patch(
        f"/v1/subscriptions/{mine['id']}", headers=api.h("ben_tre"), json={"near": None, "provinces": ["ca_mau"]}
    )
    assert r.status_code == 403
    assert patch("ben_tre", near=None).status_code == 404, "not its subscription"
    for s in (sub, mine):
        api.client.delete(f"/v1/subscriptions/{s['id']}", headers=api.h("operate"))


def test_alerts_show_their_devices_coordinates(api: Api) -> None:
    where = {d.id: (d.lat, d.lon) for d in api.data.fleet.devices}
    alerts = api.get("/v1/alerts", params={"limit": 50}).json()
    assert alerts
    assert all((a["lat"], a["lon"]) == where[a["device_id"]] for a in alerts)


def test_subscription_pacing(api: Api) -> None:
    r = api.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/coop"})
    assert r.status_code == 201, r.text
    sub = r.json()
    assert sub["pacing"] == {"group_wait_s": 60, "group_interval_s": 1800, "quiet_hours": None, "max_per_hour": None}
    assert (sub["pending"], sub["waiting"]) == (0, 0)
    wanted = {"group_wait_s": 120, "group_interval_s": 900, "quiet_hours": "21:00-05:30", "max_per_hour": 4}
    path = f"/v1/subscriptions/{sub['id']}"
    r = api.client.patch(path, headers=api.h("operate"), json={"pacing": wanted})
    assert r.status_code == 200, r.text
    assert r.json()["pacing"] == wanted
    assert api.get(path, role="operate").json()["pacing"] == wanted
    assert api.client.patch(path, headers=api.h("operate"), json={"description": "x"}).json()["pacing"] == wanted
    for bad, where in (
        ({"quiet_hours": "21:00"}, "body.pacing.quiet_hours"),
        ({"quiet_hours": "06:00-06:00"}, "same time"),
        ({"group_wait_s": -1}, "body.pacing.group_wait_s"),
        ({"group_interval_s": 21601}, "body.pacing.group_interval_s"),
        ({"max_per_hour": 0}, "body.pacing.max_per_hour"),
        ({"max_per_hour": True}, "body.pacing.max_per_hour"),
        ({"every": 5}, "body.pacing.every"),
    ):
        for r in (
            api.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/x", "pacing": bad}),
            api.client.patch(path, headers=api.h("operate"), json={"pacing": bad}),
        ):
            assert r.status_code == 422, (bad, r.text)
            assert where in r.json()["error"], r.json()
    api.client.delete(path, headers=api.h("operate"))


def test_delivery_log_dead_letters_and_replay(api: Api) -> None:
    store = api.services.store
    url = f"http://127.0.0.1:{free_port()}/closed"
    sub_id = api.post("/v1/subscriptions", json={"url": url, "pacing": {"group_wait_s": 0}}).json()["id"]
    devices = device_infos(api.data.fleet)
    event = Transition("API_TEST", 0, devices[0].id, State.FIRING, api.data.end_ms, 1.0, Severity.INFO, "thử", "test")
    store.apply([event], devices)
    settings = WebhookSettings(  # type: ignore[call-arg]
        _env_file=None, alerts_db=api.settings.alerts_db, webhook_max_attempts=1, webhook_allow_hosts=["127.0.0.1"]
    )
    assert asyncio.run(WebhookSender(store, settings).deliver_due()) == 1

    log = api.get(f"/v1/subscriptions/{sub_id}/deliveries", role="operate").json()
    assert len(log) == 1
    assert log[0]["verdict"] == "dead"
    assert log[0]["status"] is None
    assert "Connect" in log[0]["error"]
    dead = api.get(f"/v1/subscriptions/{sub_id}/dead-letters", role="operate").json()
    assert len(dead) == 1
    assert dead[0]["event_type"] == "alert.firing"
    assert api.post(f"/v1/subscriptions/{sub_id}/replay", json={"ids": []}).status_code == 422
    r = api.post(f"/v1/subscriptions/{sub_id}/replay")
    assert r.json() == {"replayed": 1}
    assert api.get(f"/v1/subscriptions/{sub_id}/dead-letters", role="operate").json() == []
    again = api.get(f"/v1/subscriptions/{sub_id}/dead-letters", role="operate", params={"include_replayed": "true"})
    assert again.json()[0]["replayed_at"] is not None
    assert api.get(f"/v1/subscriptions/{sub_id}", role="operate").json()["pending"] == 1
    assert api.post(f"/v1/subscriptions/{sub_id}/replay", json={"ids": [dead[0]["id"]]}).json() == {"replayed": 0}
    api.client.delete(f"/v1/subscriptions/{sub_id}", headers=api.h("operate"))


# -- keys -------------------------------------------------------------------------------------


def test_keys_create_list_revoke(api: Api) -> None:
    r = api.post("/v1/keys", role="admin", json={"name": "dashboard", "scope": "read", "provinces": ["ca_mau"]})
    assert r.status_code == 201
    created = r.json()
    token = created["key"]
    assert created["provinces"] == ["ca_mau"]
    assert created["created_by"].startswith("bootstrap admin")
    assert api.client.get("/v1/devices", headers={"X-API-Key": token}).json()[0]["province"] == "ca_mau"
    listed = api.get("/v1/keys", role="admin")
    assert created["id"] in [k["id"] for k in listed.json()]
    assert token not in listed.text
    assert hash_token(token) not in listed.text
    assert all("key" not in k for k in listed.json())
    assert api.client.delete(f"/v1/keys/{created['id']}", headers=api.h("admin")).status_code == 204
    assert api.client.get("/v1/devices", headers={"X-API-Key": token}).status_code == 401
    revoked = api.get("/v1/keys", role="admin", params={"include_revoked": "true"}).json()
    assert next(k for k in revoked if k["id"] == created["id"])["revoked_at"]
    assert (
        api.post("/v1/keys", role="admin", json={"name": "x", "scope": "admin", "provinces": ["ca_mau"]}).status_code
        == 422
    )
    assert api.post("/v1/keys", role="admin", json={"name": "x", "scope": "root"}).status_code == 422
    assert api.client.delete("/v1/keys/key_missing", headers=api.h("admin")).status_code == 404


def test_keys_are_stored_hashed_in_the_store_file(api: Api) -> None:
    dump = "\n".join(sqlite3.connect(api.settings.alerts_db).iterdump())
    for token in api.keys.values():
        assert token not in dump
        assert hash_token(token) in dump


# -- open data ----------------------------------------------------------------------------------


def test_stations_geojson(api: Api) -> None:
    r = api.get("/v1/opendata/stations.geojson")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/geo+json"
    fc = r.json()
    assert fc["type"] == "FeatureCollection"
    fleet = api.data.fleet.by_id()
    assert len(fc["features"]) == len(fleet)
    for f in fc["features"]:
        d = fleet[f["id"]]
        assert f["geometry"] == {"type": "Point", "coordinates": [d.lon, d.lat]}
        assert f["properties"] == {
            "id": d.id, "kind": d.kind.value, "province": d.province, "district": d.district, "site": d.site,
            "crop": d.crop,
        }  # fmt: skip
        assert 102 < d.lon < 110  # longitude first: the Mekong Delta is at 104–107 °E, 8–11 °N
        assert 8 < d.lat < 11.5
    cameras = api.get("/v1/opendata/stations.geojson", params={"kind": "camera"}).json()["features"]
    assert {f["properties"]["kind"] for f in cameras} == {"camera"}
    assert api.client.get("/v1/opendata/stations.geojson").status_code == 401


# -- health -------------------------------------------------------------------------------------


def test_healthz_and_readyz(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    r = api.client.get("/readyz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"broker", "influxdb", "alert_store"}
    assert all(c["ok"] for c in body["checks"].values())


def test_readyz_503_names_what_failed(api: Api, tmp_path: Path) -> None:
    closed = free_port()
    settings = api.settings.model_copy(
        update={"mqtt_url": f"mqtt://127.0.0.1:{closed}", "influx_url": f"http://127.0.0.1:{free_port()}"}
    )
    app = create_app(settings)
    with TestClient(app) as client:
        r = client.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["error"] == "not ready: broker, influxdb"
    checks = body["detail"]["checks"]
    assert (checks["broker"]["ok"], checks["influxdb"]["ok"], checks["alert_store"]["ok"]) == (False, False, True)
    assert str(closed) in checks["broker"]["detail"]


def test_influx_down_is_a_clean_503(api: Api) -> None:
    settings = api.settings.model_copy(update={"influx_url": f"http://127.0.0.1:{free_port()}"})
    with TestClient(create_app(settings)) as client:
        r = client.get("/v1/devices", headers=api.h("read"))
    assert r.status_code == 503
    assert r.json() == {"error": "InfluxDB is unreachable", "detail": None}


def test_metrics(api: Api) -> None:
    api.get("/v1/devices")
    r = api.get("/metrics")
    assert r.status_code == 200
    assert 'ioc_api_requests_total{method="GET",route="/v1/devices",status="200"}' in r.text
    assert "ioc_api_request_seconds_bucket" in r.text
    assert api.client.get("/metrics").status_code == 401


# -- errors and limits ----------------------------------------------------------------------------


def test_body_limit_413(api: Api) -> None:
    big = b"#" * (api.settings.api_max_body_bytes + 1)
    r = api.post("/v1/rules/validate", content=big)
    assert r.status_code == 413
    assert r.json()["detail"] == {"max_bytes": api.settings.api_max_body_bytes}

    def stream() -> Iterator[bytes]:
        for _ in range(10):
            yield b"#" * (api.settings.api_max_body_bytes // 8)

    r = api.post("/v1/rules/validate", content=stream())  # chunked: counted while read
    assert r.status_code == 413

    def json_stream() -> Iterator[bytes]:  # 5 MB of JSON, chunked: FastAPI parses it, the answer is still 413
        yield b'{"url": "http://127.0.0.1:9/x", "description": "'
        for _ in range(80):
            yield b"x" * 65_536
        yield b'"}'

    r = api.post("/v1/subscriptions", content=json_stream(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert r.json() == {
        "error": f"the request body is larger than {api.settings.api_max_body_bytes} bytes",
        "detail": {"max_bytes": api.settings.api_max_body_bytes},
    }


def test_405_and_options_name_every_method_of_the_path(api: Api) -> None:
    for path, methods in (
        ("/v1/keys", "GET, POST"),
        ("/v1/subscriptions", "GET, POST"),
        ("/v1/subscriptions/sub_x", "DELETE, GET, PATCH"),
        ("/v1/devices", "GET, POST"),
        ("/v1/devices/x", "DELETE, GET, PATCH"),
    ):
        for method in ("OPTIONS", "PUT"):
            r = api.client.request(method, path, headers=api.h("admin"))
            assert (r.status_code, r.headers["allow"]) == (405, methods), (method, path)


def test_error_shapes(api: Api) -> None:
    r = api.get("/v1/nothing-here")
    assert (r.status_code, r.json()["error"]) == (404, "not found")
    r = api.client.put("/v1/devices", headers=api.h("read"))
    assert (r.status_code, r.json()["error"]) == (405, "method not allowed")
    r = api.get("/v1/alerts", params={"limit": "lots"})
    assert r.status_code == 422
    body = r.json()
    assert body["error"].startswith("invalid request: query.limit")
    assert body["detail"][0]["loc"] == ["query", "limit"]
    r = api.post("/v1/subscriptions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_a_crash_is_a_500_without_traceback(api: Api) -> None:
    app = create_app(api.settings)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals /etc/passwd")

    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/boom")
    assert r.status_code == 500
    assert r.json() == {"error": "internal server error", "detail": "the error was logged; no details are given here"}
    assert "secret" not in r.text
    assert "Traceback" not in r.text


def test_services_refuse_to_start_on_a_bad_fleet(api: Api, tmp_path: Path) -> None:
    from registry.errors import RegistryError

    with pytest.raises(RegistryError, match=r"cannot read the fleet file .*\(the fleet file: IOC_FLEET\)"):
        Services.open(api.settings.model_copy(update={"fleet": tmp_path / "missing.yaml"}))


def test_a_subscription_may_ask_for_a_template(api: Api) -> None:
    """Zalo ZNS and SMS brandname gateways send approved templates: the subscription names one."""
    body = {"url": "http://127.0.0.1:9/zns", "template": "ioc_alert_v1"}
    r = api.post("/v1/subscriptions", json=body)
    assert r.status_code == 201, r.text
    sub = r.json()
    assert sub["template"] == "ioc_alert_v1"

    def patch(**fields: Any) -> httpx.Response:
        return api.client.patch(f"/v1/subscriptions/{sub['id']}", headers=api.h("operate"), json=fields)

    assert patch(description="Zalo OA").json()["template"] == "ioc_alert_v1", "not given: it stays"
    assert patch(template="ioc.alert:2").json()["template"] == "ioc.alert:2"
    for bad in ("", "has space", "x" * 65, "mặn"):
        for r in (api.post("/v1/subscriptions", json={**body, "template": bad}), patch(template=bad)):
            assert r.status_code == 422, (bad, r.text)
            assert "template" in r.json()["error"], r.json()
    assert patch(template=None).json()["template"] is None
    assert api.client.delete(f"/v1/subscriptions/{sub['id']}", headers=api.h("operate")).status_code == 204
