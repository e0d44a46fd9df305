"""The write retry policy (ingest.influx.InfluxWriter) against a scripted fake transport.

The transport is the seam: the real ones are tested against real servers in tests/integration.
Here a fake answers each post from a script (or a rule), and a fake sleep records the delays.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from ingest.errors import IngestError, Rejected, RetryableWrite, TooLarge, WriteError
from ingest.influx import (
    RETRY_AFTER_CAP_S,
    Backoff,
    InfluxWriter,
    _error_message,
    classify_status,
)

Outcome = WriteError | None


class FakeTransport:
    """Answers posts from a script of outcomes, then from ``rule`` (default: success)."""

    def __init__(self, script: list[Outcome] | None = None, rule: Callable[[list[str]], Outcome] | None = None) -> None:
        self.script = list(script or [])
        self.rule = rule
        self.posts: list[list[str]] = []
        self.delivered: list[list[str]] = []
        self.closed = False

    async def post(self, body: bytes) -> None:
        lines = body.decode("utf-8").split("\n")
        self.posts.append(lines)
        outcome = self.script.pop(0) if self.script else (self.rule(lines) if self.rule else None)
        if outcome is not None:
            raise outcome
        self.delivered.append(lines)

    async def aclose(self) -> None:
        self.closed = True


class FakeSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


def writer(
    transport: FakeTransport, sleep: FakeSleep | None = None, backoff: Backoff | None = None, **kw: Any
) -> InfluxWriter:
    return InfluxWriter(
        transport, backoff or Backoff(0.2, 10.0, random.Random(1).random), sleep=sleep or FakeSleep(), **kw
    )


LINES = [f"m,d=x v={i}.0,seq={i}i {1_767_240_000_000 + i}" for i in range(10)]


# --- success -----------------------------------------------------------------------------------


def test_success_posts_once() -> None:
    transport, sleep = FakeTransport(), FakeSleep()
    assert run(writer(transport, sleep).write(list(LINES))) == []
    assert transport.posts == [LINES]  # one body, lines joined by newlines, in order
    assert sleep.delays == []


def test_empty_write_posts_nothing() -> None:
    transport = FakeTransport()
    assert run(writer(transport).write([])) == []
    assert transport.posts == []


def test_body_is_utf8_newline_joined() -> None:
    seen: list[bytes] = []

    class Raw(FakeTransport):
        async def post(self, body: bytes) -> None:
            seen.append(body)

    run(writer(Raw()).write(['m,t=Cà\\ Mau s="ảnh" 1', "m v=1.0 2"]))
    assert seen == ['m,t=Cà\\ Mau s="ảnh" 1\nm v=1.0 2'.encode()]


def test_aclose_closes_transport() -> None:
    transport = FakeTransport()
    run(writer(transport).aclose())
    assert transport.closed


# --- retry -------------------------------------------------------------------------------------


def test_retry_after_is_a_lower_bound() -> None:
    transport = FakeTransport(
        [
            RetryableWrite("HTTP 429", status=429, retry_after=7.0),
            RetryableWrite("HTTP 503", status=503, retry_after=0.5),
            RetryableWrite("HTTP 503", status=503, retry_after=0.01),
            None,
        ]
    )
    sleep = FakeSleep()
    retried: list[tuple[WriteError, float]] = []
    w = writer(transport, sleep, Backoff(0.2, 10.0, lambda: 0.5), on_retry=lambda e, d: retried.append((e, d)))
    assert run(w.write(list(LINES))) == []
    # back-off steps 0.15, 0.3, 0.6 s; the server's word wins when it asks for longer
    assert sleep.delays == pytest.approx([7.0, 0.5, 0.6])
    assert [d for _, d in retried] == sleep.delays
    assert [getattr(e, "status", None) for e, _ in retried] == [429, 503, 503]
    assert transport.posts == [LINES] * 4  # the same body every time
    assert transport.delivered == [LINES]


def test_backoff_grows_and_is_capped() -> None:
    failures = 9
    transport = FakeTransport([RetryableWrite("conn refused")] * failures + [None])
    sleep = FakeSleep()
    backoff = Backoff(0.1, 2.0, random.Random(42).random)
    assert run(writer(transport, sleep, backoff).write(list(LINES))) == []
    expected = Backoff(0.1, 2.0, random.Random(42).random)
    assert sleep.delays == [expected.delay(i) for i in range(failures)]
    for attempt, delay in enumerate(sleep.delays):
        ceiling = min(2.0, 0.1 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling, (attempt, delay)
    assert max(sleep.delays) <= 2.0
    assert sleep.delays[-1] >= 1.0  # reached the cap's fixed half
    assert len(transport.posts) == failures + 1


def test_mixed_retry_after_and_backoff() -> None:
    transport = FakeTransport(
        [
            RetryableWrite("a"),
            RetryableWrite("b", retry_after=3.0),
            RetryableWrite("c"),
            None,
        ]
    )
    sleep = FakeSleep()
    run(writer(transport, sleep, Backoff(1.0, 100.0, random.Random(0).random)).write(list(LINES)))
    assert sleep.delays[1] == 3.0
    assert 0.5 <= sleep.delays[0] <= 1.0  # attempt 0
    assert 2.0 <= sleep.delays[2] <= 4.0  # attempt 2: the counter kept counting


@pytest.mark.parametrize(("initial", "maximum"), [(0.2, 10.0), (1.0, 1.0), (0.05, 0.5)])
def test_backoff_bounds(initial: float, maximum: float) -> None:
    b = Backoff(initial, maximum, random.Random(7).random)
    for attempt in [*range(40), 1000, 10**9]:
        ceiling = min(maximum, initial * 2.0 ** min(attempt, 64))
        delay = b.delay(attempt)
        assert ceiling / 2 <= delay <= ceiling


def test_backoff_is_jittered() -> None:
    b = Backoff(1.0, 1.0, random.Random(3).random)
    assert len({b.delay(5) for _ in range(20)}) > 10


def test_logs_first_failure_and_recovery_once(caplog: pytest.LogCaptureFixture) -> None:
    transport = FakeTransport([RetryableWrite("boom")] * 4 + [None, None])
    w = writer(transport)
    with caplog.at_level(logging.WARNING, logger="ingest.influx"):
        run(w.write(list(LINES)))
        run(w.write(list(LINES)))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "boom" in messages[0]
    assert "after 4 retries" in messages[1]


# --- 413: split ---------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 7, 9])
def test_too_large_splits_until_it_fits(limit: int) -> None:
    transport = FakeTransport(rule=lambda lines: TooLarge("413: too big", status=413) if len(lines) > limit else None)
    assert run(writer(transport).write(list(LINES))) == []
    assert all(len(chunk) <= limit for chunk in transport.delivered)
    # every line exactly once, and in the original order
    assert [line for chunk in transport.delivered for line in chunk] == LINES


def test_too_large_halves() -> None:
    transport = FakeTransport(rule=lambda lines: TooLarge("413") if len(lines) > 5 else None)
    run(writer(transport).write(list(LINES)))
    assert [len(p) for p in transport.posts] == [10, 5, 5]


def test_one_line_too_large_is_refused() -> None:
    transport = FakeTransport(rule=lambda lines: TooLarge("413: body too large", status=413))
    assert run(writer(transport).write([LINES[0]])) == [(LINES[0], "413: body too large")]
    assert transport.delivered == []


def test_too_large_line_among_others_is_refused_alone() -> None:
    big = "m v=" + "9" * 50 + ".0 1"
    lines = [*LINES[:3], big, *LINES[3:]]
    transport = FakeTransport(rule=lambda ls: TooLarge("413") if big in ls else None)
    refused = run(writer(transport).write(lines))
    assert refused == [(big, "413")]
    assert [line for chunk in transport.delivered for line in chunk] == LINES


# --- 400/422: bisect ----------------------------------------------------------------------------


def _reject(bad: set[str]) -> Callable[[list[str]], Outcome]:
    def rule(lines: list[str]) -> Outcome:
        found = [line for line in lines if line in bad]
        return Rejected(f"unable to parse '{found[0]}'", status=400) if found else None

    return rule


@pytest.mark.parametrize("bad_index", [0, 4, 9])
def test_rejected_bisects_to_the_bad_line(bad_index: int) -> None:
    bad = LINES[bad_index]
    transport = FakeTransport(rule=_reject({bad}))
    refused = run(writer(transport).write(list(LINES)))
    assert refused == [(bad, f"unable to parse '{bad}'")]
    good = [line for line in LINES if line != bad]
    assert [line for chunk in transport.delivered for line in chunk] == good
    assert len(transport.posts) <= 2 * 4 + 1  # bisection, not one post per line


def test_rejected_several_bad_lines() -> None:
    bad = {LINES[1], LINES[2], LINES[8]}
    transport = FakeTransport(rule=_reject(bad))
    refused = run(writer(transport).write(list(LINES)))
    assert [line for line, _ in refused] == [LINES[1], LINES[2], LINES[8]]
    assert all(msg.startswith("unable to parse") for _, msg in refused)
    delivered = [line for chunk in transport.delivered for line in chunk]
    assert delivered == [line for line in LINES if line not in bad]


def test_every_line_rejected() -> None:
    transport = FakeTransport(rule=lambda lines: Rejected("partial write: field type conflict"))
    refused = run(writer(transport).write(LINES[:4]))
    assert refused == [(line, "partial write: field type conflict") for line in LINES[:4]]
    assert transport.delivered == []


def test_retry_inside_bisection() -> None:
    bad = LINES[3]
    rule = _reject({bad})
    # the first half's first post is answered 503 once: retried, then bisected as usual
    transport = FakeTransport([Rejected("x", status=400), RetryableWrite("503", retry_after=1.0)], rule=rule)
    sleep = FakeSleep()
    refused = run(writer(transport, sleep).write(list(LINES)))
    assert [line for line, _ in refused] == [bad]
    assert sleep.delays == [1.0]
    assert [line for chunk in transport.delivered for line in chunk] == [line for line in LINES if line != bad]


# --- cancellation --------------------------------------------------------------------------------


def test_cancel_during_retry_sleep_propagates() -> None:
    transport = FakeTransport(rule=lambda lines: RetryableWrite("503", retry_after=300.0))
    entered = asyncio.Event()

    async def forever(delay: float) -> None:
        entered.set()
        await asyncio.Event().wait()

    async def scenario() -> None:
        w = InfluxWriter(transport, Backoff(0.1, 1.0), sleep=forever)
        task = asyncio.create_task(w.write(list(LINES)))
        await asyncio.wait_for(entered.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(scenario())
    assert len(transport.posts) == 1  # no further attempt after the cancel
    assert transport.delivered == []


def test_cancel_with_default_asyncio_sleep() -> None:
    transport = FakeTransport(rule=lambda lines: RetryableWrite("429", retry_after=300.0))

    async def scenario() -> float:
        retrying = asyncio.Event()
        w = InfluxWriter(
            transport,
            Backoff(0.1, 1.0),  # the real asyncio.sleep
            on_retry=lambda e, d: retrying.set(),
        )
        task = asyncio.create_task(w.write(list(LINES)))
        await asyncio.wait_for(retrying.wait(), 5)
        await asyncio.sleep(0.01)  # now inside asyncio.sleep(300)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - started

    assert run(scenario()) < 1.0  # did not wait out the 300 s
    assert len(transport.posts) == 1


# --- classify_status -----------------------------------------------------------------------------


def _http_date(offset_s: float) -> str:
    return email.utils.formatdate(time.time() + offset_s, usegmt=True)


@pytest.mark.parametrize(
    ("status", "headers", "message", "kind", "retry_after"),
    [
        (200, {}, "", None, None),
        (204, {}, "", None, None),
        (299, {}, "", None, None),
        (400, {}, "unable to parse 'x': missing fields", Rejected, None),
        (400, {}, "", Rejected, None),
        (422, {}, "points beyond retention policy", Rejected, None),
        (413, {}, "request too large", TooLarge, None),
        (413, {"Retry-After": "5"}, "", TooLarge, None),
        (429, {"Retry-After": "7"}, "too many requests", RetryableWrite, 7.0),
        (429, {"retry-after": "2.5"}, "", RetryableWrite, 2.5),
        (429, {}, "", RetryableWrite, None),
        (500, {}, "internal error", RetryableWrite, None),
        (502, {}, "", RetryableWrite, None),
        (503, {"Retry-After": "30"}, "unavailable", RetryableWrite, 30.0),
        (503, {"Retry-After": "99999"}, "", RetryableWrite, RETRY_AFTER_CAP_S),
        (401, {}, "unauthorized", RetryableWrite, None),
        (403, {}, "forbidden", RetryableWrite, None),
        (404, {}, "database not found: ioc", RetryableWrite, None),
        (0, {}, "", RetryableWrite, None),
    ],
)
def test_classify_status(
    status: int, headers: dict[str, str], message: str, kind: type[WriteError] | None, retry_after: float | None
) -> None:
    error = classify_status(status, headers, message)
    if kind is None:
        assert error is None
        return
    assert type(error) is kind
    assert error.status == status
    if message:
        assert message in str(error)
    if kind is RetryableWrite:
        assert isinstance(error, RetryableWrite)
        assert error.retry_after == retry_after
        assert str(status) in str(error)


def test_classify_status_empty_rejected_message() -> None:
    assert str(classify_status(400, {}, "")) == "HTTP 400"


def test_classify_status_retry_after_http_date() -> None:
    error = classify_status(429, {"Retry-After": _http_date(60)}, "slow down")
    assert isinstance(error, RetryableWrite)
    assert error.retry_after is not None
    assert 55.0 <= error.retry_after <= 60.0


def test_error_tree() -> None:
    for cls in (RetryableWrite, TooLarge, Rejected):
        assert issubclass(cls, WriteError)
        assert issubclass(cls, IngestError)
    assert not issubclass(TooLarge, RetryableWrite)
    assert not issubclass(Rejected, RetryableWrite)
    assert RetryableWrite("x").retry_after is None
    assert RetryableWrite("x").status is None


# --- _error_message ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (None, ""),
        (b"", ""),
        (b'{"error":"unable to parse line 3"}', "unable to parse line 3"),
        ('{"code":"invalid","message":"failure writing points"}', "failure writing points"),
        (b"plain text", "plain text"),
        (b"[1,2]", "[1,2]"),
        (b"\xff oops", "\ufffd oops"),
        (b"x" * 5000, "x" * 2000),
    ],
)
def test_error_message(body: bytes | str | None, expected: str) -> None:
    assert _error_message(body) == expected


def test_the_lines_are_let_go_once_their_body_is_formed() -> None:
    """A batch's lines are its largest part: the writer empties the list it was given once it has
    the request body (what it retries, and splits on a refusal), so they are not held twice."""
    transport = FakeTransport()
    lines = list(LINES)
    seen: list[int] = []

    async def first_post_sees_the_list() -> None:
        original = transport.post

        async def post(body: bytes) -> None:
            seen.append(len(lines))
            await original(body)

        transport.post = post  # type: ignore[method-assign]
        assert await writer(transport).write(lines) == []

    run(first_post_sees_the_list())
    assert seen == [0]
    assert lines == []
    assert transport.delivered == [LINES]
