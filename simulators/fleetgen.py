"""A seeded, realistic device fleet over the seed provinces (a :class:`contract.fleet.Fleet`).

The kind mix is 35 % salinity, 35 % water quality, 18 % light traps and 12 % cameras; each
kind is spread evenly over the seven provinces. Places, crops, distances from the sea and
coasts come from :mod:`contract.geography`; about 8 % of devices carry simulator faults.

Every device also gets its ids in the other payload formats' schemes (:func:`external_ids`), derived
from its number and place alone (no random draw), so ``ioc simulate --format`` can publish any device
in any format and the registry finds it.
"""

from __future__ import annotations

import random
from typing import Any, Final

from contract.fields import Kind
from contract.fleet import Device, Fleet
from contract.geography import PROVINCES, District, Province

KIND_SHARES: Final = (
    (Kind.SALINITY, 0.35),
    (Kind.WATER_QUALITY, 0.35),
    (Kind.LIGHT_TRAP, 0.18),
    (Kind.CAMERA, 0.12),
)
KIND_CODES: Final = {
    Kind.SALINITY: "sal",
    Kind.WATER_QUALITY: "wq",
    Kind.LIGHT_TRAP: "trap",
    Kind.CAMERA: "cam",
}
PROVINCE_CODES: Final = {
    "hau_giang": "hg",
    "tien_giang": "tg",
    "long_an": "la",
    "dong_thap": "dt",
    "soc_trang": "st",
    "ca_mau": "cm",
    "ben_tre": "bt",
}
FAULTS_BY_KIND: Final = {
    Kind.SALINITY: ("drift", "stuck", "spikes", "gaps", "battery_sag"),
    Kind.WATER_QUALITY: ("drift", "stuck", "spikes", "gaps", "battery_sag"),
    Kind.LIGHT_TRAP: ("spikes", "gaps", "battery_sag"),
    Kind.CAMERA: ("gaps",),
}
"""Faults that make sense per kind ('offline' fits every kind)."""
FAULTY_SHARE: Final = 0.08
OFFLINE_SHARE: Final = 0.01
MAX_DEVICES: Final = 100_000

DEV_EUI_PREFIX: Final = "a84041"
"""The OUI our simulated DevEUIs start with (a LoRaWAN sensor vendor's, as real fleets' do)."""

_AQUACULTURE: Final = ("shrimp", "pangasius")
_CAMERA_SITES: Final = (("road", 0.35), ("market", 0.2), ("kitchen", 0.15), ("school", 0.15), ("sluice", 0.15))
_SALINITY_SITES: Final = (("river", 0.4), ("canal", 0.35), ("sluice", 0.25))


def kind_counts(n_devices: int) -> dict[Kind, int]:
    """How many devices of each kind a fleet of ``n_devices`` has (largest remainder)."""
    exact = [(kind, share * n_devices) for kind, share in KIND_SHARES]
    counts = {kind: int(x) for kind, x in exact}
    by_remainder = sorted(exact, key=lambda kx: kx[1] - int(kx[1]), reverse=True)
    for kind, _ in by_remainder[: n_devices - sum(counts.values())]:
        counts[kind] += 1
    return counts


def generate_fleet(n_devices: int, seed: int) -> Fleet:
    """A fleet of ``n_devices`` (1–100 000) devices; the same seed gives the same fleet."""
    if not 1 <= n_devices <= MAX_DEVICES:
        raise ValueError(f"n_devices must be between 1 and {MAX_DEVICES}, got {n_devices}")
    rng = random.Random(seed)
    slots: list[tuple[Kind, Province]] = []
    counter = 0
    for kind, count in kind_counts(n_devices).items():
        for _ in range(count):
            slots.append((kind, PROVINCES[counter % len(PROVINCES)]))
            counter += 1
    rng.shuffle(slots)
    devices = [
        Device.model_validate(_device(rng, number, kind, province))
        for number, (kind, province) in enumerate(slots, start=1)
    ]
    return Fleet(devices=tuple(devices))


def _weighted(rng: random.Random, options: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([o for o, _ in options], weights=[w for _, w in options])[0]


def _device(rng: random.Random, number: int, kind: Kind, province: Province) -> dict[str, Any]:
    district, site, crop = _place(rng, kind, province)
    code = PROVINCE_CODES.get(province.slug, province.slug[:2])
    return {
        "id": f"{code}-{KIND_CODES[kind]}-{number:04d}",
        "kind": kind,
        "province": province.slug,
        "district": district.slug,
        "site": site,
        "crop": crop,
        "lat": round(district.lat + rng.uniform(-0.03, 0.03), 5),
        "lon": round(district.lon + rng.uniform(-0.03, 0.03), 5),
        "km_from_sea": round(max(0.0, district.km_from_sea + rng.uniform(-2.5, 2.5)), 1),
        "coast": district.coast,
        "faults": _faults(rng, kind),
        "external_ids": external_ids(number, kind, province, district),
    }


def external_ids(number: int, kind: Kind, province: Province, district: District) -> dict[str, str]:
    """The ids device ``number`` has in other systems, one per scheme (:class:`contract.fleet.ExternalIds`):
    a DevEUI (vendor OUI + the number), The Things Stack's default ``eui-{deveui}`` device id, the
    Sparkplug ``group/edge node/device`` of its district's edge node, a ThingsBoard device name and a
    SenML base name (a URN; a pack names it ``bn`` followed by ``:``)."""
    code = PROVINCE_CODES.get(province.slug, province.slug[:2])
    device_id = f"{code}-{KIND_CODES[kind]}-{number:04d}"
    dev_eui = f"{DEV_EUI_PREFIX}{number:010x}"
    edge = province.districts.index(district) + 1
    return {
        "dev_eui": dev_eui,
        "tts_device_id": f"eui-{dev_eui}",
        "sparkplug": f"{province.slug}/{code}-gw-{edge:02d}/{device_id}",
        "thingsboard": f"{KIND_CODES[kind].upper()}_{code.upper()}_{number:04d}",
        "senml": f"urn:dev:mac:{dev_eui}",
    }


def _place(rng: random.Random, kind: Kind, province: Province) -> tuple[District, str, str]:
    """District, site and crop of a new device of ``kind`` in ``province``."""
    districts = province.districts
    if kind is Kind.SALINITY:
        # Salinity monitoring sits where salt can reach; a few upstream reference stations.
        weights = [1.0 if d.km_from_sea <= 90 else 0.25 for d in districts]
        district = rng.choices(districts, weights=weights)[0]
        return district, _weighted(rng, _SALINITY_SITES), district.crops[0]
    if kind is Kind.WATER_QUALITY:
        district = rng.choice(districts)
        farmed = [c for c in district.crops if c in _AQUACULTURE]
        if farmed and rng.random() < 0.5:
            return district, "pond", rng.choice(farmed)
        return district, rng.choice(("river", "canal")), district.crops[0]
    if kind is Kind.LIGHT_TRAP:
        rice = [d for d in districts if "rice" in d.crops] or list(districts)
        return rng.choice(rice), "field", "rice"
    return rng.choice(districts), _weighted(rng, _CAMERA_SITES), "none"


def _faults(rng: random.Random, kind: Kind) -> tuple[str, ...]:
    u = rng.random()
    if u < OFFLINE_SHARE:
        return ("offline",)
    if u < FAULTY_SHARE:
        options = FAULTS_BY_KIND[kind]
        first = rng.choice(options)
        if len(options) > 1 and rng.random() < 0.2:
            second = rng.choice([f for f in options if f != first])
            return tuple(sorted((first, second)))
        return (first,)
    return ()
