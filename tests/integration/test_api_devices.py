"""Provisioning through the API, over real HTTP: create, change, decommission, import, page, follow.

The app is served by uvicorn on a free port over a registry database in a temp SQLite file (the
simulated fleet imported into it, as ``ioc devices import`` would), the InfluxDB of
``simulated_data`` and a copy of its alert store. A second :class:`DeviceRegistry` on the same file
plays ``ioc devices`` (or another API process) changing the registry behind the API's back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from api.keys import KeyStore
from api.main import create_app
from contract.fleet import Device
from ioc.servers import ServerProcess
from registry.store import DeviceRegistry
from rules.pack import DEFAULT_PACK
from tests.conftest import SimulatedData
from tests.integration.test_api import ADMIN, api_settings, broker, copy_store  # noqa: F401  (broker: a fixture)
from tests.integration.test_api_schema import Served

FOLLOW_S = 2.0
"""A change made in the database by someone else shows through GET within this."""

CSV_HEADER = "id,kind,province,district,site,crop,lat,lon,model,dev_eui\n"


@dataclass
class Api:
    http: httpx.Client
    url: str
    """The registry database the API serves."""
    keys: dict[str, str]
    """Tokens by role: admin, read, operate, ben_tre (operate, limited to Bến Tre)."""
    fleet: tuple[Device, ...]

    def h(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def request(self, method: str, path: str, role: str = "operate", **kw: Any) -> httpx.Response:
        return self.http.request(method, path, headers={**self.h(role), **kw.pop("headers", {})}, **kw)

    def get(self, path: str, role: str = "read", **kw: Any) -> httpx.Response:
        return self.request("GET", path, role, **kw)

    def listed(self, role: str = "read", **params: Any) -> list[dict[str, Any]]:
        r = self.get("/v1/devices", role, params=params)
        assert r.status_code == 200, r.text
        body: list[dict[str, Any]] = r.json()
        return body


@pytest.fixture(scope="module")
def api(
    simulated_data: SimulatedData,
    broker: ServerProcess,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("api-devices")
    db = copy_store(simulated_data.alerts_db, root / "alerts.db")
    pack = root / "pack.yaml"
    pack.write_text(DEFAULT_PACK.read_text(encoding="utf-8"), encoding="utf-8")
    url = f"sqlite:///{root / 'registry.db'}"
    with closing(DeviceRegistry(url)) as registry:
        registry.import_devices(simulated_data.fleet.devices, source="simulated fleet")
    settings = api_settings(simulated_data, db, pack, broker.port, fleet=None, registry_url=url)
    keys = KeyStore(db)
    tokens = {"admin": ADMIN}
    for role, scope, provinces in (
        ("read", "read", None),
        ("operate", "operate", None),
        ("ben_tre", "operate", ["ben_tre"]),
    ):
        tokens[role] = keys.create(f"{role}-operator", scope, provinces=provinces)[1]
    keys.close()
    with Served(create_app(settings)) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        yield Api(http, url, tokens, simulated_data.fleet.devices)


def new_device(device_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "id": device_id, "kind": "salinity", "province": "ben_tre", "district": "ba_tri", "site": "river",
        "crop": "rice", "lat": 10.04, "lon": 106.6, **overrides,
    }  # fmt: skip


def wait_for(predicate: Any, what: str, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


# -- create, change, decommission -----------------------------------------------------------------


def test_a_device_created_changed_and_decommissioned(api: Api) -> None:
    body = new_device("bt-sal-api1", model="dragino_lsn50", external_ids={"dev_eui": "A84041000181C2D1"})
    r = api.request("POST", "/v1/devices", json=body)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/v1/devices/bt-sal-api1"
    created = r.json()
    assert (created["state"], created["model"], created["revision"] > 0) == ("active", "dragino_lsn50", True)
    assert created["external_ids"] == {
        "dev_eui": "a84041000181c2d1", "tts_device_id": None, "sparkplug": None, "thingsboard": None,
        "senml": None,
    }  # fmt: skip

    shown = api.get(r.headers["location"])
    assert shown.status_code == 200
    one = shown.json()
    assert (one["id"], one["crop"], one["state"], one["status"]) == ("bt-sal-api1", "rice", "active", "unknown")
    assert one["external_ids"]["dev_eui"] == "a84041000181c2d1"
    assert "salinity_ppt" in {f["name"] for f in one["fields"]}
    assert "bt-sal-api1" in [d["id"] for d in api.listed(province="ben_tre")]

    r = api.request("PATCH", "/v1/devices/bt-sal-api1", json={"crop": "durian", "external_ids": {"sparkplug": "g/e"}})
    assert r.status_code == 200, r.text
    assert r.json()["crop"] == "durian"
    assert r.json()["updated_at"] >= created["updated_at"]
    one = api.get("/v1/devices/bt-sal-api1").json()
    assert one["crop"] == "durian"
    assert one["external_ids"]["dev_eui"] == "a84041000181c2d1"  # the ids not named stay
    assert one["external_ids"]["sparkplug"] == "g/e"
    r = api.request("PATCH", "/v1/devices/bt-sal-api1", json={"external_ids": {"sparkplug": None}})
    assert r.json()["external_ids"]["sparkplug"] is None  # null removes that id
    with closing(DeviceRegistry(api.url)) as registry:
        assert registry.get("bt-sal-api1").device.crop == "durian"  # in the database, not only the API

    r = api.request("DELETE", "/v1/devices/bt-sal-api1")
    assert r.status_code == 200
    assert r.json()["state"] == "decommissioned"
    assert "bt-sal-api1" not in [d["id"] for d in api.listed()]
    gone = api.listed(state="decommissioned")
    assert "bt-sal-api1" in [d["id"] for d in gone]
    assert {d["state"] for d in gone} == {"decommissioned"}
    assert api.get("/v1/devices/bt-sal-api1").json()["state"] == "decommissioned"  # still there, by its id
    both = {d["id"] for d in api.listed(state=["active", "decommissioned"])}
    assert "bt-sal-api1" in both
    assert api.request("DELETE", "/v1/devices/bt-sal-api1").status_code == 200  # again: nothing changes

    r = api.request("PATCH", "/v1/devices/bt-sal-api1", json={"state": "active"})
    assert r.status_code == 409
    assert "decommissioned" in r.json()["error"]
    assert api.request("POST", "/v1/devices", json=new_device("bt-sal-api1")).status_code == 409  # never reused


def test_create_refuses_a_taken_id_or_external_id(api: Api) -> None:
    taken = api.fleet[0].id
    r = api.request("POST", "/v1/devices", json=new_device(taken))
    assert r.status_code == 409
    assert taken in r.json()["error"]
    first = api.request("POST", "/v1/devices", json=new_device("bt-sal-eui1", external_ids={"dev_eui": "00" * 8}))
    assert first.status_code == 201
    r = api.request("POST", "/v1/devices", json=new_device("bt-sal-eui2", external_ids={"dev_eui": "00" * 8}))
    assert r.status_code == 409
    assert "dev_eui" in r.json()["error"]
    assert api.get("/v1/devices/bt-sal-eui2").status_code == 404
    r = api.request("PATCH", f"/v1/devices/{taken}", json={"external_ids": {"dev_eui": "00" * 8}})
    assert r.status_code == 409


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"lat": 91}, "body.lat"),
        ({"crop": "coffee"}, "body.crop"),
        ({"province": "Bến Tre"}, "body.province"),
        ({"external_ids": {"dev_eui": "xyz"}}, "body.external_ids.dev_eui"),
        ({"kind": "camera"}, "body.kind"),  # a device keeps its kind
        ({"lat": "10.5"}, "body.lat"),  # a number, not a string
    ],
)
def test_patch_names_the_invalid_field(api: Api, body: dict[str, Any], where: str) -> None:
    device = api.fleet[1]
    r = api.request("PATCH", f"/v1/devices/{device.id}", json=body)
    assert r.status_code == 422
    assert r.json()["error"].startswith(f"invalid request: {where}")
    assert api.get(f"/v1/devices/{device.id}").json()["crop"] == device.crop


def test_import_is_reserved_and_unknown_devices_are_404(api: Api) -> None:
    r = api.request("POST", "/v1/devices", json=new_device("import"))
    assert r.status_code == 422
    assert api.request("PATCH", "/v1/devices/no-such", json={"crop": "rice"}).status_code == 404
    assert api.request("DELETE", "/v1/devices/no-such").status_code == 404
    r = api.request("GET", "/v1/devices/import")
    assert (r.status_code, r.headers["allow"]) == (405, "POST")


# -- import ---------------------------------------------------------------------------------------


def test_import_csv_then_yaml(api: Api) -> None:
    csv_body = (
        CSV_HEADER
        + "bt-sal-imp1,salinity,ben_tre,ba_tri,river,rice,10.01,106.51,ioc_v1,\n"
        + "bt-wq-imp2,water_quality,ben_tre,ba_tri,pond,shrimp,10.02,106.52,milesight_em500,24e124136b32a001\n"
    )
    r = api.request("POST", "/v1/devices/import", content=csv_body, headers={"content-type": "text/csv"})
    assert r.status_code == 200, r.text
    result = r.json()
    assert (result["added"], result["changed"], result["unchanged"]) == (2, 0, 0)
    wq = api.get("/v1/devices/bt-wq-imp2").json()
    assert (wq["model"], wq["external_ids"]["dev_eui"], wq["crop"]) == ("milesight_em500", "24e124136b32a001", "shrimp")
    again = api.request("POST", "/v1/devices/import", content=csv_body, headers={"content-type": "text/csv"}).json()
    assert again == {"added": 0, "changed": 0, "unchanged": 2, "revision": result["revision"]}  # idempotent

    yaml_body = """
version: 1
devices:
  - {id: bt-sal-imp1, kind: salinity, province: ben_tre, district: ba_tri, site: canal, crop: rice,
     lat: 10.01, lon: 106.51}
  - {id: bt-sal-imp3, kind: salinity, province: ben_tre, district: ba_tri, site: river, lat: 10.03, lon: 106.53,
     state: suspended}
"""
    for media in ("application/yaml", "application/x-yaml", "text/yaml; charset=utf-8"):
        r = api.request("POST", "/v1/devices/import", content=yaml_body, headers={"content-type": media})
        assert r.status_code == 200, (media, r.text)
    assert api.get("/v1/devices/bt-sal-imp1").json()["site"] == "canal"
    assert api.get("/v1/devices/bt-sal-imp3").json()["state"] == "suspended"
    assert "bt-sal-imp3" in [d["id"] for d in api.listed(state="suspended")]

    r = api.request("POST", "/v1/devices/import", json={"devices": []})
    assert r.status_code == 415
    assert "text/csv" in r.json()["error"]


@pytest.mark.parametrize("media", ["text/csv", "application/yaml"])
def test_an_import_with_one_bad_row_writes_nothing(api: Api, media: str) -> None:
    if media == "text/csv":
        body = (
            CSV_HEADER
            + "bt-sal-bad1,salinity,ben_tre,ba_tri,river,rice,10.0,106.5,ioc_v1,\n"
            + "bt-sal-bad2,salinity,ben_tre,ba_tri,river,rice,99.0,106.5,ioc_v1,\n"
            + "bt-sal-bad3,salinity,ben_tre,ba_tri,river,rice,10.0,106.5,ioc_v1,\n"
        )
        bad_row = "row 3 ('bt-sal-bad2')"  # row 1 is the header
    else:
        body = "\n".join(
            f"- {{id: bt-sal-bad{i}, kind: salinity, province: ben_tre, district: ba_tri, site: river, "
            f"lat: {lat}, lon: 106.5}}"
            for i, lat in ((1, 10.0), (2, 99.0), (3, 10.0))
        )
        bad_row = "row 2 ('bt-sal-bad2')"
    with closing(DeviceRegistry(api.url)) as registry:
        before = (registry.revision(), registry.count())
        r = api.request("POST", "/v1/devices/import", content=body, headers={"content-type": media})
        assert r.status_code == 422
        problems = r.json()["detail"]["problems"]
        assert len(problems) == 1
        assert problems[0].startswith(f"{bad_row}: lat:")
        assert "nothing imported" in r.json()["error"]
        assert (registry.revision(), registry.count()) == before
    for i in (1, 2, 3):
        assert api.get(f"/v1/devices/bt-sal-bad{i}").status_code == 404


def test_import_refuses_what_is_not_a_fleet(api: Api) -> None:
    for media, body in (
        ("application/yaml", "a: &x [1]\nb: *x\n"),
        ("application/yaml", "just words"),
        ("text/csv", "who,what\n1,2\n"),
    ):
        r = api.request("POST", "/v1/devices/import", content=body, headers={"content-type": media})
        assert r.status_code == 422, body
    r = api.request("POST", "/v1/devices/import", content=b"\xff\xfe", headers={"content-type": "text/csv"})
    assert r.status_code == 400


# -- pagination and following the database -------------------------------------------------------


def test_pages_walk_every_device_once_following_the_link_header(api: Api) -> None:
    everything = [d["id"] for d in api.listed()]
    assert everything == sorted(everything)
    assert len(everything) > 20
    seen: list[str] = []
    url: str | None = "/v1/devices?limit=7"
    pages = 0
    while url is not None:
        r = api.get(url)
        assert r.status_code == 200
        page = [d["id"] for d in r.json()]
        assert 0 < len(page) <= 7
        seen += page
        pages += 1
        link = r.headers.get("link")
        url = r.links["next"]["url"] if link else None
        if url is not None:
            assert link == f'<{url}>; rel="next"'
            assert f"after={page[-1]}" in url
    assert seen == everything
    assert pages == -(-len(everything) // 7)

    ben_tre = [d["id"] for d in api.listed(province="ben_tre")]
    first = api.get("/v1/devices", params={"province": "ben_tre", "limit": 2})
    assert [d["id"] for d in first.json()] == ben_tre[:2]
    following = api.get(first.links["next"]["url"])
    assert "province=ben_tre" in first.links["next"]["url"]
    assert [d["id"] for d in following.json()] == ben_tre[2:4]
    assert "link" not in api.get("/v1/devices", params={"limit": 1000}).headers
    assert api.get("/v1/devices", params={"limit": 1001}).status_code == 422
    assert api.get("/v1/devices", params={"after": "no spaces"}).status_code == 422


def test_a_change_in_the_database_shows_through_get_within_seconds(api: Api) -> None:
    """``ioc devices`` (here: a second DeviceRegistry on the same file) changes what the API serves."""
    existing = next(d for d in api.fleet if d.province == "ca_mau")
    with closing(DeviceRegistry(api.url)) as other:
        other.add(Device.model_validate(new_device("bt-sal-outside", province="ben_tre")))
        other.set_state(existing.id, "suspended")
        took = wait_for(
            lambda: (
                api.get("/v1/devices/bt-sal-outside").status_code == 200
                and api.get(f"/v1/devices/{existing.id}").json()["state"] == "suspended"
            ),
            "the API sees the new device and the suspension",
            FOLLOW_S,
        )
        assert took < FOLLOW_S
        assert existing.id in [d["id"] for d in api.listed(state="suspended")]
        other.set_state(existing.id, "active")
        wait_for(lambda: api.get(f"/v1/devices/{existing.id}").json()["state"] == "active", "reactivated", FOLLOW_S)


# -- scopes ---------------------------------------------------------------------------------------


def test_a_read_key_cannot_provision(api: Api) -> None:
    device = api.fleet[2].id
    for method, path, kw in (
        ("POST", "/v1/devices", {"json": new_device("bt-sal-read")}),
        ("PATCH", f"/v1/devices/{device}", {"json": {"crop": "rice"}}),
        ("DELETE", f"/v1/devices/{device}", {}),
        ("POST", "/v1/devices/import", {"content": CSV_HEADER, "headers": {"content-type": "text/csv"}}),
    ):
        r = api.request(method, path, "read", **kw)
        assert r.status_code == 403, path
        assert "scope operate" in r.json()["error"]
    assert api.get("/v1/devices/bt-sal-read").status_code == 404
    assert api.get(f"/v1/devices/{device}").json()["state"] == "active"


def test_a_province_limited_key_provisions_only_its_provinces(api: Api) -> None:
    r = api.request("POST", "/v1/devices", "ben_tre", json=new_device("cm-sal-limited", province="ca_mau"))
    assert r.status_code == 403
    assert r.json()["detail"] == {"province": "ca_mau"}
    assert api.get("/v1/devices/cm-sal-limited", role="admin").status_code == 404
    assert api.request("POST", "/v1/devices", "ben_tre", json=new_device("bt-sal-limited")).status_code == 201

    other = next(d for d in api.fleet if d.province != "ben_tre" and d.state == "active")
    for method, kw in (("PATCH", {"json": {"crop": "rice"}}), ("DELETE", {})):
        seen = api.request(method, f"/v1/devices/{other.id}", "ben_tre", **kw)
        absent = api.request(method, "/v1/devices/bt-no-such-device", "ben_tre", **kw)
        assert (seen.status_code, absent.status_code) == (404, 404)
        assert seen.json()["error"].replace(other.id, "ID") == absent.json()["error"].replace("bt-no-such-device", "ID")
        assert other.province not in seen.text
    r = api.request("PATCH", "/v1/devices/bt-sal-limited", "ben_tre", json={"province": "ca_mau"})
    assert r.status_code == 403
    assert api.get("/v1/devices/bt-sal-limited").json()["province"] == "ben_tre"

    body = (
        CSV_HEADER
        + "bt-sal-lim2,salinity,ben_tre,ba_tri,river,rice,10.0,106.5,ioc_v1,\n"
        + "cm-sal-lim3,salinity,ca_mau,nam_can,river,rice,8.7,105.0,ioc_v1,\n"
        + f"{other.id},{other.kind.value},ben_tre,ba_tri,river,rice,10.0,106.5,ioc_v1,\n"  # moving one in
    )
    r = api.request("POST", "/v1/devices/import", "ben_tre", content=body, headers={"content-type": "text/csv"})
    assert r.status_code == 403
    assert r.json()["detail"] == {"rows": [3, 4]}
    assert other.id not in r.text
    assert api.get("/v1/devices/bt-sal-lim2").status_code == 404  # nothing imported
    ok = api.request(
        "POST", "/v1/devices/import", "ben_tre", content=CSV_HEADER + body.splitlines()[1] + "\n",
        headers={"content-type": "text/csv"},
    )  # fmt: skip
    assert ok.status_code == 200
    assert ok.json()["added"] == 1
