"""The API's Prometheus metrics, and two ASGI middlewares: a cap on request bodies (413) and request metrics."""

from __future__ import annotations

import json
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import BodyTooLarge


class ApiMetrics:
    """The API's numbers, in a registry of their own (served at ``/metrics``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ioc_api_requests",
            "HTTP requests by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "ioc_api_request_seconds",
            "time to answer a request",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.stream_clients = Gauge(
            "ioc_api_stream_clients", "clients connected to the live alert stream", registry=self.registry
        )
        self.stream_resets = Counter(
            "ioc_api_stream_resets",
            "stream clients that fell behind their queue and were reset",
            registry=self.registry,
        )
        self.stream_dropped = Counter(
            "ioc_api_stream_dropped_events",
            "alert changes dropped from the queues of stream clients that fell behind",
            registry=self.registry,
        )
        self.stream_poll_errors = Counter(
            "ioc_api_stream_poll_errors",
            "polls of the alert store by the stream watcher that failed",
            registry=self.registry,
        )

    def value(self, name: str, **labels: str) -> float:
        v = self.registry.get_sample_value(name, labels)
        return float(v) if v is not None else 0.0


def _json_error(status: int, message: str, detail: Any = None) -> tuple[Message, Message]:
    body = json.dumps({"error": message, "detail": detail}, separators=(",", ":")).encode()
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }
    return start, {"type": "http.response.body", "body": body}


def _check_length(scope: Scope, limit: int, message: str) -> tuple[Message, Message] | None:
    """The answer to a request whose Content-Length is over ``limit`` (413) or not a number (400)."""
    for name, value in scope.get("headers", ()):
        if name != b"content-length":
            continue
        try:
            declared = int(value)
        except ValueError:
            return _json_error(400, "bad request", "the Content-Length header is not a number")
        if declared > limit:
            return _json_error(413, message, {"max_bytes": limit})
    return None


class BodyLimit:
    """413 for a body over ``max_bytes``: at once from Content-Length, else while it is read."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        message = f"the request body is larger than {limit} bytes"
        refused = _check_length(scope, limit, message)
        if refused is not None:
            for msg in refused:
                await send(msg)
            return
        seen = 0
        over = False
        started = False
        too_large = _json_error(413, message, {"max_bytes": limit})

        async def counted() -> Message:
            nonlocal seen, over
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    over = True
                    raise BodyTooLarge(message, {"max_bytes": limit})
            return msg

        async def tracked(msg: Message) -> None:
            # Once the body went over the limit the answer is 413, whatever the app made of the error
            # (FastAPI turns an exception while it reads a JSON body into its own 400).
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
                if over:
                    for part in too_large:
                        await send(part)
                    return
            if not over:
                await send(msg)

        try:
            await self.app(scope, counted, tracked)
        except BodyTooLarge:  # raised outside the app's own handlers
            if started:
                raise
            for part in too_large:
                await send(part)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    """Counts every request by method, route template (never the raw path) and status; times it, unless
    its route is one of ``untimed`` (a live stream lasts hours: it would distort the histogram)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics, untimed: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.metrics = metrics
        self.untimed = untimed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        began = time.perf_counter()

        async def tracked(msg: Message) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = int(msg["status"])
            await send(msg)

        try:
            await self.app(scope, receive, tracked)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = str(scope.get("method", ""))
            method = method if method in _METHODS else "other"
            self.metrics.requests.labels(method, template, str(status)).inc()
            if template not in self.untimed:
                self.metrics.seconds.labels(method, template).observe(time.perf_counter() - began)
