"""Malformed messages: each breaks one contract rule, and a reference check gives its reason."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from contract.fields import (
    CAMERA_EVENTS,
    EVENT_FIELDS,
    SEQ_MAX,
    TS_MAX_AHEAD_MS,
    TS_MIN_MS,
    FieldSpec,
    Kind,
    field_specs,
)
from contract.fleet import Device, Fleet
from contract.reasons import Reason
from contract.topics import Channel, TopicError, device_topic, parse_device_topic
from simulators.fleetgen import generate_fleet
from simulators.malformed import (
    ALL_CASES,
    MalformedMessage,
    corpus,
    malformed_message,
    valid_reading,
)

NOW = 1_712_000_000_000
# bad_unit, sparkplug_rebirth: other formats only (the rebirth: tests/integration/test_simulated_formats.py)
NOT_PRODUCED_HERE = {Reason.TOO_LARGE, Reason.DB_REJECTED, Reason.BAD_UNIT, Reason.SPARKPLUG_REBIRTH}


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _reading_reason(r: dict[str, Any], specs: dict[str, FieldSpec], now_ms: int) -> Reason | None:
    if "ts" not in r or "seq" not in r:
        return Reason.MISSING_FIELD
    extra = {"event"} if "event" in specs else set()
    for name in r:
        if name not in specs and name not in {"ts", "seq", *extra}:
            return Reason.UNKNOWN_FIELD
    for name in ("ts", "seq"):
        if type(r[name]) is not int:
            return Reason.BAD_TYPE
    for name, value in r.items():
        spec = specs.get(name)
        if spec is None:
            continue
        if spec.type == "string":
            if not isinstance(value, str):
                return Reason.BAD_TYPE
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            return Reason.BAD_TYPE
        if spec.type == "int" and not isinstance(value, int):
            return Reason.BAD_TYPE
        if not spec.lo <= value <= spec.hi:
            return Reason.OUT_OF_RANGE
    if not 0 <= r["seq"] < SEQ_MAX:
        return Reason.OUT_OF_RANGE
    if not TS_MIN_MS <= r["ts"] <= now_ms + TS_MAX_AHEAD_MS:
        return Reason.BAD_TIMESTAMP
    if not set(r) - {"ts", "seq", "event"}:
        return Reason.MISSING_FIELD
    return None


def reference_reason(topic: str, payload: bytes, fleet: Fleet, now_ms: int) -> Reason | None:
    """What the contract says ingest must answer (None: the message is valid)."""
    try:
        parsed = parse_device_topic(topic)
    except TopicError:
        return Reason.BAD_TOPIC
    device = fleet.by_id().get(parsed.device_id)
    if device is None:
        return Reason.UNKNOWN_DEVICE
    if device.province != parsed.province or device.kind is not parsed.kind:
        return Reason.TOPIC_MISMATCH
    if parsed.channel is Channel.EVENT and device.kind is not Kind.CAMERA:
        return Reason.TOPIC_MISMATCH
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return Reason.BAD_UTF8
    try:
        obj = json.loads(text, parse_constant=_no_constants)
    except ValueError:
        return Reason.BAD_JSON
    if isinstance(obj, dict) and "readings" in obj:
        readings = obj["readings"]
        if set(obj) != {"readings"} or not isinstance(readings, list) or not readings:
            return Reason.BAD_SHAPE
    elif isinstance(obj, dict):
        readings = [obj]
    else:
        return Reason.BAD_SHAPE
    if not all(isinstance(r, dict) for r in readings):
        return Reason.BAD_SHAPE
    if parsed.channel is Channel.EVENT:
        specs = {s.name: s for s in EVENT_FIELDS}
        specs["event"] = FieldSpec("event", "", "class", type="string", max_length=32)
        if any(r.get("event") not in CAMERA_EVENTS for r in readings):
            return Reason.OUT_OF_RANGE
    else:
        specs = field_specs(device.kind)
    for r in readings:
        reason = _reading_reason(r, specs, now_ms)
        if reason is not None:
            return reason
    return None


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return generate_fleet(40, seed=2)


def one_of_each_kind(fleet: Fleet) -> list[Device]:
    return [next(d for d in fleet.devices if d.kind is k) for k in Kind]


def test_the_reference_check_accepts_valid_messages(fleet: Fleet) -> None:
    for d in one_of_each_kind(fleet):
        topic = device_topic(d.province, d.kind, d.id, Channel.TELEMETRY)
        payload = json.dumps(valid_reading(d, NOW)).encode()
        assert reference_reason(topic, payload, fleet, NOW) is None


@pytest.mark.parametrize("case", ALL_CASES, ids=[c.name for c in ALL_CASES])
def test_each_case_gets_its_reason_for_every_kind(case: Any, fleet: Fleet) -> None:
    for d in one_of_each_kind(fleet):
        m = case.make(d, NOW)
        assert isinstance(m, MalformedMessage)
        assert m.what == case.name
        assert m.reason is case.reason
        assert reference_reason(m.topic, m.payload, fleet, NOW) is m.reason, (d.kind, m)


def test_cases_cover_every_reason_the_simulator_can_provoke() -> None:
    reasons = {c.reason for c in ALL_CASES}
    assert reasons == set(Reason) - NOT_PRODUCED_HERE
    names = [c.name for c in ALL_CASES]
    assert len(names) == len(set(names))


def test_brief_cases_are_present() -> None:
    names = {c.name for c in ALL_CASES}
    for wanted in (
        "NaN literal",
        "Infinity literal",
        "null value",
        "number as string",
        "boolean value",
        "missing ts",
        "missing seq",
        "only ts and seq",
        "huge number 1e300",
        "ts 0",
        "negative ts",
        "ts in seconds",
        "ts 10 minutes ahead",
        "ts beyond 2262",
        "top-level array",
        "top-level string",
        "nested arrays",
        "unknown device",
        "wrong kind in the topic",
        "comma in the device id",
        "equals sign in the device id",
        "space in the device id",
    ):
        assert wanted in names


def test_topics_are_publishable(fleet: Fleet) -> None:
    for d in fleet.devices:
        for m in corpus(d, NOW):
            assert "#" not in m.topic
            assert "+" not in m.topic
            assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in m.topic)
            assert m.topic.startswith("ioc/v1/")
            assert len(m.payload) < 4096


def test_payload_cases_use_the_devices_own_topic(fleet: Fleet) -> None:
    for d in one_of_each_kind(fleet):
        for m in corpus(d, NOW):
            if m.reason in (Reason.BAD_TOPIC, Reason.UNKNOWN_DEVICE, Reason.TOPIC_MISMATCH):
                continue
            assert m.topic == device_topic(d.province, d.kind, d.id, Channel.TELEMETRY)


def test_corpus_is_deterministic_and_complete(fleet: Fleet) -> None:
    d = fleet.devices[0]
    assert corpus(d, NOW) == corpus(d, NOW)
    assert [m.what for m in corpus(d, NOW)] == [c.name for c in ALL_CASES]


def test_malformed_message_draws_with_the_given_rng(fleet: Fleet) -> None:
    d = fleet.devices[3]
    a = [malformed_message(random.Random(7), d, NOW + i) for i in range(5)]
    b = [malformed_message(random.Random(7), d, NOW + i) for i in range(5)]
    assert a == b
    rng = random.Random(1)
    drawn = {malformed_message(rng, d, NOW).what for _ in range(600)}
    assert len(drawn) >= 0.9 * len(ALL_CASES)
