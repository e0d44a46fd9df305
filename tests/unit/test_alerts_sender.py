"""The webhook sender against httpx's mock transport, with a fake clock: order, retries, limits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from alerts.config import WebhookSettings
from alerts.errors import TargetRefused
from alerts.outbox import Status, Verdict
from alerts.sender import WebhookSender
from alerts.signing import verify
from alerts.store import AlertStore
from alerts.targets import GuardedTransport, TargetPolicy
from tests.unit.test_alerts_store import AT_ONCE, DEVICES, NOW, PUBLIC, Clock, fire

URL = "https://93.184.215.14/hook"


def settings(**overrides: Any) -> WebhookSettings:
    values: dict[str, Any] = {
        "webhook_backoff_initial_s": 1.0,
        "webhook_backoff_max_s": 8.0,
        "webhook_max_attempts": 5,
        "webhook_timeout_s": 2.0,
        **overrides,
    }
    return WebhookSettings(_env_file=None, **values)  # type: ignore[call-arg]


class Endpoint:
    """A scripted webhook endpoint: answers from ``script`` (then 200), records every request."""

    def __init__(self, *script: int | tuple[int, dict[str, str]] | Exception) -> None:
        self.script = list(script)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.script.pop(0) if self.script else 200
        if isinstance(step, Exception):
            raise step
        status, headers = step if isinstance(step, tuple) else (step, {})
        return httpx.Response(status, headers=headers, text="ok" if status < 300 else "nope")

    def ids(self) -> list[str]:
        return [r.headers["webhook-id"] for r in self.requests]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[AlertStore]:
    s = AlertStore(tmp_path / "alerts.db", policy=PUBLIC, clock=clock)
    yield s
    s.close()


def make_sender(store: AlertStore, endpoint: Endpoint, clock: Clock, **overrides: Any) -> WebhookSender:
    return WebhookSender(
        store, settings(**overrides), transport=httpx.MockTransport(endpoint), rand=lambda: 0.0, clock=clock
    )


def run(coro_fn: Callable[[], Any]) -> Any:
    return asyncio.run(coro_fn())


def test_in_order_with_stable_ids_and_valid_signatures(store: AlertStore, clock: Clock) -> None:
    sub = store.add_subscription(URL, pacing=AT_ONCE)
    events = store.apply([fire(device=0), fire(device=1), fire(device=2)], DEVICES)
    endpoint = Endpoint(500, 503)
    sender = make_sender(store, endpoint, clock)

    assert run(sender.deliver_due) == 1, "the head fails: the rest wait behind it"
    assert run(sender.deliver_due) == 0, "not due before its back-off"
    clock.t += 500  # initial 1 s × (0.5 + 0.5 × 0) jitter
    assert run(sender.deliver_due) == 1
    clock.t += 1000
    assert run(sender.deliver_due) == 3
    e1, e2, e3 = (e.id for e in events)
    assert endpoint.ids() == [e1, e1, e1, e2, e3]
    bodies = {r.headers["webhook-id"]: set() for r in endpoint.requests}  # type: dict[str, set[bytes]]
    for r in endpoint.requests:
        payload = verify(sub.secret, r.content, dict(r.headers))
        assert payload["id"] == r.headers["webhook-id"]
        assert r.headers["content-type"] == "application/json"
        bodies[r.headers["webhook-id"]].add(r.content)
    assert all(len(b) == 1 for b in bodies.values()), "a retry sends the same bytes"
    assert store.pending_count() == 0
    [row] = store.outbox(limit=1)
    assert (row.status, row.attempts, row.last_status) == (Status.DELIVERED, 3, 200)
    log = store.deliveries(event_id=e1)
    assert [(d.attempt, d.status, d.verdict) for d in reversed(log)] == [
        (1, 500, Verdict.RETRY),
        (2, 503, Verdict.RETRY),
        (3, 200, Verdict.DELIVERED),
    ]


def test_subscribers_do_not_wait_for_each_other(store: AlertStore, clock: Clock) -> None:
    broken = store.add_subscription("https://93.184.215.14/broken", pacing=AT_ONCE)
    fine = store.add_subscription("https://93.184.215.15/fine", pacing=AT_ONCE)
    store.apply([fire(device=0), fire(device=1)], DEVICES)

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500 if request.url.path == "/broken" else 204)

    sender = WebhookSender(store, settings(), transport=httpx.MockTransport(answer), rand=lambda: 0.0, clock=clock)
    assert run(sender.deliver_due) == 3
    assert store.pending_count(fine.id) == 0
    assert store.pending_count(broken.id) == 2


def test_retry_after_is_honoured(store: AlertStore, clock: Clock) -> None:
    store.add_subscription(URL, pacing=AT_ONCE)
    store.apply([fire()], DEVICES)
    sender = make_sender(store, Endpoint((429, {"retry-after": "30"})), clock)
    run(sender.deliver_due)
    [row] = store.outbox()
    assert row.next_attempt_at_ms >= NOW + 30_000
    assert row.last_status == 429
    clock.t = row.next_attempt_at_ms - 1
    assert run(sender.deliver_due) == 0
    clock.t += 1
    assert run(sender.deliver_due) == 1


def test_gone_disables_the_subscription(store: AlertStore, clock: Clock) -> None:
    sub = store.add_subscription(URL, pacing=AT_ONCE)
    store.apply([fire(device=0), fire(device=1)], DEVICES)
    endpoint = Endpoint(410)
    sender = make_sender(store, endpoint, clock)
    assert run(sender.deliver_due) == 1
    assert not store.get_subscription(sub.id).enabled
    store.apply([fire(device=2)], DEVICES)
    clock.t += 60_000
    assert run(sender.deliver_due) == 0
    assert len(endpoint.requests) == 1
    assert sender.metrics.value(Verdict.GONE) == 1


def test_exhausted_retries_dead_letter_then_replay(store: AlertStore, clock: Clock) -> None:
    store.add_subscription(URL, pacing=AT_ONCE)
    [e1, e2] = store.apply([fire(device=0), fire(device=1)], DEVICES)
    endpoint = Endpoint(500, 500, 500)
    sender = make_sender(store, endpoint, clock, webhook_max_attempts=3)
    for _ in range(3):
        run(sender.deliver_due)
        clock.t += 10_000
    [dead] = store.dead_letters()
    assert dead.event_id == e1.id
    assert dead.attempts == 3
    assert dead.last_status == 500
    assert endpoint.ids() == [e1.id] * 3 + [e2.id], "the next event goes once the head is dead-lettered"
    assert store.replay() == 1
    assert run(sender.deliver_due) == 1
    assert endpoint.ids()[-1] == e1.id
    assert store.pending_count() == 0


def test_max_age_dead_letters(store: AlertStore, clock: Clock) -> None:
    store.add_subscription(URL, pacing=AT_ONCE)
    store.apply([fire()], DEVICES)
    sender = make_sender(store, Endpoint(500, 500), clock, webhook_max_age_s=60, webhook_max_attempts=100)
    run(sender.deliver_due)
    clock.t += 61_000
    run(sender.deliver_due)
    assert len(store.dead_letters()) == 1


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (httpx.ReadTimeout("slow"), "timeout"),
        (httpx.ConnectError("refused"), "ConnectError"),
        ((302, {"location": "http://169.254.169.254/"}), "HTTP 302"),
    ],
)
def test_no_answer_is_retried(store: AlertStore, clock: Clock, failure: Any, error: str) -> None:
    store.add_subscription(URL, pacing=AT_ONCE)
    store.apply([fire()], DEVICES)
    endpoint = Endpoint(failure)
    run(make_sender(store, endpoint, clock).deliver_due)
    [row] = store.outbox()
    assert row.status is Status.PENDING
    assert row.attempts == 1
    assert error in (row.last_error or "")
    assert len(endpoint.requests) == 1, "redirects are not followed"


def test_target_checked_again_at_delivery(tmp_path: Path, clock: Clock) -> None:
    """A URL that was allowed when added (or whose DNS changed since) is refused before any request."""
    lax = AlertStore(tmp_path / "a.db", policy=TargetPolicy.parse(allow_private=True), clock=clock)
    lax.add_subscription("http://10.0.0.5/hook", pacing=AT_ONCE)
    lax.apply([fire()], DEVICES)
    endpoint = Endpoint()
    run(make_sender(lax, endpoint, clock).deliver_due)
    [row] = lax.outbox()
    assert endpoint.requests == []
    assert row.status is Status.PENDING
    assert "target refused" in (row.last_error or "")
    lax.close()


def test_guarded_transport_refuses_private_addresses_at_connect() -> None:
    """The default transport checks the address it connects to (DNS rebinding cannot slip through)."""
    rebinding = TargetPolicy.parse(resolver=lambda host, port: ["127.0.0.1"])

    async def go(url: str, policy: TargetPolicy) -> None:
        async with httpx.AsyncClient(transport=GuardedTransport(policy)) as client:
            await client.get(url)

    with pytest.raises(TargetRefused):
        asyncio.run(go("http://127.0.0.1:9/", TargetPolicy()))
    with pytest.raises(TargetRefused):
        asyncio.run(go("http://looks-public.example.org:9/", rebinding))


def test_run_delivers_when_notified_and_stops(store: AlertStore) -> None:
    store.add_subscription(URL, pacing=AT_ONCE)
    endpoint = Endpoint()
    sender = WebhookSender(
        store, settings(webhook_poll_interval_s=30), transport=httpx.MockTransport(endpoint), rand=lambda: 0.0
    )

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(sender.run(stop))
        await asyncio.sleep(0.1)
        store.apply([fire()], DEVICES)
        sender.notify()
        for _ in range(100):
            if endpoint.requests:
                break
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert len(endpoint.requests) == 1, "woken by notify() long before the 30 s poll"
    assert store.pending_count() == 0


def test_body_is_the_stored_json(store: AlertStore, clock: Clock) -> None:
    store.add_subscription(URL, language="en", pacing=AT_ONCE)
    [e] = store.apply([fire()], DEVICES)
    endpoint = Endpoint()
    run(make_sender(store, endpoint, clock).deliver_due)
    body = json.loads(endpoint.requests[0].content)
    assert body["type"] == "alert.firing"
    assert body["id"] == e.id
    assert body["message"] == e.message_en
    assert endpoint.requests[0].headers["user-agent"].startswith("mekong-ioc")
