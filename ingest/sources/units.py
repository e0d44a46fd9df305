"""Units other systems name, converted to the units our fields carry (``ec_us_cm`` in µS/cm, …).

A payload's unit is honoured or refused, never ignored: a value in a unit we cannot convert to the
field's own is refused with its reason (``bad_unit``), not stored as if it were ours. Names follow
the SenML units registry (RFC 8428 §12.1: ``Cel``, ``S/m``, ``%RH``, ``%EL``) and what vendors
write (``mS/cm``, ``mV``, ``°C``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

Convert = Callable[[float], float]

_SAME: Final[dict[str, tuple[str, ...]]] = {
    "µS/cm": ("µS/cm", "uS/cm", "us/cm"),
    "°C": ("°C", "Cel", "C", "degC", "celsius"),
    "‰": ("‰", "ppt", "PSU", "psu", "g/L", "g/l"),
    "V": ("V", "volt", "volts"),
    "dBm": ("dBm", "dBW+30"),
    "mg/L": ("mg/L", "mg/l", "ppm"),
    "pH": ("pH", "ph"),
    "NTU": ("NTU", "ntu", "FNU"),
    "cm": ("cm",),
    "%": ("%",),
    "0/1": ("0/1", "bool"),
    "s": ("s", "sec"),
    "insects": ("insects", "count", "1"),
    "frames/s": ("frames/s", "fps"),
    "0..1": ("0..1", "ratio"),
}
"""Names of the same unit as ours."""

INLINE: Final[dict[Convert, tuple[str, float]]] = {}
"""The conversions that are one operation — ``x * k``, ``x / k``, ``x - k`` — as (operator, k): what a
flat shape's generated take writes in place of the call (:mod:`ingest.sources.shapes`)."""


def _op(operator: str, k: float) -> Convert:
    """``x <operator> k``, remembered in :data:`INLINE`."""
    convert: Convert = {"*": lambda x: x * k, "/": lambda x: x / k, "-": lambda x: x - k}[operator]
    INLINE[convert] = (operator, k)
    return convert


def _identity(x: float) -> float:
    return x


_SCALED: Final[dict[tuple[str, str], Convert]] = {
    ("µS/cm", "mS/cm"): _op("*", 1_000.0),
    ("µS/cm", "S/m"): _op("*", 10_000.0),
    ("µS/cm", "mS/m"): _op("*", 10.0),
    ("°C", "K"): _op("-", 273.15),
    ("°C", "°F"): lambda x: (x - 32.0) * 5.0 / 9.0,
    ("°C", "degF"): lambda x: (x - 32.0) * 5.0 / 9.0,
    ("V", "mV"): _op("/", 1_000.0),
    ("cm", "m"): _op("*", 100.0),
    ("cm", "mm"): _op("/", 10.0),
    ("mg/L", "g/L"): _op("*", 1_000.0),
    ("mg/L", "kg/m3"): _op("*", 1_000.0),
    ("‰", "%"): _op("*", 10.0),
    ("%", "/"): _op("*", 100.0),  # SenML's ratio (0.5 is 50 %)
    ("%", "%RH"): _identity,  # relative humidity: a percentage, but never a salinity in ‰
    ("%", "%EL"): _identity,  # SenML's remaining battery energy: likewise
    ("s", "min"): _op("*", 60.0),
    ("s", "ms"): _op("/", 1_000.0),
}


def converter(ours: str, theirs: str) -> Convert | None:
    """How a value in unit ``theirs`` becomes one in ``ours``; None when it cannot."""
    if theirs == ours or theirs in _SAME.get(ours, ()):
        return _identity
    scaled = _SCALED.get((ours, theirs))
    if scaled is not None:
        return scaled
    for alias, names in _SAME.items():  # theirs is another name of a unit we scale from
        if theirs in names and (ours, alias) in _SCALED:
            return _SCALED[(ours, alias)]
    return None
