"""Writing line protocol to InfluxDB: two dialects behind one seam, and one retry policy.

:class:`V1Transport` posts to the 1.x ``/write`` API with httpx; :class:`V2Transport` writes through
``influxdb-client``'s synchronous write API (InfluxDB 2.x, 3.x, Cloud). Both map every answer into
:mod:`ingest.errors` here, in one place; :class:`InfluxWriter` then decides what happens next:
retry with back-off, waiting at least what Retry-After says (both from :mod:`contract.retry`),
split on 413, bisect a 400/422 down to the lines the server refuses. Nothing is dropped: refused
lines come back to the caller for the dead-letter topic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import httpx

from contract.retry import Backoff as Backoff  # re-exported: ingest's one back-off
from contract.retry import parse_retry_after
from ingest.config import IngestSettings
from ingest.errors import Rejected, RetryableWrite, TooLarge, WriteError

log = logging.getLogger(__name__)

RETRY_AFTER_CAP_S = 300.0
"""The longest Retry-After a write honours: readings wait unacknowledged meanwhile."""


def classify_status(status: int, headers: Mapping[str, str], message: str) -> WriteError | None:
    """The error for an HTTP answer (None for success). The one place answers are judged."""
    if 200 <= status < 300:
        return None
    if status == 413:
        return TooLarge(f"413: {message}", status=status)
    if status in (400, 422):
        return Rejected(message or f"HTTP {status}", status=status)
    retry_after = parse_retry_after(headers.get("retry-after") or headers.get("Retry-After"), cap_s=RETRY_AFTER_CAP_S)
    # 429, 5xx, and also 401/403/404: the data is fine, the server or its configuration is not;
    # keep it (unacknowledged) and retry until an operator fixes the token or the database.
    return RetryableWrite(f"HTTP {status}: {message}", status=status, retry_after=retry_after)


def _error_message(body: bytes | str | None) -> str:
    if not body:
        return ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        import json

        data = json.loads(text)
        if isinstance(data, dict):
            return str(data.get("error") or data.get("message") or text)[:2000]
    except ValueError:
        pass
    return text[:2000]


class Transport(Protocol):
    """Posts one body of line protocol (epoch-ms precision); raises :class:`WriteError`."""

    async def post(self, body: bytes) -> None: ...

    async def aclose(self) -> None: ...


class V1Transport:
    """InfluxDB 1.x ``POST /write?db=…&precision=ms``."""

    def __init__(self, settings: IngestSettings) -> None:
        params = {"db": settings.influx_db or "", "precision": "ms"}
        auth = None
        if settings.influx_username:
            pw = settings.influx_password.get_secret_value() if settings.influx_password else ""
            auth = httpx.BasicAuth(settings.influx_username, pw)
        self._client = httpx.AsyncClient(
            base_url=settings.influx_url,
            params=params,
            auth=auth,
            timeout=settings.write_timeout_s,
            verify=settings.influx_verify(),  # https://: influx_ca_file, else the system's CAs
        )

    async def post(self, body: bytes) -> None:
        try:
            resp = await self._client.post("/write", content=body)
        except httpx.HTTPError as exc:
            raise RetryableWrite(f"{type(exc).__name__}: {exc}") from exc
        error = classify_status(resp.status_code, resp.headers, _error_message(resp.content))
        if error is not None:
            raise error

    async def aclose(self) -> None:
        await self._client.aclose()


class V2Transport:
    """InfluxDB v2 write API through ``influxdb-client`` (synchronous API, run in a thread)."""

    def __init__(self, settings: IngestSettings) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        assert settings.influx_token
        assert settings.influx_bucket
        assert settings.influx_org
        self._bucket = settings.influx_bucket
        self._org = settings.influx_org
        self._client = InfluxDBClient(
            url=settings.influx_url,
            token=settings.influx_token.get_secret_value(),
            org=settings.influx_org,
            timeout=int(settings.write_timeout_s * 1000),
            retries=False,
            verify_ssl=True,
            ssl_ca_cert=str(settings.influx_ca_file) if settings.influx_ca_file else None,
        )
        self._api = self._client.write_api(write_options=SYNCHRONOUS)
        # Threads of its own for the synchronous client: asyncio's default ones are shared.
        self._threads = ThreadPoolExecutor(settings.write_concurrency, thread_name_prefix="influx-v2")

    def _write(self, body: bytes) -> None:
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError as Urllib3Error

        try:
            self._api.write(bucket=self._bucket, org=self._org, record=body, write_precision=WritePrecision.MS)  # type: ignore[arg-type]  # a str constant
        except ApiException as exc:
            headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
            error = classify_status(int(exc.status or 0), headers, _error_message(exc.body))
            raise (error or RetryableWrite(str(exc))) from exc
        except (Urllib3Error, OSError) as exc:
            raise RetryableWrite(f"{type(exc).__name__}: {exc}") from exc

    async def post(self, body: bytes) -> None:
        await asyncio.get_running_loop().run_in_executor(self._threads, self._write, body)

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._threads, self._client.close)
        self._threads.shutdown(wait=False)


def make_transport(settings: IngestSettings) -> Transport:
    return V1Transport(settings) if settings.influx_api == "v1" else V2Transport(settings)


class InfluxWriter:
    """Writes batches of lines until they are stored; returns the lines the server refused."""

    def __init__(
        self,
        transport: Transport,
        backoff: Backoff,
        *,
        on_retry: Callable[[WriteError, float], None] = lambda e, d: None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self._transport = transport
        self._backoff = backoff
        self._on_retry = on_retry
        self._sleep = sleep
        self._failing = False

    async def write(self, lines: list[str]) -> list[tuple[str, str]]:
        """Store ``lines``; retries until done. Returns (line, server message) for refused lines.

        ``lines`` is emptied once the request body is formed from it: a batch's lines are the
        largest part of it, and the body holds them again while the batch waits for its write.
        Cancellation stops the retries; the caller then must not acknowledge the batch.
        """
        if not lines:
            return []
        body = "\n".join(lines).encode("utf-8")
        lines.clear()
        refused: list[tuple[str, str]] = []
        chunks = [body]
        while chunks:
            chunk = chunks.pop()
            try:
                await self._post_with_retry(chunk)
            except (TooLarge, Rejected) as exc:
                parts = chunk.split(b"\n")
                if len(parts) == 1:
                    refused.append((chunk.decode("utf-8"), str(exc)))
                else:
                    mid = len(parts) // 2
                    chunks += [b"\n".join(parts[mid:]), b"\n".join(parts[:mid])]
        return refused

    async def _post_with_retry(self, body: bytes) -> None:
        attempt = 0
        while True:
            try:
                await self._transport.post(body)
            except RetryableWrite as exc:
                delay = self._backoff.delay(attempt, exc.retry_after)
                if not self._failing:
                    log.warning("InfluxDB write failed (%s); retrying until it succeeds", exc)
                    self._failing = True
                self._on_retry(exc, delay)
                attempt += 1
                await self._sleep(delay)
                continue
            if self._failing:
                log.warning("InfluxDB writes succeed again after %d retries", attempt)
                self._failing = False
            return

    async def aclose(self) -> None:
        await self._transport.aclose()
