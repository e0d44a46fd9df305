"""The webhook sender: delivers the outbox, per subscriber in order, at least once.

Each pass first turns due notices into messages (:meth:`~alerts.store.AlertStore.dispatch`:
grouping, quiet hours, rate limits), and wakes again when the next notice falls due. Then for each
enabled subscriber the sender takes the oldest pending outbox row (a short lease in the
database keeps two senders off the same row), signs it with the Standard Webhooks headers —
``webhook-id`` is the event id, the same on every attempt; ``webhook-timestamp`` is the attempt's
time — checks the target again (DNS may have changed), posts it, and records the outcome
(:mod:`alerts.outbox` decides: delivered, retry later, dead letter, or 410 → disable). A
subscriber's next row waits until the previous one is delivered or dead-lettered; subscribers
do not wait for each other.

Nothing is lost if the sender dies: a row stays ``pending`` until its delivery is recorded, so the
next sender retries it (the receiver may see it twice: dedupe on ``webhook-id``).

Run it alone with ``python -m alerts.sender`` (settings from ``IOC_*``), or in-process with
:meth:`WebhookSender.run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from typing import ParamSpec, TypeVar

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import ValidationError

from alerts.config import WebhookSettings
from alerts.delivery import post_webhook, webhook_client
from alerts.errors import AlertsError, StoreError
from alerts.outbox import Outcome, RetryPolicy, Verdict
from alerts.store import AlertStore, Claim
from contract.clock import now_ms

T = TypeVar("T")
P = ParamSpec("P")

log = logging.getLogger(__name__)


class WebhookMetrics:
    """The sender's numbers (one registry per sender; the lead's ``/metrics`` can serve it)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.attempts = Counter("ioc_webhook_attempts", "webhook delivery attempts by verdict", ["verdict"], registry=r)
        self.messages = Counter(
            "ioc_alert_messages", "messages queued for subscribers, by kind (opened, group, …)", ["kind"], registry=r
        )
        self.held = Counter(
            "ioc_alert_notices_held",
            "alert notices held back (quiet hours, rate limit) to go in a later digest, never dropped",
            ["reason"],
            registry=r,
        )
        self.seconds = Histogram(
            "ioc_webhook_attempt_seconds",
            "duration of one delivery attempt",
            registry=r,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )

    def value(self, verdict: Verdict) -> float:
        v = self.registry.get_sample_value("ioc_webhook_attempts_total", {"verdict": verdict.value})
        return float(v) if v is not None else 0.0


class WebhookSender:
    """Delivers outbox rows to webhook subscribers."""

    def __init__(
        self,
        store: AlertStore,
        settings: WebhookSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        """Prepare a sender (no I/O until :meth:`run` or :meth:`deliver_due`).

        Args:
            store: the alert store holding the outbox.
            settings: timeouts, retry limits and the target policy.
            transport: an httpx transport to use instead of the guarded default (tests).
            rand: jitter source in [0, 1).
            clock: epoch milliseconds.
        """
        self._store = store
        self._settings = settings
        self._policy = settings.target_policy()
        self._retry = RetryPolicy(
            initial_s=settings.webhook_backoff_initial_s,
            max_s=settings.webhook_backoff_max_s,
            max_attempts=settings.webhook_max_attempts,
            max_age_s=settings.webhook_max_age_s,
        )
        self._transport = transport
        self._rand = rand
        self._clock = clock
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # One attempt is connect + write + read, each up to the timeout, then the record: if the sender
        # dies mid-attempt, the next sender takes the row over once this lease has run out.
        self._lease_ms = round((3 * settings.webhook_timeout_s + 1.0) * 1000)
        self._client: httpx.AsyncClient | None = None
        self._limit: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._notified = False
        self._stopping = False
        self._failing: set[str] = set()
        self.metrics = WebhookMetrics()
        # Store calls in a thread of the sender's own: one waiting on a locked file must not take
        # the threads that others (ingest's InfluxDB v2 writes, DNS checks) need.
        self._store_thread = ThreadPoolExecutor(1, thread_name_prefix="webhook-store")

    async def _in_store(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run an alert-store call in the sender's store thread."""
        return await asyncio.get_running_loop().run_in_executor(self._store_thread, partial(call, *args, **kwargs))

    @property
    def owner(self) -> str:
        """This sender's lease owner id (host:pid:random)."""
        return self._owner

    def notify(self) -> None:
        """New outbox rows were written: look now instead of at the next poll (thread-safe)."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            self._notified = True
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed
            loop.call_soon_threadsafe(wake.set)

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[httpx.AsyncClient]:
        if self._client is not None:
            yield self._client
            return
        client = webhook_client(self._policy, self._settings.webhook_timeout_s, transport=self._transport)
        self._client = client
        self._limit = asyncio.Semaphore(self._settings.webhook_concurrency)
        try:
            yield client
        finally:
            self._client = None
            self._limit = None
            await client.aclose()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; then finish the attempts in flight and release leases."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self._notified:
            self._wake.set()
        self._stopping = False
        poll = self._settings.webhook_poll_interval_s
        tasks: dict[str, asyncio.Task[int]] = {}
        cooldown: dict[str, int] = {}  # a subscriber whose delivery task crashed waits one poll
        try:
            async with self._session() as client:
                try:
                    while not stop.is_set():
                        self._wake.clear()
                        self._notified = False
                        wait_s = poll
                        next_due = await self._dispatch()
                        if next_due is not None:
                            wait_s = min(wait_s, max(0.0, (next_due - self._clock()) / 1000))
                        try:
                            heads = await self._in_store(self._store.outbox_heads)
                        except StoreError as exc:
                            log.warning("webhook sender cannot read the outbox: %s", exc)
                            heads = []
                        now = self._clock()
                        for head in heads:
                            sub_id = head.subscription_id
                            if sub_id in tasks:
                                continue
                            ready = max(head.ready_at_ms(self._owner), cooldown.get(sub_id, 0))
                            if ready <= now:
                                cooldown.pop(sub_id, None)
                                tasks[sub_id] = asyncio.create_task(self._drain(client, sub_id))
                            else:
                                wait_s = min(wait_s, (ready - now) / 1000)
                        for sub_id in await self._wait(stop, tasks, wait_s):
                            cooldown[sub_id] = self._clock() + round(poll * 1000)
                finally:
                    await self._finish(tasks)
        finally:
            self._loop = None
            self._wake = None

    async def _wait(self, stop: asyncio.Event, tasks: dict[str, asyncio.Task[int]], wait_s: float) -> list[str]:
        """Sleep until stopped, notified, a task finishes or ``wait_s``; return subscribers whose task failed."""
        assert self._wake is not None
        waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(self._wake.wait())]
        try:
            await asyncio.wait([*waiters, *tasks.values()], timeout=max(0.0, wait_s), return_when="FIRST_COMPLETED")
        finally:
            for w in waiters:
                w.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
        failed: list[str] = []
        for sub_id, task in list(tasks.items()):
            if task.done():
                del tasks[sub_id]
                if not task.cancelled() and task.exception() is not None:
                    log.error("webhook delivery to %s failed: %s", sub_id, task.exception())
                    failed.append(sub_id)
        return failed

    async def _finish(self, tasks: dict[str, asyncio.Task[int]]) -> None:
        self._stopping = True
        if tasks:
            _, pending = await asyncio.wait(tasks.values(), timeout=self._settings.webhook_timeout_s + 1.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks.values(), return_exceptions=True)
        try:
            await self._in_store(self._store.release, self._owner)
        except StoreError as exc:
            log.warning("webhook sender could not release its leases: %s", exc)
        self._stopping = False

    async def _dispatch(self) -> int | None:
        """Queue the messages due now; when the next falls due (None: nothing waits)."""
        try:
            done = await self._in_store(self._store.dispatch, self._clock())
        except StoreError as exc:
            log.warning("webhook sender cannot queue due messages: %s", exc)
            return None
        for kind, n in done.messages.items():
            self.metrics.messages.labels(kind).inc(n)
        for reason, n in done.held.items():
            self.metrics.held.labels(reason).inc(n)
        return done.next_due_ms

    async def deliver_due(self) -> int:
        """One pass: queue due messages, then every subscriber's due rows, in order, until one must wait.
        Returns attempts made."""
        await self._dispatch()
        heads = await self._in_store(self._store.outbox_heads)
        now = self._clock()
        due = [h.subscription_id for h in heads if h.ready_at_ms(self._owner) <= now]
        if not due:
            return 0
        async with self._session() as client:
            counts = await asyncio.gather(*(self._drain(client, sub_id) for sub_id in due))
        return sum(counts)

    async def _drain(self, client: httpx.AsyncClient, sub_id: str) -> int:
        """Deliver one subscriber's due rows in order; stop at the first that must wait."""
        assert self._limit is not None
        attempts = 0
        async with self._limit:
            while not self._stopping:
                claim = await self._in_store(
                    self._store.claim, sub_id, owner=self._owner, now_ms=self._clock(), lease_ms=self._lease_ms
                )
                if claim is None:
                    break
                at = self._clock()
                started = time.monotonic()
                outcome = await self._attempt(client, claim)
                elapsed = time.monotonic() - started
                verdict, next_at = self._retry.next_step(
                    outcome,
                    attempts=claim.entry.attempts + 1,
                    queued_at_ms=claim.entry.queued_at_ms,
                    now_ms=self._clock(),
                    rand=self._rand,
                )
                await self._in_store(
                    self._store.record_attempt,
                    claim.entry,
                    outcome,
                    verdict,
                    at_ms=at,
                    duration_ms=round(elapsed * 1000),
                    next_attempt_at_ms=next_at,
                )
                attempts += 1
                self.metrics.attempts.labels(verdict.value).inc()
                self.metrics.seconds.observe(elapsed)
                self._log(claim, outcome, verdict)
                if verdict in (Verdict.RETRY, Verdict.GONE):
                    break  # the head waits for its back-off (or the subscription is off)
        return attempts

    async def _attempt(self, client: httpx.AsyncClient, claim: Claim) -> Outcome:
        entry, sub = claim.entry, claim.subscription
        return await post_webhook(
            client,
            self._policy,
            url=sub.url,
            secret=sub.secret,
            webhook_id=entry.event_id,
            body=entry.body,
            timeout_s=self._settings.webhook_timeout_s,
        )

    def _log(self, claim: Claim, outcome: Outcome, verdict: Verdict) -> None:
        sub_id = claim.subscription.id
        if verdict is Verdict.DELIVERED:
            if sub_id in self._failing:
                self._failing.discard(sub_id)
                log.info("webhook %s recovered: %s delivered", sub_id, claim.entry.event_id)
            return
        if verdict is Verdict.GONE:
            log.warning("webhook %s answered 410 Gone: subscription disabled, its queue dead-lettered", sub_id)
        elif verdict is Verdict.DEAD:
            log.warning(
                "webhook %s: %s dead-lettered after %d attempts (%s)",
                sub_id,
                claim.entry.event_id,
                claim.entry.attempts + 1,
                outcome.error,
            )
        elif sub_id not in self._failing:
            log.warning("webhook %s failing: %s (retrying)", sub_id, outcome.error)
        self._failing.add(sub_id)


def main() -> None:
    """``python -m alerts.sender``: deliver the outbox of ``IOC_ALERTS_DB`` until SIGTERM/SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        settings = WebhookSettings()
    except ValidationError as exc:
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"]) or "settings"
            print(f"error: IOC_{where.upper()}: {e['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        store = AlertStore(settings.alerts_db, policy=settings.target_policy())
    except AlertsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    sender = WebhookSender(store, settings)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await sender.run(stop)

    try:
        asyncio.run(serve())
    finally:
        store.close()


if __name__ == "__main__":
    main()
