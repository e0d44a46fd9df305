"""What a farmer hears, and when: inhibition within a family, grouping, quiet hours, rate limits.

Every rule transition is an alert event the store keeps (operators see them all). What reaches a
subscriber is decided here, without I/O (the store runs it; the functions are table-tested):

1. **Inhibition within a family** (:func:`family_notice`). Rules that are levels of one danger share
   a family and a rank (the salinity ladder). For one device, farmers hear only the highest active
   level: the first alert at the level reached, one update per change of level (escalated or
   de-escalated), one all-clear. Transitions of one device and family at the same reading time are
   judged together, so a reading that jumps the whole ladder is one notice, not five.
2. **Grouping** (:meth:`Pacing.due_ms`). A subscriber's notices of one family in one district wait
   ``group_wait`` after the first of them, and go as one message naming the places; later notices
   of a group that is still alerting wait until ``group_interval`` after its last message and go
   as one update. Critical notices (an alert opening or escalating at critical) never wait for the
   interval, only for ``group_wait``.
3. **Quiet hours** (:class:`QuietHours`, local time UTC+7). Non-critical messages due in them are
   held; what waited goes as one digest when they end.
4. **Rate limit** (:func:`rate_block`). At most ``max_per_hour`` messages to a subscriber in any
   hour; what is due beyond it is held (counted) and goes as one summary as soon as the hour allows.
   Critical messages are never held back, but count.

Nothing is dropped: every notice ends in exactly one message, and a grouped message lists them all.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

from alerts.errors import InvalidSubscription
from rules.messages import LOCAL_OFFSET_MS

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

DEFAULT_GROUP_WAIT_S = 60
DEFAULT_GROUP_INTERVAL_S = 1800
MAX_WAIT_S = 6 * 3600
"""The longest ``group_wait`` or ``group_interval`` a subscription may ask for."""


class Notice(enum.StrEnum):
    """What an alert event means to the farmers of a family's device."""

    OPENED = "opened"
    """The family's first active level: the first message."""
    ESCALATED = "escalated"
    """A higher level became active: an update."""
    DEESCALATED = "deescalated"
    """The highest level ended, a lower one is still active: an update."""
    CLEARED = "cleared"
    """No level is active any more: the all-clear."""
    INHIBITED = "inhibited"
    """A change below the highest active level: kept for operators, sent to no one."""


@dataclass(frozen=True, slots=True)
class Level:
    """A device's highest active alert in a family."""

    alert_id: str
    rank: int


def family_notice(before: Level | None, after: Level | None) -> Notice | None:
    """What a change of a device's highest active level means (None: nothing active before or after)."""
    if before is None:
        return None if after is None else Notice.OPENED
    if after is None:
        return Notice.CLEARED
    if after.rank > before.rank:
        return Notice.ESCALATED
    if after.rank < before.rank:
        return Notice.DEESCALATED
    return Notice.INHIBITED


def local_minute(ts_ms: int) -> int:
    """Minutes since local (UTC+7) midnight."""
    return (ts_ms + LOCAL_OFFSET_MS) % DAY_MS // MINUTE_MS


_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def _minute(text: str, what: str) -> int:
    found = _HHMM.match(text.strip())
    if found is None:
        raise InvalidSubscription(f"quiet hours: {what} must be HH:MM (00:00–23:59), got {text.strip()!r}")
    return int(found.group(1)) * 60 + int(found.group(2))


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily span of local time (UTC+7) when only critical messages are sent, e.g. 21:00–05:30."""

    start_min: int
    end_min: int

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        """``"21:00-05:30"`` (may cross midnight); :class:`InvalidSubscription` names a bad value."""
        start, sep, end = text.partition("-")
        if not sep:
            raise InvalidSubscription(f"quiet hours must be START-END in local time, e.g. 21:00-05:30, got {text!r}")
        quiet = cls(_minute(start, "start"), _minute(end, "end"))
        if quiet.start_min == quiet.end_min:
            raise InvalidSubscription(f"quiet hours {text!r} start and end at the same time")
        return quiet

    def __str__(self) -> str:
        return f"{self.start_min // 60:02d}:{self.start_min % 60:02d}-{self.end_min // 60:02d}:{self.end_min % 60:02d}"

    def contains(self, ts_ms: int) -> bool:
        """True if ``ts_ms`` falls in the quiet span (start included, end excluded)."""
        m = local_minute(ts_ms)
        if self.start_min < self.end_min:
            return self.start_min <= m < self.end_min
        return m >= self.start_min or m < self.end_min

    def end_after(self, ts_ms: int) -> int:
        """The first end of the quiet span after ``ts_ms`` (epoch ms)."""
        midnight = (ts_ms + LOCAL_OFFSET_MS) // DAY_MS * DAY_MS - LOCAL_OFFSET_MS
        end = midnight + self.end_min * MINUTE_MS
        return end if end > ts_ms else end + DAY_MS


@dataclass(frozen=True, slots=True)
class Pacing:
    """How a subscriber wants its messages paced. Build with :meth:`make` to check the values."""

    group_wait_s: int = DEFAULT_GROUP_WAIT_S
    group_interval_s: int = DEFAULT_GROUP_INTERVAL_S
    quiet: QuietHours | None = None
    max_per_hour: int | None = None
    """None: no limit."""

    @classmethod
    def make(
        cls,
        *,
        group_wait_s: int | None = None,
        group_interval_s: int | None = None,
        quiet: str | QuietHours | None = None,
        max_per_hour: int | None = None,
    ) -> Pacing:
        wait = DEFAULT_GROUP_WAIT_S if group_wait_s is None else group_wait_s
        interval = DEFAULT_GROUP_INTERVAL_S if group_interval_s is None else group_interval_s
        for name, value in (("group_wait_s", wait), ("group_interval_s", interval)):
            if not 0 <= value <= MAX_WAIT_S:
                raise InvalidSubscription(f"{name} must be between 0 and {MAX_WAIT_S} seconds, got {value}")
        if max_per_hour is not None and not 1 <= max_per_hour <= 3600:
            raise InvalidSubscription(f"max_per_hour must be between 1 and 3600, got {max_per_hour}")
        hours = QuietHours.parse(quiet) if isinstance(quiet, str) else quiet
        return cls(wait, interval, hours, max_per_hour)

    def due_ms(self, *, first_pending_ms: int, last_sent_ms: int | None, live: bool, urgent: bool) -> int:
        """When a group's pending notices go (before quiet hours and the rate limit).

        Args:
            first_pending_ms: when its oldest pending notice was queued.
            last_sent_ms: when its last message was queued (None: never).
            live: the group is still alerting since its last message (an update, not a first message).
            urgent: a pending notice opens or escalates an alert at critical.
        """
        due = first_pending_ms + self.group_wait_s * 1000
        if live and last_sent_ms is not None and not urgent:
            due = max(due, last_sent_ms + self.group_interval_s * 1000)
        return due

    def describe(self) -> str:
        parts = [f"group {self.group_wait_s}s/{self.group_interval_s}s"]
        if self.quiet is not None:
            parts.append(f"quiet {self.quiet}")
        if self.max_per_hour is not None:
            parts.append(f"≤{self.max_per_hour}/h")
        return " ".join(parts)


def rate_block(sent_ms: Sequence[int], now_ms: int, max_per_hour: int | None) -> int | None:
    """None if one more message may go now; else when it may (epoch ms).

    ``sent_ms``: when the subscriber's messages of the last hour were queued, oldest first.
    """
    if max_per_hour is None:
        return None
    recent = [t for t in sent_ms if t > now_ms - HOUR_MS]
    if len(recent) < max_per_hour:
        return None
    return recent[len(recent) - max_per_hour] + HOUR_MS


__all__ = [
    "DEFAULT_GROUP_INTERVAL_S",
    "DEFAULT_GROUP_WAIT_S",
    "Level",
    "Notice",
    "Pacing",
    "QuietHours",
    "family_notice",
    "rate_block",
]
