"""Độ mặn · Salinity: per station over time against the 0.5 / 1 / 2 / 4 ‰ ladder, the daily
maximum, and the stations listed from the sea inland."""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders import dashboard as dash

from dashboards import thresholds
from dashboards.geography import inland_order
from dashboards.panels import (
    PPT,
    Item,
    bargauge_panel,
    board,
    coloured_by,
    table_panel,
    timeseries_panel,
    unit_of,
)
from dashboards.queries import InfluxQL, where

UID: Final = "ioc-salinity"
TITLE: Final = "Độ mặn · Salinity"

LOCAL_DAY: Final = "1d, 17h"
"""``GROUP BY time(1d, 17h)``: days from 00:00 to 24:00 in Vietnam (UTC+7 midnight is 17:00 UTC)."""


def _ladder() -> str:
    return ", ".join(f"{v:g} ‰" for v in thresholds.salinity().values)


def dashboard() -> dash.Dashboard:
    steps = thresholds.salinity()
    per_station = InfluxQL(
        f'SELECT mean("salinity_ppt") FROM "salinity" {where()} GROUP BY time($__interval), "device_id" fill(none)'
    ).alias("$tag_device_id")
    daily_max = InfluxQL(
        f'SELECT max("salinity_ppt") FROM "salinity" {where()} GROUP BY time({LOCAL_DAY}), "device_id" fill(none)'
    ).alias("$tag_device_id")
    inland = InfluxQL(
        f'SELECT max("salinity_ppt") FROM "salinity" {where()} '
        'GROUP BY time($__interval), "district", "device_id" fill(none)'
    ).alias("$tag_district/$tag_device_id")
    level = InfluxQL(
        f'SELECT mean("water_level_cm") FROM "salinity" {where()} GROUP BY time($__interval), "device_id" fill(none)'
    ).alias("$tag_device_id")
    latest = InfluxQL(
        'SELECT last("salinity_ppt") AS "salinity_ppt", max("salinity_ppt") AS "max_ppt", '
        'last("ec_us_cm") AS "ec_us_cm", last("water_level_cm") AS "water_level_cm", last("temp_c") AS "temp_c" '
        f'FROM "salinity" {where()} GROUP BY "province", "district", "device_id", "crop"'
    ).table()

    items: list[Item] = [
        timeseries_panel(
            "Độ mặn theo trạm · Salinity per station",
            f"Độ mặn (‰) từng trạm; đường đứt là ngưỡng cảnh báo {_ladder()} của bộ luật. "
            f"Salinity of each station (mean per interval); dashed lines: the rule pack's {_ladder()} "
            f"levels ({', '.join(steps.rules)}).",
            [per_station],
            unit=PPT,
            steps=steps,
            legend_table=True,
            min_val=0,
            w=24,
            h=11,
        ),
        timeseries_panel(
            "Độ mặn cao nhất trong ngày · Daily maximum",
            "Độ mặn cao nhất mỗi ngày (giờ Việt Nam) của từng trạm. "
            "The highest salinity of each local day (UTC+7) at each station: the number farmers plan by.",
            [daily_max],
            unit=PPT,
            steps=steps,
            bars=True,
            min_val=0,
        ),
        bargauge_panel(
            "Trạm xếp từ cửa biển vào · Stations from the sea inland",
            "Độ mặn cao nhất trong khoảng thời gian, trạm gần biển ở trên. Max salinity over the time range, "
            "one bar per station, ordered by its district's distance up the estuary (km from the sea, "
            "from contract/geography.py at export time): the salt front reads top to bottom.",
            [inland],
            unit=PPT,
            steps=steps,
            fields="/^Max$/",
        ).transformations(inland_order(by_station=True)),
        timeseries_panel(
            "Mực nước · Water level",
            "Mực nước so với mốc tại trạm: mặn lên theo triều. Water level above the local datum; salt "
            "comes in with the tide.",
            [level],
            unit="suffix: cm",
        ),
        table_panel(
            "Giá trị mới nhất · Latest per station",
            "Giá trị mới nhất và cao nhất của từng trạm. Latest and highest salinity, EC, water level "
            "and temperature per station, with the crop it protects.",
            [latest],
            w=12,
            h=9,
        )
        .override_by_name("salinity_ppt", [unit_of(PPT), *coloured_by(steps)])
        .override_by_name("max_ppt", [unit_of(PPT), *coloured_by(steps)])
        .override_by_name("ec_us_cm", [unit_of("suffix: µS/cm")])
        .override_by_name("water_level_cm", [unit_of("suffix: cm")])
        .override_by_name("temp_c", [unit_of("celsius")]),
    ]
    return board(
        UID,
        TITLE,
        "Độ mặn các trạm đo mặn so với ngưỡng cảnh báo. Salinity stations against the alert ladder.",
        measurement="salinity",
        tags=["salinity"],
        time_from="7d",
        items=items,
    )
