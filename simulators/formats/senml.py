"""SenML packs (RFC 8428, JSON), as a cellular device publishes its own measurements.

Each device is its own connection (client id and user name = its id), publishing one pack per
reading on ``senml/{province}/{device id}`` (SenML has no topic convention; ingest names the device
by the pack alone): ``[{"bn": "{senml id}:", "bt": seconds, "n": …, "u": …, "v": …}, …]`` — the
base name is the device's external id ``senml``, each record one quantity in a SenML unit (``Cel``,
``S/m``, ``%RH``, ``kg/m3``, ``dBm``; salinity in ``%``). SenML has no counter: ingest stores
``seq`` 0. A device that goes away drops its connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Final

import msgspec

from contract.fleet import Device
from simulators.formats.base import Format, Keys, Link, Message, Published, VendorKey, measured, need
from simulators.model import Reading

_SPECIES: Final = ("bph", "wbph", "glh", "leaffolder", "stemborer")

KEYS: Final[Keys] = {
    "ec_us_cm": VendorKey("conductivity", "S/m"),
    "salinity_ppt": VendorKey("salinity", "%"),
    "temp_c": VendorKey("temperature", "Cel"),
    "water_level_cm": VendorKey("level", "m"),
    "ph": VendorKey("ph", "pH"),
    "do_mg_l": VendorKey("dissolved-oxygen", "kg/m3"),
    "turbidity_ntu": VendorKey("turbidity", "NTU"),
    "tss_mg_l": VendorKey("suspended-solids", "kg/m3"),
    "nh4_mg_l": VendorKey("ammonium", "kg/m3"),
    "battery_v": VendorKey("battery", "V"),
    "rssi_dbm": VendorKey("rssi", "dBm"),
    **{f"{s}_count": VendorKey(f"{s}/count", "count", "int") for s in _SPECIES},
    **{f"{s}_night": VendorKey(f"{s}/night", "count", "int") for s in _SPECIES},
    "interval_s": VendorKey("interval", "s", "int"),
    "lamp_on": VendorKey("lamp", None, "int"),
    "air_temp_c": VendorKey("air/temperature", "Cel"),
    "humidity_pct": VendorKey("air/humidity", "%RH"),
}


def pack(device: Device, reading: Reading) -> list[dict[str, Any]]:
    """One reading as a SenML pack: the base name and time on the first record."""
    records: list[dict[str, Any]] = []
    for field, value in measured(reading).items():
        key = KEYS[field]
        record: dict[str, Any] = {"n": key.key, "v": key.write(field, value)}
        if key.unit is not None:
            record["u"] = key.unit
        records.append(record)
    if records:
        records[0] = {"bn": need(device, "senml") + ":", "bt": int(reading["ts"]) / 1000, **records[0]}
    return records


class SenMLDevice(Link):
    """A device publishing its own SenML packs."""

    format = "senml"

    def publishes(self) -> tuple[str, ...]:
        return tuple(f"senml/{d.province}/{d.id}" for d in self.devices)

    def readings(self, device: Device, readings: Sequence[Reading], now_ms: int) -> list[Message]:
        topic = f"senml/{device.province}/{device.id}"
        return [
            Message(topic, msgspec.json.encode(pack(device, r)), (Published(device, {**r, "seq": 0}),))
            for r in readings
        ]


class SenML(Format):
    schemes = ("senml",)
    name = "senml"
    keys: ClassVar[Keys] = KEYS

    def links(self, devices: Sequence[Device]) -> list[Link]:
        return [SenMLDevice(d.id, (d,)) for d in devices]

    def source(self) -> dict[str, Any]:
        return {  # senml/{province}/{device}: a device's packs speak for it alone
            "format": self.name, "topics": ["senml/#"], "model": self.model_name,
            "device": {"topic_level": 2, "scheme": "id"},
        }  # fmt: skip
