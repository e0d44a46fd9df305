"""Ingest's registry: external ids (how other payload formats name a device) follow the database."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

from alerts.config import WebhookSettings
from contract.fleet import Device, ExternalIds
from ingest.registry import EXTERNAL_SCHEMES, Registry
from ingest.runner import build
from ingest.sources.config import FORMAT_SCHEMES, NATIVE_ONLY, DeviceRef, Format, Source, SourcesFile
from registry.files import write_devices
from registry.store import MEMORY_URL, DeviceRegistry
from simulators.fleetgen import generate_fleet
from tests.helpers import ingest_settings

SIM_SOURCES = Path(__file__).resolve().parents[2] / "deploy" / "sources.sim.yaml"


def _device(device_id: str, **changes: object) -> Device:
    base = generate_fleet(3, 1).devices[0]
    return base.model_copy(update={"id": device_id, "external_ids": ExternalIds(), **changes})


def test_external_ids_find_active_devices_and_follow_changes() -> None:
    lora = _device("bt-sal-1", model="dragino_lse01", external_ids=ExternalIds(dev_eui="A84041C3D185EE46"))
    plain = _device("bt-sal-2")
    registry = Registry([lora, plain])
    found = registry.external("dev_eui", "a84041c3d185ee46")
    assert found is not None
    assert found.id == "bt-sal-1"
    assert found.model == "dragino_lse01"
    assert registry.devices[1].external is None
    assert registry.devices[1].model == "ioc_v1"
    assert [d.tags() for d in registry.devices] == [lora.tags(), plain.tags()]

    moved = lora.model_copy(update={"external_ids": ExternalIds(dev_eui="0101010101010101", thingsboard="tram-1")})
    registry.apply([moved])
    assert registry.external("dev_eui", "a84041c3d185ee46") is None  # the old id no longer names it
    assert registry.external("dev_eui", "0101010101010101") is registry.by_id["bt-sal-1"]
    assert registry.external("thingsboard", "tram-1") is registry.by_id["bt-sal-1"]

    registry.apply([moved.model_copy(update={"state": "suspended"})])
    assert registry.external("thingsboard", "tram-1") is None  # known, but its readings are refused
    assert registry.by_external["thingsboard"]["tram-1"].state == "suspended"


def test_the_database_hands_ingest_the_model_and_external_ids() -> None:
    lora = _device("bt-sal-1", model="dragino_lse01", external_ids=ExternalIds(dev_eui="a84041c3d185ee46"))
    source = DeviceRegistry(MEMORY_URL)
    try:
        source.import_devices([lora, _device("bt-sal-2")], source="test")
        registry = Registry()
        source.each_tags_since(0, registry.apply)
    finally:
        source.close()
    assert [d.tags() for d in registry.devices] == [lora.tags(), _device("bt-sal-2").tags()]
    assert registry.external("dev_eui", "a84041c3d185ee46") is registry.by_id["bt-sal-1"]


def test_only_the_schemes_the_sources_use_are_kept() -> None:
    ids = ExternalIds(dev_eui="a84041c3d185ee46", thingsboard="tram-1", senml="urn:dev:mac:a84041c3d185ee46")
    lora = _device("bt-sal-1", external_ids=ids)
    native = Registry([lora], schemes=NATIVE_ONLY.external_schemes)
    assert native.by_id["bt-sal-1"].external is None
    assert native.external("dev_eui", "a84041c3d185ee46") is None
    assert native.by_id["bt-sal-1"].tags() == lora.tags()._replace(dev_eui=None, thingsboard=None, senml=None)
    assert native.apply([lora]) == 0
    first = native.by_id["bt-sal-1"]
    native.apply([lora.model_copy(update={"external_ids": ExternalIds(dev_eui="0101010101010101")})])
    assert native.by_id["bt-sal-1"] is first  # a change of an id it does not keep is no change here

    some = Registry([lora], schemes={"thingsboard"})
    assert some.by_id["bt-sal-1"].external == (None, None, None, "tram-1", None)
    assert some.external("thingsboard", "tram-1") is some.by_id["bt-sal-1"]
    assert some.external("dev_eui", "a84041c3d185ee46") is None
    some.apply([lora.model_copy(update={"external_ids": ExternalIds(thingsboard="tram-2")})])
    assert some.external("thingsboard", "tram-1") is None
    assert some.external("thingsboard", "tram-2") is some.by_id["bt-sal-1"]
    with pytest.raises(ValueError, match="unknown external id schemes"):
        Registry(schemes={"imei"})


def test_a_sources_file_names_the_schemes_it_looks_up() -> None:
    assert NATIVE_ONLY.external_schemes == frozenset()
    assert set(FORMAT_SCHEMES) == set(get_args(Format))
    assert {s for schemes in FORMAT_SCHEMES.values() for s in schemes} <= set(EXTERNAL_SCHEMES)
    sources = SourcesFile(
        sources=(
            Source(format="ioc_v1"),
            Source(format="tts_v3"),
            Source(format="json_map", topics=("acme/+/up",), device=DeviceRef(topic_level=1, scheme="sparkplug")),
            Source(format="influx_lp", topics=("lp/#",), precision="ms", device=DeviceRef(path="device_id")),
        )
    )
    assert sources.external_schemes == {"tts_device_id", "dev_eui", "sparkplug"}


def test_ingest_keeps_the_external_ids_its_sources_file_looks_up(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    write_devices(generate_fleet(20, 1).devices, fleet)
    webhooks = WebhookSettings(_env_file=None, alerts_db=tmp_path / "alerts.db")  # type: ignore[call-arg]
    kept: dict[Path | None, set[str]] = {}
    for sources in (None, SIM_SOURCES):
        settings = ingest_settings(1, "http://127.0.0.1:1", "ioc", fleet=fleet, rules=False, sources=sources)
        process = build(settings, webhooks)
        try:
            registry = process.service.registry
            kept[sources] = {scheme for scheme, ids in registry.by_external.items() if ids}
        finally:
            assert process.service.follower is not None
            assert process.service.follower.source is None  # a fleet file: read as it is, no database
            assert process.service.follower.revision == 1  # as its import into an empty registry was
    assert kept[None] == set()  # the native contract names devices by id: no external ids kept
    assert kept[SIM_SOURCES] == set(EXTERNAL_SCHEMES)  # the simulated formats use every scheme
