"""Sparkplug B edge nodes (Eclipse Sparkplug 3.0, Tahu protobuf), one per district's gateway.

Each edge node is one MQTT connection publishing for the devices behind it
(``spBv1.0/{group}/{NBIRTH|DBIRTH|DDATA|DDEATH|NDEATH}/{edge}[/{device}]``, the device's external id
``group/edge/device``). On connecting it registers its NDEATH (with ``bdSeq``) as its MQTT will and
publishes its NBIRTH (``seq`` 0, ``bdSeq``, ``Node Control/Rebirth``) and one DBIRTH per device,
declaring every metric's name, alias, datatype and ``engUnit``; births carry no values yet
(``is_null``: nothing measured since the session began). DDATA then names metrics by alias alone,
each with its own timestamp (several readings of a device may share one DDATA, as a
store-and-forward node sends them); ``seq`` runs 0..255 and wraps over the node and all its devices.
An NCMD ``Node Control/Rebirth`` = true is answered with the NBIRTH and DBIRTHs again (``seq`` from 0,
the same ``bdSeq``: the MQTT session, and so the will, is the same). A device that goes away gets
its DDEATH; a node that stops publishes its NDEATH before disconnecting.

Metric names and units are a water-quality controller's (``Water/Salinity`` in ppt, ``Water/Level``
an Int16 in mm, the battery a UInt16 in mV, RSSI an Int32 — a whole dBm — the lamp a Boolean).
Ingest stores each reading with the DDATA's ``seq`` (Sparkplug's only counter).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, ClassVar, Final

from google.protobuf.message import DecodeError

from contract.fields import TELEMETRY_FIELDS
from contract.fleet import Device
from ingest.sources.sparkplug_b_pb2 import DataType, Payload
from simulators.formats.base import Format, Keys, Link, Message, Published, StatusOf, VendorKey, measured, need
from simulators.model import Reading

NAMESPACE: Final = "spBv1.0"
REBIRTH: Final = "Node Control/Rebirth"
MAX_BATCH: Final = 100
_SPECIES: Final = {"bph": "BPH", "wbph": "WBPH", "glh": "GLH", "leaffolder": "LeafFolder", "stemborer": "StemBorer"}

KEYS: Final[Keys] = {
    "ec_us_cm": VendorKey("Water/Conductivity", "uS/cm"),
    "salinity_ppt": VendorKey("Water/Salinity", "ppt"),
    "temp_c": VendorKey("Water/Temperature", "degC"),
    "water_level_cm": VendorKey("Water/Level", "mm", "int"),
    "ph": VendorKey("Water/pH", "pH"),
    "do_mg_l": VendorKey("Water/DO", "mg/L"),
    "turbidity_ntu": VendorKey("Water/Turbidity", "NTU"),
    "tss_mg_l": VendorKey("Water/TSS", "mg/L"),
    "nh4_mg_l": VendorKey("Water/NH4-N", "mg/L"),
    "battery_v": VendorKey("Power/Battery", "mV", "int"),
    "rssi_dbm": VendorKey("Radio/RSSI", "dBm", "int"),
    **{f"{s}_count": VendorKey(f"Trap/{n}/Count", "count", "int") for s, n in _SPECIES.items()},
    **{f"{s}_night": VendorKey(f"Trap/{n}/Night", "count", "int") for s, n in _SPECIES.items()},
    "interval_s": VendorKey("Trap/Interval", "min", "int"),
    "lamp_on": VendorKey("Trap/Lamp", None, "int"),
    "air_temp_c": VendorKey("Air/Temperature", "degC"),
    "humidity_pct": VendorKey("Air/Humidity", "%RH"),
}

DATATYPES: Final[dict[str, int]] = {
    "water_level_cm": DataType.Int16,
    "battery_v": DataType.UInt16,
    "rssi_dbm": DataType.Int32,
    "interval_s": DataType.UInt16,
    "lamp_on": DataType.Boolean,
    **{f"{s}_{w}": DataType.UInt32 for s in _SPECIES for w in ("count", "night")},
}
"""Each field's Sparkplug datatype (the others: Double)."""
_BITS: Final[dict[int, int]] = {DataType.Int16: 16, DataType.Int32: 32}


def _put(metric: Payload.Metric, datatype: int, value: float | int | str) -> None:
    """A value into the metric's oneof as Tahu writes it (signed integers in two's complement)."""
    if datatype == DataType.Double:
        metric.double_value = float(value)
    elif datatype == DataType.Boolean:
        metric.boolean_value = bool(value)
    else:
        n = int(value)
        bits = _BITS.get(datatype)
        metric.int_value = n + (1 << bits) if bits is not None and n < 0 else n


def _unit(metric: Payload.Metric, unit: str) -> None:
    metric.properties.keys.append("engUnit")
    metric.properties.values.add(type=DataType.String, string_value=unit)


class EdgeNode(Link):
    """One Sparkplug edge node and the devices behind it."""

    format = "sparkplug_b"
    max_batch = MAX_BATCH

    def __init__(self, client_id: str, devices: Sequence[Device], group: str, edge: str, bd_seq: int = 0) -> None:
        super().__init__(client_id, devices)
        self.group, self.edge = group, edge
        self.bd_seq = bd_seq % 256
        self._seq = 0
        self._name = {d.id: need(d, "sparkplug").rsplit("/", 1)[1] for d in devices}
        self._alias: dict[tuple[str, str], int] = {}
        for i, d in enumerate(devices):
            for j, spec in enumerate(s for s in TELEMETRY_FIELDS[d.kind] if s.name in KEYS):
                self._alias[(d.id, spec.name)] = 100 + 64 * i + j
        self.rebirths = 0
        self._dead: set[str] = set()

    def _topic(self, kind: str, device: Device | None = None) -> str:
        tail = "" if device is None else f"/{self._name[device.id]}"
        return f"{NAMESPACE}/{self.group}/{kind}/{self.edge}{tail}"

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (seq + 1) % 256
        return seq

    def _bd_seq(self, payload: Payload, now_ms: int | None) -> None:
        metric = payload.metrics.add(name="bdSeq", datatype=DataType.Int64, long_value=self.bd_seq)
        if now_ms is not None:
            metric.timestamp = now_ms

    def will(self) -> Message | None:
        payload = Payload()  # registered at CONNECT: Tahu's NDEATH has no time of its own
        self._bd_seq(payload, None)
        return Message(self._topic("NDEATH"), payload.SerializeToString(), what="control")

    def subscriptions(self) -> tuple[str, ...]:
        return (self._topic("NCMD"), f"{NAMESPACE}/{self.group}/DCMD/{self.edge}/+")

    def publishes(self) -> tuple[str, ...]:
        return tuple(f"{NAMESPACE}/{self.group}/{k}/{self.edge}" for k in ("NBIRTH", "NDATA", "NDEATH")) + tuple(
            f"{NAMESPACE}/{self.group}/{k}/{self.edge}/+" for k in ("DBIRTH", "DDATA", "DDEATH")
        )

    def start(self, now_ms: int, status: StatusOf) -> list[Message]:
        return self._births(now_ms)

    def _births(self, now_ms: int) -> list[Message]:
        self._seq = 0
        node = Payload(timestamp=now_ms, seq=self._next_seq())
        self._bd_seq(node, now_ms)
        node.metrics.add(name=REBIRTH, timestamp=now_ms, datatype=DataType.Boolean, boolean_value=False)
        node.metrics.add(
            name="Properties/Hardware Make", alias=1, timestamp=now_ms, datatype=DataType.String,
            string_value="Mekong IOC simulator",
        )  # fmt: skip
        out = [Message(self._topic("NBIRTH"), node.SerializeToString(), what="control")]
        for device in self.devices:
            if device.id in self._dead:  # gone for good (its DDEATH sent): a rebirth does not revive it
                continue
            birth = Payload(timestamp=now_ms, seq=self._next_seq())
            for spec in TELEMETRY_FIELDS[device.kind]:
                key = KEYS.get(spec.name)
                if key is None:
                    continue
                metric = birth.metrics.add(
                    name=key.key, alias=self._alias[(device.id, spec.name)], timestamp=now_ms,
                    datatype=DATATYPES.get(spec.name, DataType.Double), is_null=True,
                )  # fmt: skip
                if key.unit is not None:
                    _unit(metric, key.unit)
            out.append(Message(self._topic("DBIRTH", device), birth.SerializeToString(), what="status"))
        return out

    def readings(self, device: Device, readings: Sequence[Reading], now_ms: int) -> list[Message]:
        seq = self._next_seq()
        data = Payload(timestamp=now_ms, seq=seq)
        stored: list[Published] = []
        for reading in readings:
            ts = int(reading["ts"])
            kept: Reading = {"ts": ts, "seq": seq}
            for field, value in measured(reading).items():
                key = KEYS[field]
                written = key.write(field, value)
                metric = data.metrics.add(alias=self._alias[(device.id, field)], timestamp=ts)
                _put(metric, DATATYPES.get(field, DataType.Double), written)
                kept[field] = float(written) if field == "rssi_dbm" else value
            stored.append(Published(device, kept))
        return [Message(self._topic("DDATA", device), data.SerializeToString(), tuple(stored))]

    def offline(self, device: Device, now_ms: int) -> list[Message]:
        self._dead.add(device.id)
        death = Payload(timestamp=now_ms, seq=self._next_seq())
        return [Message(self._topic("DDEATH", device), death.SerializeToString(), what="status")]

    def stop(self, now_ms: int) -> list[Message]:
        death = Payload(timestamp=now_ms)
        self._bd_seq(death, now_ms)
        return [Message(self._topic("NDEATH"), death.SerializeToString(), what="control")]

    def command(self, topic: str, payload: bytes, now_ms: int) -> list[Message]:
        if topic != self._topic("NCMD"):
            return []
        try:
            cmd = Payload.FromString(payload)
        except DecodeError:
            return []
        if any(m.name == REBIRTH and m.WhichOneof("value") == "boolean_value" and m.boolean_value for m in cmd.metrics):
            self.rebirths += 1
            return self._births(now_ms)
        return []


class SparkplugB(Format):
    schemes = ("sparkplug",)
    name = "sparkplug_b"
    keys: ClassVar[Keys] = KEYS

    def links(self, devices: Sequence[Device]) -> list[Link]:
        nodes: dict[tuple[str, str], list[Device]] = defaultdict(list)
        for d in devices:
            group, edge, _ = need(d, "sparkplug").split("/")
            nodes[(group, edge)].append(d)
        return [EdgeNode(f"spb-{g}-{e}", ds, g, e) for (g, e), ds in sorted(nodes.items())]

    def source(self) -> dict[str, Any]:
        return {"format": self.name, "model": self.model_name}
