"""The app factory: ``uvicorn --factory api.main:create_app`` (what ``ioc api`` runs).

Settings are read when the app is created, never at import; the services behind the API
(registry, rule pack, alert store, API keys, InfluxDB client) and the live alert feed's watcher
(:mod:`api.feed`) are opened by the lifespan and closed with it. The alert desk (:mod:`api.desk`)
is served at ``/``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api import desk, errors
from api.config import ApiSettings
from api.feed import Feed
from api.middleware import ApiMetrics, BodyLimit, Metrics
from api.routes import alerts, devices, health, keys, opendata, readings, rules, station, stream, subscriptions
from api.services import Services

DESCRIPTION = """
The operators' API of the Mekong IOC: the device registry and its state (and provisioning:
register, change, decommission, import), readings (newest and downsampled history, JSON or CSV),
alerts and their acknowledgement (and a live stream of them), the rule pack, webhook subscriptions,
and open data. The operators' alert desk (a page of ours) is at `/`.

**Keys.** Send an API key as `Authorization: Bearer ioc_…` or `X-API-Key: ioc_…`. Scopes:
`read` (dashboards, open data) < `operate` (devices, acknowledge, rules, subscriptions) < `admin` (keys).
A key may be limited to provinces. Errors are `{"error": "…", "detail": …}`.
"""

TAGS = [
    {"name": "devices", "description": "The device registry with each device's state; provisioning (operate)."},
    {"name": "readings", "description": "Newest readings and history, downsampled in InfluxDB."},
    {"name": "alerts", "description": "Alerts raised by the rule pack; acknowledge them."},
    {"name": "rules", "description": "The rule pack: list, validate, reload, backtest."},
    {"name": "subscriptions", "description": "Webhook subscribers, their delivery log and dead letters."},
    {"name": "open data", "description": "Public data sets (GeoJSON)."},
    {"name": "keys", "description": "API keys (admin)."},
    {"name": "health", "description": "Liveness, readiness, metrics."},
]


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """Build the API (settings from ``IOC_*`` variables unless given)."""
    settings = settings if settings is not None else ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.open(settings)
        app.state.services = services
        try:
            feed = Feed(
                services.store, render=stream.render, metrics=app.state.metrics, poll_s=settings.api_stream_poll_s
            )
            app.state.feed = feed
            async with feed:  # leaving it ends every stream, then stops the watcher
                yield
        finally:
            services.close()

    app = FastAPI(
        title="Mekong IOC API",
        version="1.0.0",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        responses=errors.COMMON_RESPONSES,
    )
    app.state.settings = settings
    app.state.metrics = ApiMetrics()
    errors.install(app)
    # stream before alerts: /v1/alerts/stream is not the alert "stream"; station after devices
    for module in (devices, station, readings, stream, alerts, rules, subscriptions, opendata, keys, health, desk):
        app.include_router(module.router)
    if settings.api_cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api_cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["authorization", "x-api-key", "content-type"],
        )
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(Metrics, metrics=app.state.metrics, untimed=frozenset({stream.STREAM_PATH}))
    return app
