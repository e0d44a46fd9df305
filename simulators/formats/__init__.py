"""The simulated fleet in other payload formats (``ioc simulate --format``).

:data:`FORMATS` holds one :class:`~simulators.formats.base.Format` per payload format ingest decodes
besides its own ``ioc_v1``; :func:`assign` decides which devices publish in which format (``mixed``:
the demo's fleet, partly behind a LoRaWAN network server, a Sparkplug edge node and in SenML);
:mod:`simulators.formats.sources` writes the sources file that reads them all.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Final, get_args

from contract.fields import Kind
from contract.fleet import Device
from simulators.config import SimFormat
from simulators.formats.base import Format, Link, Message, Published, need
from simulators.formats.chirpstack import ChirpStackV4
from simulators.formats.jsonmap import JsonMap
from simulators.formats.lineprotocol import InfluxLineProtocol
from simulators.formats.senml import SenML
from simulators.formats.sparkplug import SparkplugB
from simulators.formats.thingsboard import ThingsBoard
from simulators.formats.tts import TtsV3

__all__ = ["CHOICES", "FORMATS", "NATIVE", "Format", "Link", "Message", "Published", "assign", "connections"]

NATIVE: Final = "ioc_v1"
MIXED: Final = "mixed"
FORMATS: Final[dict[str, Format]] = {
    f.name: f for f in (ChirpStackV4(), TtsV3(), SparkplugB(), SenML(), ThingsBoard(), InfluxLineProtocol(), JsonMap())
}
CHOICES: Final[tuple[str, ...]] = get_args(SimFormat)
MIXED_NATIVE_SHARE: Final = 4
"""In ``mixed``, one device in this many (by a hash of its id) keeps the native contract."""


def mixed_format(device: Device) -> str:
    """The demo's mixed fleet: salinity and river water stations behind ChirpStack, pond sensors behind
    a Sparkplug edge node, insect traps in SenML; cameras and a quarter of the rest native."""
    if device.kind is Kind.CAMERA or zlib.crc32(device.id.encode()) % MIXED_NATIVE_SHARE == 0:
        return NATIVE
    if device.kind is Kind.LIGHT_TRAP:
        return "senml"
    if device.kind is Kind.WATER_QUALITY and device.site == "pond":
        return "sparkplug_b"
    return "chirpstack_v4"


def assign(devices: Sequence[Device], choice: str) -> dict[str, list[Device]]:
    """Devices by the format they publish in (``ioc_v1``: the native contract). A single format
    takes every device of a kind it carries; the others (cameras: their events exist only in the
    native contract) stay native."""
    if choice not in CHOICES:
        raise ValueError(f"unknown format {choice!r}: one of {', '.join(CHOICES)}")
    out: dict[str, list[Device]] = {}
    for d in devices:
        if choice == MIXED:
            name = mixed_format(d)
        elif choice != NATIVE and d.kind in FORMATS[choice].kinds:
            name = choice
        else:
            name = NATIVE
        out.setdefault(name, []).append(d)
    return out


def connections(devices: Sequence[Device], choice: str) -> list[tuple[str, Sequence[Device], Link | None]]:
    """(client id, devices, link) of every MQTT connection publishing ``devices`` in ``choice``: a
    native device's own (link None), and each format's links; :class:`ValueError` for a device
    without the external id its format names it by."""
    out: list[tuple[str, Sequence[Device], Link | None]] = []
    for name, group in assign(devices, choice).items():
        if name == NATIVE:
            out.extend((d.id, (d,), None) for d in group)
        else:
            fmt = FORMATS[name]
            for d in group:  # said now, naming the fix, not from inside a connection's callback
                for scheme in fmt.schemes:
                    need(d, scheme)
            out.extend((link.client_id, link.devices, link) for link in fmt.links(group))
    return out
