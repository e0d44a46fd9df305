"""Grafana's query interpolation, outside Grafana: what InfluxDB receives when a panel runs.

Grafana's front end replaces template variables (``${province:regex}``) and the global time
variables (``${__from}``, ``${__to}``); its InfluxDB back end then replaces ``$timeFilter``,
``$__interval_ms`` and ``$__interval`` (pkg/tsdb/influxdb/models/query.go). This module does
both, the same way, so that :mod:`dashboards.check` can run every query of a dashboard against a
real InfluxDB. Differences from Grafana: the panel's width is taken as :data:`MAX_DATA_POINTS`
pixels, and only the variable formats the dashboards use (``regex``, ``raw``) are known — any
other ``$…`` left in a query is an :class:`InterpolationError`, which keeps typos out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

MAX_DATA_POINTS: Final = 1000
"""Grafana asks for about one point per pixel of the panel's width; a wide panel is ~1000 px."""

_UNITS_MS: Final = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d|w)$")
_VARIABLE = re.compile(r"\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<format>[A-Za-z]+))?\}|\$(?P<bare>[A-Za-z_]\w*)")
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")

# Grafana's rangeutil.roundInterval: (upper bound, interval), both in ms.
_ROUNDED: Final = (
    (15, 10),
    (35, 20),
    (75, 50),
    (150, 100),
    (350, 200),
    (750, 500),
    (1_500, 1_000),
    (3_500, 2_000),
    (7_500, 5_000),
    (12_500, 10_000),
    (17_500, 15_000),
    (25_000, 20_000),
    (45_000, 30_000),
    (90_000, 60_000),
    (210_000, 120_000),
    (450_000, 300_000),
    (1_050_000, 600_000),
    (2_100_000, 1_800_000),
    (5_400_000, 3_600_000),
    (7_200_000, 7_200_000),
    (21_600_000, 10_800_000),
    (86_400_000, 43_200_000),
    (604_800_000, 86_400_000),
    (1_814_400_000, 604_800_000),
    (3_628_800_000, 2_592_000_000),
)


class InterpolationError(ValueError):
    """A query uses a variable or macro that cannot be filled in."""


@dataclass(frozen=True, slots=True)
class TimeRange:
    """A dashboard time range, epoch milliseconds (``to`` is Grafana's "now")."""

    start_ms: int
    end_ms: int

    def last(self, duration: str) -> TimeRange:
        """The range a panel with a relative time override (``timeFrom: "1h"``) queries."""
        return TimeRange(self.end_ms - duration_ms(duration), self.end_ms)


def duration_ms(text: str) -> int:
    """``"10m"`` → 600000."""
    m = _DURATION.match(text.strip())
    if not m:
        raise InterpolationError(f"not a duration: {text!r} (use e.g. 30s, 10m, 1h, 7d)")
    return int(m[1]) * _UNITS_MS[m[2]]


def round_interval(ms: float) -> int:
    """Grafana's rounding of the raw interval to a readable one."""
    for bound, interval in _ROUNDED:
        if ms < bound:
            return interval
    return 31_536_000_000


def interval_ms(time_range: TimeRange, *, min_interval: str | None = None, max_points: int = MAX_DATA_POINTS) -> int:
    """``$__interval`` of a panel: the range over the points asked for, rounded, at least ``min_interval``."""
    raw = round_interval((time_range.end_ms - time_range.start_ms) / max_points)
    return max(raw, duration_ms(min_interval)) if min_interval else raw


def format_interval(ms: int) -> str:
    """Grafana's gtime.FormatInterval: the largest whole unit (``1h``, ``5m``, ``30s``, ``100ms``)."""
    for unit, size in (("y", 31_536_000_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size:
            return f"{ms // size}{unit}"
    return f"{max(ms, 1)}ms"


def escape_regex(value: str) -> str:
    """Grafana's regex escaping of a variable value (``/`` too: InfluxQL regexes are ``/…/``)."""
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m[0], value)


def format_value(values: Sequence[str], fmt: str | None) -> str:
    """A variable's selected values in a format: ``regex`` → ``a`` or ``(a|b)``; ``raw`` → ``a,b``."""
    if fmt == "regex":
        escaped = [escape_regex(v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    if fmt == "raw":
        return ",".join(values)
    raise InterpolationError(
        f"variable format {fmt!r} is not supported here: write ${{name:regex}} inside =~ /^…$/ (or :raw)"
    )


def interpolate(
    query: str,
    *,
    time_range: TimeRange,
    interval: int,
    variables: Mapping[str, Sequence[str]],
) -> str:
    """``query`` as InfluxDB receives it from Grafana.

    ``variables`` maps each template variable to its selected values ("All" = every value).
    """
    builtins = {
        "__from": str(time_range.start_ms),
        "__to": str(time_range.end_ms),
        "__interval_ms": str(interval),
        "__interval": format_interval(interval),
        "timeFilter": f"time >= {time_range.start_ms}ms and time <= {time_range.end_ms}ms",
        "interval": format_interval(interval),
    }

    def replace(m: re.Match[str]) -> str:
        name = m["braced"] or m["bare"]
        if name in builtins:
            if m["format"]:
                raise InterpolationError(f"{m[0]}: no format on built-in variables")
            return builtins[name]
        if name in variables:
            if m["bare"] is not None:
                raise InterpolationError(f"{m[0]}: give the format, ${{{name}:regex}}")
            return format_value(variables[name], m["format"])
        raise InterpolationError(f"{m[0]}: unknown variable in {query!r}")

    return _VARIABLE.sub(replace, query)
