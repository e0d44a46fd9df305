"""ChirpStack v4's MQTT integration, as the network server publishes a LoRaWAN fleet's uplinks.

One connection (the network server's integration) for every device; an application per device kind.
``event/up`` carries the device profile codec's ``object``, Dragino-style: vendor keys, numeric
strings, volts and other units; ``fCnt`` is the device's frame counter (left out when 0, as
ChirpStack does); ``rxInfo`` the gateway's RSSI, a whole dBm. On start every device also reports
an ``event/status`` (battery level in percent). A LoRaWAN device that goes away simply goes silent.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar, Final

import msgspec

from contract.fields import Kind
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
    ms_to_rfc3339,
    need,
    vendor_object,
)
from simulators.model import Reading

NAMESPACE: Final = uuid.UUID("6f1c2a3e-5b7d-4e8f-9a0b-1c2d3e4f5a6b")
"""Seeds the simulated tenant, application and profile UUIDs (stable across runs)."""
TENANT_ID: Final = str(uuid.uuid5(NAMESPACE, "tenant"))
FCNT_MODULO: Final = 2**32
BATTERY_EMPTY_V: Final = 3.3
BATTERY_FULL_V: Final = 4.2
_SPECIES: Final = ("bph", "wbph", "glh", "leaffolder", "stemborer")

KEYS: Final[Keys] = {
    "ec_us_cm": VendorKey("conduct_SOIL", "uS/cm"),
    "salinity_ppt": VendorKey("salinity_SOIL", "PSU", "str"),
    "temp_c": VendorKey("temp_SOIL", None, "str"),
    "water_level_cm": VendorKey("water_level", "m"),
    "ph": VendorKey("PH1_SOIL", None, "str"),
    "do_mg_l": VendorKey("DO_mgL", None, "str"),
    "turbidity_ntu": VendorKey("TUR", "NTU"),
    "tss_mg_l": VendorKey("TSS", "g/L"),
    "nh4_mg_l": VendorKey("NH4_N", "ppm", "str"),
    "battery_v": VendorKey("Bat", "V"),
    **{f"{s}_count": VendorKey(f"{s.upper()}_cnt", None, "int") for s in _SPECIES},
    **{f"{s}_night": VendorKey(f"{s.upper()}_night", None, "int") for s in _SPECIES},
    "interval_s": VendorKey("TDC", "min", "int"),
    "lamp_on": VendorKey("LAMP", None, "int"),
    "air_temp_c": VendorKey("TempC_SHT", None, "str"),
    "humidity_pct": VendorKey("Hum_SHT", "%RH", "str"),
}
"""Our field → the codec's key (rssi_dbm comes from ``rxInfo``, not from the codec)."""


def application_id(kind: Kind) -> str:
    return str(uuid.uuid5(NAMESPACE, f"application/{kind.value}"))


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("/".join(map(str, parts)).encode()).digest()


def battery_level(battery_v: float) -> float:
    """A Li-ion cell's voltage as the percentage LoRaWAN's DevStatusAns reports."""
    share = (battery_v - BATTERY_EMPTY_V) / (BATTERY_FULL_V - BATTERY_EMPTY_V)
    return round(min(max(share, 0.0), 1.0) * 100.0, 1)


class ChirpStackLink(Link):
    """The network server's MQTT integration: every LoRaWAN device's events."""

    format = "chirpstack_v4"

    def publishes(self) -> tuple[str, ...]:
        return ("application/#",)

    def _device_info(self, device: Device) -> dict[str, Any]:
        kind = device.kind
        return {
            "tenantId": TENANT_ID,
            "tenantName": "Mekong IOC",
            "applicationId": application_id(kind),
            "applicationName": f"mekong-{kind.value}",
            "deviceProfileId": str(uuid.uuid5(NAMESPACE, f"profile/{kind.value}")),
            "deviceProfileName": f"Dragino {kind.value} AS923_2",
            "deviceName": device.id,
            "devEui": need(device, "dev_eui"),
            "deviceClassEnabled": "CLASS_A",
            "tags": {"province": device.province},
        }

    def _topic(self, device: Device, event: str) -> str:
        return f"application/{application_id(device.kind)}/device/{need(device, 'dev_eui')}/event/{event}"

    def start(self, now_ms: int, status: StatusOf) -> list[Message]:
        out = []
        for device in self.devices:
            battery = float(status(device, now_ms)["battery_v"])
            event = {
                "deduplicationId": str(uuid.UUID(bytes=_digest(device.id, "status", now_ms)[:16])),
                "time": ms_to_rfc3339(now_ms),
                "deviceInfo": self._device_info(device),
                "margin": 10,
                "batteryLevel": battery_level(battery),
            }
            out.append(Message(self._topic(device, "status"), msgspec.json.encode(event), what="status"))
        return out

    def readings(self, device: Device, readings: Sequence[Reading], now_ms: int) -> list[Message]:
        return [self._up(device, r) for r in readings]

    def _up(self, device: Device, reading: Reading) -> Message:
        ts, seq = int(reading["ts"]), int(reading["seq"])
        digest = _digest(device.id, ts, seq)
        f_cnt = seq % FCNT_MODULO
        rssi = round(float(reading["rssi_dbm"])) if "rssi_dbm" in reading else None
        radio = {} if rssi is None else {"rssi": rssi, "snr": round(10.0 + rssi / 20.0, 1)}
        event: dict[str, Any] = {
            "deduplicationId": str(uuid.UUID(bytes=digest[:16])),
            "time": ms_to_rfc3339(ts),
            "deviceInfo": self._device_info(device),
            "devAddr": digest[16:20].hex(),
            "adr": True,
            "dr": 2,
            **({"fCnt": f_cnt} if f_cnt else {}),
            "fPort": 2,
            "confirmed": False,
            "data": base64.b64encode(digest[:11]).decode(),
            "object": vendor_object(KEYS, reading, skip=("rssi_dbm",)),
            "rxInfo": [
                {
                    "gatewayId": f"0016c001f1{hashlib.sha256(device.province.encode()).hexdigest()[:6]}",
                    "uplinkId": int.from_bytes(digest[20:24], "big"),
                    "nsTime": ms_to_rfc3339(ts),
                    **radio,
                    "context": base64.b64encode(digest[24:28]).decode(),
                    "metadata": {"region_config_id": "as923_2", "region_common_name": "AS923_2"},
                }
            ],
            "txInfo": {
                "frequency": 921400000,
                "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 10, "codeRate": "CR_4_5"}},
            },
        }
        stored: Reading = {"ts": ts, "seq": f_cnt, **measured(reading)}
        if rssi is not None:
            stored["rssi_dbm"] = float(rssi)
        return Message(self._topic(device, "up"), msgspec.json.encode(event), (Published(device, stored),))


class ChirpStackV4(Format):
    schemes = ("dev_eui",)
    name = "chirpstack_v4"
    keys: ClassVar[Keys] = KEYS
    envelope: ClassVar[frozenset[str]] = frozenset({"rssi_dbm"})

    def links(self, devices: Sequence[Device]) -> list[Link]:
        return [ChirpStackLink("chirpstack-mqtt-integration", devices)] if devices else []

    def source(self) -> dict[str, Any]:
        return {"format": self.name, "model": self.model_name}
