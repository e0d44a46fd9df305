"""The wall clock in epoch milliseconds, the one unit of time every package stores and compares."""

from __future__ import annotations

import time


def now_ms() -> int:
    """Milliseconds since the Unix epoch, now (integer, from ``time.time_ns``)."""
    return time.time_ns() // 1_000_000
