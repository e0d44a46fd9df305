"""Simulator output, the AsyncAPI document and the decoder agree: what the fleet publishes is
valid by the published schema and accepted by ingest, reading for reading."""

from __future__ import annotations

import msgspec

from contract.topics import Channel, device_topic
from ingest.batch import BatchBuilder
from ingest.decode import Decoder
from ingest.registry import Registry
from simulators.fleetgen import generate_fleet
from simulators.model import FleetModel
from tests.unit.test_contract_docs import payload_validator

NOW_MS = 1_774_000_000_000  # 2026-03-20: dry season, salinity intrusion at its height


def test_two_simulated_days_validate_against_asyncapi_and_the_decoder() -> None:
    fleet = generate_fleet(60, seed=11)
    model = FleetModel(fleet, seed=11, interval_s=900)
    decoder = Decoder(Registry.from_fleet(fleet), max_payload_bytes=262_144, max_readings=10_000)
    messages = model.between(NOW_MS - 2 * 86_400_000, NOW_MS)
    validators = {}
    checked = 0
    for msg in messages:
        if msg.channel is Channel.STATUS:
            continue  # the offline fault: the publisher turns it into the device's will
        key = (msg.device.kind, msg.channel)
        if key not in validators:
            validators[key] = payload_validator(msg.device.kind, msg.channel)
        errors = list(validators[key].iter_errors(msg.reading))
        assert not errors, (msg.device.id, msg.reading, errors[0].message)
        out = BatchBuilder()
        topic = device_topic(msg.device.province, msg.device.kind, msg.device.id, msg.channel)
        decoder.decode(topic, msgspec.json.encode(msg.reading), retained=False, now_ms=NOW_MS, out=out)
        batch = out.seal()
        assert (batch.rejections, batch.readings) == ([], 1), msg.reading
        checked += 1
    assert checked > 5000
    assert {m.device.kind for m in messages} == {d.kind for d in fleet.devices}


def test_status_and_will_validate_against_asyncapi() -> None:
    fleet = generate_fleet(8, seed=1)
    model = FleetModel(fleet, seed=1)
    for device in fleet.devices:
        validator = payload_validator(device.kind, Channel.STATUS)
        assert not list(validator.iter_errors(model.online_status(device, NOW_MS)))
        assert not list(validator.iter_errors(FleetModel.will_payload()))
