"""The generated fleet: mix, spread, ids, places, faults, determinism."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from contract.fields import Kind
from contract.fleet import Fleet, dump_fleet, load_fleet
from contract.geography import PROVINCE_BY_SLUG, PROVINCES
from contract.topics import DEVICE_ID_RE
from simulators.fleetgen import (
    FAULTS_BY_KIND,
    KIND_CODES,
    PROVINCE_CODES,
    generate_fleet,
    kind_counts,
)

ID_RE = re.compile(r"(hg|tg|la|dt|st|cm|bt)-(sal|wq|trap|cam)-(\d{4,})")


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return generate_fleet(1000, seed=3)


def test_kind_mix(fleet: Fleet) -> None:
    counts = Counter(d.kind for d in fleet.devices)
    assert counts == {Kind.SALINITY: 350, Kind.WATER_QUALITY: 350, Kind.LIGHT_TRAP: 180, Kind.CAMERA: 120}


@pytest.mark.parametrize("n", [1, 2, 7, 13, 99, 100_000])
def test_kind_counts_add_up(n: int) -> None:
    counts = kind_counts(n)
    assert sum(counts.values()) == n
    for kind, share in ((Kind.SALINITY, 0.35), (Kind.CAMERA, 0.12)):
        assert abs(counts[kind] - share * n) < 1


def test_every_kind_spread_evenly_over_all_seven_provinces(fleet: Fleet) -> None:
    assert {d.province for d in fleet.devices} == {p.slug for p in PROVINCES}
    per_province = Counter(d.province for d in fleet.devices)
    assert max(per_province.values()) - min(per_province.values()) <= 1
    for kind in Kind:
        spread = Counter(d.province for d in fleet.devices if d.kind is kind)
        assert len(spread) == 7
        assert max(spread.values()) - min(spread.values()) <= 1, kind


def test_ids_are_unique_valid_and_say_province_and_kind(fleet: Fleet) -> None:
    ids = [d.id for d in fleet.devices]
    assert len(set(ids)) == len(ids)
    numbers = set()
    for d in fleet.devices:
        assert DEVICE_ID_RE.fullmatch(d.id)
        m = ID_RE.fullmatch(d.id)
        assert m, d.id
        assert m.group(1) == PROVINCE_CODES[d.province]
        assert m.group(2) == KIND_CODES[d.kind]
        numbers.add(int(m.group(3)))
    assert numbers == set(range(1, len(ids) + 1)), "one global counter"


def test_sites_and_crops_fit_the_kind_and_district(fleet: Fleet) -> None:
    for d in fleet.devices:
        district = next(x for x in PROVINCE_BY_SLUG[d.province].districts if x.slug == d.district)
        if d.kind is Kind.SALINITY:
            assert d.site in ("river", "canal", "sluice")
            assert d.crop == district.crops[0]
        elif d.kind is Kind.WATER_QUALITY:
            assert d.site in ("river", "canal", "pond")
            if d.site == "pond":
                assert d.crop in ("shrimp", "pangasius")
                assert d.crop in district.crops
        elif d.kind is Kind.LIGHT_TRAP:
            assert (d.site, d.crop) == ("field", "rice")
            assert "rice" in district.crops
        else:
            assert d.site in ("road", "market", "kitchen", "school", "sluice")
            assert d.crop == "none"
        assert d.coast == district.coast
        assert abs(d.lat - district.lat) <= 0.03 + 1e-9
        assert abs(d.lon - district.lon) <= 0.03 + 1e-9
        assert abs(d.km_from_sea - district.km_from_sea) <= 2.5 + 0.05


def test_ponds_and_durian_stations_exist(fleet: Fleet) -> None:
    assert any(d.site == "pond" and d.crop == "shrimp" for d in fleet.devices)
    assert any(d.site == "pond" and d.crop == "pangasius" for d in fleet.devices)
    assert any(d.kind is Kind.SALINITY and d.crop == "durian" for d in fleet.devices)


def test_about_8_percent_faulty_and_1_percent_offline() -> None:
    big = generate_fleet(10_000, seed=9)
    faulty = [d for d in big.devices if d.faults]
    offline = [d for d in big.devices if "offline" in d.faults]
    assert 0.065 <= len(faulty) / 10_000 <= 0.095
    assert 0.006 <= len(offline) / 10_000 <= 0.015
    for d in faulty:
        assert len(set(d.faults)) == len(d.faults)
        for f in d.faults:
            assert f == "offline" or f in FAULTS_BY_KIND[d.kind]
    kinds_of_faults = Counter(f for d in faulty for f in d.faults)
    assert set(kinds_of_faults) == {"drift", "stuck", "spikes", "gaps", "battery_sag", "offline"}


def test_same_seed_same_fleet_other_seed_other_fleet() -> None:
    assert generate_fleet(300, seed=1) == generate_fleet(300, seed=1)
    assert generate_fleet(300, seed=1) != generate_fleet(300, seed=2)


def test_sizes_from_1_to_100000() -> None:
    one = generate_fleet(1, seed=0)
    assert len(one.devices) == 1
    assert one.devices[0].kind is Kind.SALINITY
    for bad in (0, -1, 100_001):
        with pytest.raises(ValueError, match="between 1 and 100000"):
            generate_fleet(bad, seed=0)


def test_round_trips_through_the_fleet_file(tmp_path: Path) -> None:
    fleet = generate_fleet(50, seed=4)
    dump_fleet(fleet, tmp_path / "fleet.yaml")
    assert load_fleet(tmp_path / "fleet.yaml") == fleet
