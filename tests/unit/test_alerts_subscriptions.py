"""Subscription filters: every non-empty filter must pass, severity is a minimum, a circle is great-circle."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from alerts.errors import InvalidSubscription
from alerts.subscriptions import Filters, Near, Subscription, haversine_km, parse_language, parse_severity
from rules.model import Severity


@dataclass(frozen=True)
class A:
    rule_id: str = "salinity_high"
    device_id: str = "sal-bt-007"
    kind: str = "salinity"
    province: str = "ben_tre"
    district: str = "ba_tri"
    severity: Severity = Severity.WARNING
    crop: str = "shrimp"
    lat: float | None = 10.05
    lon: float | None = 106.62


BA_TRI = Near.make(10.04, 106.60, 10)


@pytest.mark.parametrize(
    ("filters", "alert", "expected"),
    [
        (Filters.make(), A(), True),
        (Filters.make(provinces=["ben_tre"]), A(), True),
        (Filters.make(provinces=["ben_tre", "tra_vinh"]), A(province="tra_vinh"), True),
        (Filters.make(provinces=["tien_giang"]), A(), False),
        (Filters.make(districts=["ba_tri"]), A(), True),
        (Filters.make(districts=["binh_dai"]), A(), False),
        (Filters.make(devices=["sal-bt-007"]), A(), True),
        (Filters.make(devices=["sal-bt-008"]), A(), False),
        (Filters.make(kinds=["salinity", "water_quality"]), A(), True),
        (Filters.make(kinds=["camera"]), A(), False),
        (Filters.make(rule_ids=["salinity_high"]), A(), True),
        (Filters.make(rule_ids=["do_low"]), A(), False),
        (Filters.make(min_severity="info"), A(severity=Severity.INFO), True),
        (Filters.make(min_severity="warning"), A(severity=Severity.INFO), False),
        (Filters.make(min_severity="warning"), A(severity=Severity.WARNING), True),
        (Filters.make(min_severity="warning"), A(severity=Severity.CRITICAL), True),
        (Filters.make(min_severity=Severity.CRITICAL), A(severity=Severity.WARNING), False),
        (Filters.make(provinces=["ben_tre"], kinds=["salinity"], min_severity=2), A(), True),
        (Filters.make(provinces=["ben_tre"], kinds=["camera"]), A(), False),
        (Filters.make(provinces=["ben_tre"], districts=["binh_dai"]), A(), False),
        # names compare case-insensitively and after NFC normalisation
        (Filters.make(provinces=["Bến Tre"]), A(province="bến tre"), True),
        (Filters.make(provinces=["Be\u0302\u0301n Tre"]), A(province="B\u1ebfn Tre"), True),
        (Filters.make(devices=["SAL-BT-007"]), A(), True),
        # blank entries are no filter
        (Filters.make(provinces=["", "  "]), A(), True),
        # crops, as the device's crop tag
        (Filters.make(crops=["shrimp"]), A(), True),
        (Filters.make(crops=["Durian", "shrimp"]), A(), True),
        (Filters.make(crops=["durian"]), A(), False),
        (Filters.make(crops=["rice"], provinces=["ben_tre"]), A(crop="rice"), True),
        # a point and radius: Ba Tri town, 10 km
        (Filters.make(near=BA_TRI), A(), True),  # ~2.5 km away
        (Filters.make(near=BA_TRI), A(lat=9.52, lon=106.2), False),  # ~72 km away
        (Filters.make(near=BA_TRI), A(lat=None, lon=None), False),  # no coordinates: never near
        (Filters.make(near=BA_TRI), A(lat=10.05, lon=None), False),
        (Filters.make(near=BA_TRI, crops=["durian"]), A(), False),
        (Filters.make(near=BA_TRI, min_severity="critical"), A(), False),
        (Filters.make(), A(lat=None, lon=None), True),
    ],
)
def test_filters(filters: Filters, alert: A, expected: bool) -> None:
    assert filters.matches(alert) is expected


def test_disabled_subscription_matches_nothing() -> None:
    sub = Subscription("sub_1", "https://x/", "whsec_x", "vi", Filters(), False, "", 0, 0, "410")
    assert not sub.matches(A())
    assert "whsec_x" not in repr(sub), "the secret stays out of logs"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("info", Severity.INFO), ("WARNING", Severity.WARNING), (" critical ", Severity.CRITICAL), ("2", 2), (3, 3)],
)
def test_parse_severity(value: str | int, expected: Severity) -> None:
    assert parse_severity(value) == expected


@pytest.mark.parametrize("value", ["urgent", "0", 4, ""])
def test_parse_severity_refuses(value: str | int) -> None:
    with pytest.raises(InvalidSubscription, match="severity"):
        parse_severity(value)


def test_parse_language() -> None:
    assert parse_language("VI") == "vi"
    assert parse_language("en") == "en"
    with pytest.raises(InvalidSubscription, match="language"):
        parse_language("fr")


def test_describe() -> None:
    assert Filters.make().describe() == "all alerts"
    assert (
        Filters.make(provinces=["ben_tre"], min_severity="critical").describe() == "province=ben_tre severity>=critical"
    )


def test_haversine() -> None:
    one_degree = 2 * math.pi * 6371.0088 / 360  # of latitude, or of longitude on the equator
    assert haversine_km(10, 106, 11, 106) == pytest.approx(one_degree)
    assert haversine_km(0, 0, 0, 1) == pytest.approx(one_degree)
    assert haversine_km(60, 0, 60, 1) == pytest.approx(one_degree / 2, rel=1e-4)  # cos 60° = 1/2
    assert haversine_km(10.04, 106.60, 10.04, 106.60) == 0
    assert haversine_km(10.04, 106.60, 10.05, 106.62) == pytest.approx(2.44, abs=0.02)
    assert haversine_km(10.04, 106.60, 9.52, 106.2) == pytest.approx(72, abs=1)
    assert haversine_km(0, 179.9, 0, -179.9) == pytest.approx(0.2 * one_degree)  # across the antimeridian
    assert haversine_km(90, 0, -90, 0) == pytest.approx(180 * one_degree)


def test_the_radius_is_inclusive() -> None:
    edge = Near.make(10, 106, haversine_km(10, 106, 10.1, 106))
    assert edge.contains(10.1, 106)
    assert not edge.contains(10.1001, 106)


@pytest.mark.parametrize(
    ("lat", "lon", "radius_km", "field"),
    [
        (90.1, 106, 10, "near.lat"),
        (-91, 106, 10, "near.lat"),
        (math.nan, 106, 10, "near.lat"),
        (10, 180.5, 10, "near.lon"),
        (10, -181, 10, "near.lon"),
        (10, 106, 0, "near.radius_km"),
        (10, 106, -5, "near.radius_km"),
        (10, 106, 500.1, "near.radius_km"),
        (10, 106, math.inf, "near.radius_km"),
    ],
)
def test_near_refuses(lat: float, lon: float, radius_km: float, field: str) -> None:
    with pytest.raises(InvalidSubscription, match=field.replace(".", r"\.")):
        Near.make(lat, lon, radius_km)


def test_near_takes_the_extremes() -> None:
    assert Near.make(-90, 180, 500) == Near(-90.0, 180.0, 500.0)
    assert Near.make(90, -180, 0.001).radius_km == 0.001


def test_crops_must_be_known() -> None:
    assert Filters.make(crops=[" Durian ", "rice", ""]).crops == {"durian", "rice"}
    with pytest.raises(InvalidSubscription, match="crops: unknown crop 'durain'"):
        Filters.make(crops=["durain"])


def test_describe_crops_and_near() -> None:
    filters = Filters.make(crops=["durian"], near=Near.make(10.04, 106.60, 15), min_severity="warning")
    assert filters.describe() == "crop=durian near=10.04,106.6 r=15km severity>=warning"
    assert Filters.make(near=Near.make(-9.123456789, 106, 0.5)).describe() == "near=-9.123457,106 r=0.5km"
