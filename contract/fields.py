"""Device kinds and the fields each may report, with units and physical ranges.

The ranges are *physical plausibility* bounds (what a working sensor can report at all), not
alert thresholds: a reading outside them is rejected as ``out_of_range``. Alert thresholds live
in the rule packs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Literal


class Kind(enum.StrEnum):
    """A device kind; also the InfluxDB measurement its readings go to."""

    WATER_QUALITY = "water_quality"
    SALINITY = "salinity"
    LIGHT_TRAP = "light_trap"
    CAMERA = "camera"


FieldType = Literal["float", "int", "string"]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One reading field: its name (unit included), type and accepted range."""

    name: str
    unit: str
    description: str
    lo: float = 0.0
    hi: float = 0.0
    type: FieldType = "float"
    max_length: int = 0  # strings only
    required: bool = False

    @property
    def numeric(self) -> bool:
        return self.type != "string"


def _battery() -> FieldSpec:
    return FieldSpec("battery_v", "V", "supply or battery voltage", 0.0, 60.0)


def _rssi() -> FieldSpec:
    return FieldSpec("rssi_dbm", "dBm", "radio signal strength", -150.0, 0.0)


def _temp() -> FieldSpec:
    return FieldSpec("temp_c", "°C", "water temperature", -5.0, 60.0)


def _ec() -> FieldSpec:
    return FieldSpec("ec_us_cm", "µS/cm", "electrical conductivity at 25 °C", 0.0, 100_000.0)


def _salinity() -> FieldSpec:
    return FieldSpec("salinity_ppt", "‰", "practical salinity (g/L ≈ PSU)", 0.0, 50.0)


def _count(name: str, what: str) -> FieldSpec:
    return FieldSpec(name, "insects", what, 0, 1_000_000, "int")


_TRAP_SPECIES: Final = {
    "bph": "brown planthopper",
    "wbph": "white-backed planthopper",
    "glh": "green leafhopper",
    "leaffolder": "rice leaf-folder moth",
    "stemborer": "yellow stem-borer moth",
}

CAMERA_EVENTS: Final = (
    "smoke_fire",
    "flooding",
    "traffic_violation",
    "hygiene_violation",
    "intrusion",
    "video_loss",
)
"""Event classes a camera may report on its ``event`` channel (a closed vocabulary)."""

TELEMETRY_FIELDS: Final[dict[Kind, tuple[FieldSpec, ...]]] = {
    Kind.WATER_QUALITY: (
        _temp(),
        FieldSpec("ph", "pH", "acidity", 0.0, 14.0),
        FieldSpec("do_mg_l", "mg/L", "dissolved oxygen", 0.0, 30.0),
        _ec(),
        _salinity(),
        FieldSpec("turbidity_ntu", "NTU", "turbidity", 0.0, 4000.0),
        FieldSpec("tss_mg_l", "mg/L", "total suspended solids", 0.0, 10_000.0),
        FieldSpec("nh4_mg_l", "mg/L", "ammonium nitrogen (NH₄⁺-N)", 0.0, 200.0),
        _battery(),
        _rssi(),
    ),
    Kind.SALINITY: (
        _ec(),
        _salinity(),
        _temp(),
        FieldSpec("water_level_cm", "cm", "water level above local datum", -1000.0, 1000.0),
        _battery(),
        _rssi(),
    ),
    Kind.LIGHT_TRAP: (
        *(_count(f"{s}_count", f"{name} caught in the last interval") for s, name in _TRAP_SPECIES.items()),
        *(_count(f"{s}_night", f"{name} caught over the whole night") for s, name in _TRAP_SPECIES.items()),
        FieldSpec("interval_s", "s", "length of the counting interval", 0, 86_400, "int"),
        FieldSpec("lamp_on", "0/1", "trap lamp state", 0, 1, "int"),
        FieldSpec("air_temp_c", "°C", "air temperature", -10.0, 60.0),
        FieldSpec("humidity_pct", "%", "relative humidity", 0.0, 100.0),
        _battery(),
        _rssi(),
    ),
    Kind.CAMERA: (
        FieldSpec("video_ok", "0/1", "video signal present", 0, 1, "int"),
        FieldSpec("fps", "frames/s", "frames analysed per second", 0.0, 240.0),
        FieldSpec("uptime_s", "s", "seconds since boot", 0, 10**9, "int"),
        _rssi(),
    ),
}
"""Fields of the ``telemetry`` channel per kind."""

EVENT_FIELDS: Final[tuple[FieldSpec, ...]] = (
    FieldSpec("confidence", "0..1", "detector confidence", 0.0, 1.0, required=True),
    FieldSpec("frames", "frames", "consecutive frames with the detection", 1, 100_000, "int", required=True),
    FieldSpec("water_above_line_cm", "cm", "water above the marked line (flooding)", -500.0, 500.0),
    FieldSpec("speed_kmh", "km/h", "measured speed (traffic)", 0.0, 400.0),
    FieldSpec("image_url", "", "snapshot URL (https)", type="string", max_length=512),
)
"""Fields of the camera ``event`` channel (besides ``event``, ``ts`` and ``seq``)."""

STATUS_FIELDS: Final[tuple[FieldSpec, ...]] = (
    _battery(),
    FieldSpec("battery_pct", "%", "battery level (LoRaWAN DevStatusAns, as network servers report it)", 0.0, 100.0),
    _rssi(),
    FieldSpec("fw", "", "firmware version", type="string", max_length=32),
)
"""Fields of the retained ``status`` channel (besides ``state``, ``ts`` and ``seq``)."""

STATUS_STATES: Final = ("online", "offline")

TS_MIN_MS: Final = 946_684_800_000
"""2000-01-01T00:00:00Z: a device timestamp before this is refused (clock never set)."""

TS_MAX_AHEAD_MS: Final = 5 * 60 * 1000
"""A device timestamp more than 5 minutes ahead of the ingest clock is refused."""

SEQ_MAX: Final = 2**53
"""Sequence numbers are non-negative integers below 2**53 (exact in every JSON parser)."""


def field_specs(kind: Kind) -> dict[str, FieldSpec]:
    """Telemetry fields of ``kind`` by name."""
    return {f.name: f for f in TELEMETRY_FIELDS[kind]}
