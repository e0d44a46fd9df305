"""Threshold lines and colours, read from the rule pack so a dashboard never disagrees with an alert.

Each :class:`Steps` is a Grafana threshold ladder: a base colour, then (value, colour) steps,
each value taken from a rule of ``rules/packs/mekong.yaml`` (named in ``rules``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Final

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import dashboard as model

from rules.pack import DEFAULT_PACK, Pack, Range, Rule, Surge, Threshold, Window, load_pack

GOOD: Final = "green"
NOTICE: Final = "yellow"
WARNING: Final = "orange"
CRITICAL: Final = "red"
SEVERE: Final = "dark-red"


@dataclass(frozen=True, slots=True)
class Steps:
    """A threshold ladder: ``base`` below the first step, then each (value, colour) upwards."""

    base: str
    steps: tuple[tuple[float, str], ...]
    rules: tuple[str, ...]
    """The rules the values come from (for descriptions and tests)."""

    @property
    def values(self) -> tuple[float, ...]:
        return tuple(v for v, _ in self.steps)

    def config(self) -> dash.ThresholdsConfig:
        thresholds = [model.Threshold(value=None, color=self.base)]
        thresholds += [model.Threshold(value=v, color=c) for v, c in self.steps]
        return dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(thresholds)


@cache
def pack() -> Pack:
    return load_pack(DEFAULT_PACK)


def rule(rule_id: str) -> Rule:
    found = {r.id: r for r in pack().rules}
    if rule_id not in found:
        raise KeyError(f"rule {rule_id} is not in {DEFAULT_PACK}: the dashboards read their thresholds from it")
    return found[rule_id]


def value(rule_id: str) -> float:
    """The level of a threshold or window rule."""
    condition = rule(rule_id).condition
    if not isinstance(condition, Threshold | Window):
        raise TypeError(f"rule {rule_id} is a {condition.type} rule, not a threshold")
    return condition.value


def bounds(rule_id: str) -> tuple[float, float]:
    """The (low, high) of a range rule."""
    condition = rule(rule_id).condition
    if not isinstance(condition, Range):
        raise TypeError(f"rule {rule_id} is a {condition.type} rule, not a range")
    return condition.low, condition.high


def critical(rule_id: str) -> float:
    """The level above which a warning rule is raised to critical."""
    level = rule(rule_id).critical_above
    if level is None:
        raise ValueError(f"rule {rule_id} has no critical_above")
    return level


def surge_minimum(rule_id: str) -> float:
    condition = rule(rule_id).condition
    if not isinstance(condition, Surge):
        raise TypeError(f"rule {rule_id} is a {condition.type} rule, not a surge")
    return condition.min


def salinity() -> Steps:
    """The salinity ladder: 0.5 ‰ fruit trees, 1 ‰ no pumping, 2 ‰ young rice, 4 ‰ crop damage."""
    ids = ("SAL_FRUIT", "SAL_1PPT", "SAL_RICE_2", "SAL_4PPT")
    colours = (NOTICE, WARNING, CRITICAL, SEVERE)
    return Steps(GOOD, tuple((value(i), c) for i, c in zip(ids, colours, strict=True)), ids)


def river_do() -> Steps:
    return Steps(SEVERE, ((value("WQ_DO_CRIT"), WARNING), (value("WQ_DO_LOW"), GOOD)), ("WQ_DO_CRIT", "WQ_DO_LOW"))


def river_ph() -> Steps:
    low, high = bounds("WQ_PH")
    return Steps(CRITICAL, ((value("WQ_PH_ACID"), WARNING), (low, GOOD), (high, WARNING)), ("WQ_PH_ACID", "WQ_PH"))


def river_nh4() -> Steps:
    return Steps(GOOD, ((value("WQ_NH4"), WARNING), (critical("WQ_NH4"), CRITICAL)), ("WQ_NH4",))


def pond_do() -> Steps:
    ids = ("TRA_DO", "SH_DO_CRIT", "SH_DO_WARN")
    return Steps(SEVERE, tuple((value(i), c) for i, c in zip(ids, (CRITICAL, WARNING, GOOD), strict=True)), ids)


def pond_ph() -> Steps:
    low, high = bounds("SH_PH")
    return Steps(WARNING, ((low, GOOD), (high, WARNING)), ("SH_PH",))


def pond_temp() -> Steps:
    low, high = bounds("SH_TEMP")
    return Steps(WARNING, ((low, GOOD), (high, WARNING), (value("TRA_TEMP"), CRITICAL)), ("SH_TEMP", "TRA_TEMP"))


def pond_nh3() -> Steps:
    return Steps(GOOD, ((value("NH3_TOXIC"), WARNING), (critical("NH3_TOXIC"), CRITICAL)), ("NH3_TOXIC",))


def bph_night() -> Steps:
    return Steps(
        GOOD,
        ((surge_minimum("BPH_SURGE"), WARNING), (value("BPH_HIGH"), CRITICAL)),
        ("BPH_SURGE", "BPH_HIGH"),
    )


def alert_level() -> Steps:
    """Alert severity levels (field ``level`` of ``alerts``): 1 info, 2 warning, 3 critical."""
    return Steps(GOOD, ((1, "blue"), (2, WARNING), (3, CRITICAL)), ())
