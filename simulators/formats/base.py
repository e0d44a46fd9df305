"""What every payload format of the simulator shares: messages, links (MQTT connections) and vendor keys.

A format turns a device's readings into ``(topic, payload)`` messages as a real device, gateway or
network server of that format would publish them. Each message also says which readings it carries
*as ingest must store them* (:class:`Published`): the simulator's values, except where the format
itself cannot carry one exactly (a LoRaWAN gateway's RSSI is a whole dBm) or carries no counter.

A :class:`Link` is one MQTT connection: a device's own (SenML traps, the native contract) or a
gateway's for many devices (a LoRaWAN network server, a Sparkplug edge node, a ThingsBoard gateway,
a Telegraf agent). Vendor payloads name our fields with their own keys and units
(:class:`VendorKey`); the same table gives the sources file's model, so the two cannot disagree.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal

from contract.fields import TELEMETRY_FIELDS, FieldSpec, Kind
from contract.fleet import Device
from simulators.model import Reading

MODEL_PREFIX: Final = "sim_"
"""A format's model in the sources file is ``sim_<format>``."""

Style = Literal["float", "int", "str"]
"""How a vendor writes a value: a JSON number, a whole number, or a numeric string ("24.59")."""

StatusOf = Callable[[Device, int], Reading]
"""The retained status a device reports on connecting (the fleet model's, consumes a ``seq``)."""

_TO_THEIRS: Final[dict[tuple[str, str], Callable[[float], float]]] = {
    ("µS/cm", "mS/cm"): lambda x: x / 1_000.0,
    ("µS/cm", "S/m"): lambda x: x / 10_000.0,
    ("°C", "K"): lambda x: x + 273.15,
    ("°C", "degF"): lambda x: x * 9.0 / 5.0 + 32.0,
    ("V", "mV"): lambda x: x * 1_000.0,
    ("cm", "m"): lambda x: x / 100.0,
    ("cm", "mm"): lambda x: x * 10.0,
    ("mg/L", "g/L"): lambda x: x / 1_000.0,
    ("mg/L", "kg/m3"): lambda x: x / 1_000.0,
    ("‰", "%"): lambda x: x / 10.0,
    ("s", "min"): lambda x: x / 60.0,
}
"""Our unit → a vendor's, the inverse of :func:`ingest.sources.units.converter` (tested)."""

FIELD_SPECS: Final[dict[str, FieldSpec]] = {s.name: s for specs in TELEMETRY_FIELDS.values() for s in specs}


@dataclass(frozen=True, slots=True)
class VendorKey:
    """Where a vendor's payload holds one of our fields: its key, its unit (None: ours), its style."""

    key: str
    unit: str | None = None
    style: Style = "float"

    def write(self, field: str, value: float | int | str) -> float | int | str:
        """Our ``value`` of ``field`` as the vendor writes it."""
        ours = FIELD_SPECS[field].unit
        x: float | int = value if isinstance(value, int | float) else float(value)
        if self.unit is not None and self.unit != ours and (ours, self.unit) in _TO_THEIRS:
            x = _TO_THEIRS[(ours, self.unit)](float(x))
        if self.style == "int":
            return round(x)
        if self.style == "str":
            return repr(float(x)) if isinstance(x, float) else str(x)
        return x

    def mapping(self) -> dict[str, str]:
        """Its entry in the sources file's model."""
        return {"path": self.key} if self.unit is None else {"path": self.key, "unit": self.unit}


Keys = Mapping[str, VendorKey]
"""Our field → where a format's payload holds it."""


def model_entry(keys: Keys) -> dict[str, Any]:
    """The sources file's ``models`` entry that reads payloads written with ``keys``."""
    return {"fields": {field: key.mapping() for field, key in keys.items()}}


def measured(reading: Reading) -> dict[str, float | int | str]:
    """A reading's measurements: everything but its time and counter."""
    return {k: v for k, v in reading.items() if k not in ("ts", "seq")}


def vendor_object(keys: Keys, reading: Reading, *, skip: tuple[str, ...] = ()) -> dict[str, float | int | str]:
    """A reading's measurements under the vendor's keys (fields in ``skip`` travel elsewhere)."""
    return {keys[f].key: keys[f].write(f, v) for f, v in measured(reading).items() if f not in skip}


@dataclass(frozen=True, slots=True)
class Published:
    """A reading a message carries, as ingest must store it (``seq`` only when the format carries one)."""

    device: Device
    reading: Reading


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT publish (QoS 1): what it carries decides how it is counted when the broker acks it."""

    topic: str
    payload: bytes
    readings: tuple[Published, ...] = ()
    what: Literal["reading", "status", "control"] = "reading"
    retain: bool = False


class Link(ABC):
    """One MQTT connection publishing the readings of ``devices`` in one format."""

    format: ClassVar[str]
    max_batch: ClassVar[int] = 1
    """Readings of one device one message may carry."""

    def __init__(self, client_id: str, devices: Sequence[Device]) -> None:
        self.client_id = client_id
        self.devices = tuple(devices)

    def will(self) -> Message | None:
        """The MQTT will the broker publishes when the connection vanishes."""
        return None

    def subscriptions(self) -> tuple[str, ...]:
        """Topic filters it listens to (commands)."""
        return ()

    @abstractmethod
    def publishes(self) -> tuple[str, ...]:
        """Topic filters of everything it publishes (what the broker's ACL must let it write)."""

    def start(self, now_ms: int, status: StatusOf) -> list[Message]:
        """What it publishes once connected (births, gateway connects, status)."""
        return []

    @abstractmethod
    def readings(self, device: Device, readings: Sequence[Reading], now_ms: int) -> list[Message]:
        """Messages carrying ``readings`` of ``device`` (at most :attr:`max_batch`)."""

    def offline(self, device: Device, now_ms: int) -> list[Message]:
        """What it publishes when ``device`` goes away for good (a device death, a gateway disconnect)."""
        return []

    def stop(self, now_ms: int) -> list[Message]:
        """What it publishes before it disconnects on purpose."""
        return []

    def command(self, topic: str, payload: bytes, now_ms: int) -> list[Message]:
        """Its answer to a message on one of :meth:`subscriptions`."""
        return []


class Format(ABC):
    """A payload format: which kinds it carries, its links, and its sources-file entry and model."""

    name: ClassVar[str]
    kinds: ClassVar[frozenset[Kind]] = frozenset({Kind.SALINITY, Kind.WATER_QUALITY, Kind.LIGHT_TRAP})
    """Camera detection events exist only in the native contract: cameras stay native."""
    keys: ClassVar[Keys]
    schemes: ClassVar[tuple[str, ...]] = ()
    """The external ids its payloads name a device by (every device it publishes must have them)."""
    envelope: ClassVar[frozenset[str]] = frozenset()
    """Fields the format's envelope carries rather than the vendor's keys (a gateway's RSSI)."""

    @abstractmethod
    def links(self, devices: Sequence[Device]) -> list[Link]:
        """The connections that publish ``devices`` (all of a kind this format carries)."""

    @abstractmethod
    def source(self) -> dict[str, Any]:
        """Its entry under ``sources:`` (the model named :attr:`model_name`)."""

    @property
    def model_name(self) -> str:
        return f"{MODEL_PREFIX}{self.name}"

    def model(self) -> dict[str, Any]:
        return model_entry(self.keys)


def need(device: Device, scheme: str) -> str:
    """``device``'s external id in ``scheme``; :class:`ValueError` naming the fix when it has none."""
    value = getattr(device.external_ids, scheme)
    if value is None:
        raise ValueError(
            f"device {device.id} has no external id {scheme!r}: add it to the fleet file's external_ids "
            "(`ioc simulate --write-fleet` generates them)"
        )
    return str(value)


def ms_to_rfc3339(ts_ms: int, *, nanos: bool = True, zulu: bool = False) -> str:
    """Epoch ms as RFC 3339 text the way network servers write it (nanoseconds, ``+00:00`` or ``Z``)."""
    seconds, ms = divmod(ts_ms, 1000)
    base = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f".{ms:03d}000000" if nanos else f".{ms:03d}"
    return f"{base}{frac}{'Z' if zulu else '+00:00'}"
