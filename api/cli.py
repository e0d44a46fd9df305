"""``ioc api``: serve the operators' API; ``ioc api keys …``: manage its API keys.

Only ``typer`` is imported here at module level; FastAPI, uvicorn and the rest load when a command
runs, and the server is started from the factory string ``api.main:create_app``. The ``ioc``
command mounts this app lazily (``app.add_typer(api.cli.app, name="api")`` inside a function).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ioc.errors import Commands, UserError, blame, load_settings

if TYPE_CHECKING:
    from api.config import ApiSettings
    from api.keys import KeyStore

app = typer.Typer(
    cls=Commands,
    name="api",
    add_completion=False,
    invoke_without_command=True,
    help="The operators' HTTP API (FastAPI): `ioc api` serves it; `ioc api keys` manages its keys.",
)
keys_app = typer.Typer(cls=Commands, no_args_is_help=True, add_completion=False, help="API keys: create, list, revoke.")
app.add_typer(keys_app, name="keys")

Opt = typer.Option
Db = Annotated[
    str | None, Opt("--db", help="alert store, a SQLite file or postgresql://…, where the keys live [IOC_ALERTS_DB]")
]


_FLAGS = {"api_host": "--host", "api_port": "--port", "api_log_level": "--log-level", "alerts_db": "--db"}


def _settings(**options: Any) -> ApiSettings:
    from api.config import ApiSettings

    return load_settings(ApiSettings, flags=_FLAGS, **options)


@contextmanager
def _keys(db: str | None) -> Iterator[KeyStore]:
    from alerts.errors import StoreError
    from api.keys import KeyStore

    settings = _settings(alerts_db=db)
    with blame(f"--db (IOC_ALERTS_DB) {settings.alerts_db}", StoreError):
        store = KeyStore(settings.alerts_db)
    with closing(store):
        yield store


@app.callback()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, Opt(help="listen address [IOC_API_HOST]")] = None,
    port: Annotated[int | None, Opt(help="listen port [IOC_API_PORT]")] = None,
    log_level: Annotated[
        str | None, Opt(help="uvicorn log level: critical, error, warning, info, debug, trace [IOC_API_LOG_LEVEL]")
    ] = None,
) -> None:
    """Serve the API until SIGTERM/SIGINT (settings from IOC_* variables; see docs/api.md)."""
    if ctx.invoked_subcommand is not None:
        return
    import httpx
    import uvicorn

    from alerts.errors import AlertsError
    from api.feed import StreamingServer
    from api.serve import GRACEFUL_SHUTDOWN_S
    from api.services import Services
    from ioc.preflight import influx_problem, listen

    settings = _settings(api_host=host, api_port=port, api_log_level=log_level)
    with blame(f"IOC_ALERTS_DB {settings.alerts_db}", AlertsError):  # a bad fleet or pack names its file
        Services.open(settings).close()
    sock = listen(
        settings.api_host, settings.api_port, host_flag="--host (IOC_API_HOST)", port_flag="--port (IOC_API_PORT)"
    )
    with httpx.Client(base_url=settings.influx_url) as client:
        if problem := influx_problem(client, url_flag="IOC_INFLUX_URL"):
            typer.echo(f"warning: {problem} — the API answers 503 until it is there", err=True)
    if host is not None:
        os.environ["IOC_API_HOST"] = host
    if port is not None:
        os.environ["IOC_API_PORT"] = str(port)
    config = uvicorn.Config(
        "api.main:create_app",
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.api_log_level,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,  # a client that stopped reading cannot hold up Ctrl-C
    )
    url = f"http://{settings.api_host}:{settings.api_port}"
    typer.echo(f"ioc api: {url} (alert desk at /, docs at /docs) — Ctrl-C stops", err=True)
    with sock:  # bound here, so a port in use is one line, not uvicorn's exit
        StreamingServer(config).run(sockets=[sock])  # ends the live streams on shutdown


@keys_app.command("create")
def create(
    scope: Annotated[str, Opt(help="read, operate or admin")],
    name: Annotated[str, Opt(help="who uses it (recorded when they acknowledge an alert)")] = "operator",
    province: Annotated[list[str] | None, Opt(help="limit the key to this province (repeatable)")] = None,
    db: Db = None,
    as_json: Annotated[bool, Opt("--json", help="print JSON")] = False,
) -> None:
    """Create an API key and print it — the only time it is shown (only its SHA-256 is stored)."""
    from api.keys import Scope

    if scope not in {s.value for s in Scope}:
        raise UserError(f"--scope must be read, operate or admin, got {scope!r}")
    with _keys(db) as store:
        try:
            key, token = store.create(name, scope, provinces=province, created_by="ioc api keys create")
        except ValueError as exc:
            raise UserError(str(exc)) from exc
    if as_json:
        areas = sorted(key.provinces)
        typer.echo(
            json.dumps({"id": key.id, "name": key.name, "scope": key.scope.value, "provinces": areas, "key": token})
        )
        return
    typer.echo(f"created {key.id} ({key.scope.value}, {', '.join(sorted(key.provinces)) or 'all provinces'})", err=True)
    typer.echo(token)


@keys_app.command("list")
def list_keys(
    include_revoked: Annotated[bool, Opt("--all", help="also revoked keys")] = False,
    db: Db = None,
    as_json: Annotated[bool, Opt("--json", help="print JSON")] = False,
) -> None:
    """List API keys (their first characters only)."""
    from api.times import iso_or_none

    with _keys(db) as store:
        keys = store.list_keys(include_revoked=include_revoked)
    if as_json:
        rows = [
            {"id": k.id, "name": k.name, "scope": k.scope.value, "provinces": sorted(k.provinces), "hint": k.hint,
             "last_used_at": iso_or_none(k.last_used_at_ms), "revoked_at": iso_or_none(k.revoked_at_ms)}
            for k in keys
        ]  # fmt: skip
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    if not keys:
        typer.echo("no API keys (create one with: ioc api keys create --scope admin)")
        return
    for k in keys:
        state = f"  REVOKED {iso_or_none(k.revoked_at_ms)}" if k.revoked_at_ms is not None else ""
        areas = ",".join(sorted(k.provinces)) or "all"
        typer.echo(f"{k.id}  {k.scope.value:<7}  {k.hint}  provinces={areas}  {k.name}{state}")


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="key id (key_…)")], db: Db = None) -> None:
    """Revoke an API key at once (never the last active admin key: create another one first)."""
    with _keys(db) as store:
        store.revoke(key_id)  # NotFound and LastAdminKey print as one line
    typer.echo(f"revoked {key_id}")
