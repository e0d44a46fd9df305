"""Camera · Cameras: detections by type over time and by site, the latest detections with their
snapshots, and each camera's analysed frame rate."""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import dashboard as model

from contract.fields import CAMERA_EVENTS
from dashboards.panels import (
    COUNT,
    Item,
    barchart_panel,
    board,
    mapped,
    table_panel,
    text_mappings,
    timeseries_panel,
    transformation,
    unit_of,
    with_names,
)
from dashboards.queries import InfluxQL, where

UID: Final = "ioc-cameras"
TITLE: Final = "Camera · Cameras"

EVENTS: Final = {
    "smoke_fire": "Khói, lửa · smoke or fire",
    "flooding": "Ngập nước · flooding",
    "traffic_violation": "Vi phạm giao thông · traffic violation",
    "hygiene_violation": "Vi phạm vệ sinh ATTP · food-hygiene violation",
    "intrusion": "Xâm nhập · intrusion",
    "video_loss": "Mất hình · video loss",
}
"""Camera event classes (the ``event`` tag) with their display names."""

SITES: Final = {
    "road": "Đường · road",
    "market": "Chợ · market",
    "school": "Trường · school",
    "kitchen": "Bếp ăn · kitchen",
}

EVENT_POINTS: Final = '"event" =~ /.+/'
"""Detections only: telemetry points of measurement ``camera`` carry no ``event`` tag."""


def event_names() -> dict[str, str]:
    """Display names for every event class of the contract."""
    missing = set(CAMERA_EVENTS) - set(EVENTS)
    if missing:
        raise KeyError(f"no display name for camera events {sorted(missing)}")
    return {e: EVENTS[e] for e in CAMERA_EVENTS}


def dashboard() -> dash.Dashboard:
    by_type = InfluxQL(
        f'SELECT count("confidence") FROM "camera" {where(EVENT_POINTS)} GROUP BY time($__interval), "event" fill(none)'
    ).alias("$tag_event")
    by_site = InfluxQL(
        f'SELECT count("confidence") AS "n" FROM "camera" {where(EVENT_POINTS)} GROUP BY "site", "event"'
    ).table()
    latest = InfluxQL(
        'SELECT "event", "confidence", "frames", "device_id", "site", "district", "province", "image_url" '
        f'FROM "camera" {where(EVENT_POINTS)} ORDER BY time DESC LIMIT 100'
    ).table()
    fps = InfluxQL(
        f'SELECT mean("fps") FROM "camera" {where()} GROUP BY time($__interval), "device_id" fill(none)'
    ).alias("$tag_device_id")
    names = event_names()
    snapshot = model.DynamicConfigValue(
        id_val="links", value=[{"title": "Ảnh · snapshot", "url": "${__value.raw}", "targetBlank": True}]
    )

    items: list[Item] = [
        with_names(
            timeseries_panel(
                "Sự kiện theo loại · Events by type",
                "Số lần phát hiện mỗi giờ theo loại sự kiện. Detections per interval (at least an hour), "
                "stacked by event class.",
                [by_type],
                unit=COUNT,
                bars=True,
                stacked=True,
                interval="1h",
                w=24,
            ),
            names,
        ),
        with_names(
            barchart_panel(
                "Sự kiện theo địa điểm · Events by site",
                "Số lần phát hiện trong khoảng thời gian theo loại địa điểm (đường, chợ, trường, bếp ăn) và "
                "loại sự kiện. Detections over the time range by site type, stacked by event class.",
                [by_site],
                x_field=None,
            ).transformations(
                [transformation("groupingToMatrix", {"columnField": "event", "rowField": "site", "valueField": "n"})]
            ),
            names,
        ),
        timeseries_panel(
            "Khung hình phân tích · Frames analysed per second",
            "Số khung hình camera phân tích mỗi giây; về 0 là mất hình. Each camera's analysed frame rate "
            "(telemetry); a drop to 0 means video loss.",
            [fps],
            unit="suffix: fps",
            min_val=0,
        ),
        table_panel(
            "Sự kiện gần nhất · Latest detections",
            "100 lần phát hiện gần nhất, mới nhất ở trên; bấm vào đường dẫn để xem ảnh. The latest 100 "
            "detections, newest first, with the snapshot link.",
            [latest],
        )
        .override_by_name("event", [mapped(text_mappings(names))])
        .override_by_name("site", [mapped(text_mappings(SITES))])
        .override_by_name("confidence", [unit_of("percentunit")])
        .override_by_name("image_url", [snapshot]),
    ]
    return board(
        UID,
        TITLE,
        "Sự kiện camera AI theo loại và địa điểm. AI camera detections by type and site.",
        measurement="camera",
        tags=["camera"],
        time_from="48h",
        items=items,
    )
