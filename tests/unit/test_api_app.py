"""The app without the services behind it: settings, error shapes, the body cap, metrics, OpenAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from api.config import ApiSettings
from api.main import create_app
from api.middleware import ApiMetrics, BodyLimit, Metrics


def _settings(**kw: object) -> ApiSettings:
    return ApiSettings(_env_file=None, **kw)  # type: ignore[arg-type]


def test_settings_defaults_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    s = _settings()
    assert (s.api_host, s.api_port, s.api_max_body_bytes, s.api_cors_origins) == ("127.0.0.1", 8000, 262_144, [])
    assert s.api_admin_key is None
    monkeypatch.setenv("IOC_API_PORT", "9001")
    monkeypatch.setenv("IOC_API_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("IOC_INFLUX_URL", "http://db:8086/")
    monkeypatch.setenv("IOC_WEBHOOK_ALLOW_HOSTS", '["10.0.0.0/8"]')
    s = ApiSettings(_env_file=None)  # type: ignore[call-arg]
    assert s.api_port == 9001
    assert s.api_cors_origins == ["https://a.example", "https://b.example"]
    assert s.influx_url == "http://db:8086"
    assert s.webhook_allow_hosts == ["10.0.0.0/8"]
    assert s.mqtt_host_port == ("127.0.0.1", 1883)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("api_admin_key", "short", "at least 32"),
        ("influx_url", "db:8086", "http://host:port"),
        ("mqtt_url", "tcp://x", "mqtt://host:port"),
        ("webhook_allow_hosts", ["not a host!"], "neither a CIDR"),
        ("api_port", 0, "greater than or equal"),
    ],
)
def test_settings_refuse_bad_values(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _settings(**{field: value})


def test_admin_key_is_a_secret() -> None:
    s = _settings(api_admin_key="k" * 40)
    assert "k" * 40 not in repr(s)
    assert s.api_admin_key is not None
    assert s.api_admin_key.get_secret_value() == "k" * 40


@pytest.fixture
def app() -> FastAPI:
    """The app with its lifespan not run: routes that need no service still answer."""
    return create_app(_settings())


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c:
        yield c


@pytest.mark.anyio
async def test_healthz_needs_no_key(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


@pytest.mark.anyio
async def test_errors_are_json(client: httpx.AsyncClient) -> None:
    r = await client.get("/no/such/route")
    assert r.status_code == 404
    assert r.json() == {"error": "not found", "detail": "no route /no/such/route"}
    r = await client.put("/healthz")
    assert r.status_code == 405
    assert r.json() == {"error": "method not allowed", "detail": "PUT is not allowed on /healthz"}


@pytest.mark.anyio
async def test_openapi_documents_every_route(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert spec["info"]["title"] == "Mekong IOC API"
    assert set(spec["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyHeader"}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op.get("summary"), f"{method} {path} has no summary"
            assert op.get("tags"), f"{method} {path} has no tag"
            assert op.get("description"), f"{method} {path} has no docstring"
            if path not in ("/healthz", "/readyz"):
                assert op.get("security"), f"{method} {path} needs a key"
                assert "401" in op["responses"], f"{method} {path} does not document 401"
    assert "/v1/readings/{device_id}/{field}" in spec["paths"]


def test_docs_list_every_setting() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "api.md").read_text(encoding="utf-8")
    missing = [f"IOC_{name.upper()}" for name in ApiSettings.model_fields if f"IOC_{name.upper()}" not in doc]
    assert not missing, f"docs/api.md does not mention {missing}"


def _echo_app(limit: int) -> BodyLimit:
    async def echo(scope: dict[str, object], receive: object, send: object) -> None:
        body = b""
        while True:
            msg = await receive()  # type: ignore[operator]
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": str(len(body)).encode()})  # type: ignore[operator]

    return BodyLimit(echo, max_bytes=limit)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_body_limit_from_content_length_and_while_reading() -> None:
    transport = httpx.ASGITransport(app=_echo_app(1024))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        assert (await c.post("/", content=b"x" * 1024)).text == "1024"
        r = await c.post("/", content=b"x" * 1025)
        assert r.status_code == 413
        assert r.json() == {"error": "the request body is larger than 1024 bytes", "detail": {"max_bytes": 1024}}

        async def chunks() -> object:
            for _ in range(10):
                yield b"x" * 200

        r = await c.post("/", content=chunks())  # no Content-Length: counted while read
        assert r.status_code == 413
        r = await c.post("/", content=b"x", headers={"content-length": "abc"})
        assert r.status_code == 400


@pytest.mark.anyio
async def test_metrics_label_routes_by_template(app: FastAPI) -> None:
    metrics = ApiMetrics()
    wrapped = Metrics(app, metrics)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=wrapped), base_url="http://t") as c:
        await c.get("/healthz")
        await c.get("/healthz")
        await c.get("/nope/123")
        await c.request("BREW", "/healthz")
    assert metrics.value("ioc_api_requests_total", method="GET", route="/healthz", status="200") == 2
    assert metrics.value("ioc_api_requests_total", method="GET", route="unmatched", status="404") == 1
    assert metrics.value("ioc_api_requests_total", method="other", route="/healthz", status="405") == 1
    assert metrics.value("ioc_api_request_seconds_count", method="GET", route="/healthz") == 2


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
