"""``ioc grafana``: export the dashboards, push them to a Grafana, check their queries on an InfluxDB.

Importing this module is cheap (typer only): the SDK, grafana-client and httpx load when a
command runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from contract.clock import now_ms
from ioc.errors import Commands, blame

app = typer.Typer(
    cls=Commands,
    name="grafana",
    no_args_is_help=True,
    add_completion=False,
    help="Operators' dashboards as code: export the JSON, push it to Grafana, check every query.",
)

_DASHBOARDS = Path("grafana/dashboards")
_GAZETTEER = Path("grafana/gazetteer")


@app.command()
def export(
    out: Annotated[Path, typer.Option(help="folder for the dashboard JSON")] = _DASHBOARDS,
    gazetteer_dir: Annotated[Path, typer.Option(help="folder for the district gazetteer")] = _GAZETTEER,
    check: Annotated[bool, typer.Option("--check", help="write nothing; exit 1 if the files are stale")] = False,
) -> None:
    """Write grafana/dashboards/*.json (and grafana/gazetteer/districts.json) from dashboards/."""
    from dashboards.export import stale, write

    if check:
        problems = stale(out, gazetteer_dir)
        for p in problems:
            typer.echo(f"stale: {p}", err=True)
        if problems:
            typer.echo("run: ioc grafana export", err=True)
            raise typer.Exit(1)
        typer.echo("dashboards are up to date")
        return
    with blame("--out or --gazetteer-dir"):
        written = write(out, gazetteer_dir)
    for path in written:
        typer.echo(f"wrote {path}")


@app.command()
def push(
    url: Annotated[str, typer.Option(envvar="GRAFANA_URL", help="Grafana base URL, e.g. http://127.0.0.1:3000")],
    token: Annotated[
        str, typer.Option(envvar="GRAFANA_TOKEN", help="service-account token (Editor); better from $GRAFANA_TOKEN")
    ],
    timeout: Annotated[float, typer.Option(help="seconds per request")] = 10.0,
) -> None:
    """Upload every dashboard into the folder "Mekong IOC" (created if missing), overwriting by uid."""
    from dashboards.export import dashboards
    from dashboards.push import push as push_all
    from ioc.preflight import grafana_problem, require

    require(grafana_problem(url, flag="--url (GRAFANA_URL)"))
    report = push_all(url, token, dashboards(), timeout=timeout)  # a PushError names what to check
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


@app.command()
def check(
    influx_url: Annotated[str, typer.Option(help="InfluxDB URL http://host:port (v1 /query API)")],
    db: Annotated[str, typer.Option(help="database (InfluxDB 2.x/3.x: the DBRP-mapped name)")] = "ioc",
    last: Annotated[str, typer.Option("--last", help="length of the time range, e.g. 48h, 7d")] = "48h",
    at: Annotated[int | None, typer.Option(help="end of the range, epoch ms (default: now)")] = None,
    username: Annotated[str | None, typer.Option(envvar="INFLUX_USERNAME", help="v1 user")] = None,
    password: Annotated[str | None, typer.Option(envvar="INFLUX_PASSWORD", help="v1 password")] = None,
    token: Annotated[str | None, typer.Option(envvar="INFLUX_TOKEN", help="API token (2.x/3.x)")] = None,
    dashboards_dir: Annotated[Path, typer.Option(help="dashboard JSON to check")] = _DASHBOARDS,
) -> None:
    """Run every variable, annotation and panel query as Grafana would; exit 1 if one fails or is empty."""

    import httpx

    from dashboards.check import run
    from dashboards.interpolate import InterpolationError, TimeRange, duration_ms
    from dashboards.queries import DATASOURCE_MIN_INTERVAL
    from ioc.preflight import influx_problem, require
    from storage.influxql import query

    try:
        now = at if at is not None else now_ms()
        time_range = TimeRange(now - duration_ms(last), now)
    except InterpolationError as exc:
        typer.echo(f"error: --last: {exc}", err=True)
        raise typer.Exit(2) from None
    headers = {"Authorization": f"Token {token}"} if token else {}
    auth = (username, password or "") if username else None
    models = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(dashboards_dir.glob("*.json"))]
    if not models:
        typer.echo(f"error: no dashboard JSON in {dashboards_dir}", err=True)
        raise typer.Exit(2)
    failed = 0
    with httpx.Client(base_url=influx_url, headers=headers, auth=auth, timeout=60) as client:
        require(influx_problem(client, url_flag="--influx-url", db=db, db_flag="--db"))
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
