"""The fleet registry as ingest uses it: device index, tags and precomputed series keys."""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from contract.fleet import Device, DeviceTags, Fleet
from ingest.lineprotocol import escape_measurement, escape_tag

STATUS_MEASUREMENT = "device_status"


@dataclass(frozen=True, slots=True)
class RegisteredDevice:
    """A device with its position in the registry's columns and its line-protocol series key."""

    index: int
    device: DeviceTags
    series: str
    """Line-protocol series key of its kind: ``measurement,tag=v,...`` (tags sorted, escaped)."""
    _tags_at: int
    """Where the tags start in ``series`` (its first comma)."""
    _tail_at: int
    """Where ``province=…`` starts in ``series``: a camera event's ``event`` tag goes just before."""

    @property
    def status_series(self) -> str:
        """Series key of its ``device_status`` points (the same tags)."""
        return STATUS_MEASUREMENT + self.series[self._tags_at :]

    def event_series(self, event: str) -> str:
        """Series key of a camera event of class ``event`` (one of ``CAMERA_EVENTS``)."""
        return f"{self.series[: self._tail_at]}event={escape_tag(event)},{self.series[self._tail_at :]}"


def series_key(measurement: str, tags: dict[str, str]) -> str:
    """``measurement,k=v,...`` with tags sorted by key and everything escaped."""
    tag_part = ",".join(f"{escape_tag(k)}={escape_tag(v)}" for k, v in sorted(tags.items()) if v)
    return f"{escape_measurement(measurement)},{tag_part}"


def registry_tags(device: Device | DeviceTags) -> dict[str, str]:
    """The tags every point of ``device`` carries (from the registry, never from a payload)."""
    return {
        "device_id": device.id,
        "province": device.province,
        "district": device.district,
        "site": device.site,
        "crop": device.crop,
    }


@functools.lru_cache(maxsize=16)
def _measurement(kind: str) -> str:
    return escape_measurement(kind)


@functools.lru_cache(maxsize=4096)
def _shared_tag(value: str) -> str:
    """An escaped tag value that many devices share (province, district, site, crop)."""
    return sys.intern(escape_tag(value))


def _registered(index: int, d: DeviceTags) -> RegisteredDevice:
    """Its series key as :func:`series_key` makes it (tags in sorted order; every registry tag is
    non-empty), built from escaped parts; one string per device (100,000 devices: well under 1 s)."""
    measurement = _measurement(d.kind.value)
    head = f"{measurement},crop={_shared_tag(d.crop)},device_id={escape_tag(d.id)},district={_shared_tag(d.district)},"
    series = f"{head}province={_shared_tag(d.province)},site={_shared_tag(d.site)}"
    return RegisteredDevice(index, d, series, len(measurement), len(head))


class Registry:
    """Devices by id, with stable indexes for columnar batches; follows the registry live.

    Indexes never move: a device keeps its index while it changes, is suspended or decommissioned
    (``by_id`` holds active devices only, so the decoder refuses the others), and a new device
    takes the next one. The rule engine's state arrays use the same indexes.
    """

    def __init__(self, devices: Iterable[Device | DeviceTags] = ()) -> None:
        self.devices: list[RegisteredDevice] = []
        self.by_id: dict[str, RegisteredDevice] = {}
        self._index: dict[str, int] = {}
        self.apply(devices)

    @classmethod
    def from_fleet(cls, fleet: Fleet) -> Registry:
        return cls(fleet.devices)

    def apply(self, devices: Iterable[Device | DeviceTags]) -> int:
        """Add or change ``devices`` (by id); returns how many were new."""
        added = 0
        for given in devices:
            d = given if isinstance(given, DeviceTags) else given.tags()
            index = self._index.get(d.id)
            if index is None:
                index = self._index[d.id] = len(self.devices)
                self.devices.append(_registered(index, d))
                added += 1
            elif self.devices[index].device != d:
                self.devices[index] = _registered(index, d)
            if d.active:
                self.by_id[d.id] = self.devices[index]
            else:
                self.by_id.pop(d.id, None)
        return added

    def refusal(self, device_id: str) -> str:
        """Why readings of ``device_id`` are refused (it is not active)."""
        index = self._index.get(device_id)
        if index is None:
            return f"device {device_id!r} is not registered"
        return f"device {device_id!r} is {self.devices[index].device.state}"

    def __len__(self) -> int:
        return len(self.devices)
