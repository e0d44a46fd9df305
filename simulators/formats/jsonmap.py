"""A vendor's JSON (``json_map``): a SenseCAP-style cloud forwarding its sensors' measurements.

One connection (the vendor cloud's MQTT forwarder) for every device; ``sensecap/mekong/{deviceEui}/
telemetry`` carries ``{"deviceEui", "timestamp" (ms), "frameCnt", "messages": [{"type":
"report_telemetry", "measurementId": 4102, "measurementValue": 27.31}, …]}`` — each quantity a
numeric measurement id (SenseCAP-like ids; those of quantities SenseCAP has no id for are this
simulated vendor's), units implied by the id (EC in mS/cm, battery in mV). The device is the
``deviceEui`` (external id ``dev_eui``), the counter ``frameCnt``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Final

import msgspec

from contract.fleet import Device
from simulators.formats.base import Format, Keys, Link, Message, Published, VendorKey, measured, need
from simulators.model import Reading

ORG: Final = "mekong"
_SPECIES: Final = ("bph", "wbph", "glh", "leaffolder", "stemborer")

KEYS: Final[Keys] = {
    "air_temp_c": VendorKey("4097"),
    "humidity_pct": VendorKey("4098", "%RH"),
    "temp_c": VendorKey("4102"),
    "ph": VendorKey("4106"),
    "ec_us_cm": VendorKey("4108", "mS/cm"),
    "do_mg_l": VendorKey("4109"),
    "water_level_cm": VendorKey("4117", "mm", "int"),
    "turbidity_ntu": VendorKey("4188"),
    "salinity_ppt": VendorKey("4189"),
    "tss_mg_l": VendorKey("4190"),
    "nh4_mg_l": VendorKey("4191"),
    **{f"{s}_count": VendorKey(f"{4201 + i}", None, "int") for i, s in enumerate(_SPECIES)},
    **{f"{s}_night": VendorKey(f"{4211 + i}", None, "int") for i, s in enumerate(_SPECIES)},
    "interval_s": VendorKey("4220", "s", "int"),
    "lamp_on": VendorKey("4221", None, "int"),
    "battery_v": VendorKey("5001", "mV", "int"),
    "rssi_dbm": VendorKey("5002"),
}


class VendorCloud(Link):
    """The vendor cloud's MQTT forwarder: every device's measurements."""

    format = "json_map"

    def publishes(self) -> tuple[str, ...]:
        return (f"sensecap/{ORG}/+/telemetry",)

    def readings(self, device: Device, readings: Sequence[Reading], now_ms: int) -> list[Message]:
        return [self._message(device, r) for r in readings]

    def _message(self, device: Device, reading: Reading) -> Message:
        eui = need(device, "dev_eui")
        messages = [
            {"type": "report_telemetry", "measurementId": int(KEYS[f].key), "measurementValue": KEYS[f].write(f, v)}
            for f, v in measured(reading).items()
        ]
        body = {
            "deviceEui": eui,
            "timestamp": int(reading["ts"]),
            "frameCnt": int(reading["seq"]),
            "messages": messages,
        }
        stored = Published(device, dict(reading))
        return Message(f"sensecap/{ORG}/{eui}/telemetry", msgspec.json.encode(body), (stored,))


class JsonMap(Format):
    schemes = ("dev_eui",)
    name = "json_map"
    keys: ClassVar[Keys] = KEYS

    def links(self, devices: Sequence[Device]) -> list[Link]:
        return [VendorCloud("sensecap-forwarder", devices)] if devices else []

    def source(self) -> dict[str, Any]:
        return {
            "format": self.name,
            "topics": ["sensecap/+/+/telemetry"],
            "model": self.model_name,
            "device": {"path": "deviceEui", "scheme": "dev_eui"},
            "time": {"path": "timestamp", "format": "unix_ms"},
            "seq": "frameCnt",
            "records": {"path": "messages", "name": "measurementId", "value": "measurementValue"},
        }
