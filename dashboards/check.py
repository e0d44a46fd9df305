"""Run every query of a dashboard against an InfluxDB, as Grafana would: variables, annotations, panels.

The variables are resolved in order, each query interpolated with the ones before it (the chain
province → district → device), every variable set to "All" unless a selection is given. Then the
annotation queries and every panel target run with those values, over the dashboard time range
or the panel's own relative range (``timeFrom``). A query that fails or returns no rows is a
finding: ``ioc grafana check`` after a deployment, and the integration test on simulated data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from dashboards.interpolate import InterpolationError, TimeRange, interpolate, interval_ms

Runner = Callable[[str], list[dict[str, Any]]]
"""Runs one InfluxQL statement against the dashboards' database; returns its series."""

Source = Literal["variable", "annotation", "panel"]


@dataclass(frozen=True, slots=True)
class Query:
    """One query of a dashboard, as written in its JSON."""

    dashboard: str
    source: Source
    name: str
    text: str
    time_from: str | None = None
    min_interval: str | None = None

    def __str__(self) -> str:
        return f"{self.dashboard} {self.source} {self.name}"


@dataclass(frozen=True, slots=True)
class Result:
    query: Query
    sent: str
    rows: int
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.rows > 0


def _panels(panels: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])


def queries(model: Mapping[str, Any]) -> list[Query]:
    """Every InfluxQL query of a dashboard: variables (in order), annotations, panel targets."""
    uid = str(model["uid"])
    found = [
        Query(uid, "variable", str(v["name"]), str(v["query"]))
        for v in (model.get("templating") or {}).get("list", [])
        if v.get("type") == "query"
    ]
    for a in (model.get("annotations") or {}).get("list", []):
        target = a.get("target") or {}
        if "query" in target:
            found.append(Query(uid, "annotation", str(a["name"]), str(target["query"])))
    for panel in _panels(model.get("panels") or []):
        for target in panel.get("targets") or []:
            if "query" in target:
                found.append(
                    Query(
                        uid,
                        "panel",
                        f"{panel.get('id')} {panel.get('title', '')!r} {target.get('refId', '')}",
                        str(target["query"]),
                        time_from=panel.get("timeFrom"),
                        min_interval=panel.get("interval"),
                    )
                )
    return found


def _rows(series: list[dict[str, Any]]) -> int:
    return sum(len(s.get("values") or []) for s in series)


def tag_values(series: list[dict[str, Any]]) -> list[str]:
    """The values of a ``SHOW TAG VALUES`` answer (one series per measurement), sorted, unique."""
    return sorted({str(row[1]) for s in series for row in s.get("values") or []})


def run(
    model: Mapping[str, Any],
    runner: Runner,
    time_range: TimeRange,
    *,
    selected: Mapping[str, Sequence[str]] | None = None,
    min_interval: str | None = None,
) -> list[Result]:
    """Every query of ``model``, interpolated and run; variables "All" unless ``selected``."""
    values: dict[str, list[str]] = {}
    results: list[Result] = []
    chosen = selected or {}

    def execute(q: Query) -> tuple[Result, list[dict[str, Any]]]:
        rng = time_range.last(q.time_from) if q.time_from else time_range
        try:
            sent = interpolate(
                q.text,
                time_range=rng,
                interval=interval_ms(rng, min_interval=q.min_interval or min_interval),
                variables=values,
            )
        except InterpolationError as exc:
            return Result(q, q.text, 0, str(exc)), []
        try:
            series = runner(sent)
        except Exception as exc:  # the runner's errors are findings, whatever their type
            return Result(q, sent, 0, f"{type(exc).__name__}: {exc}"), []
        return Result(q, sent, _rows(series)), series

    for q in queries(model):
        result, series = execute(q)
        results.append(result)
        if q.source == "variable":
            found = tag_values(series)
            values[q.name] = [v for v in chosen[q.name] if v in found] if q.name in chosen else found
    return results
