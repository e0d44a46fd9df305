"""Delivery policy: what an HTTP answer means, back-off with jitter, Retry-After, limits."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from alerts.outbox import RETRY_AFTER_CAP_S, Outcome, RetryPolicy, Verdict, classify, failure
from contract.retry import parse_retry_after

POLICY = RetryPolicy(initial_s=1.0, max_s=60.0, max_attempts=5, max_age_s=3600.0)


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.DELIVERED),
        (202, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (410, Verdict.GONE),
        (500, Verdict.RETRY),
        (502, Verdict.RETRY),
        (503, Verdict.RETRY),
        (429, Verdict.RETRY),
        (408, Verdict.RETRY),
        (400, Verdict.RETRY),
        (401, Verdict.RETRY),
        (404, Verdict.RETRY),
        (301, Verdict.RETRY),
    ],
)
def test_classify(status: int, verdict: Verdict) -> None:
    outcome = classify(status, {}, "oops")
    assert outcome.verdict is verdict
    assert outcome.status == status
    if verdict is not Verdict.DELIVERED:
        assert outcome.error is not None
        assert str(status) in outcome.error


def test_classify_reads_retry_after() -> None:
    assert classify(429, {"retry-after": "7"}).retry_after == 7.0
    assert classify(503, {"retry-after": "1.5"}).retry_after == 1.5
    assert classify(500, {}).retry_after is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("0", 0.0),
        ("120", 120.0),
        ("-5", None),
        ("soon", None),
        ("nan", None),
        ("99999999", 86_400.0),
        ("Fri, 01 Mar 2024 00:00:30 GMT", 30.0),
        ("Thu, 29 Feb 2024 23:00:00 GMT", 0.0),
    ],
)
def test_parse_retry_after_capped_at_a_day(value: str | None, expected: float | None) -> None:
    now_s = datetime(2024, 3, 1, tzinfo=UTC).timestamp()
    assert parse_retry_after(value, cap_s=RETRY_AFTER_CAP_S, now_s=now_s) == expected
    if value is not None and value[:1].isdigit():
        assert classify(503, {"retry-after": value}).retry_after == expected


def test_backoff_is_exponential_with_bounded_jitter() -> None:
    for attempts, step in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (30, 60.0)]:
        assert POLICY.delay(attempts, rand=lambda: 0.0) == step / 2
        assert POLICY.delay(attempts, rand=lambda: 0.999999) == pytest.approx(step, rel=1e-5)


def test_retry_after_is_a_lower_bound() -> None:
    assert POLICY.delay(1, retry_after=10.0, rand=lambda: 0.5) == 10.0
    assert POLICY.delay(7, retry_after=1.0, rand=lambda: 0.0) == 30.0, "back-off wins when longer"
    assert POLICY.delay(1, retry_after=99_999.0, rand=lambda: 0.0) == 3600.0, "capped at the max age"


def test_backoff_never_overflows() -> None:
    assert POLICY.delay(5000, rand=lambda: 0.0) == 30.0
    assert POLICY.delay(0, rand=lambda: 0.0) == 0.5


def test_next_step() -> None:
    retry = failure("ConnectError")
    assert POLICY.next_step(retry, attempts=1, queued_at_ms=0, now_ms=1000, rand=lambda: 0.0) == (
        Verdict.RETRY,
        1500,
    )
    assert POLICY.next_step(retry, attempts=5, queued_at_ms=0, now_ms=1000) == (Verdict.DEAD, None)
    assert POLICY.next_step(retry, attempts=2, queued_at_ms=0, now_ms=3_600_000) == (Verdict.DEAD, None)
    assert POLICY.next_step(Outcome(Verdict.DELIVERED, 200), attempts=9, queued_at_ms=0, now_ms=9e9) == (  # type: ignore[arg-type]
        Verdict.DELIVERED,
        None,
    )
    assert POLICY.next_step(Outcome(Verdict.GONE, 410), attempts=1, queued_at_ms=0, now_ms=0) == (Verdict.GONE, None)
    slow = Outcome(Verdict.RETRY, 429, "HTTP 429", retry_after=20.0)
    assert POLICY.next_step(slow, attempts=1, queued_at_ms=0, now_ms=0, rand=lambda: 0.0) == (Verdict.RETRY, 20_000)
