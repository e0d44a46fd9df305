"""The API's exception tree and the one place foreign errors become HTTP answers.

    ApiError                 an answer with a status, a message and an optional detail
    ├── Unauthorized         401: no API key, or an unknown or revoked one
    ├── Forbidden            403: the key's scope or area does not allow this
    ├── NotFoundError        404: no such device, alert, subscription or key
    ├── Conflict             409: the registry's state refuses the change (a decommissioned device)
    ├── Invalid              422: a value the API cannot use (time, field, pack)
    ├── BodyTooLarge         413: the request body is over ``IOC_API_MAX_BODY_BYTES``
    ├── UnsupportedMedia     415: a body in a format the route does not read
    └── Upstream             502/503: InfluxDB, the alert store or the registry database failed

Every error answer is JSON ``{"error": "<message>", "detail": <anything or null>}`` — also
FastAPI's own 404/405/422 and any 500, which never carries a traceback.
:func:`install` maps ``alerts``, ``registry``, ``rules``, ``httpx`` and InfluxQL errors into that
shape; the registry's are (:func:`registry_error`): ``DeviceNotFound`` 404, ``DeviceExists`` 409,
``ImportRefused`` 422 with every bad row in ``detail.problems``, ``RegistryUnavailable`` 503, any
other ``RegistryError`` 422.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from alerts.errors import InvalidSubscription, NotFound, StoreError, TargetRefused
from registry.errors import DeviceExists, DeviceNotFound, ImportRefused, RegistryError, RegistryUnavailable
from rules.errors import PackError
from storage.influxql import InfluxQLError

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    """What every error answer looks like."""

    error: str
    detail: Any = None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "no API key, or an unknown or revoked one"},
    403: {"model": ErrorBody, "description": "the key's scope does not allow this, or it names a province it lacks"},
    422: {"model": ErrorBody, "description": "a parameter or the body is invalid: `detail` says which and where"},
}
"""Documented on every router whose routes need a key."""

COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "the body cannot be parsed (not UTF-8, not JSON), or bad Content-Length"},
    413: {"model": ErrorBody, "description": "the body is larger than IOC_API_MAX_BODY_BYTES (also when sent chunked)"},
}
"""Documented on every route: the body limit and body parsing apply to any request."""


class ApiError(Exception):
    """An HTTP answer other than success."""

    status = 400

    def __init__(self, message: str, detail: Any = None, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.headers = headers


class Unauthorized(ApiError):
    status = 401

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message, detail, headers={"www-authenticate": 'Bearer realm="ioc"'})


class Forbidden(ApiError):
    status = 403


class NotFoundError(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class Invalid(ApiError):
    status = 422


class UnsupportedMedia(ApiError):
    status = 415


class BodyTooLarge(ApiError):
    status = 413


class Upstream(ApiError):
    """A service behind the API failed: 503 when unreachable, 502 when it answered wrongly."""

    status = 502

    def __init__(self, message: str, detail: Any = None, *, status: int = 502) -> None:
        super().__init__(message, detail)
        self.status = status


def error_response(
    status: int, message: str, detail: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": message, "detail": detail}, status_code=status, headers=headers)


def influx_error(exc: Exception) -> Upstream:
    """An httpx or InfluxQL failure as the answer the client gets (no URL credentials, no query text)."""
    if isinstance(exc, httpx.HTTPStatusError):
        code = exc.response.status_code
        if code in (401, 403):
            return Upstream("InfluxDB refused the API's credentials (IOC_INFLUX_USERNAME, IOC_INFLUX_PASSWORD)")
        return Upstream(f"InfluxDB answered HTTP {code}")
    if isinstance(exc, httpx.TimeoutException):
        return Upstream("InfluxDB did not answer in time", status=503)
    if isinstance(exc, httpx.TransportError):
        return Upstream("InfluxDB is unreachable", status=503)
    if isinstance(exc, InfluxQLError):
        return Upstream("InfluxDB could not run the query", str(exc).split(": ", 1)[-1])
    return Upstream("InfluxDB failed")


def registry_error(exc: RegistryError) -> ApiError:
    """A device registry error as the answer the client gets (never the database URL)."""
    if isinstance(exc, DeviceNotFound):
        return NotFoundError("no such device in the registry")
    if isinstance(exc, DeviceExists):
        return Conflict(str(exc))
    if isinstance(exc, ImportRefused):
        return Invalid(f"{len(exc.problems)} bad row(s), nothing imported", {"problems": exc.problems})
    if isinstance(exc, RegistryUnavailable):
        return Upstream("the device registry is unavailable", status=503)
    return Invalid(str(exc))


_STATUS_TEXT = {
    400: "bad request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    406: "not acceptable",
    413: "request body too large",
    415: "unsupported media type",
}


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ())]
        out.append({"loc": loc, "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))})
    return out


_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on the request's path (Starlette's own 405 names one route's only)."""
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)
    ]


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into ``{"error", "detail"}``."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.detail, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = _STATUS_TEXT.get(exc.status_code, "error")
        detail: Any = exc.detail if isinstance(exc.detail, str) and exc.detail.lower() != message else None
        if exc.status_code == 404 and detail is None:
            detail = f"no route {request.url.path}"
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
            headers = {"allow": ", ".join(allowed_methods(request))}
        return error_response(exc.status_code, message, detail, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = _validation_detail(exc)
        first = detail[0] if detail else None
        message = "invalid request"
        if first:
            message += f": {'.'.join(first['loc'])}: {first['msg']}"
        return error_response(422, message, detail)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return error_response(404, str(exc))

    @app.exception_handler(InvalidSubscription)
    async def _bad_subscription(request: Request, exc: InvalidSubscription) -> JSONResponse:
        return error_response(422, str(exc))

    @app.exception_handler(TargetRefused)
    async def _refused(request: Request, exc: TargetRefused) -> JSONResponse:
        return error_response(422, "webhook URL refused", str(exc))

    @app.exception_handler(RegistryError)
    async def _registry(request: Request, exc: RegistryError) -> JSONResponse:
        answer = registry_error(exc)
        if answer.status >= 500:
            log.error("device registry failed: %s", exc)
        return error_response(answer.status, answer.message, answer.detail)

    @app.exception_handler(PackError)
    async def _pack(request: Request, exc: PackError) -> JSONResponse:
        return error_response(422, "invalid rule pack", str(exc))

    @app.exception_handler(StoreError)
    async def _store(request: Request, exc: StoreError) -> JSONResponse:
        log.error("alert store failed: %s", exc)
        return error_response(503, "the alert store is unavailable")

    @app.exception_handler(httpx.HTTPError)
    async def _httpx(request: Request, exc: httpx.HTTPError) -> JSONResponse:
        up = influx_error(exc)
        log.warning("InfluxDB request failed: %s", exc)
        return error_response(up.status, up.message, up.detail)

    @app.exception_handler(InfluxQLError)
    async def _influxql(request: Request, exc: InfluxQLError) -> JSONResponse:
        up = influx_error(exc)
        log.warning("%s", exc)
        return error_response(up.status, up.message, up.detail)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal server error", "the error was logged; no details are given here")
