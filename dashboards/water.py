"""Chất lượng nước và ao nuôi · Water quality and ponds: DO, pH, temperature and ammonium of rivers
and canals, and of aquaculture ponds, each against the thresholds of its rules."""

from __future__ import annotations

from typing import Final

from grafana_foundation_sdk.builders import dashboard as dash

from dashboards import thresholds
from dashboards.panels import CELSIUS, MG_L, PH, Item, board, timeseries_panel
from dashboards.queries import InfluxQL, where
from dashboards.thresholds import Steps

UID: Final = "ioc-water"
TITLE: Final = "Chất lượng nước và ao nuôi · Water quality and ponds"

PKA_A: Final = 0.09018
PKA_B: Final = 2729.92
"""pKa of ammonium = PKA_A + PKA_B / T(K) (Emerson et al. 1975), as :func:`rules.derived.nh3_fraction`."""

NH3_EXPRESSION: Final = f'"nh4_mg_l" / (1 + pow(10, {PKA_A} + {PKA_B} / ("temp_c" + 273.15) - "ph"))'
"""Un-ionised ammonia (mg/L as N) from NH₄⁺-N, pH and temperature, in InfluxQL (as NH3_TOXIC reads it)."""


def site_filter(rule_id: str) -> str:
    """The sites a rule selects, as an InfluxQL tag condition (``"site" =~ /^(river|canal)$/``)."""
    sites = thresholds.rule(rule_id).select.site
    if not sites:
        raise ValueError(f"rule {rule_id} selects no site")
    return f'"site" =~ /^({"|".join(sites)})$/'


def _series(field: str, site: str) -> InfluxQL:
    return InfluxQL(
        f'SELECT mean("{field}") FROM "water_quality" {where(site)} GROUP BY time($__interval), "device_id" fill(none)'
    ).alias("$tag_device_id")


def _rules(steps: Steps) -> str:
    return ", ".join(steps.rules)


def dashboard() -> dash.Dashboard:
    river = site_filter("WQ_DO_LOW")
    pond = site_filter("SH_DO_WARN")
    nh3 = InfluxQL(
        f'SELECT mean("nh3") FROM (SELECT {NH3_EXPRESSION} AS "nh3" FROM "water_quality" {where(pond)} '
        'GROUP BY "device_id") WHERE $timeFilter GROUP BY time($__interval), "device_id" fill(none)'
    ).alias("$tag_device_id")
    r_do, r_ph, r_nh4 = thresholds.river_do(), thresholds.river_ph(), thresholds.river_nh4()
    p_do, p_ph, p_temp, p_nh3 = (
        thresholds.pond_do(),
        thresholds.pond_ph(),
        thresholds.pond_temp(),
        thresholds.pond_nh3(),
    )

    items: list[Item] = [
        dash.Row("Sông, kênh · Rivers and canals"),
        timeseries_panel(
            "Oxy hòa tan · Dissolved oxygen",
            f"DO sông, kênh (mg/L): dưới 4 thiếu oxy, dưới 2 nguy cơ cá chết. River and canal DO; "
            f"lines from {_rules(r_do)}.",
            [_series("do_mg_l", river)],
            unit=MG_L,
            steps=r_do,
            min_val=0,
        ),
        timeseries_panel(
            "pH · pH",
            f"pH sông, kênh: ngoài 6–8,5 bất thường, dưới 5,5 nhiễm phèn nặng. Lines from {_rules(r_ph)}.",
            [_series("ph", river)],
            unit=PH,
            steps=r_ph,
        ),
        timeseries_panel(
            "Nhiệt độ nước · Water temperature",
            "Nhiệt độ nước sông, kênh (không có ngưỡng cảnh báo). River and canal water temperature "
            "(no rule reads it).",
            [_series("temp_c", river)],
            unit=CELSIUS,
        ),
        timeseries_panel(
            "Amoni NH₄⁺ · Ammonium",
            f"NH₄⁺-N sông, kênh (mg/L): trên 0,3 ô nhiễm, trên 0,9 khẩn cấp. Lines from {_rules(r_nh4)}.",
            [_series("nh4_mg_l", river)],
            unit=MG_L,
            steps=r_nh4,
            min_val=0,
        ),
        dash.Row("Ao nuôi · Ponds"),
        timeseries_panel(
            "Oxy ao nuôi · Pond oxygen",
            "DO ao (mg/L): tôm dưới 4 cảnh báo, dưới 3 khẩn cấp; cá tra dưới 2. Pond DO: shrimp warning "
            f"below 4 and critical below 3, pangasius below 2 ({_rules(p_do)}). Lowest at dawn.",
            [_series("do_mg_l", pond)],
            unit=MG_L,
            steps=p_do,
            min_val=0,
        ),
        timeseries_panel(
            "pH ao nuôi · Pond pH",
            f"pH ao tôm nên trong 7–9. Shrimp ponds: keep pH 7–9 ({_rules(p_ph)}).",
            [_series("ph", pond)],
            unit=PH,
            steps=p_ph,
        ),
        timeseries_panel(
            "Nhiệt độ ao · Pond temperature",
            "Ao tôm 18–33 °C; ao cá tra từ 36 °C là quá nóng. Shrimp 18–33 °C, pangasius too hot from "
            f"36 °C ({_rules(p_temp)}).",
            [_series("temp_c", pond)],
            unit=CELSIUS,
            steps=p_temp,
        ),
        timeseries_panel(
            "Amoni NH₄⁺ ao · Pond ammonium",
            "NH₄⁺-N trong ao (mg/L); độc tính tùy pH và nhiệt độ: xem NH₃ bên dưới. Pond ammonium; its "
            "toxicity depends on pH and temperature, see toxic NH₃ below.",
            [_series("nh4_mg_l", pond)],
            unit=MG_L,
            min_val=0,
        ),
        timeseries_panel(
            "Khí độc NH₃ · Toxic ammonia (derived)",
            "NH₃ tự do tính từ NH₄⁺, pH và nhiệt độ (như luật NH3_TOXIC): trên 0,05 mg/L cảnh báo. "
            "Un-ionised ammonia computed in the query from NH₄⁺-N, pH and temperature with the rule "
            f"engine's formula; lines from {_rules(p_nh3)}.",
            [nh3],
            unit=MG_L,
            steps=p_nh3,
            min_val=0,
            w=24,
        ),
    ]
    return board(
        UID,
        TITLE,
        "Oxy, pH, nhiệt độ, amoni của sông, kênh và ao nuôi. Water quality of rivers, canals and ponds.",
        measurement="water_quality",
        tags=["water_quality"],
        time_from="48h",
        items=items,
    )
