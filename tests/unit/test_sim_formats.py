"""The simulator's payload formats (pure logic): every message decodes, through ingest's own decoders
and the simulated sources file, to exactly the readings the simulator says it published."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.fields import TELEMETRY_FIELDS, Kind
from contract.fleet import Device, ExternalIds, Fleet
from ingest.batch import BatchBuilder
from ingest.decode import Decoder
from ingest.registry import Registry
from ingest.sources.config import load_sources, parse_sources
from ingest.sources.router import Router, matches
from ingest.sources.units import converter
from simulators.fleetgen import generate_fleet
from simulators.formats import CHOICES, FORMATS, NATIVE, assign, mixed_format
from simulators.formats.base import FIELD_SPECS, Link, Message, Published
from simulators.formats.sources import sim_sources, sources_yaml
from simulators.formats.sparkplug import EdgeNode
from simulators.model import FleetModel

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / "deploy" / "sources.sim.yaml"
T0 = 1_767_240_000_000
HOURS = 30
SOURCES = parse_sources(sim_sources(), "simulated sources")


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return generate_fleet(24, seed=11)


def test_the_checked_in_sources_file_is_what_the_encoders_write() -> None:
    assert CHECKED_IN.read_text(encoding="utf-8") == sources_yaml(), (
        "regenerate: ioc simulate --write-sources deploy/sources.sim.yaml"
    )
    loaded = load_sources(CHECKED_IN)
    assert {s.format for s in loaded.sources} == {NATIVE, *FORMATS}
    assert all(s.model == f"sim_{s.format}" for s in loaded.sources if s.format != NATIVE)


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_vendor_unit_converts_back_to_ours(name: str) -> None:
    for field, key in FORMATS[name].keys.items():
        spec = FIELD_SPECS[field]
        convert = converter(spec.unit, key.unit or spec.unit)
        assert convert is not None, (name, field, key.unit)
        for x in (spec.lo, spec.hi, 12.345, 0.001) if spec.type == "float" else (int(spec.lo), 60, 3600):
            if not spec.lo <= x <= spec.hi:
                continue
            written = key.write(field, x)
            back = convert(float(written))
            assert back == pytest.approx(x, rel=1e-9, abs=1e-9 if key.style != "int" else 0.5), (name, field)


def test_every_format_covers_every_field_of_the_kinds_it_carries() -> None:
    for f in FORMATS.values():
        for kind in f.kinds:
            missing = {s.name for s in TELEMETRY_FIELDS[kind]} - set(f.keys) - f.envelope
            assert not missing, (f.name, kind, missing)


def test_generated_devices_have_every_external_id_and_they_are_unique(fleet: Fleet) -> None:
    big = generate_fleet(2000, seed=2)
    for scheme in ExternalIds.model_fields:
        values = [getattr(d.external_ids, scheme) for d in big.devices]
        assert None not in values, scheme
        assert len(set(values)) == len(values), scheme
    d = big.devices[0]
    assert d.external_ids.tts_device_id == f"eui-{d.external_ids.dev_eui}"
    group, _, name = (d.external_ids.sparkplug or "").split("/")
    assert (group, name) == (d.province, d.id)
    assert generate_fleet(2000, seed=2) == big  # deterministic


def _lines(out: BatchBuilder) -> dict[tuple[str, str, int], dict[str, float]]:
    """Stored points from the batch's line protocol: (measurement, device, ts) → fields with seq."""
    points: dict[tuple[str, str, int], dict[str, float]] = {}
    for line in out.lines:
        head, fields, ts = line.split(" ")
        measurement, *tags = head.split(",")
        device = dict(t.split("=", 1) for t in tags)["device_id"]
        values = {}
        for pair in fields.split(","):
            k, v = pair.split("=", 1)
            values[k] = float(v[:-1]) if v.endswith("i") else float(v)
        points[(measurement, device, int(ts))] = values
    return points


def _decode_all(fleet: Fleet, messages: list[Message]) -> tuple[BatchBuilder, list[str]]:
    registry = Registry(fleet.devices)
    ignored: list[str] = []
    router = Router(
        SOURCES, Decoder(registry, max_payload_bytes=1 << 20, max_readings=10_000), registry, ignored.append
    )
    out = BatchBuilder()
    for m in messages:
        router.decode(m.topic, m.payload, retained=m.retain, now_ms=T0 + HOURS * 3_600_000, out=out)
    return out, ignored


def _publish(fleet: Fleet, choice: str, batch: int = 1) -> tuple[list[Message], list[Published]]:
    """Every message the fleet's non-native links publish in a window (births first)."""
    model = FleetModel(fleet, seed=5, interval_s=600)
    links: dict[str, Link] = {}
    messages: list[Message] = []
    for name, devices in assign(fleet.devices, choice).items():
        if name == NATIVE:
            continue
        for link in FORMATS[name].links(devices):
            messages.extend(link.start(T0, model.online_status))
            for d in link.devices:
                links[d.id] = link
    buffers: dict[str, list[Any]] = {}
    for msg in model.between(T0, T0 + HOURS * 3_600_000):
        if msg.device.id not in links:
            continue
        link = links[msg.device.id]
        if msg.channel.value == "status":
            messages.extend(link.offline(msg.device, msg.ts_ms))
            continue
        buf = buffers.setdefault(msg.device.id, [])
        buf.append(msg.reading)
        if len(buf) >= min(batch, link.max_batch):
            messages.extend(link.readings(msg.device, buffers.pop(msg.device.id), msg.ts_ms))
    for device_id, buf in buffers.items():
        messages.extend(links[device_id].readings(fleet.by_id()[device_id], buf, T0))
    return messages, [p for m in messages for p in m.readings]


def assert_stored_as_published(
    points: dict[tuple[str, str, int], dict[str, float]], published: list[Published]
) -> None:
    points = {k: v for k, v in points.items() if k[0] != "device_status"}
    assert len(points) == len(published)
    for p in published:
        got = points[(p.device.kind.value, p.device.id, int(p.reading["ts"]))]
        want = {k: v for k, v in p.reading.items() if k != "ts"}
        assert set(got) == set(want), (p.device.id, set(got) ^ set(want))
        for k, v in want.items():
            assert math.isclose(got[k], float(v), rel_tol=1e-9, abs_tol=1e-9), (p.device.id, k, got[k], v)


@pytest.mark.parametrize("choice", [c for c in CHOICES if c != NATIVE])
@pytest.mark.parametrize("batch", [1, 20])
def test_each_format_decodes_to_exactly_what_was_published(fleet: Fleet, choice: str, batch: int) -> None:
    messages, published = _publish(fleet, choice, batch)
    assert len(published) > 50
    out, _ = _decode_all(fleet, messages)
    assert [(r.reason, r.detail) for r in out.rejections] == []
    assert out.readings == len(published)
    assert_stored_as_published(_lines(out), published)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_a_link_publishes_only_where_its_broker_acl_lets_it(fleet: Fleet, name: str) -> None:
    """What :meth:`Link.publishes` declares is what the demo's broker allows the link's account."""
    model = FleetModel(fleet, seed=5, interval_s=600)
    hour = [m for m in model.between(T0, T0 + 3_600_000) if m.channel.value == "telemetry"]
    checked = 0
    for link in FORMATS[name].links(assign(fleet.devices, name)[name]):
        sent = [*link.start(T0, model.online_status), *([w] if (w := link.will()) else [])]
        for d in link.devices:
            readings = [m.reading for m in hour if m.device.id == d.id][:2]
            sent += [*link.readings(d, readings, T0), *link.offline(d, T0)]
        for m in sent:
            assert any(matches(f, m.topic) for f in link.publishes()), (link.client_id, m.topic, link.publishes())
        checked += sum(1 for m in sent if m.readings)
    assert checked > 0


def test_mixed_spreads_the_fleet_over_four_formats() -> None:
    fleet = generate_fleet(200, seed=1)
    by = assign(fleet.devices, "mixed")
    assert set(by) == {NATIVE, "chirpstack_v4", "sparkplug_b", "senml"}
    assert all(mixed_format(d) == NATIVE for d in fleet.devices if d.kind is Kind.CAMERA)
    assert {d.site for d in by["sparkplug_b"]} == {"pond"}
    assert {d.kind for d in by["senml"]} == {Kind.LIGHT_TRAP}
    assert 0.1 < sum(d.kind is not Kind.CAMERA for d in by[NATIVE]) / len(fleet.devices) < 0.35


def _edge(fleet: Fleet) -> EdgeNode:
    links = FORMATS["sparkplug_b"].links([d for d in fleet.devices if d.kind is not Kind.CAMERA])
    return max((link for link in links if isinstance(link, EdgeNode)), key=lambda n: len(n.devices))


def test_sparkplug_seq_wraps_and_a_rebirth_request_is_answered_with_births(fleet: Fleet) -> None:
    from ingest.sources.sparkplug import rebirth_request
    from ingest.sources.sparkplug_b_pb2 import Payload

    node = _edge(fleet)
    model = FleetModel(fleet, seed=5)
    births = node.start(T0, model.online_status)
    assert [m.topic.split("/")[2] for m in births] == ["NBIRTH", *["DBIRTH"] * len(node.devices)]
    seqs = [Payload.FromString(m.payload).seq for m in births]
    device = node.devices[0]
    reading: dict[str, float | int | str] = {"ts": T0, "seq": 0, "battery_v": 3.9}
    for _ in range(300):
        seqs.append(Payload.FromString(node.readings(device, [reading], T0)[0].payload).seq)
    assert seqs == [i % 256 for i in range(len(seqs))]
    assert node.command(f"spBv1.0/{node.group}/NCMD/{node.edge}", b"\x00junk", T0) == []
    again = node.command(f"spBv1.0/{node.group}/NCMD/{node.edge}", rebirth_request(T0), T0)
    assert [Payload.FromString(m.payload).seq for m in again] == list(range(len(again)))
    nbirth = Payload.FromString(again[0].payload)
    will = node.will()
    assert will is not None
    bd = {m.name: m.long_value for m in nbirth.metrics}["bdSeq"]
    assert bd == {m.name: m.long_value for m in Payload.FromString(will.payload).metrics}["bdSeq"]


def test_a_device_without_its_formats_external_id_is_named() -> None:
    bare = Device(id="x-1", kind=Kind.SALINITY, province="ben_tre", district="ba_tri", site="river", lat=10, lon=106)
    with pytest.raises(ValueError, match="x-1 has no external id 'dev_eui'"):
        FORMATS["chirpstack_v4"].links([bare])[0].readings(bare, [{"ts": T0, "seq": 1, "ec_us_cm": 1.0}], T0)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_reading_of_any_kind_round_trips(data: st.DataObject) -> None:
    fleet = generate_fleet(8, seed=3)
    device = data.draw(st.sampled_from([d for d in fleet.devices if d.kind is not Kind.CAMERA]))
    name = data.draw(st.sampled_from(list(FORMATS)))
    reading: dict[str, Any] = {
        "ts": T0 + data.draw(st.integers(0, HOURS * 3_600_000)),
        "seq": data.draw(st.integers(0, 10**6)),
    }
    for spec in TELEMETRY_FIELDS[device.kind]:
        if data.draw(st.booleans()) or spec.name == "battery_v":
            if spec.type == "int":
                reading[spec.name] = data.draw(st.integers(int(spec.lo), min(int(spec.hi), 10**6)))
                if spec.name == "interval_s":
                    reading[spec.name] = 60 * data.draw(st.integers(0, 1440))
            else:
                decimals = 1 if spec.name in ("water_level_cm", "rssi_dbm") else 3
                value = round(data.draw(st.floats(spec.lo, spec.hi, allow_nan=False)), decimals)
                reading[spec.name] = min(max(value, spec.lo), spec.hi)
    link = FORMATS[name].links([device])[0]
    messages = [*link.start(T0, FleetModel(fleet, seed=1).online_status), *link.readings(device, [reading], T0)]
    out, _ = _decode_all(fleet, messages)
    assert [(r.reason, r.detail) for r in out.rejections] == []
    assert_stored_as_published(_lines(out), [p for m in messages for p in m.readings])


def test_ioc_simulate_write_sources_writes_the_checked_in_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ioc.cli import app

    target = tmp_path / "sources.yaml"
    result = CliRunner().invoke(app, ["simulate", f"--write-sources={target}"])
    assert result.exit_code == 0, result.output
    assert target.read_text(encoding="utf-8") == CHECKED_IN.read_text(encoding="utf-8")
