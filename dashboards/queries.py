"""InfluxQL in Grafana's dashboard JSON: the panel query, the annotation query, the data source.

grafana-foundation-sdk ships no InfluxDB query type, so the two we need are ours, built on the
SDK's own extension points: :class:`InfluxQLQuery` is a ``Dataquery`` variant (a panel target)
and :class:`InfluxAnnotationTarget` an ``AnnotationTarget`` that carries an InfluxQL query.
Every query is raw InfluxQL against the data source :data:`DATASOURCE_UID` (database ``ioc``),
so the dashboards work on InfluxDB 1.x and, through the v1 compatibility API, on 2.x and 3.x.

Grafana fills in, before the query reaches InfluxDB: ``$timeFilter`` (the dashboard's time
range), ``$__interval`` / ``$__interval_ms`` (the panel's resolution), ``${__from}`` /
``${__to}`` (the range's ends, epoch ms) and the template variables (:data:`FILTERS`).
:mod:`dashboards.interpolate` does the same, to run every query outside Grafana.
"""

from __future__ import annotations

from typing import Final, Literal, Self

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard as model

from storage.layout import DEVICE_ID, DISTRICT, PROVINCE, TELEMETRY_MEASUREMENTS

DATASOURCE_UID: Final = "ioc-influxdb"
"""The provisioned InfluxDB data source (grafana/provisioning/datasources/ioc.yaml)."""

DATASOURCE_TYPE: Final = "influxdb"

DATASOURCE_DB: Final = "ioc"

DATASOURCE_MIN_INTERVAL: Final = "1m"
"""The data source's minimum ``$__interval`` (``jsonData.timeInterval``): devices report every few minutes."""

KINDS: Final = tuple(f'"{m}"' for m in TELEMETRY_MEASUREMENTS)
"""The four kind measurements, quoted, for ``FROM`` lists."""

TAG_OF_VARIABLE: Final = {"province": PROVINCE, "district": DISTRICT, "device": DEVICE_ID}
"""Dashboard variable → the tag it filters."""

FILTERS: Final = " AND ".join(f'"{tag}" =~ /^${{{var}:regex}}$/' for var, tag in TAG_OF_VARIABLE.items())
"""The template-variable filter every panel query carries: province, district and device."""

ResultFormat = Literal["time_series", "table"]


def datasource() -> model.DataSourceRef:
    """A reference to the provisioned InfluxDB data source."""
    return model.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)


def where(*conditions: str, time: str = "$timeFilter") -> str:
    """``WHERE`` with the variable filters, ``conditions`` and the time condition (skip: ``""``)."""
    parts = [*conditions, FILTERS]
    if time:
        parts.append(time)
    return "WHERE " + " AND ".join(parts)


def lookback(days: int) -> str:
    """A time condition for "latest state" queries: ``days`` back from the end of the range."""
    return f"time > ${{__to}}ms - {days}d AND time <= ${{__to}}ms"


class InfluxQLQuery(cogvariants.Dataquery):
    """A raw InfluxQL panel target (the InfluxDB data source's ``rawQuery`` mode)."""

    def __init__(self, query: str, *, ref_id: str, result_format: ResultFormat, alias: str | None) -> None:
        self.query = query
        self.ref_id = ref_id
        self.result_format = result_format
        self.alias = alias

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": datasource(),
            "query": self.query,
            "rawQuery": True,
            "resultFormat": self.result_format,
        }
        if self.alias is not None:
            payload["alias"] = self.alias
        return payload


class InfluxQL(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builds an :class:`InfluxQLQuery`: ``InfluxQL("SELECT …").ref_id("B").table()``."""

    def __init__(self, query: str) -> None:
        self._query = InfluxQLQuery(query.strip(), ref_id="A", result_format="time_series", alias=None)

    def build(self) -> InfluxQLQuery:
        return self._query

    def ref_id(self, ref_id: str) -> Self:
        self._query.ref_id = ref_id
        return self

    def table(self) -> Self:
        """Rows, tags as columns (Grafana's "Table" format) instead of one series per group."""
        self._query.result_format = "table"
        return self

    def alias(self, alias: str) -> Self:
        """Series name pattern: ``$tag_<key>``, ``$measurement``, ``$col``."""
        self._query.alias = alias
        return self


class InfluxAnnotationTarget(model.AnnotationTarget):
    """An annotation query on InfluxDB: rows of an InfluxQL query become events on the graphs."""

    def __init__(self, query: str, *, text_column: str, tags_columns: tuple[str, ...]) -> None:
        super().__init__()
        self.query = query
        self.text_column = text_column
        self.tags_columns = tags_columns

    def to_json(self) -> dict[str, object]:
        return {
            "refId": "Anno",
            "query": self.query,
            "rawQuery": True,
            "queryType": "tags",
            "fromAnnotations": True,
            "textColumn": self.text_column,
            "tagsColumn": ",".join(self.tags_columns),
            "titleColumn": "",
            "timeEndColumn": "",
        }


class AnnotationTarget(cogbuilder.Builder[model.AnnotationTarget]):
    """Builds an :class:`InfluxAnnotationTarget`."""

    def __init__(self, query: str, *, text_column: str, tags_columns: tuple[str, ...]) -> None:
        self._target = InfluxAnnotationTarget(query.strip(), text_column=text_column, tags_columns=tags_columns)

    def build(self) -> InfluxAnnotationTarget:
        return self._target


def annotation(
    name: str, query: str, *, color: str, text_column: str, tags_columns: tuple[str, ...]
) -> dash.AnnotationQuery:
    """A dashboard annotation from InfluxDB (shown on every time-series panel)."""
    return (
        dash.AnnotationQuery()
        .name(name)
        .datasource(datasource())
        .enable(True)
        .icon_color(color)
        .target(AnnotationTarget(query, text_column=text_column, tags_columns=tags_columns))
    )
