"""The outbox's rows and the delivery policy: what an HTTP answer means and when to try again.

Every message for a subscriber (one or more alert notices, :mod:`alerts.notices`) becomes one
outbox row, its body rendered once when it is queued. The sender takes a subscriber's oldest
pending row, posts it, and records the outcome here decided:

==================  ======================================================================
2xx                 delivered
410 Gone            the subscriber is gone: disable the subscription, dead-letter its queue
anything else       retry (5xx, 429, 408, other 4xx, redirects, timeouts, connection errors)
                    after an exponential back-off with jitter, at least Retry-After
retries exhausted   dead letter (``max_attempts`` attempts, or ``max_age`` since queued);
                    :meth:`~alerts.store.AlertStore.replay` puts it back in the queue
==================  ======================================================================

Nothing here does I/O: the functions are table-tested.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from contract.retry import Backoff, parse_retry_after

RETRY_AFTER_CAP_S = 86_400.0
"""The longest Retry-After a receiver may ask for (a row waits in the store, nothing is held)."""


class Verdict(enum.StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    GONE = "gone"
    DEAD = "dead"


class Status(enum.StrEnum):
    """State of an outbox row."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one delivery attempt came to."""

    verdict: Verdict
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None


def classify(status: int, headers: Mapping[str, str], body: str = "") -> Outcome:
    """The verdict on an HTTP answer."""
    if 200 <= status < 300:
        return Outcome(Verdict.DELIVERED, status)
    detail = f"HTTP {status}" + (f": {body.strip()[:200]}" if body.strip() else "")
    if status == 410:
        return Outcome(Verdict.GONE, status, detail)
    return Outcome(
        Verdict.RETRY, status, detail, parse_retry_after(headers.get("retry-after"), cap_s=RETRY_AFTER_CAP_S)
    )


def failure(error: str) -> Outcome:
    """A delivery that got no HTTP answer (connection refused, timeout, target refused)."""
    return Outcome(Verdict.RETRY, None, error)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential back-off with jitter, bounded by attempts and age."""

    initial_s: float
    max_s: float
    max_attempts: int
    max_age_s: float

    def delay(
        self, attempts: int, retry_after: float | None = None, rand: Callable[[], float] = random.random
    ) -> float:
        """Seconds before the next attempt, after ``attempts`` failed ones (:mod:`contract.retry`).

        "Equal jitter": half the exponential step is fixed, half random, so retries of many
        subscribers spread out but never come sooner than half the step. A Retry-After from the
        receiver is a lower bound, up to the row's maximum age.
        """
        at_least_s = None if retry_after is None else min(retry_after, self.max_age_s)
        return Backoff(self.initial_s, self.max_s, rand).delay(attempts - 1, at_least_s)

    def next_step(
        self,
        outcome: Outcome,
        *,
        attempts: int,
        queued_at_ms: int,
        now_ms: int,
        rand: Callable[[], float] = random.random,
    ) -> tuple[Verdict, int | None]:
        """The row's fate after an attempt: the verdict and, for a retry, when (epoch ms)."""
        if outcome.verdict is not Verdict.RETRY:
            return outcome.verdict, None
        if attempts >= self.max_attempts or now_ms - queued_at_ms >= self.max_age_s * 1000:
            return Verdict.DEAD, None
        return Verdict.RETRY, now_ms + round(self.delay(attempts, outcome.retry_after, rand) * 1000)


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One alert event queued for one subscriber."""

    seq: int
    """Queue position: a subscriber's rows are delivered in ``seq`` order."""
    event_id: str
    """The ``webhook-id``: the same on every attempt and every replay."""
    subscription_id: str
    event_type: str
    body: str
    """The exact JSON sent (rendered once, in the subscriber's language, when queued)."""
    status: Status
    attempts: int
    created_at_ms: int
    queued_at_ms: int
    """When the row was queued, or replayed (max age counts from here)."""
    next_attempt_at_ms: int
    last_attempt_at_ms: int | None
    last_status: int | None
    last_error: str | None
    delivered_at_ms: int | None
    notice: str = ""
    """What the message is (:mod:`alerts.notices`): ``opened``, ``escalated``, ``deescalated``,
    ``cleared`` (one device), ``group`` (one family in one district), ``digest`` (what waited)."""
    notices: int = 1
    """How many notices it carries."""


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One line of the delivery log."""

    id: int
    seq: int
    event_id: str
    subscription_id: str
    attempt: int
    at_ms: int
    duration_ms: int
    status: int | None
    error: str | None
    verdict: Verdict


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event a subscriber never took; :meth:`~alerts.store.AlertStore.replay` queues it again."""

    id: int
    seq: int
    event_id: str
    subscription_id: str
    event_type: str
    attempts: int
    last_status: int | None
    last_error: str | None
    dead_at_ms: int
    replayed_at_ms: int | None
