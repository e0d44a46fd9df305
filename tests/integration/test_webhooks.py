"""Webhooks end to end: the real sender (in-process and as a process) against a real HTTP receiver.

The receiver listens on a free loopback port; the sender is allowed to reach loopback through the
allow-list (``IOC_WEBHOOK_ALLOW_HOSTS=127.0.0.0/8``), exactly as an operator would open it.
Back-offs are small so the file runs in seconds; timing assertions are lower bounds with slack.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from alerts.config import WebhookSettings
from alerts.receiver import WebhookReceiver
from alerts.sender import WebhookSender
from alerts.signing import generate_secret, headers
from alerts.store import AlertEvent, AlertStore
from alerts.targets import TargetPolicy
from ioc.servers import free_port
from rules.model import Severity
from tests.unit.test_alerts_store import AT_ONCE, DEVICES, T0, fire

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = ["127.0.0.0/8"]


def webhook_settings(db: Path, **overrides: Any) -> WebhookSettings:
    values: dict[str, Any] = {
        "alerts_db": db,
        "webhook_allow_hosts": LOOPBACK,
        "webhook_backoff_initial_s": 0.05,
        "webhook_backoff_max_s": 0.3,
        "webhook_timeout_s": 1.0,
        "webhook_poll_interval_s": 0.1,
        "webhook_max_attempts": 1000,
        **overrides,
    }
    return WebhookSettings(_env_file=None, **values)  # type: ignore[call-arg]


class SenderThread:
    """The sender on its own event loop in a thread."""

    def __init__(self, store: AlertStore, settings: WebhookSettings) -> None:
        self.sender = WebhookSender(store, settings)
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.sender.run(self._stop))
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> SenderThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)
        assert not self._thread.is_alive(), "sender did not stop"
        self._loop.close()
        if self.error is not None:
            raise self.error


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AlertStore]:
    s = AlertStore(tmp_path / "var" / "alerts.db", policy=TargetPolicy.parse(LOOPBACK))
    yield s
    s.close()


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def some_events(store: AlertStore, n: int, start: int = 0) -> list[AlertEvent]:
    transitions = [
        fire(rule=f"rule_{start + i}", device=i % 3, ts=T0 + i, severity=Severity.CRITICAL) for i in range(n)
    ]
    events = store.apply(transitions, DEVICES)
    assert len(events) == n
    return events


def test_receiver_down_then_up_delivers_everything_in_order(store: AlertStore, tmp_path: Path) -> None:
    port = free_port()
    secret = generate_secret()
    sub = store.add_subscription(f"http://127.0.0.1:{port}/webhook", secret, pacing=AT_ONCE)
    events = some_events(store, 4)
    with SenderThread(store, webhook_settings(store.path)) as st:
        wait_until(lambda: len(store.deliveries(subscription_id=sub.id)) >= 3, what="failed attempts")
        assert store.pending_count(sub.id) == 4, "nothing is lost or skipped while the receiver is down"
        failed = store.deliveries(subscription_id=sub.id)
        assert {d.event_id for d in failed} == {events[0].id}, "only the head is tried: order"
        assert all(d.status is None and d.error for d in failed)
        with WebhookReceiver(secret, port=port, quiet=True) as rx:
            assert rx.wait_for(4, timeout=10)
            st.sender.notify()
    assert [a["id"] for a in rx.alerts] == [e.id for e in events]
    assert [r.webhook_id for r in rx.requests] == [e.id for e in events]
    assert all(r.verified for r in rx.requests)
    head = store.outbox(subscription_id=sub.id, limit=1)[0]
    assert head.attempts >= 4
    assert head.last_status == 200
    assert store.pending_count() == 0


def test_server_errors_are_retried_with_backoff_and_the_same_id(store: AlertStore) -> None:
    secret = generate_secret()
    initial = 0.1
    with WebhookReceiver(secret, quiet=True) as rx:
        store.add_subscription(rx.url, secret, pacing=AT_ONCE)
        e1, e2 = some_events(store, 2)
        rx.respond(500, times=3)
        with SenderThread(
            store, webhook_settings(store.path, webhook_backoff_initial_s=initial, webhook_backoff_max_s=2)
        ):
            assert rx.wait_for(2, timeout=10)
    tries = rx.attempts(e1.id)
    assert [r.status for r in tries] == [500, 500, 500, 200]
    assert len({r.body for r in tries}) == 1, "every retry carries the same body"
    assert len({r.timestamp for r in tries}) >= 1
    assert all(r.verified for r in tries)
    gaps = [b.at - a.at for a, b in itertools.pairwise(tries)]
    for k, gap in enumerate(gaps):
        floor = initial * 2**k * 0.5  # equal jitter: at least half the exponential step
        assert gap >= floor * 0.9, f"retry {k + 1} came after {gap:.3f}s, back-off floor {floor:.3f}s"
    assert [r.webhook_id for r in rx.requests] == [e1.id] * 4 + [e2.id], "e2 waited for e1"


def test_429_retry_after_is_honoured(store: AlertStore) -> None:
    secret = generate_secret()
    with WebhookReceiver(secret, quiet=True) as rx:
        store.add_subscription(rx.url, secret, pacing=AT_ONCE)
        [event] = some_events(store, 1)
        rx.respond(429, retry_after=1, times=1)
        with SenderThread(store, webhook_settings(store.path)):
            assert rx.wait_for(1, timeout=10)
    first, second = rx.attempts(event.id)
    assert (first.status, second.status) == (429, 200)
    gap = second.at - first.at
    assert 0.95 <= gap < 10, f"Retry-After: 1 but retried after {gap:.3f}s"


def test_410_gone_disables_the_subscription(store: AlertStore) -> None:
    secret = generate_secret()
    with WebhookReceiver(secret, quiet=True) as rx, WebhookReceiver(secret, quiet=True) as healthy:
        gone = store.add_subscription(rx.url, secret, pacing=AT_ONCE)
        other = store.add_subscription(healthy.url, secret, pacing=AT_ONCE)
        first = some_events(store, 2)
        rx.respond(410)
        with SenderThread(store, webhook_settings(store.path)) as st:
            wait_until(lambda: not store.get_subscription(gone.id).enabled, what="subscription disabled")
            rx.respond(200)
            later = some_events(store, 2, start=10)
            st.sender.notify()
            assert healthy.wait_for(4, timeout=10)
            time.sleep(0.3)
    assert [r.status for r in rx.requests] == [410], "nothing sent after 410"
    assert all(gone.id not in e.queued_for for e in later)
    assert all(other.id in e.queued_for for e in later)
    assert [a["id"] for a in healthy.alerts] == [e.id for e in first + later]
    disabled = store.get_subscription(gone.id)
    assert "410" in (disabled.disabled_reason or "")
    assert {d.event_id for d in store.dead_letters(subscription_id=gone.id)} == {e.id for e in first}


def test_exhausted_retries_dead_letter_then_replay_delivers(store: AlertStore) -> None:
    secret = generate_secret()
    with WebhookReceiver(secret, quiet=True) as rx:
        sub = store.add_subscription(rx.url, secret, pacing=AT_ONCE)
        e1, e2 = some_events(store, 2)
        rx.respond(500)
        with SenderThread(store, webhook_settings(store.path, webhook_max_attempts=3)) as st:
            wait_until(lambda: len(store.dead_letters(subscription_id=sub.id)) == 2, what="dead letters")
            assert store.pending_count(sub.id) == 0
            rx.respond(200)
            assert store.replay(subscription_id=sub.id) == 2
            st.sender.notify()
            assert rx.wait_for(2, timeout=10)
    assert [a["id"] for a in rx.alerts] == [e1.id, e2.id], "replayed in their original order"
    assert [r.status for r in rx.attempts(e1.id)] == [500, 500, 500, 200]
    assert store.dead_letters() == []
    assert len(store.dead_letters(include_replayed=True)) == 2


def test_receiver_rejects_bad_signatures_and_dedupes() -> None:
    secret = generate_secret()
    body = b'{"type":"alert.firing","id":"evt_x_firing","message_vi":"th\xe1\xbb\xad","message_en":"test"}'
    now = int(time.time())
    with WebhookReceiver(secret, quiet=True) as rx, httpx.Client() as client:

        def post(data: bytes, signed_with: str = secret, ts: int = now, msg_id: str = "evt_x_firing") -> int:
            h = headers(signed_with, msg_id, ts, data)
            return client.post(rx.url, content=data, headers=h).status_code

        assert post(body, signed_with=generate_secret()) == 401, "wrong secret"
        good = headers(secret, "evt_x_firing", now, body)
        tampered = body.replace(b"alert.firing", b"alert.resolved")
        assert client.post(rx.url, content=tampered, headers=good).status_code == 401, "tampered body"
        assert post(body, ts=now - 301) == 401, "stale timestamp"
        assert client.post(rx.url, content=body).status_code == 401, "no signature at all"
        assert post(body) == 200
        assert post(body, ts=now + 1) == 200, "a redelivery is acknowledged"
        assert rx.counts == {"received": 6, "rejected": 4, "accepted": 1, "duplicates": 1}
        assert len(rx.alerts) == 1
        assert rx.alerts[0]["message_vi"] == "thử"


def test_receiver_prints_each_alert_once(store: AlertStore, tmp_path: Path) -> None:
    secret = generate_secret()
    out = tmp_path / "farmer.txt"
    with out.open("w", encoding="utf-8") as stream, WebhookReceiver(secret, out=stream) as rx:
        store.add_subscription(rx.url, secret, pacing=AT_ONCE)
        some_events(store, 2)
        with SenderThread(store, webhook_settings(store.path)):
            assert rx.wait_for(2, timeout=10)
    text = out.read_text(encoding="utf-8")
    assert text.count("[KHẨN CẤP]") == 2
    assert text.count("[CRITICAL ALERT]") == 2
    assert text.index("Độ mặn") < text.index("Salinity")


def test_sender_killed_mid_retry_loses_nothing(store: AlertStore) -> None:
    """SIGKILL the sender process while the receiver fails; a new sender delivers every event."""
    secret = generate_secret()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "IOC_ALERTS_DB": str(store.path),
        "IOC_WEBHOOK_ALLOW_HOSTS": ",".join(LOOPBACK),
        "IOC_WEBHOOK_BACKOFF_INITIAL_S": "0.05",
        "IOC_WEBHOOK_BACKOFF_MAX_S": "0.2",
        "IOC_WEBHOOK_TIMEOUT_S": "1",
        "IOC_WEBHOOK_POLL_INTERVAL_S": "0.1",
        "IOC_WEBHOOK_MAX_ATTEMPTS": "1000",
    }

    def start_sender() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "alerts.sender"], cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE
        )

    with WebhookReceiver(secret, quiet=True) as rx:
        sub = store.add_subscription(rx.url, secret, pacing=AT_ONCE)
        events = some_events(store, 5)
        rx.respond(500)
        first = start_sender()
        try:
            wait_until(lambda: len(rx.requests) >= 4, timeout=15, what="the first sender's retries")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        assert first.returncode == -signal.SIGKILL
        assert store.pending_count(sub.id) == 5, "every row still pending after the kill"
        head = store.outbox(subscription_id=sub.id, limit=1)[0]
        assert head.event_id == events[0].id
        assert head.attempts >= 3
        assert head.last_status == 500

        rx.respond(200)
        second = start_sender()
        try:
            assert rx.wait_for(5, timeout=15), second.stderr
        finally:
            second.send_signal(signal.SIGTERM)
            _, err = second.communicate(timeout=10)
        assert second.returncode == 0, err.decode()

    ids = [e.id for e in events]
    assert [a["id"] for a in rx.alerts] == ids, "every event, in order"
    assert {r.webhook_id for r in rx.requests} == set(ids), "no other ids: stable across senders"
    before_kill = [r for r in rx.attempts(ids[0]) if r.status == 500]
    assert before_kill
    assert all(r.body == rx.attempts(ids[0])[-1].body for r in before_kill)
    assert store.pending_count() == 0


def test_a_receiver_hanging_past_the_timeout_is_retried_and_delivered_once(store: AlertStore) -> None:
    """The first request hangs longer than the sender's timeout; the retry gets through, same id."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str] = []
    release = threading.Event()

    class Hanging(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            seen.append(self.headers["webhook-id"])
            if len(seen) == 1:
                release.wait(5)  # well past the 1 s timeout
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hanging)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/webhook"
        store.add_subscription(url, generate_secret(), pacing=AT_ONCE)
        (event,) = some_events(store, 1)
        with SenderThread(store, webhook_settings(store.path)):
            wait_until(
                lambda: store.waiting_count() == store.pending_count() == 0 and bool(store.outbox()),
                timeout=15,
                what="delivered after the timeout",
            )
        release.set()
        assert seen[:2] == [event.id, event.id]  # the timed-out attempt and its retry: one webhook-id
        timed_out = min(store.deliveries(event_id=event.id), key=lambda d: d.attempt)
        assert (timed_out.status, timed_out.error is not None) == (None, True)
    finally:
        release.set()
        server.shutdown()
