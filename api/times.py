"""Times in requests: ``now``, ``-24h`` (ago), epoch milliseconds or ISO 8601 → epoch ms (an int).

An ISO time without a zone is Mekong Delta local time (UTC+7), as in ``ioc rules backtest``.
:data:`TIME_PATTERN` says exactly which texts are times — it is the pattern the OpenAPI schema
shows, calendar included (no 30 February, 29 February in leap years only) — and a time before
1970 or after 2262-04-11 (what InfluxDB can store) is clamped to that range rather than refused.
Every time that reaches InfluxQL has gone through here, so it is an integer.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from contract.clock import now_ms
from rules.pack import parse_duration_ms

DELTA_MS = 7 * 3_600_000
"""The Mekong Delta keeps UTC+7 all year (no daylight saving)."""
DELTA = timezone(timedelta(milliseconds=DELTA_MS))
MIN_MS = 0
MAX_MS = 9_223_372_036_853
"""2262-04-11: InfluxDB keeps time as int64 nanoseconds, so nothing is stored later."""

_AGO = r"-[0-9]{1,9}(?:\.[0-9]{1,6})?(?:ms|s|m|h|d)"
_EPOCH_MS = r"[0-9]{1,15}"
_YEAR = r"(?:19|2[0-9])[0-9][0-9]"
_LEAP_YEAR = r"(?:(?:19|2[0-9])(?:0[48]|[2468][048]|[13579][26])|2000|2400|2800)"
_MONTH_DAY = (
    r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"  # 31-day months
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"  # 30-day months
    r"|02-(?:0[1-9]|1[0-9]|2[0-8]))"  # February (the 29th: leap years, below)
)
_CLOCK = r"(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?"
_ZONE = r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
_ISO = rf"(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)(?:T{_CLOCK}{_ZONE}?)?"
TIME_PATTERN = rf"^(?:now|{_AGO}|{_EPOCH_MS}|{_ISO})$"
"""``now``, ``-24h`` (ms, s, m, h, d ago), epoch ms, or ISO 8601 (a date, or date T time, optional zone)."""
TIME_HELP = "now, -24h (ago: ms, s, m, h, d), epoch ms, or ISO 8601 (no zone: UTC+7); clamped to 1970–2262"

_DAYS = r"(?:[0-9]|[1-9][0-9]|[12][0-9]{2}|3[0-5][0-9]|36[0-6])d"  # 0–366
_HOURS = r"(?:[0-9]|[1-9][0-9]{1,2}|[1-7][0-9]{3}|8[0-6][0-9]{2}|87[0-7][0-9]|878[0-4])h"  # 0–8784
_MINUTES = r"(?:[0-9]|[1-9][0-9]{1,4}|[1-4][0-9]{5}|5[01][0-9]{4}|52[0-6][0-9]{3}|5270[0-3][0-9]|527040)m"  # 0–527040
LOOKBACK_PATTERN = rf"^(?:{_MINUTES}|{_HOURS}|{_DAYS})$"
"""A look-back of at most 366 days, in minutes, hours or days (``90m``, ``2h``, ``7d``)."""
MAX_LOOKBACK_MS = 366 * 86_400_000

_TIME = re.compile(TIME_PATTERN)
_AGO_RE = re.compile(rf"^{_AGO}$")
_EPOCH_RE = re.compile(rf"^{_EPOCH_MS}$")


def parse_time_ms(text: str, *, now: int | None = None) -> int:
    """Parse one time (:data:`TIME_PATTERN`); raise ``ValueError`` with a message saying what is accepted."""
    current = now if now is not None else now_ms()
    value = text.strip()
    if not _TIME.match(value):
        raise ValueError(f"{text[:40]!r} is not a time: use now, -24h, epoch milliseconds or ISO 8601")
    if value == "now":
        ms = current
    elif _AGO_RE.match(value):
        ms = current - parse_duration_ms(value[1:])
    elif _EPOCH_RE.match(value):
        ms = int(value)
    else:
        when = datetime.fromisoformat(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=DELTA)
        ms = int(when.timestamp() * 1000)
    return max(MIN_MS, min(MAX_MS, ms))


def iso(ms: int) -> str:
    """Epoch ms → ``2026-03-01T05:30:00.123Z``."""
    return (
        (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms))
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def iso_or_none(ms: int | None) -> str | None:
    return iso(ms) if ms is not None else None
