"""Bẫy đèn · Light traps: the nightly catch per species, stacked, over time, per trap and per
district, and the brown planthopper count against its surge and outbreak levels.

Traps send each species' whole-night total (``<species>_night``) once a night, at 06:00 local
time; a local day (``GROUP BY time(1d, 17h)``) therefore holds exactly one night per trap.
"""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import dashboard as model

from contract.fields import TELEMETRY_FIELDS, Kind
from dashboards import thresholds
from dashboards.geography import districts
from dashboards.panels import (
    COUNT,
    Item,
    P,
    barchart_panel,
    board,
    mapped,
    text_mappings,
    timeseries_panel,
    transformation,
    with_names,
)
from dashboards.queries import InfluxQL, where
from dashboards.salinity import LOCAL_DAY

UID: Final = "ioc-traps"
TITLE: Final = "Bẫy đèn · Light traps"

SPECIES_VI: Final = {
    "bph": "Rầy nâu",
    "wbph": "Rầy lưng trắng",
    "glh": "Rầy xanh đuôi đen",
    "leaffolder": "Sâu cuốn lá nhỏ",
    "stemborer": "Sâu đục thân",
}
"""Vietnamese names of the trap species (English from the contract's field descriptions)."""


def species() -> list[tuple[str, str]]:
    """(species key, "Rầy nâu · brown planthopper") for every ``*_night`` field of the contract."""
    found = []
    for spec in TELEMETRY_FIELDS[Kind.LIGHT_TRAP]:
        if spec.name.endswith("_night"):
            key = spec.name.removesuffix("_night")
            english = spec.description.removesuffix(" caught over the whole night")
            found.append((key, f"{SPECIES_VI[key]} · {english}"))
    return found


def _sums() -> str:
    return ", ".join(f'sum("{key}_night") AS "{key}"' for key, _ in species())


def _named(panel: P) -> P:
    return with_names(panel, dict(species()))


def district_names() -> list[model.ValueMapping]:
    """District slug → "Tháp Mười (Đồng Tháp)" for axis labels."""
    return text_mappings({d.slug: f"{d.name} ({p.name})" for p, d in districts()})


def dashboard() -> dash.Dashboard:
    nightly = InfluxQL(f'SELECT {_sums()} FROM "light_trap" {where()} GROUP BY time({LOCAL_DAY}) fill(none)').alias(
        "$col"
    )
    per_trap = InfluxQL(f'SELECT {_sums()} FROM "light_trap" {where()} GROUP BY "device_id"').table()
    per_district = InfluxQL(f'SELECT {_sums()} FROM "light_trap" {where()} GROUP BY "district"').table()
    bph = InfluxQL(
        f'SELECT max("bph_night") FROM "light_trap" {where()} GROUP BY time({LOCAL_DAY}), "device_id" fill(none)'
    ).alias("$tag_device_id")
    drop_time = transformation("organize", {"excludeByName": {"Time": True}})
    bph_steps = thresholds.bph_night()

    items: list[Item] = [
        _named(
            timeseries_panel(
                "Côn trùng vào đèn mỗi đêm theo loài · Nightly catch per species",
                "Tổng số côn trùng vào đèn mỗi đêm của các bẫy đang chọn, chồng theo loài. The whole-night "
                "catch of the selected traps (sum of the *_night totals sent at 06:00), stacked by species; "
                "pick one trap in the Device list to see that trap alone.",
                [nightly],
                unit=COUNT,
                bars=True,
                stacked=True,
                w=24,
            )
        ),
        _named(
            barchart_panel(
                "Theo bẫy · Per trap",
                "Tổng số côn trùng vào đèn trong khoảng thời gian, theo bẫy và loài. Catch over the time "
                "range per trap, stacked by species.",
                [per_trap],
                x_field="device_id",
            ).transformations([drop_time])
        ),
        _named(
            barchart_panel(
                "Theo huyện · Per district",
                "Tổng số côn trùng vào đèn trong khoảng thời gian, theo huyện và loài. Catch over the time "
                "range per district, stacked by species.",
                [per_district],
                x_field="district",
            )
            .transformations([drop_time])
            .override_by_name("district", [mapped(district_names())])
        ),
        timeseries_panel(
            "Rầy nâu mỗi đêm theo bẫy · Brown planthopper per night",
            "Rầy nâu vào đèn mỗi đêm của từng bẫy: từ 200 con/đêm có thể là đợt rầy di trú, từ 1.000 con/đêm "
            f"rất cao. Brown planthopper per night per trap; lines from {', '.join(bph_steps.rules)} "
            "(surge minimum, very high count).",
            [bph],
            unit=COUNT,
            steps=bph_steps,
            bars=True,
            min_val=0,
            w=24,
        ),
    ]
    return board(
        UID,
        TITLE,
        "Côn trùng vào bẫy đèn mỗi đêm. Nightly light-trap catches per species, trap and district.",
        measurement="light_trap",
        tags=["light_trap"],
        time_from="14d",
        items=items,
    )
