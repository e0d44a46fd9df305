"""The fleet registry as ingest uses it: device index, tags and precomputed series keys."""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from contract.fields import Kind
from contract.fleet import Device, DeviceTags, Fleet
from ingest.devices import KIND_TEXT, place_name
from rules.model import DeviceInfo
from storage.layout import STATUS_MEASUREMENT
from storage.lineprotocol import escape_measurement, escape_tag


@dataclass(frozen=True, slots=True)
class RegisteredDevice(DeviceInfo):
    """A registered device as ingest holds it, one object per device: the rule engine's
    :class:`~rules.model.DeviceInfo` (the engine and the alert store use this very object), its
    index in the registry's columns, its kind and state, and its line-protocol series key."""

    index: int
    device_kind: Kind
    state: str
    series: str
    """Line-protocol series key of its kind: ``measurement,tag=v,...`` (tags sorted, escaped)."""
    _tags_at: int
    """Where the tags start in ``series`` (its first comma)."""
    _tail_at: int
    """Where ``province=…`` starts in ``series``: a camera event's ``event`` tag goes just before."""
    model: str
    """The hardware and payload format it speaks (a sources file maps a model's field names)."""
    external: ExternalKeys | None
    """Its ids in other systems (DevEUI, The Things Stack, Sparkplug, ThingsBoard, SenML) that the
    registry keeps (see :class:`Registry`); None: none."""

    @property
    def active(self) -> bool:
        return self.state == "active"

    def tags(self) -> DeviceTags:
        """What the registry database says of it (of its external ids, those the registry keeps)."""
        return DeviceTags(
            self.id, self.device_kind, self.province, self.district, self.site, self.crop, self.state, self.model,
            *(self.external or _NO_EXTERNAL), self.lat, self.lon,
        )  # fmt: skip

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


_MEASUREMENTS: dict[Kind, str] = {k: escape_measurement(k.value) for k in Kind}
"""By kind (a dict: an enum's ``.value`` costs a Python call, 100,000 times at start-up)."""


@functools.lru_cache(maxsize=4096)
def _shared_tag(value: str) -> str:
    """An escaped tag value that many devices share (province, district, site, crop)."""
    return sys.intern(escape_tag(value))


ExternalKeys = tuple[str | None, str | None, str | None, str | None, str | None]
"""A device's external ids in :data:`EXTERNAL_SCHEMES` order."""
EXTERNAL_SCHEMES: Final = ("dev_eui", "tts_device_id", "sparkplug", "thingsboard", "senml")
_NO_EXTERNAL: Final[ExternalKeys] = (None, None, None, None, None)


def _registered(index: int, d: DeviceTags, external: ExternalKeys) -> RegisteredDevice:
    """Its series key as :func:`series_key` makes it (tags in sorted order; every registry tag is
    non-empty), built from escaped parts; one string per device (100,000 devices: well under 1 s)."""
    measurement = _MEASUREMENTS[d.kind]
    head = f"{measurement},crop={_shared_tag(d.crop)},device_id={escape_tag(d.id)},district={_shared_tag(d.district)},"
    series = f"{head}province={_shared_tag(d.province)},site={_shared_tag(d.site)}"
    place = place_name(d.province, d.district)
    return RegisteredDevice(
        d.id, KIND_TEXT[d.kind], d.province, d.district, d.site, d.crop, place, place,
        index, d.kind, d.state, series, len(measurement), len(head),
        d.model, None if external == _NO_EXTERNAL else external, lat=d.lat, lon=d.lon,
    )  # fmt: skip


class Registry:
    """Devices by id, with stable indexes for columnar batches; follows the registry live.

    Indexes never move: a device keeps its index while it changes, is suspended or decommissioned,
    and a new device takes the next one. The rule engine's state arrays use the same indexes.
    ``by_id`` holds every device; :meth:`active` only those whose readings are taken.

    Of the external ids it keeps and indexes those of ``schemes`` only (ingest: the schemes its
    sources look devices up by, :attr:`~ingest.sources.config.SourcesFile.external_schemes`; none for
    the native contract): the others are None here. At 100,000 devices with five ids each, all
    five take 60 MiB (the id strings, their maps and tuples).
    """

    def __init__(
        self, devices: Iterable[Device | DeviceTags] = (), *, schemes: Iterable[str] = EXTERNAL_SCHEMES
    ) -> None:
        self.devices: list[RegisteredDevice] = []
        self.by_id: dict[str, RegisteredDevice] = {}
        kept = frozenset(schemes)
        if not kept <= set(EXTERNAL_SCHEMES):
            raise ValueError(f"unknown external id schemes {sorted(kept - set(EXTERNAL_SCHEMES))}")
        self.by_external: dict[str, dict[str, RegisteredDevice]] = {scheme: {} for scheme in EXTERNAL_SCHEMES}
        """Scheme (:data:`EXTERNAL_SCHEMES`) → its id → device, for devices that have external ids. One
        map per scheme, keyed by the id strings the devices hold: no key object of its own per id
        (a (scheme, id) tuple per id was half the registry's memory at 100,000 devices)."""
        self._external_maps = tuple(self.by_external[scheme] for scheme in EXTERNAL_SCHEMES)
        self._kept: tuple[bool, ...] | None = (
            None if kept == set(EXTERNAL_SCHEMES) else tuple(scheme in kept for scheme in EXTERNAL_SCHEMES)
        )
        """Which of a device's external ids are kept, in :data:`EXTERNAL_SCHEMES` order; None: all."""
        self._keeps_none = not kept
        self.apply(devices)

    def _external_of(self, d: DeviceTags) -> ExternalKeys:
        """The external ids of ``d`` that this registry keeps (the others None)."""
        if self._keeps_none:
            return _NO_EXTERNAL
        external: ExternalKeys = d[8:13]
        kept = self._kept
        if kept is None or external == _NO_EXTERNAL:
            return external
        a, b, c, e, f = (value if keep else None for value, keep in zip(external, kept, strict=True))
        return a, b, c, e, f

    @classmethod
    def from_fleet(cls, fleet: Fleet) -> Registry:
        return cls(fleet.devices)

    def apply(self, devices: Iterable[Device | DeviceTags]) -> int:
        """Add or change ``devices`` (by id); returns how many were new."""
        added = 0
        for given in devices:
            d = given if isinstance(given, DeviceTags) else given.tags()
            known = self.by_id.get(d.id)
            external = self._external_of(d)
            if known is None:
                self.by_id[d.id] = registered = _registered(len(self.devices), d, external)
                self.devices.append(registered)
                added += 1
            elif known.tags() != d[:8] + external + d[13:]:  # as far as kept: an id not kept is no change
                self._unindex(known)
                self.by_id[d.id] = self.devices[known.index] = registered = _registered(known.index, d, external)
            else:
                continue
            if registered.external is not None:
                for index, value in zip(self._external_maps, registered.external, strict=True):
                    if value is not None:
                        index[value] = registered
        return added

    def _unindex(self, device: RegisteredDevice) -> None:
        for index, value in zip(self._external_maps, device.external or _NO_EXTERNAL, strict=True):
            if value is not None and index.get(value) is device:
                del index[value]

    def external(self, scheme: str, value: str) -> RegisteredDevice | None:
        """The active device that ``scheme`` (one of :data:`EXTERNAL_SCHEMES`) calls ``value``."""
        ids = self.by_external.get(scheme)
        device = ids.get(value) if ids is not None else None
        return device if device is not None and device.state == "active" else None

    def active(self, device_id: str) -> RegisteredDevice | None:
        """The device, if it is registered and active (its readings are taken)."""
        device = self.by_id.get(device_id)
        return device if device is not None and device.state == "active" else None

    def refusal(self, device_id: str) -> str:
        """Why readings of ``device_id`` are refused (it is not active)."""
        device = self.by_id.get(device_id)
        if device is None:
            return f"device {device_id!r} is not registered"
        return f"device {device_id!r} is {device.state}"

    def __len__(self) -> int:
        return len(self.devices)
