"""The live alert stream: Server-Sent Events of every alert opened, resolved or acknowledged."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncGenerator, Callable
from typing import Final

import anyio
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from alerts.errors import AlertsError
from alerts.store import Alert, AlertStore
from api.auth import Principal, Reader
from api.deps import KeysDep, StoreDep
from api.errors import ERROR_RESPONSES
from api.feed import RETRY_MS, Change, Feed, Reset, sse, sse_comment
from api.keys import KeyStore
from api.routes.alerts import alert_out

router = APIRouter(prefix="/v1/alerts", tags=["alerts"], responses=ERROR_RESPONSES)

STREAM_PATH: Final = "/v1/alerts/stream"
"""Where the live stream is (the desk's config names it; the request metrics leave it untimed)."""
MEDIA_TYPE: Final = "text/event-stream"
SEND_TIMEOUT_S: Final = 10.0
"""A client that takes longer than this to take one write (it stopped reading) is let go."""


def render(alert: Alert) -> str:
    """An alert as the stream's ``data:`` (the JSON ``GET /v1/alerts/{id}`` gives, without events)."""
    return alert_out(alert).model_dump_json()


def snapshot(store: AlertStore, principal: Principal) -> tuple[int, str]:
    """The store's change cursor, then the active alerts the key may see (most recently fired first, one
    JSON array): the array reflects every change up to that cursor, at least."""
    cursor = store.change_cursor()
    alerts = [a for a in store.active() if principal.may_see(a.province)]
    return cursor, "[" + ",".join(render(a) for a in alerts) + "]"


class EventStream(StreamingResponse):
    """A streaming response that ends as soon as the client goes away (not at its next write), or stops
    reading (a write not taken within ``send_timeout_s``); its events' generator is closed at once."""

    media_type = MEDIA_TYPE

    def __init__(
        self,
        events: AsyncGenerator[bytes, None],
        *,
        headers: dict[str, str] | None = None,
        send_timeout_s: float = SEND_TIMEOUT_S,
    ) -> None:
        super().__init__(events, headers=headers)
        self.events = events
        self.send_timeout_s = send_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def bounded(message: Message) -> None:
            with anyio.fail_after(self.send_timeout_s):
                await send(message)

        async with contextlib.aclosing(self.events), anyio.create_task_group() as group:

            async def stream() -> None:
                # the client went away mid-write (OSError) or stopped reading (TimeoutError)
                with contextlib.suppress(OSError):
                    await self.stream_response(bounded)
                group.cancel_scope.cancel()

            group.start_soon(stream)
            await self.listen_for_disconnect(receive)
            group.cancel_scope.cancel()


def key_unchanged(keys: KeyStore, principal: Principal) -> bool:
    """Whether the stream's key still stands as it did when it connected (not revoked, the same scope and
    provinces); False when the key store cannot tell."""
    try:
        key = keys.get(principal.key_id)
    except AlertsError:
        return False
    return key.revoked_at_ms is None and Principal.of(key) == principal


async def events(
    feed: Feed, store: AlertStore, principal: Principal, key_ok: Callable[[], bool] = lambda: True
) -> AsyncGenerator[bytes, None]:
    """``retry``, the snapshot, then each change the key may see, until reset, shutdown or disconnect.
    Every ``feed.keepalive_s`` the key is checked again (``key_ok``): revoked or changed, the stream ends
    with a reset (the page reconnects, and its key is refused or its new provinces apply)."""
    with feed.subscribe(principal.may_see) as sub:  # first: no change between snapshot and stream is lost
        yield f"retry: {RETRY_MS}\n\n".encode()
        cursor, alerts = await run_in_threadpool(snapshot, store, principal)
        yield sse("snapshot", alerts, id=str(cursor))
        checked = time.monotonic()
        while True:
            item = await sub.next(feed.keepalive_s)
            if time.monotonic() - checked >= feed.keepalive_s:
                if not await run_in_threadpool(key_ok):
                    yield sse("reset", json.dumps({"reason": "the key was revoked or changed"}))
                    return
                checked = time.monotonic()
            if item is None:
                yield sse_comment("keep-alive")
            elif isinstance(item, Change):
                if item.seq > cursor:  # older ones are in the snapshot already
                    yield sse("alert", item.data, id=str(item.seq))
            elif isinstance(item, Reset):
                yield sse("reset", json.dumps({"reason": "fell behind", "dropped": item.dropped}))
                return
            else:
                return


@router.get(
    STREAM_PATH.removeprefix(router.prefix),
    summary="Live alerts (Server-Sent Events)",
    response_class=EventStream,
    # Not in /openapi.json: a stream never ends, which schema-driven clients and fuzzers cannot handle
    # (docs/api.md describes it).
    include_in_schema=False,
    responses={
        200: {
            "content": {MEDIA_TYPE: {"schema": {"type": "string"}}},
            "description": "`event: snapshot` (the active alerts, a JSON array of alerts), then `event: alert` "
            "(one alert as JSON) each time one is opened, resolved or acknowledged; `event: reset` when the "
            "client fell behind (reconnect for a fresh snapshot); `: keep-alive` every 15 s",
        }
    },
)
async def stream(request: Request, principal: Reader, store: StoreDep, keys: KeysDep) -> EventStream:
    """The active alerts, then every change to an alert the key may see, as it happens (one watcher per
    process polls the store every IOC_API_STREAM_POLL_S; a slow client is reset, never waited for)."""
    feed: Feed = request.app.state.feed
    await run_in_threadpool(store.change_cursor)  # an unreadable store is a 503 now, not a broken stream later
    return EventStream(
        events(feed, store, principal, lambda: key_unchanged(keys, principal)),
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
