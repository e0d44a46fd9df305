"""Reading InfluxDB for the API: InfluxQL built from checked parts only, run through ``/query``.

User text never reaches a statement as is: device ids must be in the fleet registry, fields in
the contract's table for the device's kind, tag values in the registry, durations and times are
parsed to integers, and ``every`` is one of :data:`EVERY`. Identifiers and strings are escaped
anyway (:func:`ident`, :func:`literal`), so a check missed somewhere still cannot change a
statement's meaning.

History buckets are cut at local midnight (UTC+7), as the Grafana dashboards' ``GROUP BY time(1d,
17h)`` are: a ``1d`` bucket is a Mekong Delta calendar day (:func:`group_by_time`).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from api.times import DELTA_MS
from contract.fields import Kind
from storage.influxql import query
from storage.layout import DEVICE_ID, EVENT

Every = Literal["1m", "5m", "15m", "1h", "6h", "1d"]
EVERY: Final = get_args(Every)
EVERY_MS: Final = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000, "6h": 21_600_000, "1d": 86_400_000}


def duration(ms: int) -> str:
    """An InfluxQL duration literal: ``17h``, ``90m``, ``1500ms`` (the largest whole unit)."""
    _int(ms)
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def local_offset_ms(every: str) -> int:
    """How far past a UTC multiple of ``every`` its buckets start, so that local (UTC+7) midnight is a boundary.

    InfluxQL cuts ``time(every)`` buckets at multiples of ``every`` since the epoch, a UTC midnight; an
    offset of −7 h, taken modulo ``every``, moves the cuts to local midnight: 17 h for ``1d``, 5 h for
    ``6h`` (00:00, 06:00, 12:00, 18:00 local), none for ``1h`` and finer (7 h is a whole number of them).
    """
    return -DELTA_MS % EVERY_MS[every]


def group_by_time(every: str) -> str:
    """``time(1d, 17h)``: ``every`` buckets starting at local midnight (``time(1h)`` when no offset is needed)."""
    if every not in EVERY:
        raise ValueError(f"every must be one of {', '.join(EVERY)}")
    offset = local_offset_ms(every)
    return f"time({every}, {duration(offset)})" if offset else f"time({every})"


def ident(name: str) -> str:
    """An InfluxQL identifier, double-quoted and escaped."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal(value: str) -> str:
    """An InfluxQL string literal, single-quoted and escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _int(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def time_range(start_ms: int | None, end_ms: int | None = None) -> list[str]:
    """``time >= …ms AND time < …ms`` conditions (integers only)."""
    out = []
    if start_ms is not None:
        out.append(f"time >= {_int(start_ms)}ms")
    if end_ms is not None:
        out.append(f"time < {_int(end_ms)}ms")
    return out


def tags_equal(tags: Mapping[str, str | None]) -> list[str]:
    """``"tag" = 'value'`` for each given tag."""
    return [f"{ident(k)} = {literal(v)}" for k, v in tags.items() if v is not None]


def any_of(tag: str, values: Iterable[str]) -> str:
    """``("tag" = 'a' OR "tag" = 'b')``."""
    parts = [f"{ident(tag)} = {literal(v)}" for v in sorted(set(values))]
    if not parts:
        raise ValueError(f"any_of({tag!r}) needs at least one value")
    return "(" + " OR ".join(parts) + ")"


def _where(conditions: list[str]) -> str:
    return (" WHERE " + " AND ".join(conditions)) if conditions else ""


def _from(measurements: Iterable[str]) -> str:
    return ",".join(ident(m) for m in measurements)


def history_query(kind: str, device_id: str, field: str, start_ms: int, end_ms: int, every: str) -> str:
    """Mean, min, max and count of one field of one device per ``every`` bucket in [start, end).

    Buckets start at local midnight (UTC+7) and every ``every`` after it (:func:`group_by_time`).
    """
    group = group_by_time(every)
    f = ident(field)
    conditions = [*tags_equal({DEVICE_ID: device_id}), *time_range(start_ms, end_ms)]
    return (
        f"SELECT mean({f}) AS {ident('mean')}, min({f}) AS {ident('min')}, max({f}) AS {ident('max')},"
        f" count({f}) AS {ident('count')} FROM {ident(kind)}{_where(conditions)} GROUP BY {group} fill(none)"
    )


def latest_query(kind: str, since_ms: int, tags: Mapping[str, str | None], devices: Iterable[str] | None = None) -> str:
    """Each device's newest telemetry row of one kind since ``since_ms`` (camera events left out)."""
    conditions = [*time_range(since_ms), *tags_equal(tags)]
    if devices is not None:
        conditions.append(any_of(DEVICE_ID, devices))
    if kind == Kind.CAMERA.value:
        conditions.append(f"{ident(EVENT)} = ''")  # telemetry rows have no event tag
    return f"SELECT * FROM {ident(kind)}{_where(conditions)} GROUP BY {ident(DEVICE_ID)} ORDER BY time DESC LIMIT 1"


def last_query(field: str, measurements: Iterable[str], since_ms: int, devices: Iterable[str] | None = None) -> str:
    """``last(field)`` per device and measurement since ``since_ms`` (its time is the point's time)."""
    conditions = time_range(since_ms)
    if devices is not None:
        conditions.append(any_of(DEVICE_ID, devices))
    return f"SELECT last({ident(field)}) FROM {_from(measurements)}{_where(conditions)} GROUP BY {ident(DEVICE_ID)}"


def rows(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """InfluxQL series → one dict per row, with the series' tags merged in."""
    out = []
    for s in series:
        tags = s.get("tags") or {}
        columns = s["columns"]
        for values in s.get("values") or ():
            row = dict(zip(columns, values, strict=True))
            row.update(tags)
            out.append(row)
    return out


def newest_by_device(series: list[dict[str, Any]], column: str = "last") -> dict[str, tuple[int, Any]]:
    """device id → (time, value) of the newest row over every series (e.g. several measurements)."""
    best: dict[str, tuple[int, Any]] = {}
    for row in rows(series):
        device, t, value = row.get(DEVICE_ID), row.get("time"), row.get(column)
        if not isinstance(device, str) or not isinstance(t, int) or value is None:
            continue
        if device not in best or t > best[device][0]:
            best[device] = (t, value)
    return best


@dataclass(frozen=True, slots=True)
class Bucket:
    """One ``every`` bucket of a history."""

    time_ms: int
    mean: float | None
    min: float | None
    max: float | None
    count: int


class Influx:
    """The API's InfluxDB connection: one pooled client, InfluxQL through ``/query``."""

    def __init__(
        self,
        url: str,
        db: str,
        *,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 30.0,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        auth = httpx.BasicAuth(username, password or "") if username else None
        self._client = httpx.Client(base_url=url, auth=auth, timeout=timeout_s, trust_env=False, verify=verify)
        self._db = db
        self._username = username
        self._password = password
        self.url = url

    def url_with_credentials(self) -> str:
        """The URL with the v1 user and password in it, for code that makes its own client (the backtest)."""
        if not self._username:
            return self.url
        parts = urlsplit(self.url)
        userinfo = quote(self._username, safe="") + ":" + quote(self._password or "", safe="")
        return urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}"))

    def close(self) -> None:
        self._client.close()

    def query(self, statement: str) -> list[dict[str, Any]]:
        """Run one statement; its series (raises httpx errors and ``InfluxQLError``)."""
        return query(self._client, statement, db=self._db)

    def history(self, kind: str, device_id: str, field: str, start_ms: int, end_ms: int, every: str) -> list[Bucket]:
        out = []
        for row in rows(self.query(history_query(kind, device_id, field, start_ms, end_ms, every))):
            out.append(
                Bucket(int(row["time"]), row.get("mean"), row.get("min"), row.get("max"), int(row["count"] or 0))
            )
        return out

    def latest(
        self, kind: str, since_ms: int, tags: Mapping[str, str | None], devices: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        return rows(self.query(latest_query(kind, since_ms, tags, devices)))

    def last(
        self, field: str, measurements: Iterable[str], since_ms: int, devices: Iterable[str] | None = None
    ) -> dict[str, tuple[int, Any]]:
        return newest_by_device(self.query(last_query(field, measurements, since_ms, devices)))
