"""The live alert feed behind ``GET /v1/alerts/stream``: one watcher per API process, fanned out to every client.

::

    alert store ──(every IOC_API_STREAM_POLL_S: changed_since(cursor))──► Feed.publish
        ──► one bounded queue per client (only the alerts its key may see) ──► Server-Sent Events

The watcher asks the store one cheap question per poll, whatever the number of clients: which
alerts were opened, resolved or acknowledged since the last change it saw (the store's
``change_seq`` cursor, :meth:`~alerts.store.AlertStore.changed_since`). Each change is rendered once
and offered to every subscriber that may see its province. A subscriber whose queue is full has
fallen behind: its queued changes are dropped (counted in the API's metrics) and it is told to
``reset`` — the page reconnects and takes a fresh snapshot; nobody waits for a slow client.

:meth:`Feed.end_streams` ends every stream (the server is shutting down: uvicorn waits for open
responses before the app's lifespan ends, so :class:`StreamingServer` calls it first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

import uvicorn

from alerts.errors import AlertsError
from alerts.store import Alert, AlertStore
from api.middleware import ApiMetrics

log = logging.getLogger(__name__)

QUEUE_SIZE: Final = 256
"""Changes a client may have waiting before it counts as fallen behind (and is reset)."""
BATCH: Final = 500
"""Changes read from the store per query (a poll reads until it has them all)."""
KEEPALIVE_S: Final = 15.0
"""A ``: keep-alive`` comment after this long without an event (proxies close silent connections)."""
RETRY_MS: Final = 3000
"""What the stream tells clients to wait before reconnecting."""


@dataclass(frozen=True, slots=True)
class Change:
    """One alert change as clients receive it: rendered once, whatever the number of clients."""

    seq: int
    province: str
    data: str
    """The alert as JSON (``AlertOut``)."""


@dataclass(frozen=True, slots=True)
class Reset:
    """The client fell behind: ``dropped`` changes were thrown away; it must take a fresh snapshot."""

    dropped: int


class _End:
    """The stream ends (the server is shutting down)."""


END: Final = _End()
Item = Change | Reset | _End


def sse(event: str | None, data: str, *, id: str | None = None) -> bytes:
    """One Server-Sent Event: ``event:``, ``id:`` and a ``data:`` line per line of ``data``."""
    lines = []
    if event is not None:
        lines.append(f"event: {event}")
    if id is not None:
        lines.append(f"id: {id}")
    lines.extend(f"data: {line}" for line in data.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


def sse_comment(text: str) -> bytes:
    """An SSE comment line (``: text``): clients ignore it, connections stay warm."""
    return f": {text}\n\n".encode()


class Subscriber:
    """One client's bounded queue of the changes its key may see."""

    def __init__(self, may_see: Callable[[str], bool], *, size: int) -> None:
        self.may_see = may_see
        self._queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=size)
        self.done = False
        """Reset or ended: nothing more is queued."""

    def offer(self, change: Change) -> int:
        """Queue ``change``; when the queue is full, drop what waits and queue a reset. Returns the changes dropped."""
        if self.done:
            return 0
        try:
            self._queue.put_nowait(change)
        except asyncio.QueueFull:
            dropped = self._clear() + 1
            self._queue.put_nowait(Reset(dropped))
            self.done = True
            return dropped
        return 0

    def end(self) -> None:
        """Queue the end of the stream (after what waits, when there is room; else instead of it)."""
        if self.done:
            return
        self.done = True
        if self._queue.full():
            self._clear()
        self._queue.put_nowait(END)

    def _clear(self) -> int:
        n = 0
        while not self._queue.empty():
            self._queue.get_nowait()
            n += 1
        return n

    async def next(self, timeout_s: float) -> Item | None:
        """The next change, reset or end; None after ``timeout_s`` without one."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout_s)
        except TimeoutError:
            return None


class Feed:
    """Alert changes fanned out to subscribers; :meth:`run` is the watcher that polls the store.

    Use as an async context manager: entering starts the watcher (from the store's newest change),
    leaving ends every stream and stops it.
    """

    def __init__(
        self,
        store: AlertStore,
        *,
        render: Callable[[Alert], str],
        metrics: ApiMetrics,
        poll_s: float = 1.0,
        queue_size: int = QUEUE_SIZE,
        batch: int = BATCH,
        keepalive_s: float = KEEPALIVE_S,
    ) -> None:
        self.store = store
        self.render = render
        self.metrics = metrics
        self.poll_s = poll_s
        self.queue_size = queue_size
        self.batch = batch
        self.keepalive_s = keepalive_s
        self.cursor = 0
        self.polls = 0
        self._subscribers: set[Subscriber] = set()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ended = False
        self._failing = False

    # -- subscribers ------------------------------------------------------------------------------

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @contextlib.contextmanager
    def subscribe(self, may_see: Callable[[str], bool]) -> Iterator[Subscriber]:
        """A subscriber for the block: every change after the feed's cursor reaches it (or a reset); ended at
        once if the feed has ended."""
        sub = Subscriber(may_see, size=self.queue_size)
        if self._ended:
            sub.end()
        self._subscribers.add(sub)
        self.metrics.stream_clients.inc()
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)
            self.metrics.stream_clients.dec()

    def publish(self, changes: Sequence[Change]) -> None:
        """Offer each change to every subscriber that may see its province; count what is dropped."""
        for sub in list(self._subscribers):
            for change in changes:
                if sub.done:
                    break
                if not sub.may_see(change.province):
                    continue
                dropped = sub.offer(change)
                if dropped:
                    self.metrics.stream_resets.inc()
                    self.metrics.stream_dropped.inc(dropped)
        if changes:
            self.cursor = max(self.cursor, changes[-1].seq)

    def end_streams(self) -> None:
        """End every stream now and any opened later."""
        self._ended = True
        for sub in list(self._subscribers):
            sub.end()

    # -- the watcher ------------------------------------------------------------------------------

    def _changes(self, alerts: Sequence[Alert]) -> list[Change]:
        return [Change(a.change_seq, a.province, self.render(a)) for a in alerts]

    async def poll(self) -> None:
        """One look at the store: publish what changed since the cursor (or, with no one listening,
        just move the cursor to the newest change)."""
        self.polls += 1
        try:
            if not self._subscribers:
                newest = await asyncio.to_thread(self.store.change_cursor)
                # Someone may have subscribed during the read: from the old cursor, the next poll brings
                # them every change after it (their snapshot may predate a change ``newest`` counts).
                if not self._subscribers:
                    self.cursor = max(self.cursor, newest)
            else:
                while True:
                    alerts = await asyncio.to_thread(self.store.changed_since, self.cursor, limit=self.batch)
                    self.publish(self._changes(alerts))
                    if len(alerts) < self.batch:
                        break
        except AlertsError as exc:
            self.metrics.stream_poll_errors.inc()
            if not self._failing:
                log.warning("live alert stream: the alert store cannot be read, trying again: %s", exc)
            self._failing = True
            return
        except Exception:  # a bug must not stop the watcher for good: logged, counted, tried again
            self.metrics.stream_poll_errors.inc()
            if not self._failing:
                log.exception("live alert stream: a poll failed, trying again")
            self._failing = True
            return
        if self._failing:
            log.info("live alert stream: the alert store is readable again")
            self._failing = False

    async def run(self) -> None:
        """Poll every ``poll_s`` until :meth:`stop`."""
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.poll_s)
            if not self._stop.is_set():
                await self.poll()

    async def start(self) -> None:
        """Take the store's newest change as the cursor and start polling."""
        self.cursor = await asyncio.to_thread(self.store.change_cursor)
        self._stop.clear()
        self._task = asyncio.create_task(self.run(), name="alert-feed")

    async def stop(self) -> None:
        """End every stream; stop polling (the poll under way, if any, finishes first)."""
        self.end_streams()
        self._stop.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def __aenter__(self) -> Feed:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def feed_of(app: object) -> Feed | None:
    """The feed of the app under uvicorn's middlewares (each keeps the next as ``.app``), if it runs one."""
    for _ in range(16):
        feed = getattr(getattr(app, "state", None), "feed", None)
        if isinstance(feed, Feed):
            return feed
        app = getattr(app, "app", None)
        if app is None:
            break
    return None


class StreamingServer(uvicorn.Server):
    """uvicorn's server that ends its app's live streams when it shuts down (else it waits for them
    forever: the app's lifespan only ends after the last response)."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        feed = feed_of(getattr(self.config, "loaded_app", None))
        if feed is not None:  # none: an app without live streams (nothing to end)
            feed.end_streams()
        await super().shutdown(sockets=sockets)
