"""Ingest's registry: external ids (how other payload formats name a device) follow the database."""

from __future__ import annotations

from contract.fleet import Device, ExternalIds
from ingest.registry import Registry
from registry.store import MEMORY_URL, DeviceRegistry
from simulators.fleetgen import generate_fleet


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
