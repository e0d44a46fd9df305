"""Start-up checks: is the server a command needs reachable, is the port it listens on free?

:func:`influx_problem`, :func:`broker_problem` and :func:`grafana_problem` answer with the problem,
naming the flag to fix, or ``None``: a command that cannot work without the server raises it (:func:`require`), ingest,
which waits for its servers, logs it. :func:`listen` binds a port or raises :class:`UserError`.
"""

from __future__ import annotations

import errno
import socket

import httpx

from contract.topics import parse_mqtt_url
from ingest.influxql import InfluxQLError, query
from ioc.errors import UserError

TIMEOUT_S = 5.0


def _reason(exc: BaseException) -> str:
    """The operating system's words for a failed connection (httpx wraps them twice), else the message."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
        cause = cause.__cause__ or cause.__context__
    return str(exc) or type(exc).__name__


def influx_problem(client: httpx.Client, *, url_flag: str, db: str | None = None, db_flag: str = "") -> str | None:
    """Why InfluxDB behind ``client`` cannot serve queries (unreachable, not InfluxDB, no database ``db``)."""
    url = str(client.base_url).rstrip("/")
    try:
        ping = client.get("/ping", timeout=TIMEOUT_S)
    except httpx.TransportError as exc:
        return f"InfluxDB at {url} is unreachable ({_reason(exc)}): check {url_flag}"
    if not ping.is_success:
        return f"{url} does not answer as InfluxDB (GET /ping: HTTP {ping.status_code}): check {url_flag}"
    if not db:
        return None
    try:
        names = {row[0] for series in query(client, "SHOW DATABASES") for row in series.get("values", [])}
    except (httpx.HTTPError, InfluxQLError, KeyError, ValueError):
        return None  # no right to list databases (2.x tokens, v1 users): the queries will tell
    if db not in names:
        known = ", ".join(sorted(names)) or "none"
        return f"InfluxDB at {url} has no database {db!r} (it has: {known}): check {db_flag}"
    return None


def grafana_problem(url: str, *, flag: str) -> str | None:
    """Why nothing answers HTTP at ``url`` (what it answers is :mod:`dashboards.push`'s to judge)."""
    try:
        httpx.get(f"{url.rstrip('/')}/api/health", timeout=TIMEOUT_S)
    except httpx.TransportError as exc:
        return f"Grafana at {url} is unreachable ({_reason(exc)}): check {flag}"
    return None


def broker_problem(mqtt_url: str, *, flag: str) -> str | None:
    """Why nothing accepts TCP connections at the broker's address (refused, unknown host, timeout)."""
    host, port = parse_mqtt_url(mqtt_url)
    try:
        with socket.create_connection((host, port), timeout=TIMEOUT_S):
            return None
    except OSError as exc:
        return f"the MQTT broker at {mqtt_url} is unreachable ({_reason(exc)}): check {flag}"


def require(problem: str | None) -> None:
    """Raise :class:`UserError` if there is a problem."""
    if problem is not None:
        raise UserError(problem)


def listen(host: str, port: int, *, host_flag: str, port_flag: str) -> socket.socket:
    """A listening TCP socket on ``host:port`` (SO_REUSEADDR, as servers set it); a taken port names ``port_flag``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {host} is already in use: choose another with {port_flag}") from exc
        if exc.errno == errno.EACCES:
            raise UserError(f"port {port} needs privileges: choose one above 1023 with {port_flag}") from exc
        raise UserError(f"cannot listen on {host}:{port} ({_reason(exc)}): check {host_flag}") from exc
