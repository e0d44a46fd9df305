"""The building blocks every IOC dashboard shares: units, panels, variables, annotations, assembly.

Panels are grafana-foundation-sdk builders with our defaults (unit, thresholds, legend). A
dashboard is :func:`board` over a list of rows and panels; :func:`render` turns it into the JSON
Grafana reads, with stable panel ids.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final, Protocol, Self, TypeVar

from grafana_foundation_sdk.builders import barchart, bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from dashboards.queries import InfluxQL, annotation, datasource, where
from dashboards.thresholds import Steps
from storage.layout import (
    ALERTS_MEASUREMENT,
    DEVICE_ID,
    DISTRICT,
    MESSAGE_EN,
    MESSAGE_VI,
    PROVINCE,
    RULE_ID,
    SEVERITY,
    STATE,
)

# --- units (Grafana unit ids; custom ones as "suffix:" / "prefix:") --------------------------------

PPT: Final = "suffix: ‰"
MG_L: Final = "suffix: mg/L"
CELSIUS: Final = "celsius"
PH: Final = "prefix:pH "
COUNT: Final = "short"
PER_MINUTE: Final = "suffix: /min"

SEVERITIES: Final = {
    # label (tag severity), level (field level): text, colour
    "critical": (3, "Khẩn cấp · critical", "red"),
    "warning": (2, "Cảnh báo · warning", "orange"),
    "info": (1, "Thông tin · info", "blue"),
}

Panel = cogbuilder.Builder[model.Panel]
Item = Panel | dash.Row


class _Overridable(Protocol):
    def override_by_name(self, name: str, properties: list[model.DynamicConfigValue]) -> Self: ...


P = TypeVar("P", bound=_Overridable)


class _PanelBuilder(Protocol):
    def title(self, title: str) -> Self: ...
    def description(self, description: str) -> Self: ...
    def datasource(self, datasource: model.DataSourceRef) -> Self: ...
    def targets(self, targets: list[cogbuilder.Builder[cogvariants.Dataquery]]) -> Self: ...
    def unit(self, unit: str) -> Self: ...
    def span(self, w: int) -> Self: ...
    def height(self, h: int) -> Self: ...


B = TypeVar("B", bound=_PanelBuilder)


# --- field config pieces ---------------------------------------------------------------------------


def fixed_color(color: str) -> model.DynamicConfigValue:
    return model.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": color})


def display_name(name: str) -> model.DynamicConfigValue:
    return model.DynamicConfigValue(id_val="displayName", value=name)


def with_names(panel: P, names: dict[str, str]) -> P:
    """Display names for fields (query columns or aliases): ``{"bph": "Rầy nâu · brown planthopper"}``."""
    for field, name in names.items():
        panel = panel.override_by_name(field, [display_name(name)])
    return panel


def unit_of(unit: str) -> model.DynamicConfigValue:
    return model.DynamicConfigValue(id_val="unit", value=unit)


def mapped(mappings: Sequence[model.ValueMapping]) -> model.DynamicConfigValue:
    """Show a field's values through ``mappings`` (slug → name, level → severity)."""
    return model.DynamicConfigValue(id_val="mappings", value=list(mappings))


def text_mappings(texts: dict[str, str]) -> list[model.ValueMapping]:
    """Value → display text (``{"ca_mau": "Cà Mau"}``)."""
    return [
        model.ValueMap(options={v: model.ValueMappingResult(text=t, index=i) for i, (v, t) in enumerate(texts.items())})
    ]


COLOURED_TEXT: Final = model.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"})


def coloured_by(steps: Steps) -> list[model.DynamicConfigValue]:
    """Colour a field (a table cell's text, a marker) by ``steps``."""
    return [
        model.DynamicConfigValue(id_val="thresholds", value=steps.config().build()),
        model.DynamicConfigValue(id_val="color", value={"mode": "thresholds"}),
        COLOURED_TEXT,
    ]


def severity_mappings(*, by_level: bool) -> list[model.ValueMapping]:
    """Severity as text and colour, from the tag (``critical``) or the level (``3``)."""
    options = {
        (str(level) if by_level else label): model.ValueMappingResult(text=text, color=color, index=i)
        for i, (label, (level, text, color)) in enumerate(SEVERITIES.items())
    }
    return [model.ValueMap(options=options)]


def state_mappings() -> list[model.ValueMapping]:
    return [
        model.ValueMap(
            options={
                "firing": model.ValueMappingResult(text="Đang cảnh báo · firing", color="red", index=0),
                "resolved": model.ValueMappingResult(text="Đã hết · resolved", color="green", index=1),
            }
        )
    ]


def _legend(*, table_mode: bool = False) -> cb.VizLegendOptions:
    legend = cb.VizLegendOptions().show_legend(True)
    if table_mode:
        return (
            legend.display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.RIGHT)
            .calcs(["lastNotNull", "max"])
        )
    return legend.display_mode(common.LegendDisplayMode.LIST).placement(common.LegendPlacement.BOTTOM)


# --- panels ----------------------------------------------------------------------------------------


def _panel(
    panel: B, title: str, description: str, queries: Sequence[InfluxQL], *, unit: str | None, w: int, h: int
) -> B:
    """What every panel sets: title, description, the data source and its queries, unit, size."""
    panel = panel.title(title).description(description).datasource(datasource()).targets(list(queries))
    if unit is not None:
        panel = panel.unit(unit)
    return panel.span(w).height(h)


def timeseries_panel(
    title: str,
    description: str,
    queries: Sequence[InfluxQL],
    *,
    unit: str,
    steps: Steps | None = None,
    bars: bool = False,
    stacked: bool = False,
    legend_table: bool = False,
    min_val: float | None = None,
    interval: str | None = None,
    w: int = 12,
    h: int = 9,
) -> timeseries.Panel:
    """A time series; with ``steps``, dashed threshold lines and threshold-coloured series."""
    panel = (
        _panel(timeseries.Panel(), title, description, queries, unit=unit, w=w, h=h)
        .legend(_legend(table_mode=legend_table))
        .tooltip(cb.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING))
        .line_width(1)
        .fill_opacity(80 if bars else 10)
        .draw_style(common.GraphDrawStyle.BARS if bars else common.GraphDrawStyle.LINE)
        .span_nulls(True)
    )
    if stacked:
        panel = panel.stacking(cb.StackingConfig().mode(common.StackingMode.NORMAL))
    if min_val is not None:
        panel = panel.min(min_val)
    if interval:
        panel = panel.interval(interval)
    if steps is not None:
        panel = panel.thresholds(steps.config()).thresholds_style(
            cb.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)
        )
    else:
        panel = panel.thresholds(Steps("green", (), ()).config())
    return panel


def stat_panel(
    title: str,
    description: str,
    queries: Sequence[InfluxQL],
    *,
    unit: str = COUNT,
    steps: Steps | None = None,
    time_from: str | None = None,
    w: int = 6,
    h: int = 5,
) -> stat.Panel:
    panel = (
        _panel(stat.Panel(), title, description, queries, unit=unit, w=w, h=h)
        .thresholds((steps or Steps("green", (), ())).config())
        .color_mode(common.BigValueColorMode.VALUE)
        .graph_mode(common.BigValueGraphMode.NONE)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    if time_from:
        panel = panel.time_from(time_from)
    return panel


def table_panel(
    title: str,
    description: str,
    queries: Sequence[InfluxQL],
    *,
    w: int = 24,
    h: int = 10,
) -> table.Panel:
    return _panel(table.Panel(), title, description, queries, unit=None, w=w, h=h).filterable(True)


def bargauge_panel(
    title: str,
    description: str,
    queries: Sequence[InfluxQL],
    *,
    unit: str,
    steps: Steps,
    fields: str,
    w: int = 12,
    h: int = 12,
) -> bargauge.Panel:
    """Horizontal bars, one per row of the (transformed) data: ``fields`` picks the value column."""
    return (
        _panel(bargauge.Panel(), title, description, queries, unit=unit, w=w, h=h)
        .min(0)
        .thresholds(steps.config())
        .color_scheme(dash.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .orientation(common.VizOrientation.HORIZONTAL)
        .name_placement(common.BarGaugeNamePlacement.LEFT)
        .show_unfilled(True)
        .reduce_options(cb.ReduceDataOptions().values(True).calcs([]).fields(fields))
    )


def barchart_panel(
    title: str,
    description: str,
    queries: Sequence[InfluxQL],
    *,
    x_field: str | None,
    unit: str = COUNT,
    stacked: bool = True,
    w: int = 12,
    h: int = 9,
) -> barchart.Panel:
    """Bars per row of a table; ``x_field`` names the bars (``None``: the first text column)."""
    panel = (
        _panel(barchart.Panel(), title, description, queries, unit=unit, w=w, h=h)
        .stacking(common.StackingMode.NORMAL if stacked else common.StackingMode.NONE)
        .show_value(common.VisibilityMode.AUTO)
        .fill_opacity(80)
        .legend(_legend())
        .thresholds(Steps("green", (), ()).config())
        .x_tick_label_rotation(-45)
    )
    return panel.x_field(x_field) if x_field else panel


def transformation(id_val: str, options: dict[str, Any]) -> model.DataTransformerConfig:
    return model.DataTransformerConfig(id_val=id_val, options=options)


# --- variables and annotations ----------------------------------------------------------------------


def tag_values(tag: str, measurement: str | None, *conditions: str) -> str:
    """``SHOW TAG VALUES`` for a variable, optionally of one measurement and filtered."""
    source = f' FROM "{measurement}"' if measurement else ""
    query = f'SHOW TAG VALUES{source} WITH KEY = "{tag}"'
    if conditions:
        query += " WHERE " + " AND ".join(conditions)
    return query


def variables(measurement: str | None) -> list[dash.QueryVariable]:
    """Province → district → device, chained, each with "All" (every value the query finds)."""
    province = f'"{PROVINCE}" =~ /^${{province:regex}}$/'
    district = f'"{DISTRICT}" =~ /^${{district:regex}}$/'
    specs = [
        ("province", "Tỉnh · Province", tag_values(PROVINCE, measurement)),
        ("district", "Huyện · District", tag_values(DISTRICT, measurement, province)),
        ("device", "Trạm · Device", tag_values(DEVICE_ID, measurement, province, district)),
    ]
    return [
        dash.QueryVariable(name)
        .label(label)
        .datasource(datasource())
        .query(query)
        .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .current(model.VariableOption(selected=True, text="All", value="$__all"))
        for name, label, query in specs
    ]


def alert_annotations() -> list[dash.AnnotationQuery]:
    """Alert transitions (measurement ``alerts``) of the selected places as annotations."""
    tags = (RULE_ID, SEVERITY, DEVICE_ID)
    columns = ", ".join(f'"{c}"' for c in (MESSAGE_VI, MESSAGE_EN, *tags))
    found = []
    for state, name, color in (
        ("firing", "Cảnh báo · Alerts firing", "red"),
        ("resolved", "Hết cảnh báo · Alerts resolved", "green"),
    ):
        condition = f"\"{STATE}\" = '{state}'"
        query = f'SELECT {columns} FROM "{ALERTS_MEASUREMENT}" {where(condition)}'
        found.append(annotation(name, query, color=color, text_column=MESSAGE_VI, tags_columns=tags))
    return found


# --- assembly --------------------------------------------------------------------------------------


def board(
    uid: str,
    title: str,
    description: str,
    *,
    measurement: str | None,
    tags: Sequence[str],
    time_from: str,
    items: Sequence[Item],
) -> dash.Dashboard:
    """One IOC dashboard: variables, alert annotations, links to the others, then ``items``."""
    builder = (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["mekong-ioc", *tags])
        .timezone("Asia/Ho_Chi_Minh")
        .time(f"now-{time_from}", "now")
        .refresh("1m")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .editable()
        .variables(list(variables(measurement)))
        .annotations(list(alert_annotations()))
        .link(
            dash.DashboardLink("Mekong IOC")
            .type(model.DashboardLinkType.DASHBOARDS)
            .tags(["mekong-ioc"])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )
    for item in items:
        if isinstance(item, dash.Row):
            builder = builder.with_row(item)
        else:
            builder = builder.with_panel(item)
    return builder


def render(builder: dash.Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model, panels numbered 1, 2, … in order."""
    built = builder.build()
    for number, panel in enumerate(built.panels or [], start=1):
        panel.id_val = number
    rendered: dict[str, Any] = json.loads(json.dumps(built, cls=JSONEncoder))
    return rendered
