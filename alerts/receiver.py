"""A small webhook receiver for ``ioc demo`` and the tests: verifies, dedupes, prints, counts.

A real HTTP server (stdlib ``ThreadingHTTPServer`` in a daemon thread) that checks every POST
with the Standard Webhooks signature (:func:`alerts.signing.verify`): a tampered body, a wrong
secret or a timestamp more than 5 minutes off gets ``401``. Accepted alerts are printed as a
farmer would read them on a phone — Vietnamese first, then English, in Vietnam's time — once
per ``webhook-id`` (a redelivery is acknowledged but not shown twice). Every request is kept in
memory for tests, which can also make it answer 500, 429 (with Retry-After) or 410 for a while.

    with WebhookReceiver(secret) as rx:
        store.add_subscription(rx.url, secret)
        ...
        rx.wait_for(3)
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO

from alerts.errors import SignatureError
from alerts.signing import verify

MAX_BODY = 1 << 20
VIETNAM = timezone(timedelta(hours=7), "ICT")

_SEVERITY_VI = {"info": "THÔNG TIN", "warning": "CẢNH BÁO", "critical": "KHẨN CẤP"}


@dataclass(frozen=True, slots=True)
class Received:
    """One request the receiver got, and what it answered."""

    webhook_id: str | None
    timestamp: str | None
    body: bytes
    payload: dict[str, Any] | None
    """The verified JSON body (None when verification failed)."""
    status: int
    """What the receiver answered."""
    verified: bool
    duplicate: bool
    """A ``webhook-id`` already accepted before (at-least-once redelivery)."""
    error: str | None
    at: float
    """``time.monotonic()`` on arrival."""

    @property
    def accepted(self) -> bool:
        return self.verified and 200 <= self.status < 300


def _local(iso: str) -> datetime | None:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(VIETNAM)
    except (AttributeError, ValueError):
        return None


def carried(payload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The alert notices a message carries (its ``alerts``: one, a group's, or a digest's)."""
    return [a for a in payload.get("alerts") or () if isinstance(a, Mapping)]


_KIND_HEADS = {"deescalated": ("GIẢM MỨC", "LOWER LEVEL"), "digest": ("TIN GỘP", "DIGEST")}
"""Headings of the messages that are neither an alert starting nor an all-clear (alerts.notices)."""


def farmer_text(payload: Mapping[str, Any]) -> str:
    """How an alert reads on a farmer's phone: Vietnamese, then English."""
    if payload.get("type") == "test.ping":
        return (
            f"[TIN THỬ / TEST] {payload.get('message_vi', '')}\n"
            f"  {payload.get('message_en', '')}"
        )
    resolved = payload.get("type") == "alert.resolved"
    severity = str(payload.get("severity", ""))
    when = _local(str(payload.get("ts") or payload.get("timestamp", "")))
    when_vi = when.strftime("%H:%M ngày %d/%m/%Y") if when else "?"
    when_en = when.strftime("%H:%M on %d %b %Y (UTC+7)") if when else "?"
    place_vi = payload.get("place_vi") or payload.get("district") or ""
    place_en = payload.get("place_en") or payload.get("district") or ""
    head_vi = "ĐÃ HẾT CẢNH BÁO" if resolved else _SEVERITY_VI.get(severity, severity.upper())
    head_en = "RESOLVED" if resolved else f"{severity.upper()} ALERT"
    head_vi, head_en = _KIND_HEADS.get(str(payload.get("notice")), (head_vi, head_en))
    alerts = carried(payload)
    devices = payload.get("device_id") or ", ".join(dict.fromkeys(str(a.get("device_id")) for a in alerts)) or "?"
    rules = payload.get("rule_id") or ", ".join(dict.fromkeys(str(a.get("rule_id")) for a in alerts)) or "?"
    return (
        f"[{head_vi}] {place_vi} · {when_vi}\n"
        f"  {payload.get('message_vi', '')}\n"
        f"[{head_en}] {place_en} · {when_en}\n"
        f"  {payload.get('message_en', '')}\n"
        f"  (thiết bị / device {devices}, {rules})"
    )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


@dataclass(slots=True)
class _Script:
    status: int
    retry_after: float | None
    remaining: int | None


class _QuietServer(ThreadingHTTPServer):
    """A client closing its kept-alive connection is normal: no traceback for it."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class WebhookReceiver:
    """A verifying webhook endpoint on ``host:port`` (``port=0``: any free port)."""

    def __init__(
        self,
        secret: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/webhook",
        out: TextIO | None = None,
        quiet: bool = False,
    ) -> None:
        """Args:
        secret: the subscription's ``whsec_…`` secret.
        out: where alerts are printed (default standard output); ``quiet`` prints nothing.
        """
        self._secret = secret
        self._host = host
        self._port = port
        self._path = path
        self._out = out
        self._quiet = quiet
        self._lock = threading.Condition()
        self._requests: list[Received] = []
        self._seen: dict[str, dict[str, Any]] = {}
        self._counts: Counter[str] = Counter()
        self._script: _Script | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                receiver._handle(self)

            def do_GET(self) -> None:
                receiver._answer(self, 200, repr(receiver.counts))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = _QuietServer((self._host, self._port), Handler)
        server.daemon_threads = True
        self._server = server
        self._port = int(server.server_address[1])
        self._thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}{self._path}"

    # -- behaviour for tests ----------------------------------------------------------------

    def respond(self, status: int = 200, *, retry_after: float | None = None, times: int | None = None) -> None:
        """Answer verified requests with ``status`` (``times`` times, or until changed), then 200."""
        with self._lock:
            self._script = None if status == 200 and times is None else _Script(status, retry_after, times)

    # -- what it got ------------------------------------------------------------------------

    @property
    def requests(self) -> list[Received]:
        """Every request, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def alerts(self) -> list[dict[str, Any]]:
        """Accepted payloads, once per ``webhook-id``, in the order first accepted."""
        with self._lock:
            return list(self._seen.values())

    @property
    def counts(self) -> dict[str, int]:
        """``received``, ``accepted`` (unique), ``duplicates``, ``rejected`` (401), ``failed`` (scripted)."""
        with self._lock:
            return dict(self._counts)

    def attempts(self, webhook_id: str) -> list[Received]:
        """Every request that carried this ``webhook-id``."""
        with self._lock:
            return [r for r in self._requests if r.webhook_id == webhook_id]

    def wait_for(self, accepted: int, timeout: float = 10.0) -> bool:
        """Block until ``accepted`` distinct alerts have been accepted; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._seen) < accepted:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
            return True

    # -- the request ------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        arrived = time.monotonic()
        headers = {k.lower(): v for k, v in request.headers.items()}
        length = headers.get("content-length", "")
        if not length.isdigit():
            request.close_connection = True
            self._answer(request, 411, "content-length required")
            return
        if int(length) > MAX_BODY:
            request.close_connection = True
            self._answer(request, 413, "body too large")
            return
        body = request.rfile.read(int(length))
        try:
            payload = verify(self._secret, body, headers)
            error = None
        except SignatureError as exc:
            payload, error = None, str(exc)
        extra: dict[str, str] = {}
        with self._lock:
            self._counts["received"] += 1
            webhook_id = headers.get("webhook-id")
            duplicate = False
            if payload is None or not isinstance(payload, dict):
                status, error = 401, error or "body is not a JSON object"
                payload = None
                self._counts["rejected"] += 1
            elif self._script is not None:
                status = self._script.status
                if self._script.retry_after is not None:
                    extra["retry-after"] = f"{self._script.retry_after:g}"
                if self._script.remaining is not None:
                    self._script.remaining -= 1
                    if self._script.remaining <= 0:
                        self._script = None
                self._counts["failed"] += 1
            else:
                status = 200
                duplicate = webhook_id in self._seen
                if duplicate:
                    self._counts["duplicates"] += 1
                else:
                    self._seen[str(webhook_id)] = payload
                    self._counts["accepted"] += 1
            self._requests.append(
                Received(
                    webhook_id=webhook_id,
                    timestamp=headers.get("webhook-timestamp"),
                    body=body,
                    payload=payload,
                    status=status,
                    verified=payload is not None,
                    duplicate=duplicate,
                    error=error,
                    at=arrived,
                )
            )
            self._lock.notify_all()
        if status == 200 and not duplicate and payload is not None and not self._quiet:
            out = self._out or sys.stdout
            print(farmer_text(payload), file=out, flush=True)
        self._answer(request, status, error or _phrase(status), extra)

    def _answer(
        self, request: BaseHTTPRequestHandler, status: int, text: str, headers: Mapping[str, str] | None = None
    ) -> None:
        body = text.encode()
        request.send_response(status)
        request.send_header("content-type", "text/plain; charset=utf-8")
        request.send_header("content-length", str(len(body)))
        for k, v in (headers or {}).items():
            request.send_header(k, v)
        request.end_headers()
        request.wfile.write(body)


def main(argv: list[str] | None = None) -> None:
    """``python -m alerts.receiver --secret whsec_… [--port 8765]``: print alerts until Ctrl-C."""
    parser = argparse.ArgumentParser(description="a local webhook receiver that prints alerts")
    parser.add_argument("--secret", required=True, help="the subscription's whsec_… secret")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    with WebhookReceiver(args.secret, host=args.host, port=args.port) as rx:
        print(f"listening on {rx.url}", file=sys.stderr, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        print(f"{rx.counts}", file=sys.stderr)


if __name__ == "__main__":
    main()
