"""InfluxQL built by the API: escaping, the statements, parsing answers, and request times."""

from __future__ import annotations

import pytest

from api.influx import (
    EVERY,
    EVERY_MS,
    any_of,
    duration,
    group_by_time,
    history_query,
    ident,
    last_query,
    latest_query,
    literal,
    local_offset_ms,
    newest_by_device,
    rows,
    time_range,
)
from api.times import LOOKBACK_PATTERN, MAX_LOOKBACK_MS, MAX_MS, TIME_PATTERN, iso, parse_time_ms


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


def test_daily_history_buckets_are_local_days() -> None:
    """1d buckets start at local midnight, 00:00 UTC+7 = 17:00 UTC, as the dashboards' ``time(1d, 17h)``."""
    q = history_query("salinity", "bt-sal-0022", "salinity_ppt", 1_000, 2_000, "1d")
    assert q.endswith(" AND time >= 1000ms AND time < 2000ms GROUP BY time(1d, 17h) fill(none)")
    assert history_query("salinity", "d", "f", 1, 2, "6h").endswith(" GROUP BY time(6h, 5h) fill(none)")


@pytest.mark.parametrize(
    ("every", "group"),
    [("1m", "time(1m)"), ("5m", "time(5m)"), ("15m", "time(15m)"), ("1h", "time(1h)"),
     ("6h", "time(6h, 5h)"), ("1d", "time(1d, 17h)")],
)  # fmt: skip
def test_group_by_time(every: str, group: str) -> None:
    assert group_by_time(every) == group


@pytest.mark.parametrize("every", EVERY)
def test_every_bucket_boundary_falls_on_local_midnight(every: str) -> None:
    """A bucket starts at n·every + offset (InfluxQL); 2026-01-02T00:00+07:00 must be such a start."""
    local_midnight = 1_767_286_800_000  # 2026-01-01T17:00:00Z
    size, offset = EVERY_MS[every], local_offset_ms(every)
    assert 0 <= offset < size
    assert (local_midnight - offset) % size == 0
    assert (local_midnight - 86_400_000 - offset) % size == 0  # and the day before's


@pytest.mark.parametrize(
    ("ms", "text"), [(61_200_000, "17h"), (18_000_000, "5h"), (86_400_000, "1d"), (5_400_000, "90m"), (1_500, "1500ms"),
                     (2_000, "2s"), (0, "0ms")],
)  # fmt: skip
def test_duration(ms: int, text: str) -> None:
    assert duration(ms) == text


def test_history_query_refuses_unknown_every_and_non_integer_times() -> None:
    with pytest.raises(ValueError, match="every"):
        history_query("salinity", "d", "f", 1, 2, "1h; DROP DATABASE ioc")
    with pytest.raises(ValueError, match="every"):
        group_by_time("2h")
    with pytest.raises(TypeError):
        duration(1.5)  # type: ignore[arg-type]
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
        ("2024-02-29", 1_709_139_600_000),  # a leap day, Delta time
        ("99999999999999", MAX_MS),  # clamped to what InfluxDB can store
        ("-999999999d", 0),
        ("1900-01-01T00:00Z", 0),
    ],
)
def test_parse_time(text: str, ms: int) -> None:
    assert parse_time_ms(text, now=NOW) == ms


@pytest.mark.parametrize(
    "text",
    ["", "yesterday", "24h", "-24y", "1e9", "2026-13-01", "2025-02-29", "2026-04-31", "9999-12-31", "\u0663", "1" * 16],
)
def test_parse_time_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a time"):
        parse_time_ms(text, now=NOW)


def test_iso() -> None:
    assert iso(NOW) == "2026-01-01T04:00:00.000Z"
    assert parse_time_ms(iso(MAX_MS), now=NOW) == MAX_MS


def test_time_pattern_is_what_the_parser_accepts() -> None:
    """The OpenAPI pattern and the parser agree: every day of 1900–2999 and the texts around them."""
    import re
    from datetime import date, timedelta

    pattern = re.compile(TIME_PATTERN)
    day, end = date(1900, 1, 1), date(3000, 1, 1)
    while day < end:
        assert pattern.match(day.isoformat()), day
        day += timedelta(days=1)
    for month in range(1, 13):
        for d in (29, 30, 31, 32):
            text = f"2025-{month:02d}-{d:02d}"
            try:
                date.fromisoformat(text)
                valid = True
            except ValueError:
                valid = False
            assert bool(pattern.match(text)) == valid, text


def test_lookback_pattern_is_at_most_366_days() -> None:
    import re

    pattern = re.compile(LOOKBACK_PATTERN)
    for unit, ms in (("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)):
        limit = MAX_LOOKBACK_MS // ms
        for n in (*range(1000), limit - 1, limit, limit + 1, limit * 10):
            assert bool(pattern.match(f"{n}{unit}")) == (n <= limit), (n, unit)
