"""Subscription filters: every non-empty filter must pass, severity is a minimum."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from alerts.errors import InvalidSubscription
from alerts.subscriptions import Filters, Subscription, parse_language, parse_severity
from rules.model import Severity


@dataclass(frozen=True)
class A:
    rule_id: str = "salinity_high"
    device_id: str = "sal-bt-007"
    kind: str = "salinity"
    province: str = "ben_tre"
    district: str = "ba_tri"
    severity: Severity = Severity.WARNING


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
