"""The live alert feed (api.feed): SSE framing, bounded queues with counted resets, the store's change
cursor, and the watcher polling a real alert store (both backends: ``alerts_location``)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path

import pytest
from starlette.types import Message

from alerts.store import Alert, AlertStore
from api.auth import Principal
from api.feed import END, Change, Feed, Reset, Subscriber, feed_of, sse, sse_comment
from api.keys import KeyStore, Scope
from api.middleware import ApiMetrics
from api.routes.stream import EventStream, events, key_unchanged
from rules.model import Severity
from tests.unit.test_alerts_store import DEVICES, NOW, PUBLIC, T0, fire, resolve


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def change(seq: int, province: str = "ben_tre") -> Change:
    return Change(seq, province, json.dumps({"seq": seq}))


def render(alert: Alert) -> str:
    return json.dumps({"id": alert.id, "state": alert.state.value, "ack": alert.acknowledged_by})


class _NoStore:
    """publish() needs no store; a poll on it would fail loudly."""


def feed_without_store(metrics: ApiMetrics, **kw: int) -> Feed:
    return Feed(_NoStore(), render=render, metrics=metrics, **kw)  # type: ignore[arg-type]


# -- SSE framing ---------------------------------------------------------------------------------


def test_sse_frames_an_event_with_its_id_and_one_data_line_per_line() -> None:
    assert sse("alert", '{"a":1}', id="7") == b'event: alert\nid: 7\ndata: {"a":1}\n\n'
    assert sse(None, "two\nlines") == b"data: two\ndata: lines\n\n"
    assert sse_comment("keep-alive") == b": keep-alive\n\n"


# -- one subscriber's bounded queue -------------------------------------------------------------


@pytest.mark.anyio
async def test_a_subscriber_that_falls_behind_gets_a_reset_instead_of_its_backlog() -> None:
    sub = Subscriber(lambda p: True, size=3)
    assert [sub.offer(change(i)) for i in (1, 2, 3)] == [0, 0, 0]
    assert sub.offer(change(4)) == 4, "the three waiting and the one that did not fit"
    assert sub.done
    assert sub.offer(change(5)) == 0, "nothing more is queued after a reset"
    assert await sub.next(0.1) == Reset(4)
    assert await sub.next(0.05) is None, "then nothing: the stream ends with the reset"


@pytest.mark.anyio
async def test_a_subscriber_gets_changes_in_order_then_none_after_the_timeout_then_the_end() -> None:
    sub = Subscriber(lambda p: True, size=8)
    sub.offer(change(1))
    sub.offer(change(2))
    assert [await sub.next(0.1), await sub.next(0.1)] == [change(1), change(2)]
    assert await sub.next(0.05) is None, "a keep-alive is due"
    sub.end()
    assert await sub.next(0.1) is END


# -- fan-out --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_publish_fans_out_by_province_and_counts_the_slow_client_s_drop() -> None:
    metrics = ApiMetrics()
    feed = feed_without_store(metrics, queue_size=2)
    with (
        feed.subscribe(lambda p: True) as everyone,
        feed.subscribe(lambda p: p == "can_tho") as can_tho,
        feed.subscribe(lambda p: p == "ben_tre") as ben_tre,
    ):
        assert metrics.value("ioc_api_stream_clients") == 3
        feed.publish([change(1, "ben_tre"), change(2, "can_tho")])
        assert feed.cursor == 2
        assert [await can_tho.next(0.1), await can_tho.next(0.01)] == [change(2, "can_tho"), None]
        assert await ben_tre.next(0.1) == change(1, "ben_tre")
        feed.publish([change(3, "ben_tre")])  # everyone's queue (2) is full: it is reset
        assert await everyone.next(0.1) == Reset(3)
        assert await ben_tre.next(0.1) == change(3, "ben_tre"), "the others go on"
        assert not can_tho.done
        assert metrics.value("ioc_api_stream_resets_total") == 1
        assert metrics.value("ioc_api_stream_dropped_events_total") == 3
    assert metrics.value("ioc_api_stream_clients") == 0
    assert feed.subscribers == 0


@pytest.mark.anyio
async def test_ending_the_streams_ends_every_subscriber_and_those_that_come_later() -> None:
    feed = feed_without_store(ApiMetrics(), queue_size=1)
    with feed.subscribe(lambda p: True) as sub:
        feed.publish([change(1)])
        feed.end_streams()
        assert await sub.next(0.1) is END, "a full queue is cleared for the end"
    with feed.subscribe(lambda p: True) as late:
        assert await late.next(0.1) is END


def test_the_server_finds_its_app_s_feed_under_the_middlewares() -> None:
    class Layer:
        def __init__(self, app: object) -> None:
            self.app = app

    class State:
        feed = feed_without_store(ApiMetrics())

    class App:
        state = State()

    assert feed_of(Layer(Layer(App()))) is State.feed
    assert feed_of(Layer(object())) is None
    assert feed_of(None) is None


# -- the store's change cursor ---------------------------------------------------------------------


@pytest.fixture
def store(alerts_location: Path | str) -> Iterator[AlertStore]:
    with AlertStore(alerts_location, policy=PUBLIC, clock=lambda: NOW) as s:
        yield s


def test_the_change_cursor_counts_opens_resolves_and_acknowledgements(store: AlertStore) -> None:
    assert store.change_cursor() == 0
    assert store.changed_since(0) == []
    [opened] = store.apply([fire(ts=T0)], DEVICES)
    [other] = store.apply([fire(rule="do_low", device=0, ts=T0)], DEVICES)
    assert (opened.alert.change_seq, other.alert.change_seq, store.change_cursor()) == (1, 2, 2)
    assert store.apply([fire(ts=T0)], DEVICES) == [], "a replay"
    assert store.change_cursor() == 2, "a replay changes nothing"
    acked = store.acknowledge(opened.alert_id, "op-1")
    assert acked.change_seq == 3
    assert store.acknowledge(opened.alert_id, "op-2").change_seq == 3, "the first acknowledgement stands"
    [closed] = store.apply([resolve(ts=T0 + 60_000)], DEVICES)
    assert closed.alert.change_seq == store.change_cursor() == 4
    # each alert once, at its latest change, oldest change first
    assert [(a.id, a.change_seq) for a in store.changed_since(0)] == [(other.alert_id, 2), (opened.alert_id, 4)]
    assert [a.id for a in store.changed_since(2)] == [opened.alert_id]
    assert store.changed_since(4) == []
    assert [a.id for a in store.changed_since(0, limit=1)] == [other.alert_id]


# -- the watcher on a real store -------------------------------------------------------------------


@pytest.fixture
async def feed(store: AlertStore) -> AsyncIterator[Feed]:
    async with Feed(store, render=render, metrics=ApiMetrics(), poll_s=0.05) as f:
        yield f


async def _next_change(sub: Subscriber) -> dict[str, object]:
    item = await sub.next(5.0)
    assert isinstance(item, Change), item
    data: dict[str, object] = json.loads(item.data)
    return data


@pytest.mark.anyio
async def test_the_watcher_delivers_what_ingest_records(feed: Feed, store: AlertStore) -> None:
    with feed.subscribe(lambda p: p == "tien_giang") as sub:
        # recorded as ingest records it, in another thread, while the watcher runs
        [event] = await asyncio.to_thread(store.apply, [fire(ts=T0, severity=Severity.CRITICAL)], DEVICES)
        await asyncio.to_thread(store.apply, [fire(rule="do_low", device=0, ts=T0)], DEVICES)  # ben_tre: unseen
        assert await _next_change(sub) == {"id": event.alert_id, "state": "firing", "ack": None}
        await asyncio.to_thread(store.acknowledge, event.alert_id, "op-1")
        assert await _next_change(sub) == {"id": event.alert_id, "state": "firing", "ack": "op-1"}
        await asyncio.to_thread(store.apply, [resolve(ts=T0 + 60_000)], DEVICES)
        assert await _next_change(sub) == {"id": event.alert_id, "state": "resolved", "ack": "op-1"}
        assert await sub.next(0.2) is None, "the Bến Tre alert never reached a Tiền Giang key"
    assert feed.polls >= 3


@pytest.mark.anyio
async def test_the_watcher_reads_a_burst_in_batches_and_stops_cleanly(store: AlertStore) -> None:
    feed = Feed(store, render=render, metrics=ApiMetrics(), poll_s=0.05, batch=2)
    with feed.subscribe(lambda p: True) as sub:
        async with feed:
            await asyncio.to_thread(
                store.apply, [fire(rule=f"r{i}", device=i % 3, ts=T0 + i) for i in range(5)], DEVICES
            )
            seqs = [item.seq for item in [await sub.next(5.0) for _ in range(5)] if isinstance(item, Change)]
            assert seqs == [1, 2, 3, 4, 5]
            task = feed._task
        assert task is not None
        assert task.done(), "leaving the feed stops its watcher"
        assert await sub.next(0.1) is END, "and ends the streams"


@pytest.mark.anyio
async def test_a_feed_starts_from_the_newest_change_and_skips_the_store_with_no_one_listening(
    store: AlertStore,
) -> None:
    store.apply([fire(ts=T0)], DEVICES)
    async with Feed(store, render=render, metrics=ApiMetrics(), poll_s=0.05) as feed:
        assert feed.cursor == 1, "what happened before is the snapshot's, not the stream's"
        await asyncio.to_thread(store.apply, [fire(rule="do_low", device=0, ts=T0)], DEVICES)
        for _ in range(100):
            if feed.cursor == 2:
                break
            await asyncio.sleep(0.02)
        assert feed.cursor == 2, "with no subscriber the cursor still follows the store"


@pytest.mark.anyio
async def test_a_store_that_cannot_be_read_is_counted_and_the_watcher_goes_on(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.db", policy=PUBLIC)
    metrics = ApiMetrics()
    feed = Feed(store, render=render, metrics=metrics, poll_s=0.02)
    with feed.subscribe(lambda p: True):
        async with feed:
            store.close()  # every read now fails
            for _ in range(200):
                if metrics.value("ioc_api_stream_poll_errors_total") >= 2:
                    break
                await asyncio.sleep(0.01)
            assert metrics.value("ioc_api_stream_poll_errors_total") >= 2, "tried again after the first failure"
            assert feed._task is not None
            assert not feed._task.done()


class _SlowStore:
    """A store whose ``change_cursor()`` waits for a go-ahead (a slow read) and answers ``seq``."""

    def __init__(self) -> None:
        self.reading = threading.Event()
        self.go = threading.Event()
        self.seq = 10
        self.alerts: list[Alert] = []

    def change_cursor(self) -> int:
        self.reading.set()
        assert self.go.wait(5)
        return self.seq

    def changed_since(self, cursor: int, *, limit: int = 500) -> list[Alert]:
        return [a for a in self.alerts if a.change_seq > cursor][:limit]


@pytest.mark.anyio
async def test_a_page_that_subscribes_during_an_idle_poll_misses_no_change(tmp_path: Path) -> None:
    with AlertStore(tmp_path / "alerts.db", policy=PUBLIC, clock=lambda: NOW) as real:
        [event] = real.apply([fire(ts=T0)], DEVICES)
    slow = _SlowStore()
    feed = Feed(slow, render=render, metrics=ApiMetrics())  # type: ignore[arg-type]
    feed.cursor = 10
    polling = asyncio.create_task(feed.poll())  # no one listening: it reads the newest change
    assert await asyncio.to_thread(slow.reading.wait, 5)
    with feed.subscribe(lambda p: True) as sub:  # a page joins; its snapshot holds changes up to 10
        slow.alerts.append(dataclasses.replace(event.alert, change_seq=11))  # then change 11 commits
        slow.seq = 11
        slow.go.set()  # and the slow read returns 11
        await polling
        assert feed.cursor == 10, "the cursor skipped a change the new subscriber has not seen"
        await feed.poll()
        item = await sub.next(1.0)
        assert isinstance(item, Change)
        assert item.seq == 11


# -- one stream -------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_stream_ends_with_a_reset_once_its_key_no_longer_stands(store: AlertStore) -> None:
    valid = True
    principal = Principal("key_1", "op", Scope.READ, frozenset())
    async with Feed(store, render=render, metrics=ApiMetrics(), poll_s=0.05, keepalive_s=0.05) as feed:
        stream = events(feed, store, principal, lambda: valid)
        assert await anext(stream) == b"retry: 3000\n\n"
        assert (await anext(stream)).startswith(b"event: snapshot\n")
        assert await anext(stream) == sse_comment("keep-alive"), "the key still stands"
        valid = False  # revoked
        async with asyncio.timeout(5):
            rest = [chunk async for chunk in stream]
        assert rest[-1] == sse("reset", json.dumps({"reason": "the key was revoked or changed"}))
        assert set(rest[:-1]) <= {sse_comment("keep-alive")}
        assert feed.subscribers == 0


def test_a_key_stands_until_it_is_revoked_or_changed(tmp_path: Path) -> None:
    with contextlib.closing(KeyStore(tmp_path / "alerts.db")) as keys:
        key, _ = keys.create("op", "read", provinces=["ben_tre"])
        principal = Principal.of(key)
        assert key_unchanged(keys, principal)
        assert not key_unchanged(keys, dataclasses.replace(principal, provinces=frozenset())), "provinces changed"
        assert not key_unchanged(keys, dataclasses.replace(principal, key_id="key_nope")), "no such key"
        keys.revoke(key.id)
        assert not key_unchanged(keys, principal), "revoked"


@pytest.mark.anyio
async def test_a_client_that_stops_reading_is_let_go_and_unsubscribed() -> None:
    feed = feed_without_store(ApiMetrics())
    closed = asyncio.Event()

    async def body() -> AsyncGenerator[bytes, None]:
        try:
            with feed.subscribe(lambda p: True):
                while True:
                    yield b": keep-alive\n\n"
                    await asyncio.sleep(0)
        finally:
            closed.set()

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)
        if len(sent) > 3:  # the client's window is full: writes wait for ever
            await asyncio.Event().wait()

    async def receive() -> Message:
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    response = EventStream(body(), send_timeout_s=0.1)
    async with asyncio.timeout(5):
        await response({"type": "http", "asgi": {"spec_version": "2.4"}}, receive, send)
    assert closed.is_set(), "the events' generator was closed"
    assert feed.subscribers == 0
