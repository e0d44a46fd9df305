"""The fleet registry as ingest uses it: device index, tags and precomputed series keys."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from contract.fields import CAMERA_EVENTS, Kind
from contract.fleet import Device, Fleet
from ingest.lineprotocol import escape_measurement, escape_tag

STATUS_MEASUREMENT = "device_status"


@dataclass(frozen=True, slots=True)
class RegisteredDevice:
    """A device with its position in the registry's columns."""

    index: int
    device: Device
    series: str
    """Line-protocol series key of its kind: ``measurement,tag=v,...`` (tags sorted, escaped)."""
    status_series: str
    """Series key of its ``device_status`` points."""
    event_series: dict[str, str]
    """Series keys of its camera events by event class (cameras only)."""


def series_key(measurement: str, tags: dict[str, str]) -> str:
    """``measurement,k=v,...`` with tags sorted by key and everything escaped."""
    tag_part = ",".join(f"{escape_tag(k)}={escape_tag(v)}" for k, v in sorted(tags.items()) if v)
    return f"{escape_measurement(measurement)},{tag_part}"


def registry_tags(device: Device) -> dict[str, str]:
    """The tags every point of ``device`` carries (from the registry, never from a payload)."""
    return {
        "device_id": device.id,
        "province": device.province,
        "district": device.district,
        "site": device.site,
        "crop": device.crop,
    }


@dataclass(frozen=True)
class Registry:
    """Devices by id, with stable indexes for columnar batches."""

    devices: tuple[RegisteredDevice, ...]
    by_id: dict[str, RegisteredDevice] = field(repr=False)
    kind_codes: npt.NDArray[np.int8] = field(repr=False)

    @classmethod
    def from_fleet(cls, fleet: Fleet) -> Registry:
        devices = tuple(
            RegisteredDevice(
                i,
                d,
                series_key(d.kind.value, registry_tags(d)),
                series_key(STATUS_MEASUREMENT, registry_tags(d)),
                {
                    e: series_key(d.kind.value, {**registry_tags(d), "event": e})
                    for e in (CAMERA_EVENTS if d.kind is Kind.CAMERA else ())
                },
            )
            for i, d in enumerate(fleet.devices)
        )
        kinds = list(Kind)
        codes = np.array([kinds.index(d.kind) for d in fleet.devices], dtype=np.int8)
        return cls(devices, {rd.device.id: rd for rd in devices}, codes)

    def __len__(self) -> int:
        return len(self.devices)
