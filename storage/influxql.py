"""Reading back with InfluxQL through ``/query`` (InfluxDB 1.x natively; 2.x and 3.x through the
v1 compatibility API) — the one query language of the API, Grafana and the backtest."""

from __future__ import annotations

from typing import Any

import httpx


class InfluxQLError(RuntimeError):
    """The server answered the query with an error."""


def query(
    url_or_client: str | httpx.Client, q: str, *, db: str | None = None, method: str = "GET"
) -> list[dict[str, Any]]:
    """Run one InfluxQL statement (times as epoch ms); return its series (raise on error)."""
    params = {"q": q, "epoch": "ms"}
    if db:
        params["db"] = db
    if isinstance(url_or_client, httpx.Client):
        resp = url_or_client.request(method, "/query", params=params)
    else:
        resp = httpx.request(method, f"{url_or_client}/query", params=params, timeout=30)
    resp.raise_for_status()
    result = resp.json()["results"][0]
    if "error" in result:
        raise InfluxQLError(f"InfluxQL error for {q!r}: {result['error']}")
    series: list[dict[str, Any]] = result.get("series", [])
    return series
