"""The Things Stack v3's MQTT integration, as the application server publishes a fleet's uplinks.

One connection (the application's MQTT integration) for every device; ``v3/{app}@{tenant}/devices/
{device_id}/up`` with the payload formatter's ``decoded_payload`` (lower-case keys, millimetres,
volts), ``f_cnt`` left out when 0 and the DevEUI in upper case, as TTS writes them; the gateway's
RSSI is a whole dBm. TTS publishes no device status on MQTT.
"""

from __future__ import annotations

import base64
import hashlib
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
    VendorKey,
    measured,
    ms_to_rfc3339,
    need,
    vendor_object,
)
from simulators.model import Reading

TENANT: Final = "mekong"
FCNT_MODULO: Final = 2**32
_SPECIES: Final = ("bph", "wbph", "glh", "leaffolder", "stemborer")

KEYS: Final[Keys] = {
    "ec_us_cm": VendorKey("conductivity", "mS/cm"),
    "salinity_ppt": VendorKey("salinity", "ppt"),
    "temp_c": VendorKey("temperature", "Cel"),
    "water_level_cm": VendorKey("water_level", "mm", "int"),
    "ph": VendorKey("ph"),
    "do_mg_l": VendorKey("dissolved_oxygen", "mg/l"),
    "turbidity_ntu": VendorKey("turbidity", "FNU"),
    "tss_mg_l": VendorKey("suspended_solids"),
    "nh4_mg_l": VendorKey("ammonium", "mg/l"),
    "battery_v": VendorKey("battery", "mV", "int"),
    **{f"{s}_count": VendorKey(f"count_{s}", "count", "int") for s in _SPECIES},
    **{f"{s}_night": VendorKey(f"night_{s}", "count", "int") for s in _SPECIES},
    "interval_s": VendorKey("interval", "s", "int"),
    "lamp_on": VendorKey("lamp", None, "int"),
    "air_temp_c": VendorKey("air_temperature", "Cel"),
    "humidity_pct": VendorKey("air_humidity", "%RH"),
}
"""Our field → the payload formatter's key (rssi_dbm comes from ``rx_metadata``)."""


def _app(device: Device) -> str:
    return f"mekong-{device.kind.value.replace('_', '-')}"


class TtsLink(Link):
    """The application's MQTT integration: every device's uplinks."""

    format = "tts_v3"

    def publishes(self) -> tuple[str, ...]:
        return ("v3/+/devices/+/up",)

    def readings(self, device: Device, readings: Sequence[Reading], now_ms: int) -> list[Message]:
        return [self._up(device, r) for r in readings]

    def _up(self, device: Device, reading: Reading) -> Message:
        ts, seq = int(reading["ts"]), int(reading["seq"])
        digest = hashlib.sha256(f"{device.id}/{ts}/{seq}".encode()).digest()
        dev_eui = need(device, "dev_eui")
        f_cnt = seq % FCNT_MODULO
        rssi = round(float(reading["rssi_dbm"])) if "rssi_dbm" in reading else None
        radio = {} if rssi is None else {"rssi": rssi, "snr": round(10.0 + rssi / 20.0, 1)}
        received = ms_to_rfc3339(ts, zulu=True)
        up: dict[str, Any] = {
            "session_key_id": base64.b64encode(digest[:16]).decode(),
            "f_port": 2,
            **({"f_cnt": f_cnt} if f_cnt else {}),
            "frm_payload": base64.b64encode(digest[16:27]).decode(),
            "decoded_payload": vendor_object(KEYS, reading, skip=("rssi_dbm",)),
            "rx_metadata": [
                {
                    "gateway_ids": {"gateway_id": f"gw-{device.province.replace('_', '-')}", "eui": "B827EBFFFE6A2D1C"},
                    "time": received,
                    "timestamp": int.from_bytes(digest[27:31], "big"),
                    **radio,
                    **({} if rssi is None else {"channel_rssi": rssi}),
                    "uplink_token": base64.b64encode(digest[:20]).decode(),
                }
            ],
            "settings": {
                "data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 10, "coding_rate": "4/5"}},
                "frequency": "921400000",
            },
            "received_at": received,
            "consumed_airtime": "0.370688s",
        }
        app = _app(device)
        device_id = need(device, "tts_device_id")
        message = {
            "end_device_ids": {
                "device_id": device_id,
                "application_ids": {"application_id": app},
                "dev_eui": dev_eui.upper(),
                "join_eui": "A840410000000100",
                "dev_addr": digest[28:32].hex().upper(),
            },
            "correlation_ids": [f"as:up:{digest[:13].hex().upper()}"],
            "received_at": received,
            "uplink_message": up,
        }
        stored: Reading = {"ts": ts, "seq": f_cnt, **measured(reading)}
        if rssi is not None:
            stored["rssi_dbm"] = float(rssi)
        topic = f"v3/{app}@{TENANT}/devices/{device_id}/up"
        return Message(topic, msgspec.json.encode(message), (Published(device, stored),))


class TtsV3(Format):
    schemes = ("dev_eui", "tts_device_id")
    name = "tts_v3"
    keys: ClassVar[Keys] = KEYS
    envelope: ClassVar[frozenset[str]] = frozenset({"rssi_dbm"})

    def links(self, devices: Sequence[Device]) -> list[Link]:
        return [TtsLink(f"tts-integration@{TENANT}", devices)] if devices else []

    def source(self) -> dict[str, Any]:
        return {"format": self.name, "model": self.model_name}
