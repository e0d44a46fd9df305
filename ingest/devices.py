"""The fleet registry as the rule engine sees it (``rules.model.DeviceInfo``)."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from contract.fields import Kind
from contract.fleet import Device, DeviceTags, Fleet
from contract.geography import PROVINCE_BY_SLUG
from rules.model import DeviceInfo

KIND_TEXT: dict[Kind, str] = {k: k.value for k in Kind}
"""A kind's text, by kind (a dict: an enum's ``.value`` costs a Python call)."""


@functools.lru_cache(maxsize=4096)
def place_name(province: str, district: str) -> str:
    """How a farmer names where a device is, e.g. "Ba Tri, Bến Tre" (slugs as they are if unknown);
    one string per district, shared by its devices."""
    p = PROVINCE_BY_SLUG.get(province)
    if p is None:
        return f"{district}, {province}"
    d = next((d for d in p.districts if d.slug == district), None)
    return f"{d.name if d else district}, {p.name}"


def device_infos(devices: Fleet | Iterable[Device | DeviceTags]) -> list[DeviceInfo]:
    """One :class:`DeviceInfo` per registered device, in registry order (the engine's indexes)."""
    infos = []
    for d in devices.devices if isinstance(devices, Fleet) else devices:
        place = place_name(d.province, d.district)
        infos.append(
            DeviceInfo(
                d.id, KIND_TEXT[d.kind], d.province, d.district, d.site, d.crop, place, place, lat=d.lat, lon=d.lon
            )
        )
    return infos
