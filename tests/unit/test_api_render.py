"""Pure parts of the API's answers: CSV, GeoJSON, device state, area summaries, content negotiation."""

from __future__ import annotations

import csv
import io

import pytest

from api.render import csv_text, station_feature, stations_geojson
from api.routes.devices import device_state, names, silent_after_ms
from api.routes.readings import LatestReading, area_summary, wants_csv
from contract.fields import Kind
from contract.fleet import Device
from rules.pack import DEFAULT_PACK, load_pack


def test_csv_header_rows_and_empty_cells() -> None:
    text = csv_text(["time", "mean", "count"], [{"time": "2026-01-01T00:00:00.000Z", "mean": 0.5, "count": 3}, {}])
    assert text == "time,mean,count\r\n2026-01-01T00:00:00.000Z,0.5,3\r\n,,\r\n"


def test_csv_quotes_and_numbers() -> None:
    text = csv_text(["a", "b", "c", "d"], [{"a": 'say "hi", then go', "b": -4, "c": float("nan"), "d": True}])
    row = list(csv.reader(io.StringIO(text)))[1]
    assert row == ['say "hi", then go', "-4", "", "1"]


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-cmd", "@SUM(A1)", "\tx"])
def test_csv_defuses_spreadsheet_formulas(cell: str) -> None:
    row = list(csv.reader(io.StringIO(csv_text(["x"], [{"x": cell}]))))[1]
    assert row == ["'" + cell]


def _device(**kw: object) -> Device:
    values: dict[str, object] = {
        "id": "bt-sal-0001", "kind": Kind.SALINITY, "province": "ben_tre", "district": "ba_tri", "site": "sluice",
        "crop": "rice", "lat": 10.04, "lon": 106.59,
    }  # fmt: skip
    values.update(kw)
    return Device.model_validate(values)


def test_geojson_feature_is_lon_lat() -> None:
    feature = station_feature(_device())
    assert feature == {
        "type": "Feature",
        "id": "bt-sal-0001",
        "geometry": {"type": "Point", "coordinates": [106.59, 10.04]},
        "properties": {
            "id": "bt-sal-0001",
            "kind": "salinity",
            "province": "ben_tre",
            "district": "ba_tri",
            "site": "sluice",
            "crop": "rice",
        },
    }


def test_geojson_collection() -> None:
    fc = stations_geojson([_device(), _device(id="b")])
    assert fc["type"] == "FeatureCollection"
    assert [f["id"] for f in fc["features"]] == ["bt-sal-0001", "b"]
    assert stations_geojson([]) == {"type": "FeatureCollection", "features": []}


HOUR = 3_600_000


@pytest.mark.parametrize(
    ("last_seen", "status", "state"),
    [
        (None, None, "unknown"),
        (10 * HOUR, None, "online"),
        (10 * HOUR - 2 * HOUR, None, "offline"),  # silent for 2 h
        (10 * HOUR, (10 * HOUR + 1, 0), "offline"),  # its will, after its last reading
        (10 * HOUR, (10 * HOUR - 1, 0), "online"),  # back after the will
        (None, (5, 0), "offline"),
        (10 * HOUR, (10 * HOUR, 1), "online"),
    ],
)
def test_device_state(last_seen: int | None, status: tuple[int, int] | None, state: str) -> None:
    assert device_state(last_seen, status, 10 * HOUR, HOUR) == state


def test_a_device_counts_as_offline_after_what_its_no_data_rules_allow() -> None:
    """The pack's silence rules, not one number: a light trap reports every 3 h by day (TRAP_OFFLINE
    after 4 h), a camera every minute (CAM_OFFLINE after 5 min); a kind without one: the setting."""
    pack = load_pack(DEFAULT_PACK)
    trap = _device(id="bt-trap-0001", kind=Kind.LIGHT_TRAP, site="field")
    camera = _device(id="bt-cam-0001", kind=Kind.CAMERA, site="market")
    assert silent_after_ms(pack, trap, 3600) == 4 * HOUR
    assert silent_after_ms(pack, camera, 3600) == 5 * 60_000
    assert silent_after_ms(pack, _device(), 3600) == HOUR  # SAL_SILENT
    quiet = pack.model_copy(update={"rules": tuple(r for r in pack.rules if r.id != "TRAP_OFFLINE")})
    assert silent_after_ms(quiet, trap, 7_200) == 2 * HOUR  # no rule reads it: IOC_API_OFFLINE_AFTER_S


def test_names_from_the_geography() -> None:
    assert names("ben_tre", "ba_tri") == ("Bến Tre", "Ba Tri")
    assert names("nowhere", "x") == ("nowhere", "x")


def _reading(device: str, district: str, t: int, **values: float) -> LatestReading:
    return LatestReading(
        device_id=device, kind="salinity", province="ben_tre", district=district, site="sluice", crop="rice",
        time="", time_ms=t, values=values,
    )  # fmt: skip


def test_area_summary_per_province_and_district() -> None:
    readings = [
        _reading("a", "ba_tri", 10, salinity_ppt=1.0, temp_c=28.0),
        _reading("b", "ba_tri", 30, salinity_ppt=3.0),
        _reading("c", "thanh_phu", 20, salinity_ppt=8.0),
    ]
    by_province = {(a.field): a for a in area_summary(readings, "province")}
    sal = by_province["salinity_ppt"]
    assert (sal.devices, sal.min, sal.mean, sal.max, sal.newest_ms, sal.unit) == (3, 1.0, 4.0, 8.0, 30, "‰")
    assert sal.district is None
    assert by_province["temp_c"].devices == 1
    by_district = {(a.district, a.field): a for a in area_summary(readings, "district")}
    assert by_district[("ba_tri", "salinity_ppt")].mean == 2.0
    assert by_district[("thanh_phu", "salinity_ppt")].devices == 1


@pytest.mark.parametrize(
    ("fmt", "accept", "csv_wanted"),
    [
        (None, None, False),
        ("csv", None, True),
        ("json", "text/csv", False),
        (None, "text/csv", True),
        (None, "text/csv;q=0.9, application/json", True),
        (None, "application/json", False),
    ],
)
def test_wants_csv(fmt: str | None, accept: str | None, csv_wanted: bool) -> None:
    assert wants_csv(fmt, accept) is csv_wanted
