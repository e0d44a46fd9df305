"""Start-up checks: is the server a command needs reachable, is the port it listens on free?

:func:`influx_problem`, :func:`broker_problem` and :func:`grafana_problem` answer with the problem,
naming the flag to fix, or ``None``: a command that cannot work without the server raises it (:func:`require`), ingest,
which waits for its servers, logs it. :func:`listen` binds a port or raises :class:`UserError`.
"""

from __future__ import annotations

import errno
import socket
import ssl
import time
from pathlib import Path

import httpx

from contract.topics import CA_FLAG, CERT_FLAG, KEY_FLAG, mqtt_endpoint
from ioc.errors import UserError
from storage.influxql import InfluxQLError, query

TIMEOUT_S = 5.0


def _reason(exc: BaseException) -> str:
    """The operating system's words for a failed connection (httpx wraps them twice), else the message."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
        cause = cause.__cause__ or cause.__context__
    return str(exc) or type(exc).__name__


def influx_problem(
    client: httpx.Client, *, url_flag: str, db: str | None = None, db_flag: str = "", ca_flag: str | None = None
) -> str | None:
    """Why InfluxDB behind ``client`` cannot serve queries (unreachable, not InfluxDB, no database ``db``);
    a certificate the client does not trust names ``ca_flag`` when the command has one."""
    url = str(client.base_url).rstrip("/")
    try:
        ping = client.get("/ping", timeout=TIMEOUT_S)
    except httpx.TransportError as exc:
        if ca_flag and _untrusted(exc):
            return f"InfluxDB at {url} presents a certificate we do not trust ({_reason(exc)}): check {ca_flag}"
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


def _untrusted(exc: BaseException) -> bool:
    """Whether a certificate verification failure is behind ``exc`` (httpx wraps it twice)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        cause = cause.__cause__ or cause.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


def grafana_problem(url: str, *, flag: str) -> str | None:
    """Why nothing answers HTTP at ``url`` (what it answers is :mod:`dashboards.push`'s to judge)."""
    try:
        httpx.get(f"{url.rstrip('/')}/api/health", timeout=TIMEOUT_S)
    except httpx.TransportError as exc:
        return f"Grafana at {url} is unreachable ({_reason(exc)}): check {flag}"
    return None


def broker_problem(
    mqtt_url: str,
    *,
    flag: str,
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
) -> str | None:
    """Why the broker cannot be used: nothing accepts TCP connections there (refused, unknown host,
    timeout), or, for ``mqtts://``, TLS fails (a certificate not trusted, another host's, a client
    certificate required or refused, not TLS at all). The files are the client's TLS settings."""
    endpoint = mqtt_endpoint(mqtt_url)
    context = None
    if endpoint.tls:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        if cert_file is not None and key_file is not None:
            try:
                context.load_cert_chain(cert_file, key_file)
            except (OSError, ssl.SSLError) as exc:
                why = _ssl_reason(exc) if isinstance(exc, ssl.SSLError) else _reason(exc)
                return f"cannot use the client certificate {cert_file} and key {key_file} ({why}): check {CERT_FLAG}"
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=TIMEOUT_S) as sock:
            if context is not None:
                return _tls_problem(sock, context, endpoint.host, mqtt_url, flag)
            return None
    except OSError as exc:
        return f"the MQTT broker at {mqtt_url} is unreachable ({_reason(exc)}): check {flag}"


def _tls_problem(sock: socket.socket, context: ssl.SSLContext, host: str, url: str, flag: str) -> str | None:
    """A TLS handshake as the client makes it, then a short read: with TLS 1.3 a broker refuses a
    client certificate (or its absence) only after the client's side of the handshake is done."""
    started = time.monotonic()
    try:
        with context.wrap_socket(sock, server_hostname=host) as tls:
            tls.settimeout(min(2.0, 0.2 + 2 * (time.monotonic() - started)))
            try:
                tls.recv(1)  # the broker says nothing before CONNECT: a timeout is success
            except TimeoutError:
                return None
            except ssl.SSLError as exc:
                return _refused_certificate(url, exc)
            return f"the MQTT broker at {url} closed the TLS connection at once: check {flag}"
    except ssl.SSLCertVerificationError as exc:
        why = exc.verify_message or str(exc.reason)
        if "hostname" in why.lower() or "ip address mismatch" in why.lower():
            return f"the MQTT broker at {url} presents a certificate for another host ({why}): check {flag}"
        return f"the MQTT broker at {url} presents a certificate we do not trust ({why}): check {CA_FLAG}"
    except ssl.SSLError as exc:
        if exc.reason and "ALERT" in exc.reason:
            return _refused_certificate(url, exc)
        return f"TLS with the MQTT broker at {url} failed ({_ssl_reason(exc)}; is it an mqtt:// port?): check {flag}"
    except OSError as exc:  # a plaintext listener resets the connection on a TLS hello
        return f"TLS with the MQTT broker at {url} failed ({_reason(exc)}; is it an mqtt:// port?): check {flag}"


def _refused_certificate(url: str, exc: ssl.SSLError) -> str:
    why = _ssl_reason(exc)
    if "certificate required" in why:
        return f"the MQTT broker at {url} requires a client certificate ({why}): give {CERT_FLAG} and {KEY_FLAG}"
    return f"the MQTT broker at {url} refused our TLS connection ({why}): check {CERT_FLAG} and {KEY_FLAG}"


def _ssl_reason(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc).lower().replace("_", " ")


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
