"""``ioc grafana``: export the dashboards, push them to a Grafana, check their queries on an InfluxDB.

Importing this module is cheap (typer and the settings classes): the SDK, grafana-client and httpx
load when a command runs. Every option has its ``IOC_*`` variable (a flag overrides it): Grafana's
are ``IOC_GRAFANA_*``, InfluxDB's those ``ioc ingest`` and ``ioc api`` read (``IOC_INFLUX_*``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.clock import now_ms
from contract.settings import Folder, InfluxConnection, Secret, Text
from ioc.errors import Commands, UserError, blame, load_settings

app = typer.Typer(
    cls=Commands,
    name="grafana",
    no_args_is_help=True,
    add_completion=False,
    help="Operators' dashboards as code: export the JSON, push it to Grafana, check every query.",
)


class DashboardsDir(BaseSettings):
    """Where the dashboard JSON lives (``ioc grafana export`` writes it, ``check`` reads it)."""

    grafana_dashboards_dir: Folder = Field(
        Path("grafana/dashboards"), description="the dashboard JSON: written by ioc grafana export, read by check"
    )


class GrafanaExportSettings(DashboardsDir):
    """Settings of ``ioc grafana export``."""

    model_config = SettingsConfigDict(env_prefix="IOC_", env_file=".env", extra="ignore")

    grafana_gazetteer_dir: Folder = Field(
        Path("grafana/gazetteer"), description="the district gazetteer (districts.json), written by ioc grafana export"
    )


class GrafanaPushSettings(BaseSettings):
    """Settings of ``ioc grafana push``: the Grafana the dashboards go to."""

    model_config = SettingsConfigDict(env_prefix="IOC_", env_file=".env", extra="ignore", hide_input_in_errors=True)

    grafana_url: str | None = Field(None, description="Grafana base URL, http(s)://host:port (ioc grafana push)")
    grafana_token: Secret | None = Field(
        None, description="a Grafana service-account token with the Editor role (ioc grafana push)"
    )
    grafana_timeout_s: float = Field(10.0, gt=0, le=300, description="seconds per request to Grafana")

    @field_validator("grafana_url")
    @classmethod
    def _grafana_url(cls, v: str | None) -> str | None:
        if v is not None:
            parts = urlsplit(v)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"Grafana URL must look like http://host:port, got {v!r}")
        return v


class GrafanaCheckSettings(DashboardsDir, InfluxConnection):
    """Settings of ``ioc grafana check``: the InfluxDB the queries run on (v1 /query API), and the range."""

    model_config = SettingsConfigDict(env_prefix="IOC_", env_file=".env", extra="ignore", hide_input_in_errors=True)

    influx_db: Text = Field("ioc", min_length=1, description="database (v1; on 2.x/3.x the DBRP-mapped name)")
    influx_token: Secret | None = Field(None, description="API token (v2)")
    grafana_check_last: str = Field("48h", description="ioc grafana check: the time range's length, e.g. 48h, 7d")
    grafana_check_at: int | None = Field(
        None, ge=0, description="ioc grafana check: the time range's end, epoch ms (default: now)"
    )

    @field_validator("grafana_check_last")
    @classmethod
    def _duration(cls, v: str) -> str:
        from dashboards.interpolate import duration_ms

        duration_ms(v)  # an InterpolationError is a ValueError
        return v


@app.command()
def export(
    out: Annotated[Path | None, typer.Option(help="folder for the dashboard JSON [IOC_GRAFANA_DASHBOARDS_DIR]")] = None,
    gazetteer_dir: Annotated[
        Path | None, typer.Option(help="folder for the district gazetteer [IOC_GRAFANA_GAZETTEER_DIR]")
    ] = None,
    check: Annotated[bool, typer.Option("--check", help="write nothing; exit 1 if the files are stale")] = False,
) -> None:
    """Write grafana/dashboards/*.json (and grafana/gazetteer/districts.json) from dashboards/."""
    from dashboards.export import stale, write

    flags = {"grafana_dashboards_dir": "--out", "grafana_gazetteer_dir": "--gazetteer-dir"}
    s = load_settings(
        GrafanaExportSettings, flags=flags, grafana_dashboards_dir=out, grafana_gazetteer_dir=gazetteer_dir
    )
    if check:
        problems = stale(s.grafana_dashboards_dir, s.grafana_gazetteer_dir)
        for p in problems:
            typer.echo(f"stale: {p}", err=True)
        if problems:
            typer.echo("run: ioc grafana export", err=True)
            raise typer.Exit(1)
        typer.echo("dashboards are up to date")
        return
    with blame("--out (IOC_GRAFANA_DASHBOARDS_DIR) or --gazetteer-dir (IOC_GRAFANA_GAZETTEER_DIR)"):
        written = write(s.grafana_dashboards_dir, s.grafana_gazetteer_dir)
    for path in written:
        typer.echo(f"wrote {path}")


@app.command()
def push(
    url: Annotated[
        str | None, typer.Option(help="Grafana base URL, e.g. http://127.0.0.1:3000 [IOC_GRAFANA_URL]")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(help="service-account token (Editor); better from the variable than here [IOC_GRAFANA_TOKEN]"),
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="seconds per request [IOC_GRAFANA_TIMEOUT_S]")] = None,
) -> None:
    """Upload every dashboard into the folder "Mekong IOC" (created if missing), overwriting by uid."""
    from dashboards.export import dashboards
    from dashboards.push import push as push_all
    from ioc.preflight import grafana_problem, require

    flags = {"grafana_url": "--url", "grafana_token": "--token", "grafana_timeout_s": "--timeout"}
    s = load_settings(GrafanaPushSettings, flags=flags, grafana_url=url, grafana_token=token, grafana_timeout_s=timeout)
    if s.grafana_url is None:
        raise UserError("no Grafana to push to: give --url (IOC_GRAFANA_URL)")
    if s.grafana_token is None:
        raise UserError("no Grafana token: give --token (IOC_GRAFANA_TOKEN), a service-account token (Editor)")
    require(grafana_problem(s.grafana_url, flag="--url (IOC_GRAFANA_URL)"))
    report = push_all(  # a PushError names what to check
        s.grafana_url, s.grafana_token.get_secret_value(), dashboards(), timeout=s.grafana_timeout_s
    )
    if report.folder_created:
        typer.echo("created folder Mekong IOC")
    for uid, link in report.saved:
        typer.echo(f"saved {uid} {link}")
    if not report.datasource_found:
        typer.echo(
            "warning: Grafana has no data source with uid ioc-influxdb: the panels will not load until one exists "
            "(see grafana/provisioning/datasources/ioc.yaml)",
            err=True,
        )


_CHECK_FLAGS = {
    "influx_url": "--influx-url", "influx_db": "--db", "influx_username": "--username", "influx_password": "--password",
    "influx_token": "--token", "influx_ca_file": "--influx-ca-file", "grafana_dashboards_dir": "--dashboards-dir",
    "grafana_check_last": "--last", "grafana_check_at": "--at",
}  # fmt: skip


@app.command()
def check(
    influx_url: Annotated[
        str | None, typer.Option(help="InfluxDB URL http(s)://host:port (v1 /query API) [IOC_INFLUX_URL]")
    ] = None,
    db: Annotated[
        str | None, typer.Option(help="database (InfluxDB 2.x/3.x: the DBRP-mapped name) [IOC_INFLUX_DB]")
    ] = None,
    last: Annotated[
        str | None, typer.Option("--last", help="length of the time range, e.g. 48h, 7d [IOC_GRAFANA_CHECK_LAST]")
    ] = None,
    at: Annotated[
        int | None, typer.Option(help="end of the range, epoch ms (default: now) [IOC_GRAFANA_CHECK_AT]")
    ] = None,
    username: Annotated[str | None, typer.Option(help="v1 user [IOC_INFLUX_USERNAME]")] = None,
    password: Annotated[str | None, typer.Option(help="v1 password [IOC_INFLUX_PASSWORD]")] = None,
    token: Annotated[str | None, typer.Option(help="API token (2.x/3.x) [IOC_INFLUX_TOKEN]")] = None,
    influx_ca_file: Annotated[
        Path | None, typer.Option(help="https: trust this CA (PEM) for InfluxDB's certificate [IOC_INFLUX_CA_FILE]")
    ] = None,
    dashboards_dir: Annotated[
        Path | None, typer.Option(help="dashboard JSON to check [IOC_GRAFANA_DASHBOARDS_DIR]")
    ] = None,
) -> None:
    """Run every variable, annotation and panel query as Grafana would; exit 1 if one fails or is empty."""

    import httpx

    from dashboards.check import run
    from dashboards.interpolate import TimeRange, duration_ms
    from dashboards.queries import DATASOURCE_MIN_INTERVAL
    from ioc.preflight import influx_problem, require
    from storage.influxql import query

    s = load_settings(
        GrafanaCheckSettings, flags=_CHECK_FLAGS, influx_url=influx_url, influx_db=db, influx_username=username,
        influx_password=password, influx_token=token, influx_ca_file=influx_ca_file,
        grafana_dashboards_dir=dashboards_dir, grafana_check_last=last, grafana_check_at=at,
    )  # fmt: skip
    now = s.grafana_check_at if s.grafana_check_at is not None else now_ms()
    time_range = TimeRange(now - duration_ms(s.grafana_check_last), now)
    headers = {"Authorization": f"Token {s.influx_token.get_secret_value()}"} if s.influx_token else {}
    password_text = s.influx_password.get_secret_value() if s.influx_password else ""
    auth = (s.influx_username, password_text) if s.influx_username else None
    folder = s.grafana_dashboards_dir
    with blame("--dashboards-dir (IOC_GRAFANA_DASHBOARDS_DIR)", OSError, ValueError):
        models = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]
    if not models:
        raise UserError(f"no dashboard JSON in {folder}: check --dashboards-dir (IOC_GRAFANA_DASHBOARDS_DIR)")
    failed = 0
    db = s.influx_db
    with httpx.Client(
        base_url=s.influx_url, headers=headers, auth=auth, timeout=60, verify=s.influx_verify()
    ) as client:
        problem = influx_problem(
            client, url_flag="--influx-url (IOC_INFLUX_URL)", db=db, db_flag="--db (IOC_INFLUX_DB)",
            ca_flag="--influx-ca-file (IOC_INFLUX_CA_FILE)",
        )  # fmt: skip
        require(problem)
        for model in models:
            for result in run(
                model,
                lambda q: query(client, q, db=db, method="POST"),
                time_range,
                min_interval=DATASOURCE_MIN_INTERVAL,
            ):
                status = "ok   " if result.ok else ("error" if result.error else "empty")
                failed += not result.ok
                typer.echo(f"{status} {result.rows:7d}  {result.query}" + (f"  {result.error}" if result.error else ""))
    if failed:
        typer.echo(f"{failed} queries failed or returned nothing", err=True)
        raise typer.Exit(1)
