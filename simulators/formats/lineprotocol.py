"""InfluxDB line protocol as Telegraf publishes it: one agent per province polling its stations.

Each agent is one connection publishing ``telegraf/{host}/modbus`` (Telegraf's ``outputs.mqtt``
topic, ``batch = true``: several lines in one message); a line is Telegraf's ``inputs.modbus``
metric ``modbus,host=…,station={device id},slave_id=… field=value,… {ns}`` — the device is the
``station`` tag (our own id), the time in nanoseconds (Telegraf's default precision, which the
sources file must declare). Integers carry the ``i`` suffix. Line protocol has no counter: ingest
stores ``seq`` 0.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, ClassVar, Final

from contract.fleet import Device
from simulators.fleetgen import PROVINCE_CODES
from simulators.formats.base import Format, Keys, Link, Message, Published, VendorKey, measured
from simulators.model import Reading

MEASUREMENT: Final = "modbus"
DEVICE_TAG: Final = "station"
MAX_BATCH: Final = 500
NS_PER_MS: Final = 1_000_000
_SPECIES: Final = ("bph", "wbph", "glh", "leaffolder", "stemborer")

KEYS: Final[Keys] = {
    "ec_us_cm": VendorKey("EC", "mS/cm"),
    "salinity_ppt": VendorKey("salinity", "psu"),
    "temp_c": VendorKey("water_temp"),
    "water_level_cm": VendorKey("level", "m"),
    "ph": VendorKey("pH"),
    "do_mg_l": VendorKey("DO", "ppm"),
    "turbidity_ntu": VendorKey("turbidity"),
    "tss_mg_l": VendorKey("TSS", "g/L"),
    "nh4_mg_l": VendorKey("NH4", "ppm"),
    "battery_v": VendorKey("battery", "mV", "int"),
    "rssi_dbm": VendorKey("rssi"),
    **{f"{s}_count": VendorKey(f"{s}_count", None, "int") for s in _SPECIES},
    **{f"{s}_night": VendorKey(f"{s}_night", None, "int") for s in _SPECIES},
    "interval_s": VendorKey("interval", "s", "int"),
    "lamp_on": VendorKey("lamp", None, "int"),
    "air_temp_c": VendorKey("air_temp", "K"),
    "humidity_pct": VendorKey("rh"),
}


def _value(v: float | int | str) -> str:
    if isinstance(v, int):
        return f"{v}i"
    return repr(float(v))


class TelegrafAgent(Link):
    """One Telegraf agent (``host``) publishing its stations' readings."""

    format = "influx_lp"
    max_batch = MAX_BATCH

    def __init__(self, client_id: str, devices: Sequence[Device], host: str) -> None:
        super().__init__(client_id, devices)
        self.host = host
        self._slave = {d.id: i + 1 for i, d in enumerate(devices)}

    def publishes(self) -> tuple[str, ...]:
        return (f"telegraf/{self.host}/{MEASUREMENT}",)

    def line(self, device: Device, reading: Reading) -> str:
        fields = ",".join(f"{KEYS[f].key}={_value(KEYS[f].write(f, v))}" for f, v in measured(reading).items())
        tags = f"host={self.host},{DEVICE_TAG}={device.id},slave_id={self._slave[device.id]}"
        return f"{MEASUREMENT},{tags} {fields} {int(reading['ts']) * NS_PER_MS}"

    def readings(self, device: Device, readings: Sequence[Reading], now_ms: int) -> list[Message]:
        body = "\n".join(self.line(device, r) for r in readings) + "\n"
        stored = tuple(Published(device, {"ts": int(r["ts"]), "seq": 0, **measured(r)}) for r in readings)
        return [Message(f"telegraf/{self.host}/{MEASUREMENT}", body.encode(), stored)]


class InfluxLineProtocol(Format):
    name = "influx_lp"
    keys: ClassVar[Keys] = KEYS

    def links(self, devices: Sequence[Device]) -> list[Link]:
        by_province: dict[str, list[Device]] = defaultdict(list)
        for d in devices:
            by_province[d.province].append(d)
        links: list[Link] = []
        for province, ds in sorted(by_province.items()):
            host = f"{PROVINCE_CODES.get(province, province[:2])}-telegraf"
            links.append(TelegrafAgent(f"telegraf-{province}", ds, host))
        return links

    def source(self) -> dict[str, Any]:
        return {
            "format": self.name,
            "model": self.model_name,
            "precision": "ns",
            "device": {"path": DEVICE_TAG, "scheme": "id"},
        }

    def model(self) -> dict[str, Any]:
        return {"fields": {f: {**k.mapping(), "path": f"{MEASUREMENT}.{k.key}"} for f, k in KEYS.items()}}
