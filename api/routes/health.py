"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from typing import Literal

import httpx
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from alerts.database import Location, PostgresUrl
from alerts.errors import StoreError
from alerts.postgres import ping
from api.auth import Reader
from api.config import ApiSettings
from api.deps import SettingsDep
from api.errors import ErrorBody
from api.middleware import ApiMetrics

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"]


class Check(BaseModel):
    ok: bool
    detail: str


class Ready(BaseModel):
    status: Literal["ready"]
    checks: dict[str, Check]


async def check_broker(host: str, port: int, timeout_s: float) -> Check:
    """The broker accepts a TCP connection."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, TimeoutError) as exc:
        return Check(ok=False, detail=f"mqtt://{host}:{port}: {type(exc).__name__}: {exc}".rstrip(": "))
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return Check(ok=True, detail=f"mqtt://{host}:{port} accepts connections")


async def check_influx(url: str, timeout_s: float) -> Check:
    """InfluxDB answers ``/ping`` with 204."""
    try:
        async with httpx.AsyncClient(timeout=timeout_s, trust_env=False) as client:
            resp = await client.get(f"{url}/ping")
    except httpx.HTTPError as exc:
        return Check(ok=False, detail=f"{url}/ping: {type(exc).__name__}")
    if resp.status_code != 204:
        return Check(ok=False, detail=f"{url}/ping answered HTTP {resp.status_code}")
    version = resp.headers.get("x-influxdb-version", "")
    return Check(ok=True, detail=f"{url}/ping answered 204" + (f" (InfluxDB {version})" if version else ""))


def check_store(location: Location, timeout_s: float) -> Check:
    """The alert store's alerts table can be read: the file opened read-only, or PostgreSQL within the timeout."""
    if isinstance(location, PostgresUrl):
        try:
            ping(location, timeout_s, StoreError)
        except StoreError as exc:
            return Check(ok=False, detail=str(exc))
        return Check(ok=True, detail=f"{location} is readable")
    path = location
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=timeout_s)
        try:
            conn.execute("SELECT 1 FROM alerts LIMIT 1").fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        return Check(ok=False, detail=f"{path}: {exc}")
    return Check(ok=True, detail=f"{path} is readable")


async def readiness(settings: ApiSettings) -> dict[str, Check]:
    host, port = settings.mqtt_host_port
    timeout = settings.api_ready_timeout_s
    broker, influx, store = await asyncio.gather(
        check_broker(host, port, timeout),
        check_influx(settings.influx_url, timeout),
        asyncio.to_thread(check_store, settings.alerts_db, timeout),
    )
    return {"broker": broker, "influxdb": influx, "alert_store": store}


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    """Liveness: answers as long as the process serves requests (no key needed)."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Ready,
    summary="The services behind the API are reachable",
    responses={503: {"model": ErrorBody, "description": "a check failed; `detail.checks` says which"}},
)
async def readyz(settings: SettingsDep) -> Ready | JSONResponse:
    """Readiness: broker TCP, InfluxDB /ping and the alert store (no key needed)."""
    checks = await readiness(settings)
    failed = [name for name, c in checks.items() if not c.ok]
    if failed:
        body = {
            "error": f"not ready: {', '.join(failed)}",
            "detail": {"checks": {k: v.model_dump() for k, v in checks.items()}},
        }
        return JSONResponse(body, status_code=503)
    return Ready(status="ready", checks=checks)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}},
        401: {"model": ErrorBody},
        403: {"model": ErrorBody},
    },
)
def metrics(request: Request, _: Reader) -> Response:
    """Request counts and latencies by route (a `read` key)."""
    registry: ApiMetrics = request.app.state.metrics
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)
