"""InfluxQL built by the API: escaping, the statements, parsing answers, and request times."""

from __future__ import annotations

import pytest

from api.influx import (
    any_of,
    history_query,
    ident,
    last_query,
    latest_query,
    literal,
    newest_by_device,
    rows,
    time_range,
)
from api.times import MAX_MS, iso, parse_time_ms


@pytest.mark.parametrize(
    ("raw", "quoted"),
    [
        ("salinity_ppt", '"salinity_ppt"'),
        ('a"b', '"a\\"b"'),
        ("a\\b", '"a\\\\b"'),
        ('x" FROM "y', '"x\\" FROM \\"y"'),
    ],
)
def test_ident(raw: str, quoted: str) -> None:
    assert ident(raw) == quoted


@pytest.mark.parametrize(
    ("raw", "quoted"),
    [
        ("bt-sal-0022", "'bt-sal-0022'"),
        ("o'brien", "'o\\'brien'"),
        ("a\\", "'a\\\\'"),
        ("x' OR '1'='1", "'x\\' OR \\'1\\'=\\'1'"),
    ],
)
def test_literal(raw: str, quoted: str) -> None:
    assert literal(raw) == quoted


def test_history_query() -> None:
    q = history_query("salinity", "bt-sal-0022", "salinity_ppt", 1_000, 2_000, "1h")
    assert q == (
        'SELECT mean("salinity_ppt") AS "mean", min("salinity_ppt") AS "min", max("salinity_ppt") AS "max",'
        ' count("salinity_ppt") AS "count" FROM "salinity" WHERE "device_id" = \'bt-sal-0022\''
        " AND time >= 1000ms AND time < 2000ms GROUP BY time(1h) fill(none)"
    )


def test_history_query_refuses_unknown_every_and_non_integer_times() -> None:
    with pytest.raises(ValueError, match="every"):
        history_query("salinity", "d", "f", 1, 2, "1h; DROP DATABASE ioc")
    with pytest.raises(TypeError):
        history_query("salinity", "d", "f", "1 OR 1=1", 2, "1h")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        time_range(True, None)


def test_injection_attempts_stay_inside_their_quotes() -> None:
    q = history_query("salinity", "x' OR '1'='1", 'f") FROM "other', 1, 2, "1m")
    assert "\"device_id\" = 'x\\' OR \\'1\\'=\\'1'" in q
    assert 'mean("f\\") FROM \\"other")' in q


def test_latest_query_leaves_camera_events_out() -> None:
    q = latest_query("camera", 5, {"province": "ben_tre", "district": None})
    assert q == (
        'SELECT * FROM "camera" WHERE time >= 5ms AND "province" = \'ben_tre\' AND "event" = \'\''
        ' GROUP BY "device_id" ORDER BY time DESC LIMIT 1'
    )
    assert "event" not in latest_query("salinity", 5, {})


def test_last_query_and_any_of() -> None:
    q = last_query("seq", ["salinity", "device_status"], 7, ["b", "a", "a"])
    assert q == (
        'SELECT last("seq") FROM "salinity","device_status" WHERE time >= 7ms'
        ' AND ("device_id" = \'a\' OR "device_id" = \'b\') GROUP BY "device_id"'
    )
    with pytest.raises(ValueError, match="at least one"):
        any_of("device_id", [])


def test_rows_and_newest_by_device() -> None:
    series = [
        {"name": "salinity", "tags": {"device_id": "a"}, "columns": ["time", "last"], "values": [[10, 1.5]]},
        {"name": "device_status", "tags": {"device_id": "a"}, "columns": ["time", "last"], "values": [[20, 3.9]]},
        {"name": "salinity", "tags": {"device_id": "b"}, "columns": ["time", "last"], "values": [[5, None]]},
    ]
    assert rows(series)[0] == {"time": 10, "last": 1.5, "device_id": "a"}
    assert newest_by_device(series) == {"a": (20, 3.9)}


NOW = 1_767_240_000_000  # 2026-01-01T04:00:00Z


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("now", NOW),
        ("-24h", NOW - 86_400_000),
        ("-90m", NOW - 5_400_000),
        ("-1.5d", NOW - 129_600_000),
        ("1767240000000", NOW),
        ("2026-01-01T04:00:00Z", NOW),
        ("2026-01-01T11:00:00", NOW),  # no zone: Mekong Delta time, UTC+7
        ("2026-01-01T11:00:00+07:00", NOW),
        (" now ", NOW),
    ],
)
def test_parse_time(text: str, ms: int) -> None:
    assert parse_time_ms(text, now=NOW) == ms


@pytest.mark.parametrize("text", ["", "yesterday", "24h", "-24y", "1e9", "2026-13-01", "99999999999999", "9999-12-31"])
def test_parse_time_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"time|outside"):
        parse_time_ms(text, now=NOW)


def test_iso() -> None:
    assert iso(NOW) == "2026-01-01T04:00:00.000Z"
    assert parse_time_ms(iso(MAX_MS), now=NOW) == MAX_MS
