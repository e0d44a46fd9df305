"""When to try again: the Retry-After header and exponential back-off, one implementation for all.

The InfluxDB writer (:mod:`ingest.influx`), the alert-store and MQTT reconnect loops of ingest and
the webhook outbox (:mod:`alerts.outbox`) all wait with these. Each caller picks its numbers (the
longest Retry-After it honours, the back-off's first step and cap); the rules are the same:

- Retry-After (RFC 9110 §10.2.3) is ``delay-seconds`` or an ``HTTP-date``. A date is compared with
  the clock in UTC (a date without a zone is GMT, as HTTP dates are), a date in the past means 0 s,
  a value that is neither is ignored (``None``), and every result is capped.
- The back-off doubles from ``initial_s`` up to ``max_s``, with "equal jitter": half of each step
  fixed, half random, so many clients spread out but none comes back sooner than half the step.
- A Retry-After is a lower bound on the wait: it never brings a retry sooner than the back-off.
"""

from __future__ import annotations

import email.utils
import random
import re
import time
from collections.abc import Callable
from datetime import UTC
from typing import Final

_DELAY_SECONDS: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")
"""RFC 9110 ``delay-seconds`` is ``1*DIGIT``; a decimal fraction is tolerated."""

_MAX_DOUBLINGS: Final = 64


def parse_retry_after(value: str | None, *, cap_s: float, now_s: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header value, in [0, ``cap_s``]; None if absent or garbage.

    Args:
        value: the header value, delta-seconds (``"120"``) or an HTTP-date
            (``"Fri, 01 Mar 2024 00:00:30 GMT"``, also the obsolete RFC 850 and asctime forms).
        cap_s: the longest wait the caller honours; longer values (and far dates) give ``cap_s``.
        now_s: the clock for HTTP-dates, epoch seconds (default: ``time.time()``).
    """
    if not value:
        return None
    value = value.strip()
    if _DELAY_SECONDS.fullmatch(value):
        seconds = float(value)  # inf for an absurdly long digit string: capped below
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
            if when.tzinfo is None:  # "-0000" or asctime: HTTP dates are GMT, never local time
                when = when.replace(tzinfo=UTC)
            seconds = when.timestamp() - (time.time() if now_s is None else now_s)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return max(0.0, min(seconds, cap_s))


class Backoff:
    """Exponential back-off with equal jitter: step ``attempt`` is ``initial_s`` × 2^attempt, capped.

    Args:
        initial_s: the first step (attempt 0), seconds; > 0.
        max_s: the cap of a step, seconds; ≥ ``initial_s``.
        rand: the jitter source, uniform in [0, 1) (default: :func:`random.random`).
    """

    def __init__(self, initial_s: float, max_s: float, rand: Callable[[], float] = random.random) -> None:
        if not 0.0 < initial_s <= max_s:
            raise ValueError(f"back-off needs 0 < initial_s <= max_s, got {initial_s} and {max_s}")
        self.initial_s = initial_s
        self.max_s = max_s
        self._rand = rand

    def step_s(self, attempt: int) -> float:
        """The ceiling of the wait before retry number ``attempt`` (0-based)."""
        return min(self.max_s, self.initial_s * 2.0 ** min(max(attempt, 0), _MAX_DOUBLINGS))

    def delay(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based), at least ``retry_after_s``."""
        step = self.step_s(attempt)
        wait = step / 2 + step / 2 * self._rand()
        return wait if retry_after_s is None else max(wait, retry_after_s)
