"""ThingsBoard's gateway MQTT API, as a ThingsBoard IoT Gateway publishes for the devices behind it.

One gateway per province, one connection each. On connecting the gateway announces each device
(``v1/gateway/connect`` ``{"device": name, "type": …}``); telemetry goes to ``v1/gateway/telemetry``
as ``{name: [{"ts": ms, "values": {…}}, …]}`` (several readings of a device in one message); a
device that goes away is ``v1/gateway/disconnect``. Devices are known by their ThingsBoard name
(external id ``thingsboard``). Keys are camelCase without units, some values numeric strings
(ThingsBoard casts them); ThingsBoard has no counter, so ingest stores ``seq`` 0. (The device API,
``v1/devices/me/telemetry``, needs the broker plugin that puts the device's user name in the topic.)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, ClassVar, Final

import msgspec

from contract.fleet import Device
from simulators.formats.base import (
    Format,
    Keys,
    Link,
    Message,
    Published,
    StatusOf,
    VendorKey,
    measured,
    need,
    vendor_object,
)
from simulators.model import Reading

MAX_BATCH: Final = 500
_SPECIES: Final = ("bph", "wbph", "glh", "leaffolder", "stemborer")

KEYS: Final[Keys] = {
    "ec_us_cm": VendorKey("conductivity", "mS/cm", "str"),
    "salinity_ppt": VendorKey("salinity"),
    "temp_c": VendorKey("waterTemperature"),
    "water_level_cm": VendorKey("waterLevel", "m"),
    "ph": VendorKey("pH", None, "str"),
    "do_mg_l": VendorKey("dissolvedOxygen"),
    "turbidity_ntu": VendorKey("turbidity"),
    "tss_mg_l": VendorKey("tss"),
    "nh4_mg_l": VendorKey("ammonium"),
    "battery_v": VendorKey("batteryVoltage"),
    "rssi_dbm": VendorKey("rssi"),
    **{f"{s}_count": VendorKey(f"{s}Count", None, "int") for s in _SPECIES},
    **{f"{s}_night": VendorKey(f"{s}Night", None, "int") for s in _SPECIES},
    "interval_s": VendorKey("reportInterval", "s", "int"),
    "lamp_on": VendorKey("lampOn", None, "int"),
    "air_temp_c": VendorKey("airTemperature"),
    "humidity_pct": VendorKey("humidity"),
}


class Gateway(Link):
    """A ThingsBoard IoT Gateway."""

    format = "thingsboard"
    max_batch = MAX_BATCH

    def publishes(self) -> tuple[str, ...]:
        return tuple(f"v1/gateway/{event}" for event in ("telemetry", "connect", "disconnect"))

    def _announce(self, device: Device, event: str) -> Message:
        body: dict[str, str] = {"device": need(device, "thingsboard")}
        if event == "connect":
            body["type"] = f"mekong_{device.kind.value}"
        return Message(f"v1/gateway/{event}", msgspec.json.encode(body), what="status")

    def start(self, now_ms: int, status: StatusOf) -> list[Message]:
        return [self._announce(d, "connect") for d in self.devices]

    def readings(self, device: Device, readings: Sequence[Reading], now_ms: int) -> list[Message]:
        sets = [{"ts": int(r["ts"]), "values": vendor_object(KEYS, r)} for r in readings]
        body = {need(device, "thingsboard"): sets}
        stored = tuple(Published(device, {"ts": int(r["ts"]), "seq": 0, **measured(r)}) for r in readings)
        return [Message("v1/gateway/telemetry", msgspec.json.encode(body), stored)]

    def offline(self, device: Device, now_ms: int) -> list[Message]:
        return [self._announce(device, "disconnect")]


class ThingsBoard(Format):
    schemes = ("thingsboard",)
    name = "thingsboard"
    keys: ClassVar[Keys] = KEYS

    def links(self, devices: Sequence[Device]) -> list[Link]:
        by_province: dict[str, list[Device]] = defaultdict(list)
        for d in devices:
            by_province[d.province].append(d)
        return [Gateway(f"tb-gateway-{p}", ds) for p, ds in sorted(by_province.items())]

    def source(self) -> dict[str, Any]:
        return {"format": self.name, "model": self.model_name}
