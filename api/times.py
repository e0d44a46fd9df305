"""Times in requests: ``now``, ``-24h`` (ago), epoch milliseconds or ISO 8601 → epoch ms (an int).

An ISO time without a zone is Mekong Delta local time (UTC+7), as in ``ioc rules backtest``.
Every time that reaches InfluxQL has gone through here, so it is an integer.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from contract.clock import now_ms
from rules.pack import parse_duration_ms

DELTA = timezone(timedelta(hours=7))
_AGO = re.compile(r"^-(\d{1,9}(?:\.\d{1,6})?)(ms|s|m|h|d)$")
_MS = re.compile(r"^\d{1,15}$")
MIN_MS = 0
MAX_MS = 9_223_372_036_853
"""2262-04-11: InfluxDB keeps time as int64 nanoseconds, so nothing is stored later."""


def parse_time_ms(text: str, *, now: int | None = None) -> int:
    """Parse one time; raise ``ValueError`` with a message saying what is accepted."""
    current = now if now is not None else now_ms()
    value = text.strip()
    if value == "now":
        ms = current
    elif match := _AGO.match(value):
        ms = current - parse_duration_ms(match.group(1) + match.group(2))
    elif _MS.match(value):
        ms = int(value)
    else:
        try:
            when = datetime.fromisoformat(value)
            if when.tzinfo is None:
                when = when.replace(tzinfo=DELTA)
            ms = int(when.timestamp() * 1000)
        except (ValueError, OverflowError):
            raise ValueError(f"{text[:40]!r} is not a time: use now, -24h, epoch milliseconds or ISO 8601") from None
    if not MIN_MS <= ms <= MAX_MS:
        raise ValueError(f"{text[:40]!r} is outside 1970–2262 (what InfluxDB can store)")
    return ms


def iso(ms: int) -> str:
    """Epoch ms → ``2026-03-01T05:30:00.123Z``."""
    return (
        (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms))
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def iso_or_none(ms: int | None) -> str | None:
    return iso(ms) if ms is not None else None
