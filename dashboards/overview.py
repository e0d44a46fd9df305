"""Tổng quan IOC · IOC overview: every station on the map coloured by its worst active alert,
devices online and offline per province, the latest alerts, and ingest health as InfluxDB sees it.

"Active" is read from measurement ``alerts`` (one point per transition): an alert is active when
the last transition of its (rule, device) within :data:`LOOKBACK_DAYS` of the range's end is
``firing``. Ingest health here is what the stored data shows (points per minute by device time,
devices reporting, alerts per hour, time since each station's last reading); rejected messages,
retries and receive-to-store lag are Prometheus metrics of the ingest service (``/metrics``), see
docs/dashboards.md.
"""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import geomap
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import geomap as geomap_model

from contract.geography import PROVINCES
from dashboards import thresholds
from dashboards.geography import GAZETTEER_PATH
from dashboards.panels import (
    COLOURED_TEXT,
    COUNT,
    PER_MINUTE,
    SEVERITIES,
    Item,
    barchart_panel,
    board,
    coloured_by,
    fixed_color,
    mapped,
    severity_mappings,
    stat_panel,
    state_mappings,
    table_panel,
    text_mappings,
    timeseries_panel,
    transformation,
    unit_of,
    with_names,
)
from dashboards.queries import KINDS, InfluxQL, datasource, lookback, where
from dashboards.thresholds import Steps
from storage.layout import ALERTS_MEASUREMENT, DEVICE_ID, RULE_ID, STATUS_MEASUREMENT, STATUS_ONLINE

UID: Final = "ioc-overview"
TITLE: Final = "Tổng quan IOC · IOC overview"

LOOKBACK_DAYS: Final = 30
"""How far back from the end of the range a station's last status or an alert's last transition is looked for."""

ONLINE: Final = Steps("red", ((1, "green"),), ())

KIND_NAMES: Final = {
    "water_quality": "Chất lượng nước · water quality",
    "salinity": "Độ mặn · salinity",
    "light_trap": "Bẫy đèn · light traps",
    "camera": "Camera · cameras",
}


def _last_alerts(*group_by: str) -> str:
    """Each (rule, device)'s last transition, with its level and state, as a subquery."""
    tags = ", ".join(f'"{t}"' for t in (RULE_ID, DEVICE_ID, *group_by))
    return (
        f'SELECT last("level") AS "level", "state" FROM "{ALERTS_MEASUREMENT}" '
        f"{where(time=lookback(LOOKBACK_DAYS))} GROUP BY {tags}"
    )


def _last_status(*group_by: str) -> str:
    """Each device's last ``online`` (1/0) from its retained status, as a subquery."""
    tags = ", ".join(f'"{t}"' for t in (DEVICE_ID, *group_by))
    return (
        f'SELECT last("{STATUS_ONLINE}") AS "online" FROM "{STATUS_MEASUREMENT}" '
        f"{where(time=lookback(LOOKBACK_DAYS))} GROUP BY {tags}"
    )


def province_names() -> list[model.ValueMapping]:
    """Province slug → name, for axis labels."""
    return text_mappings({p.slug: p.name for p in PROVINCES})


def _marker_style(*, color_field: str, size: int, fixed: str) -> dict[str, object]:
    return {
        "showLegend": True,
        "style": {
            "color": {"field": color_field, "fixed": fixed},
            "opacity": 0.8,
            "size": {"fixed": size, "min": 2, "max": 20},
            "symbol": {"mode": "fixed", "fixed": "img/icons/marker/circle.svg"},
            "symbolAlign": {"horizontal": "center", "vertical": "center"},
        },
    }


def _layer(name: str, ref_id: str, *, color_field: str, size: int) -> cb.MapLayerOptions:
    return (
        cb.MapLayerOptions()
        .type("markers")
        .name(name)
        .config(_marker_style(color_field=color_field, size=size, fixed="green"))
        .location(
            cb.FrameGeometrySource()
            .mode(common.FrameGeometrySourceMode.LOOKUP)
            .lookup("district")
            .gazetteer(GAZETTEER_PATH)
        )
        .filter_data({"id": "byRefId", "options": ref_id})
        .tooltip(True)
    )


def station_map() -> geomap.Panel:
    stations = InfluxQL(_last_status("district", "province")).table()
    worst = (
        InfluxQL(
            f'SELECT max("level") AS "worst" FROM ({_last_alerts("district", "province")}) '
            'WHERE "state" = \'firing\' GROUP BY "device_id", "district", "province"'
        )
        .ref_id("B")
        .table()
    )
    return (
        geomap.Panel()
        .title("Trạm và cảnh báo · Stations and their worst active alert")
        .description(
            "Mỗi trạm đặt tại huyện của nó; chấm nhỏ: trực tuyến (xanh) hay ngoại tuyến (đỏ); chấm lớn: cảnh báo "
            "đang hoạt động nặng nhất (xanh dương thông tin, cam cảnh báo, đỏ khẩn cấp). Every station, placed "
            "at its district (InfluxDB has no coordinates; the gazetteer is generated from contract/geography.py): "
            "small dots are stations by status, large dots their worst active alert."
        )
        .datasource(datasource())
        .targets([stations, worst])
        .span(16)
        .height(14)
        .view(geomap.MapViewConfig().id("coords").lat(10).lon(106).zoom(7))
        .controls(geomap.ControlsOptions().show_zoom(True).mouse_wheel_zoom(True).show_attribution(True))
        .basemap(cb.MapLayerOptions().type("default").name("Bản đồ · Basemap"))
        .layers(
            [
                _layer("Trạm · Stations", "A", color_field="online", size=5),
                _layer("Cảnh báo · Worst active alert", "B", color_field="worst", size=11),
            ]
        )
        .tooltip(geomap.TooltipOptions().mode(geomap_model.TooltipMode.DETAILS))
        .override_by_name(
            "online",
            [
                *coloured_by(ONLINE),
                mapped(
                    [
                        model.ValueMap(
                            options={
                                "0": model.ValueMappingResult(text="Ngoại tuyến · offline", color="red", index=0),
                                "1": model.ValueMappingResult(text="Trực tuyến · online", color="green", index=1),
                            }
                        )
                    ]
                ),
            ],
        )
        .override_by_name(
            "worst",
            [
                *coloured_by(thresholds.alert_level()),
                mapped(severity_mappings(by_level=True)),
            ],
        )
    )


def dashboard() -> dash.Dashboard:
    firing = f"FROM ({_last_alerts()}) WHERE \"state\" = 'firing'"
    active = [
        InfluxQL(f'SELECT count("level") {firing} AND "level" = {level}').ref_id(ref).alias(text)
        for ref, (level, text, _) in zip("ABC", SEVERITIES.values(), strict=True)
    ]
    status_totals = InfluxQL(
        f'SELECT sum("online") AS "online", count("online") - sum("online") AS "offline" FROM ({_last_status()})'
    ).alias("$col")
    per_province = InfluxQL(
        'SELECT sum("online") AS "online", count("online") - sum("online") AS "offline" '
        f'FROM ({_last_status("province")}) GROUP BY "province"'
    ).table()
    latest = InfluxQL(
        'SELECT "severity", "state", "rule_id", "device_id", "district", "province", "value", "message_vi", '
        f'"message_en" FROM "{ALERTS_MEASUREMENT}" {where()} ORDER BY time DESC LIMIT 100'
    ).table()
    points = InfluxQL(
        f'SELECT count("seq") * 60000 / $__interval_ms FROM {", ".join(KINDS)} {where()} '
        "GROUP BY time($__interval) fill(0)"
    ).alias("$measurement")
    reporting = InfluxQL(
        f'SELECT count("n") FROM (SELECT count("seq") AS "n" FROM {", ".join(KINDS)} {where()} GROUP BY "device_id")'
    ).alias("$measurement")
    fired = "\"state\" = 'firing'"
    alerts_per_hour = InfluxQL(
        f'SELECT count("level") FROM "{ALERTS_MEASUREMENT}" {where(fired)} GROUP BY time(1h), "severity" fill(none)'
    ).alias("$tag_severity")
    freshness = InfluxQL(
        f'SELECT last("seq") AS "seq" FROM {", ".join(KINDS)} {where(time=lookback(7))} '
        'GROUP BY "device_id", "district", "province"'
    ).table()
    prometheus = (
        " Rejected messages, retries and receive-to-store lag are the ingest service's Prometheus metrics "
        "(ioc_ingest_rejected_total, ioc_ingest_lag_seconds at :9108/metrics), not in InfluxDB."
    )

    active_panel = stat_panel(
        "Cảnh báo đang hoạt động · Active alerts",
        "Số cảnh báo đang hoạt động theo mức độ. Alerts whose last transition is 'firing', by severity.",
        active,
        w=12,
        h=4,
    ).no_value("0")
    per_hour_panel = with_names(
        timeseries_panel(
            "Cảnh báo mỗi giờ · Alerts fired per hour",
            "Số cảnh báo bật mỗi giờ theo mức độ. Alerts fired per hour, by severity.",
            [alerts_per_hour],
            unit=COUNT,
            bars=True,
            stacked=True,
            w=6,
        ),
        {label: text for label, (_, text, _) in SEVERITIES.items()},
    )
    for label, (_, text, colour) in SEVERITIES.items():
        active_panel = active_panel.override_by_name(text, [fixed_color(colour)])
        per_hour_panel = per_hour_panel.override_by_name(label, [fixed_color(colour)])

    items: list[Item] = [
        dash.Row("Trạm và cảnh báo · Stations and alerts"),
        active_panel,
        with_names(
            stat_panel(
                "Thiết bị · Devices",
                "Số thiết bị trực tuyến và ngoại tuyến theo trạng thái cuối (kênh status). Devices by their "
                "last retained status: online, or offline (the device's MQTT will).",
                [status_totals],
                w=12,
                h=4,
            ),
            {"online": "Trực tuyến · online", "offline": "Ngoại tuyến · offline"},
        )
        .override_by_name("online", [fixed_color("green")])
        .override_by_name("offline", [fixed_color("red")]),
        station_map(),
        with_names(
            barchart_panel(
                "Thiết bị theo tỉnh · Devices online and offline per province",
                "Số thiết bị trực tuyến và ngoại tuyến của từng tỉnh. Devices per province by last status.",
                [per_province],
                x_field="province",
                w=8,
                h=14,
            )
            .transformations([transformation("organize", {"excludeByName": {"Time": True}})])
            .override_by_name("province", [mapped(province_names())])
            .override_by_name("online", [fixed_color("green")])
            .override_by_name("offline", [fixed_color("red")]),
            {"online": "Trực tuyến · online", "offline": "Ngoại tuyến · offline"},
        ),
        dash.Row("Cảnh báo mới nhất · Latest alerts"),
        table_panel(
            "Cảnh báo mới nhất · Latest alerts",
            "100 thay đổi cảnh báo gần nhất (bật, hết), mới nhất ở trên. The latest 100 alert transitions, "
            "newest first, with the message sent to farmers.",
            [latest],
            h=11,
        )
        .override_by_name(
            "severity",
            [
                mapped(severity_mappings(by_level=False)),
                COLOURED_TEXT,
            ],
        )
        .override_by_name(
            "state",
            [
                mapped(state_mappings()),
                COLOURED_TEXT,
            ],
        ),
        dash.Row("Thu nhận dữ liệu · Ingest health (from InfluxDB)"),
        with_names(
            timeseries_panel(
                "Điểm đo lưu mỗi phút · Points stored per minute",
                "Số điểm đo đã lưu mỗi phút theo loại thiết bị (theo giờ của thiết bị). Points stored per "
                "minute by measurement, by device time: a gap means nothing arrived." + prometheus,
                [points],
                unit=PER_MINUTE,
                stacked=True,
                min_val=0,
            ),
            KIND_NAMES,
        ),
        with_names(
            stat_panel(
                "Thiết bị gửi dữ liệu trong 1 giờ · Devices reporting in the last hour",
                "Số thiết bị có dữ liệu trong 1 giờ qua, theo loại. Devices with at least one stored point "
                "in the last hour, by kind (light traps report hourly at night, every 3 h by day).",
                [reporting],
                time_from="1h",
                w=6,
                h=9,
            ),
            KIND_NAMES,
        ),
        per_hour_panel,
        table_panel(
            "Lần báo cuối của trạm · Last reading per station",
            "Thời điểm điểm đo cuối cùng của từng trạm, trạm im lâu nhất ở trên. When each station's last "
            "point was taken (device time), longest silent first: the lag operators can see in InfluxDB." + prometheus,
            [freshness],
            h=10,
        )
        .transformations(
            [
                transformation("merge", {}),
                transformation("sortBy", {"sort": [{"field": "Time", "desc": False}]}),
            ]
        )
        .override_by_name("Time", [unit_of("dateTimeFromNow")]),
    ]
    return board(
        UID,
        TITLE,
        "Tổng quan trung tâm điều hành: trạm, cảnh báo, thu nhận dữ liệu. Stations, alerts and ingest health.",
        measurement=None,
        tags=["overview"],
        time_from="24h",
        items=items,
    )
