"""Every query of every committed dashboard, as Grafana sends it, against a real InfluxDB holding 48 h
of a simulated fleet stored by ingest with rules on (the ``simulated_data`` fixture, read only).

Grafana's macros and variables are filled in by :mod:`dashboards.interpolate` the way Grafana
does (``$timeFilter``, ``$__interval``, ``${__to}``, ``${province:regex}`` …), the variables are
resolved in chain from their own ``SHOW TAG VALUES`` queries ("All" = every value found), and the
queries go to the fixture's database instead of ``ioc``. Each must answer with rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from contract.fields import Kind
from dashboards.check import Runner, queries, run
from dashboards.cli import app
from dashboards.geography import districts
from dashboards.interpolate import TimeRange, interpolate, interval_ms
from dashboards.queries import DATASOURCE_MIN_INTERVAL
from dashboards.water import NH3_EXPRESSION
from ioc.servers import InfluxServer
from rules.derived import nh3_mg_l
from storage.influxql import query
from tests.conftest import SimulatedData

DASHBOARDS = Path(__file__).resolve().parents[2] / "grafana" / "dashboards"
UIDS = ["ioc-overview", "ioc-salinity", "ioc-water", "ioc-traps", "ioc-cameras"]


def _model(uid: str) -> dict[str, Any]:
    model: dict[str, Any] = json.loads((DASHBOARDS / f"{uid}.json").read_text(encoding="utf-8"))
    return model


def _range(data: SimulatedData) -> TimeRange:
    """Grafana opened a minute after the data was written ("now"), looking back over the whole of it."""
    return TimeRange(data.start_ms, data.end_ms + 60_000)


def _runner(data: SimulatedData) -> Runner:
    return lambda q: query(data.influx_url, q, db=data.db, method="POST")


def test_the_committed_dashboards_are_all_checked() -> None:
    assert sorted(p.stem for p in DASHBOARDS.glob("*.json")) == sorted(UIDS)


@pytest.mark.parametrize("uid", UIDS)
def test_every_query_returns_rows(simulated_data: SimulatedData, uid: str) -> None:
    model = _model(uid)
    results = run(model, _runner(simulated_data), _range(simulated_data), min_interval=DATASOURCE_MIN_INTERVAL)
    assert len(results) == len(queries(model))
    assert {r.query.source for r in results} == {"variable", "annotation", "panel"}
    bad = [f"{r.query}: {r.error or 'no rows'}\n    {r.sent}" for r in results if not r.ok]
    assert not bad, "\n".join(bad)


def test_variables_narrow_in_chain(simulated_data: SimulatedData) -> None:
    fleet = simulated_data.fleet.devices
    salinity = [d for d in fleet if d.kind == Kind.SALINITY]
    province = sorted({d.province for d in salinity})[0]
    model = _model("ioc-salinity")
    results = run(
        model,
        _runner(simulated_data),
        _range(simulated_data),
        selected={"province": [province]},
        min_interval=DATASOURCE_MIN_INTERVAL,
    )
    by_name = {r.query.name: r for r in results if r.query.source == "variable"}
    assert by_name["district"].sent.endswith(f'WHERE "province" =~ /^{province}$/')
    assert f'"province" =~ /^{province}$/' in by_name["device"].sent
    sent_device = by_name["device"].sent
    stations = {d.id for d in salinity if d.province == province}
    assert by_name["device"].rows == len(stations), sent_device
    panels = [r for r in results if r.query.source == "panel"]
    assert all(r.error is None for r in results), [r.error for r in results if r.error]
    assert all(r.rows > 0 for r in panels), [str(r.query) for r in panels if not r.rows]
    other = {d.id for d in fleet if d.province != province}
    assert not any(f"|{o}|" in f"|{sent_device}|" for o in other)


def test_derived_nh3_is_the_rule_engines(simulated_data: SimulatedData) -> None:
    q = (
        f'SELECT "nh4_mg_l", "ph", "temp_c", {NH3_EXPRESSION} AS "nh3" FROM "water_quality" '
        f"WHERE \"site\" = 'pond' AND $timeFilter LIMIT 200"
    )
    rng = _range(simulated_data)
    sent = interpolate(q, time_range=rng, interval=interval_ms(rng), variables={})
    (series,) = query(simulated_data.influx_url, sent, db=simulated_data.db)
    rows = np.array([row[1:] for row in series["values"]], dtype=float)
    assert len(rows) > 10
    np.testing.assert_allclose(rows[:, 3], nh3_mg_l(rows[:, 0], rows[:, 1], rows[:, 2]), rtol=1e-9)


def test_every_salinity_district_has_its_place_in_the_inland_order(simulated_data: SimulatedData) -> None:
    """Stations of a district missing from contract/geography.py would sort after all the others."""
    series = query(
        simulated_data.influx_url, 'SHOW TAG VALUES FROM "salinity" WITH KEY = "district"', db=simulated_data.db
    )
    in_data = {row[1] for s in series for row in s["values"]}
    assert in_data
    assert in_data <= {d.slug for _, d in districts()}


def test_cli_check_on_the_simulated_fleet(simulated_data: SimulatedData) -> None:
    end = simulated_data.end_ms + 60_000
    result = CliRunner().invoke(
        app,
        [
            "check",
            "--influx-url",
            simulated_data.influx_url,
            "--db",
            simulated_data.db,
            "--last",
            "48h",
            "--at",
            str(end),
            "--dashboards-dir",
            str(DASHBOARDS),
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == sum(len(queries(_model(uid))) for uid in UIDS)
    assert all(line.startswith("ok") for line in lines)


def test_cli_check_fails_on_an_empty_database(influxd: InfluxServer, influx_db: str) -> None:
    result = CliRunner().invoke(
        app, ["check", "--influx-url", influxd.url, "--db", influx_db, "--dashboards-dir", str(DASHBOARDS)]
    )
    assert result.exit_code == 1
    assert "failed or returned nothing" in result.output
