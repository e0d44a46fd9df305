"""History buckets are local days: ``every=1d`` (and ``6h``) cut at midnight UTC+7, as the dashboards do.

Real InfluxDB 1.x and the API in-process (Starlette's TestClient, lifespan included). Points are
written a minute either side of local midnight (17:00 UTC), where UTC days and local days disagree:
with UTC days the 23:59 and 00:01 local readings would share a bucket; with local days they don't.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from api.config import ApiSettings
from api.influx import Influx
from api.main import create_app
from api.times import iso
from contract.fields import Kind
from contract.fleet import Device, Fleet, dump_fleet
from ioc.servers import InfluxServer, free_port
from simulators.fleetgen import generate_fleet

with warnings.catch_warnings():  # Starlette 1.x nudges towards httpx2; httpx is what the project has
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ADMIN = "admin-" + "k" * 40
H, D = 3_600_000, 86_400_000
MIDNIGHT = 1_767_286_800_000
"""2026-01-02T00:00+07:00, a local midnight: 2026-01-01T17:00Z."""
MINUTES = (-25 * 60, -90, -1, 0, 1, 90, 6 * 60 - 1, 6 * 60, 23 * 60 + 59, 24 * 60)
"""When the test's readings are, in minutes from MIDNIGHT; the value of each is its minute."""


@dataclass
class LocalDays:
    client: TestClient
    influx: Influx
    device: Device


@pytest.fixture(scope="module")
def local_days(influxd: InfluxServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDays]:
    root = tmp_path_factory.mktemp("api-local-days")
    device = next(d for d in generate_fleet(20, 1).devices if d.kind is Kind.SALINITY)
    fleet_file = root / "fleet.yaml"
    dump_fleet(Fleet(devices=(device,)), fleet_file)
    db = "local_days"
    influxd.create_database(db)
    lines = [f"salinity,device_id={device.id} salinity_ppt={m} {MIDNIGHT + m * 60_000}" for m in MINUTES]
    r = httpx.post(f"{influxd.url}/write", params={"db": db, "precision": "ms"}, content="\n".join(lines))
    assert r.status_code == 204, r.text
    settings = ApiSettings(  # type: ignore[call-arg]
        _env_file=None,
        influx_url=influxd.url,
        influx_db=db,
        fleet=fleet_file,
        alerts_db=root / "alerts.db",
        mqtt_url=f"mqtt://127.0.0.1:{free_port()}",  # only /readyz would need a broker
        api_admin_key=ADMIN,
    )
    influx = Influx(influxd.url, db)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield LocalDays(client, influx, device)
    influx.close()


def history(ld: LocalDays, every: str, start: int, end: int) -> list[tuple[int, int, float, float]]:
    r = ld.client.get(
        f"/v1/readings/{ld.device.id}/salinity_ppt",
        params={"from": str(start), "to": str(end), "every": every},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert r.status_code == 200, r.text
    points = r.json()["points"]
    assert all(p["time"] == iso(p["time_ms"]) for p in points)
    return [(p["time_ms"], p["count"], p["min"], p["max"]) for p in points]


def test_daily_buckets_start_at_local_midnight(local_days: LocalDays) -> None:
    start, end = MIDNIGHT - 2 * D, MIDNIGHT + 2 * D
    assert history(local_days, "1d", start, end) == [
        (MIDNIGHT - 2 * D, 1, -1500, -1500),  # 31 Dec local: 23:00
        (MIDNIGHT - D, 2, -90, -1),  # 1 Jan local: 22:30 and 23:59
        (MIDNIGHT, 6, 0, 1439),  # 2 Jan local: 00:00 to 23:59
        (MIDNIGHT + D, 1, 1440, 1440),  # 3 Jan local: 00:00
    ]
    utc = local_days.influx.query(  # what UTC days make of the same readings: not the same days at all
        'SELECT count("salinity_ppt") FROM "salinity" WHERE'
        f" time >= {start}ms AND time < {end}ms GROUP BY time(1d) fill(none)"
    )
    assert utc[0]["values"] == [[MIDNIGHT - 17 * H - D, 1], [MIDNIGHT - 17 * H, 7], [MIDNIGHT + 7 * H, 2]]


def test_dates_without_a_zone_give_whole_local_days(local_days: LocalDays) -> None:
    """``from=2026-01-02&to=2026-01-03`` (local midnights, as docs/api.md says): one bucket, the whole day."""
    r = local_days.client.get(
        f"/v1/readings/{local_days.device.id}/salinity_ppt",
        params={"from": "2026-01-02", "to": "2026-01-03", "every": "1d"},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert r.json()["from_ms"] == MIDNIGHT
    assert [(p["time"], p["count"]) for p in r.json()["points"]] == [("2026-01-01T17:00:00.000Z", 6)]


def test_six_hour_buckets_fall_on_local_midnight_too(local_days: LocalDays) -> None:
    got = history(local_days, "6h", MIDNIGHT - 2 * H, MIDNIGHT + 7 * H)
    assert got == [
        (MIDNIGHT - 6 * H, 2, -90, -1),  # 18:00–24:00 local (the range starts at 22:00)
        (MIDNIGHT, 4, 0, 359),  # 00:00–06:00 local
        (MIDNIGHT + 6 * H, 1, 360, 360),  # 06:00–12:00 local (UTC's 6 h buckets would cut at 01:00 and 07:00)
    ]


def test_the_query_function_gives_local_days(local_days: LocalDays) -> None:
    """The API's query function alone, against the same InfluxDB: a bucket per local day, counts per day."""
    device = local_days.device.id
    buckets = local_days.influx.history("salinity", device, "salinity_ppt", MIDNIGHT - D, MIDNIGHT + D, "1d")
    assert [(b.time_ms, b.count) for b in buckets] == [(MIDNIGHT - D, 2), (MIDNIGHT, 6)]
    assert all((b.time_ms + 7 * H) % D == 0 for b in buckets)  # local midnight, given as epoch ms
