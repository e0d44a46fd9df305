"""contract.retry: Retry-After (delta-seconds and HTTP-date, RFC 9110) and back-off with jitter."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.outbox import RETRY_AFTER_CAP_S as OUTBOX_CAP_S
from alerts.outbox import classify
from contract.retry import Backoff, parse_retry_after
from ingest.errors import RetryableWrite
from ingest.influx import RETRY_AFTER_CAP_S as INFLUX_CAP_S
from ingest.influx import Backoff as InfluxBackoff
from ingest.influx import classify_status

NOW_S = datetime(2024, 3, 1, tzinfo=UTC).timestamp()  # Fri, 01 Mar 2024 00:00:00 GMT
CAP_S = 300.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # absent or empty
        (None, None),
        ("", None),
        ("   ", None),
        # delay-seconds
        ("0", 0.0),
        ("5", 5.0),
        (" 12 ", 12.0),
        ("120", 120.0),
        ("1.5", 1.5),
        ("300", 300.0),
        # huge values are capped
        ("301", CAP_S),
        ("99999999", CAP_S),
        ("9" * 400, CAP_S),  # float() of it is inf
        # garbage is ignored: the caller's back-off decides
        ("-5", None),
        ("+5", None),
        ("soon", None),
        ("5 seconds", None),
        ("0x10", None),
        ("1e9", None),
        ("inf", None),
        ("nan", None),
        ("1_000", None),
        ("٣", None),  # an Arabic-Indic digit: float() takes it, RFC 9110 does not
        ("2024-03-01T00:00:30Z", None),
        ("Fri, 32 Mar 2024 00:00:30 GMT", None),
        ("Mon, 01 Jan 99999 00:00:00 GMT", None),
        # HTTP-date, IMF-fixdate: GMT
        ("Fri, 01 Mar 2024 00:00:30 GMT", 30.0),
        ("Fri, 01 Mar 2024 00:04:00 GMT", 240.0),
        ("Fri, 01 Mar 2024 01:00:00 GMT", CAP_S),  # an hour ahead: capped
        ("Sat, 01 Mar 2025 00:00:00 GMT", CAP_S),
        # past dates: retry now
        ("Thu, 29 Feb 2024 23:00:00 GMT", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("Fri, 01 Mar 2024 00:00:00 GMT", 0.0),
        # the obsolete forms RFC 9110 asks recipients to accept, both GMT
        ("Friday, 01-Mar-24 00:00:30 GMT", 30.0),  # RFC 850
        ("Fri Mar  1 00:00:30 2024", 30.0),  # asctime, no zone: GMT, not local time
        # zones other than GMT are converted, not ignored
        ("Fri, 01 Mar 2024 07:00:30 +0700", 30.0),
        ("Fri, 01 Mar 2024 00:00:30 -0000", 30.0),
        ("Fri, 01 Mar 2024 00:00:30 UTC", 30.0),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, cap_s=CAP_S, now_s=NOW_S) == expected


@pytest.fixture
def vietnam_local_time() -> Iterator[None]:
    """The process's local zone set to UTC+7, as on the IOC's servers."""
    before = time.strftime("%z")
    mp = pytest.MonkeyPatch()
    mp.setenv("TZ", "Asia/Ho_Chi_Minh")
    time.tzset()
    try:
        assert time.strftime("%z") == "+0700", before
        yield
    finally:
        mp.undo()
        time.tzset()


@pytest.mark.usefixtures("vietnam_local_time")
@pytest.mark.parametrize("value", ["Fri Mar  1 00:00:30 2024", "Fri, 01 Mar 2024 00:00:30 -0000"])
def test_a_date_without_zone_is_gmt_whatever_the_local_zone(value: str) -> None:
    assert parse_retry_after(value, cap_s=86_400.0, now_s=NOW_S) == 30.0


def test_the_clock_defaults_to_now() -> None:
    in_a_minute = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))
    delay = parse_retry_after(in_a_minute, cap_s=CAP_S)
    assert delay is not None
    assert 55.0 <= delay <= 60.0


@given(st.text(max_size=40), st.floats(0.0, 1e6))
def test_parse_retry_after_never_raises_and_stays_in_bounds(value: str, cap_s: float) -> None:
    delay = parse_retry_after(value, cap_s=cap_s, now_s=NOW_S)
    assert delay is None or 0.0 <= delay <= cap_s


def test_both_clients_parse_with_the_one_implementation_and_their_own_cap() -> None:
    date = "Fri, 01 Mar 2024 00:00:30 GMT"
    influx = classify_status(503, {"retry-after": "99999999"}, "")
    assert isinstance(influx, RetryableWrite)
    assert influx.retry_after == INFLUX_CAP_S == 300.0
    assert classify(503, {"retry-after": "99999999"}).retry_after == OUTBOX_CAP_S == 86_400.0
    for text in ("-5", "soon", "inf"):  # the same garbage is garbage for both
        error = classify_status(429, {"retry-after": text}, "")
        assert isinstance(error, RetryableWrite)
        assert error.retry_after is None
        assert classify(429, {"retry-after": text}).retry_after is None
    assert classify_status(429, {"retry-after": date}, "").retry_after == 0.0  # type: ignore[union-attr]  # 2024 is past
    assert classify(429, {"retry-after": date}).retry_after == 0.0
    assert InfluxBackoff is Backoff


# --- Backoff ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("initial_s", "max_s", "attempt", "step_s"),
    [
        (0.2, 10.0, 0, 0.2),
        (0.2, 10.0, 1, 0.4),
        (0.2, 10.0, 5, 6.4),
        (0.2, 10.0, 6, 10.0),
        (0.2, 10.0, 10**9, 10.0),  # no overflow however long the outage
        (0.2, 10.0, -3, 0.2),
        (1.0, 1.0, 0, 1.0),
        (1.0, 1.0, 50, 1.0),
        (1e-9, 3600.0, 64, 3600.0),
        (2.0, 900.0, 8, 512.0),
    ],
)
def test_step_doubles_up_to_the_cap(initial_s: float, max_s: float, attempt: int, step_s: float) -> None:
    backoff = Backoff(initial_s, max_s)
    assert backoff.step_s(attempt) == pytest.approx(step_s)
    assert Backoff(initial_s, max_s, lambda: 0.0).delay(attempt) == pytest.approx(step_s / 2)
    assert Backoff(initial_s, max_s, lambda: 0.999999).delay(attempt) == pytest.approx(step_s, rel=1e-5)


def test_delay_is_jittered_within_the_step() -> None:
    backoff = Backoff(1.0, 60.0, random.Random(3).random)
    delays = [backoff.delay(4) for _ in range(200)]
    assert all(8.0 <= d < 16.0 for d in delays)
    assert len(set(delays)) > 150


@pytest.mark.parametrize(
    ("attempt", "retry_after_s", "rand", "expected"),
    [
        (0, None, 0.5, 0.75),
        (0, 7.0, 0.5, 7.0),  # the server asks for longer: wait as told
        (0, 0.0, 0.5, 0.75),  # "retry now" never makes a busy loop
        (6, 1.0, 0.0, 30.0),  # the back-off is longer: it wins
        (6, 45.0, 0.0, 45.0),
    ],
)
def test_retry_after_is_a_lower_bound(attempt: int, retry_after_s: float | None, rand: float, expected: float) -> None:
    assert Backoff(1.0, 60.0, lambda: rand).delay(attempt, retry_after_s) == expected


@pytest.mark.parametrize(("initial_s", "max_s"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_bad_bounds_are_refused(initial_s: float, max_s: float) -> None:
    with pytest.raises(ValueError, match="0 < initial_s <= max_s"):
        Backoff(initial_s, max_s)
