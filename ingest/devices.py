"""The fleet registry as the rule engine sees it (``rules.model.DeviceInfo``)."""

from __future__ import annotations

from collections.abc import Iterable

from contract.fleet import Device, DeviceTags, Fleet
from contract.geography import PROVINCE_BY_SLUG
from rules.model import DeviceInfo


def _names(province: str, district: str) -> tuple[str, str]:
    p = PROVINCE_BY_SLUG.get(province)
    if p is None:
        return district, province
    d = next((d for d in p.districts if d.slug == district), None)
    return (d.name if d else district), p.name


def device_infos(devices: Fleet | Iterable[Device | DeviceTags]) -> list[DeviceInfo]:
    """One :class:`DeviceInfo` per registered device, in registry order (the engine's indexes)."""
    infos = []
    places: dict[tuple[str, str], str] = {}  # one string per district, shared by its devices
    for d in devices.devices if isinstance(devices, Fleet) else devices:
        place = places.get((d.province, d.district))
        if place is None:
            district, province = _names(d.province, d.district)
            place = places[(d.province, d.district)] = f"{district}, {province}"
        infos.append(DeviceInfo(d.id, d.kind.value, d.province, d.district, d.site, d.crop, place, place))
    return infos
