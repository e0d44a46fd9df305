"""Bad messages a device (or an impostor) might publish, each with the reason ingest must give.

Every case breaks exactly one rule of the contract and is otherwise a valid message of the
device, so the expected :class:`contract.reasons.Reason` is unambiguous. Payload size cases
live elsewhere. Topics never contain ``#`` or ``+`` (the broker refuses to publish them) nor
control characters such as a newline (Mosquitto drops the connection as a malformed packet).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from contract.fields import TELEMETRY_FIELDS, FieldSpec, Kind, field_specs
from contract.fleet import Device
from contract.reasons import Reason
from contract.topics import PREFIX, Channel, device_topic
from simulators.signals import key_of


@dataclass(frozen=True, slots=True)
class MalformedMessage:
    """A message to publish as-is and the dead-letter reason ingest must give it."""

    topic: str
    payload: bytes
    reason: Reason
    what: str


@dataclass(frozen=True, slots=True)
class MalformedCase:
    """One kind of bad message: a name, its reason, and how to build it for a device."""

    name: str
    reason: Reason
    build: Builder

    def make(self, device: Device, ts_ms: int) -> MalformedMessage:
        topic, payload = self.build(device, ts_ms)
        return MalformedMessage(topic, payload, self.reason, self.name)


_TYPICAL: Final[dict[str, float | int]] = {
    "ec_us_cm": 1250.0,
    "salinity_ppt": 0.62,
    "temp_c": 29.1,
    "water_level_cm": 35.0,
    "battery_v": 3.95,
    "rssi_dbm": -82.0,
    "ph": 7.3,
    "do_mg_l": 4.6,
    "turbidity_ntu": 48.0,
    "tss_mg_l": 57.0,
    "nh4_mg_l": 0.21,
    "interval_s": 3600,
    "lamp_on": 1,
    "air_temp_c": 26.5,
    "humidity_pct": 88.0,
    "video_ok": 1,
    "fps": 12.5,
    "uptime_s": 86_400,
}
_2262_MS: Final = 9_300_000_000_000
"""Mid-2264: past the last instant a signed 64-bit nanosecond timestamp can hold (2262-04-11)."""


def valid_reading(device: Device, ts_ms: int) -> dict[str, Any]:
    """A plausible, valid telemetry reading of ``device`` (every field but night totals)."""
    reading: dict[str, Any] = {"ts": ts_ms, "seq": 0}
    for spec in TELEMETRY_FIELDS[device.kind]:
        if spec.name.endswith("_night"):
            continue
        reading[spec.name] = _TYPICAL.get(spec.name, 7 if spec.type == "int" else 1.5)
    return reading


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _telemetry(device: Device) -> str:
    return device_topic(device.province, device.kind, device.id, Channel.TELEMETRY)


def _numeric(device: Device) -> FieldSpec:
    """The first numeric field of the device's kind (the one the value cases tamper with)."""
    return TELEMETRY_FIELDS[device.kind][0]


def _float_field(device: Device) -> FieldSpec:
    """The first float field of the device's kind."""
    return next(s for s in TELEMETRY_FIELDS[device.kind] if s.type == "float")


Builder = Callable[[Device, int], tuple[str, bytes]]
"""Makes (topic, payload) of a case for a device at a time."""
Edit = Callable[[dict[str, Any], Device], Any]
"""Edits a valid reading in place (returns None) or returns a replacement."""


def _with(change: Edit) -> Builder:
    """A builder that edits a valid reading and sends it on the device's telemetry topic."""

    def build(device: Device, ts_ms: int) -> tuple[str, bytes]:
        reading = valid_reading(device, ts_ms)
        replaced = change(reading, device)
        return _telemetry(device), _dumps(reading if replaced is None else replaced)

    return build


def _raw(text: Callable[[dict[str, Any], Device], str]) -> Builder:
    """A builder that writes raw payload text around a valid reading."""

    def build(device: Device, ts_ms: int) -> tuple[str, bytes]:
        return _telemetry(device), text(valid_reading(device, ts_ms), device).encode()

    return build


def _bytes(make: Callable[[bytes], bytes]) -> Builder:
    """A builder that mangles the bytes of a valid payload."""

    def build(device: Device, ts_ms: int) -> tuple[str, bytes]:
        return _telemetry(device), make(_dumps(valid_reading(device, ts_ms)))

    return build


def _topic(make: Callable[[Device], str]) -> Builder:
    """A builder that sends a valid reading on another topic."""

    def build(device: Device, ts_ms: int) -> tuple[str, bytes]:
        return make(device), _dumps(valid_reading(device, ts_ms))

    return build


def _set(name_of: Callable[[Device], FieldSpec], value: Any) -> Edit:
    def change(reading: dict[str, Any], device: Device) -> None:
        reading[name_of(device).name] = value

    return change


def _drop(*names: str) -> Edit:
    def change(reading: dict[str, Any], device: Device) -> None:
        for name in names:
            del reading[name]

    return change


def _replace_value(value_text: str) -> Callable[[dict[str, Any], Device], str]:
    """Raw text of the reading with the first numeric field's value replaced verbatim."""

    def text(reading: dict[str, Any], device: Device) -> str:
        name = _numeric(device).name
        reading[name] = "@@"
        return _dumps(reading).decode().replace('"@@"', value_text)

    return text


def _foreign_field(device: Device) -> str:
    """A field another kind reports but this one does not."""
    own = field_specs(device.kind)
    for kind in Kind:
        for spec in TELEMETRY_FIELDS[kind]:
            if spec.name not in own:
                return spec.name
    raise AssertionError("every kind shares all fields")  # pragma: no cover


def _add(name_of: Callable[[Device], str], value: Any) -> Edit:
    def change(reading: dict[str, Any], device: Device) -> None:
        reading[name_of(device)] = value

    return change


def _beyond(*, high: bool) -> Edit:
    """Set the first float field just outside its physical range."""

    def change(reading: dict[str, Any], device: Device) -> None:
        spec = _float_field(device)
        reading[spec.name] = spec.hi * 2 + 10 if high else spec.lo - 100

    return change


def _ts(value: Callable[[int], int]) -> Builder:
    def build(device: Device, ts_ms: int) -> tuple[str, bytes]:
        reading = valid_reading(device, ts_ms)
        reading["ts"] = value(ts_ms)
        return _telemetry(device), _dumps(reading)

    return build


def _ghost_id(device: Device) -> str:
    return f"zz-ghost-{key_of(device.id) & 0xFFFFFFFF:08x}"


def _other_case_id(device: Device) -> str:
    swapped = device.id.swapcase()
    return swapped if swapped != device.id else _ghost_id(device).upper()


def _other_kind(device: Device) -> Kind:
    return next(k for k in Kind if k is not device.kind)


def _other_province(device: Device) -> str:
    return "ben_tre" if device.province != "ben_tre" else "ca_mau"


def _id_topic(device_id: str) -> Callable[[Device], str]:
    def make(device: Device) -> str:
        return f"{PREFIX}/{device.province}/{device.kind.value}/{device_id}/telemetry"

    return make


def _id_variant(transform: Callable[[str], str]) -> Callable[[Device], str]:
    def make(device: Device) -> str:
        return _id_topic(transform(device.id))(device)

    return make


def _event_on(device: Device, ts_ms: int) -> tuple[str, bytes]:
    """A camera event on the event channel of a device that is no camera (or of the wrong kind)."""
    kind = Kind.LIGHT_TRAP if device.kind is Kind.CAMERA else device.kind
    payload = {"ts": ts_ms, "seq": 0, "event": "smoke_fire", "confidence": 0.9, "frames": 3}
    return device_topic(device.province, kind, device.id, Channel.EVENT), _dumps(payload)


def _kind_mismatch(device: Device, ts_ms: int) -> tuple[str, bytes]:
    topic = device_topic(device.province, _other_kind(device), device.id, Channel.TELEMETRY)
    return topic, _dumps(valid_reading(device, ts_ms))


def _province_mismatch(device: Device, ts_ms: int) -> tuple[str, bytes]:
    topic = device_topic(_other_province(device), device.kind, device.id, Channel.TELEMETRY)
    return topic, _dumps(valid_reading(device, ts_ms))


def _payload(obj: Callable[[dict[str, Any]], Any]) -> Builder:
    def build(device: Device, ts_ms: int) -> tuple[str, bytes]:
        return _telemetry(device), _dumps(obj(valid_reading(device, ts_ms)))

    return build


_R = Reason
ALL_CASES: Final[tuple[MalformedCase, ...]] = (
    # not JSON
    MalformedCase("truncated JSON", _R.BAD_JSON, _bytes(lambda p: p[: len(p) // 2])),
    MalformedCase("trailing comma", _R.BAD_JSON, _bytes(lambda p: p[:-1] + b",}")),
    MalformedCase("single-quoted JSON", _R.BAD_JSON, _bytes(lambda p: p.replace(b'"', b"'"))),
    MalformedCase("unquoted keys", _R.BAD_JSON, _bytes(lambda p: p.replace(b'"ts"', b"ts"))),
    MalformedCase("two objects back to back", _R.BAD_JSON, _bytes(lambda p: p + p)),
    MalformedCase("empty payload", _R.BAD_JSON, _bytes(lambda p: b"")),
    MalformedCase("NaN literal", _R.BAD_JSON, _raw(_replace_value("NaN"))),
    MalformedCase("Infinity literal", _R.BAD_JSON, _raw(_replace_value("Infinity"))),
    MalformedCase("-Infinity literal", _R.BAD_JSON, _raw(_replace_value("-Infinity"))),
    MalformedCase("hexadecimal number", _R.BAD_JSON, _raw(_replace_value("0x1F"))),
    MalformedCase("leading zeros", _R.BAD_JSON, _raw(_replace_value("007"))),
    # not UTF-8
    MalformedCase("UTF-16 payload", _R.BAD_UTF8, _bytes(lambda p: p.decode().encode("utf-16"))),
    MalformedCase("Latin-1 byte in a key", _R.BAD_UTF8, _bytes(lambda p: p.replace(b'"seq"', b'"seq\xb0"'))),
    MalformedCase("overlong encoding", _R.BAD_UTF8, _bytes(lambda p: p[:-1] + b',"\xc0\xaf":1}')),
    MalformedCase("encoded surrogate", _R.BAD_UTF8, _bytes(lambda p: p[:-1] + b',"\xed\xa0\x80":1}')),
    MalformedCase("truncated multi-byte sequence", _R.BAD_UTF8, _bytes(lambda p: p + b"\xe2\x82")),
    # JSON, wrong shape
    MalformedCase("top-level array", _R.BAD_SHAPE, _payload(lambda r: [r])),
    MalformedCase("top-level string", _R.BAD_SHAPE, _payload(lambda r: "29.1")),
    MalformedCase("top-level number", _R.BAD_SHAPE, _payload(lambda r: 29.1)),
    MalformedCase("top-level null", _R.BAD_SHAPE, _payload(lambda r: None)),
    MalformedCase("top-level boolean", _R.BAD_SHAPE, _payload(lambda r: True)),
    MalformedCase("nested arrays", _R.BAD_SHAPE, _payload(lambda r: [[1, 2], [3, [4]]])),
    MalformedCase("readings holds arrays", _R.BAD_SHAPE, _payload(lambda r: {"readings": [[r["ts"], r["seq"]]]})),
    # wrong JSON type
    MalformedCase("null value", _R.BAD_TYPE, _with(_set(_numeric, None))),
    MalformedCase("number as string", _R.BAD_TYPE, _with(_set(_numeric, "29.1"))),
    MalformedCase("boolean value", _R.BAD_TYPE, _with(_set(_numeric, True))),
    # missing fields
    MalformedCase("missing ts", _R.MISSING_FIELD, _with(_drop("ts"))),
    MalformedCase("missing seq", _R.MISSING_FIELD, _with(_drop("seq"))),
    MalformedCase("only ts and seq", _R.MISSING_FIELD, _with(lambda r, d: {"ts": r["ts"], "seq": r["seq"]})),
    # unknown fields
    MalformedCase("misspelt field", _R.UNKNOWN_FIELD, _with(_add(lambda d: "temperature", 29.1))),
    MalformedCase("field of another kind", _R.UNKNOWN_FIELD, _with(_add(_foreign_field, 1.0))),
    MalformedCase("registry tag in the payload", _R.UNKNOWN_FIELD, _with(_add(lambda d: "province", 3))),
    # physically impossible values
    MalformedCase("above the physical range", _R.OUT_OF_RANGE, _with(_beyond(high=True))),
    MalformedCase("below the physical range", _R.OUT_OF_RANGE, _with(_beyond(high=False))),
    MalformedCase("huge number 1e300", _R.OUT_OF_RANGE, _with(_set(_float_field, 1e300))),
    MalformedCase("huge negative -1e300", _R.OUT_OF_RANGE, _with(_set(_float_field, -1e300))),
    MalformedCase("positive signal strength", _R.OUT_OF_RANGE, _with(lambda r, d: r.update({"rssi_dbm": 12.0}))),
    # bad timestamps
    MalformedCase("ts 0", _R.BAD_TIMESTAMP, _ts(lambda ts: 0)),
    MalformedCase("negative ts", _R.BAD_TIMESTAMP, _ts(lambda ts: -ts)),
    MalformedCase("ts in seconds", _R.BAD_TIMESTAMP, _ts(lambda ts: ts // 1000)),
    MalformedCase("ts in microseconds", _R.BAD_TIMESTAMP, _ts(lambda ts: ts * 1000)),
    MalformedCase("ts before 2000", _R.BAD_TIMESTAMP, _ts(lambda ts: 946_684_799_999)),
    MalformedCase("ts 10 minutes ahead", _R.BAD_TIMESTAMP, _ts(lambda ts: ts + 600_000)),
    MalformedCase("ts beyond 2262", _R.BAD_TIMESTAMP, _ts(lambda ts: _2262_MS)),
    # topics
    MalformedCase("unknown device", _R.UNKNOWN_DEVICE, _topic(lambda d: _id_topic(_ghost_id(d))(d))),
    MalformedCase("device id in the wrong case", _R.UNKNOWN_DEVICE, _topic(lambda d: _id_topic(_other_case_id(d))(d))),
    MalformedCase("wrong kind in the topic", _R.TOPIC_MISMATCH, _kind_mismatch),
    MalformedCase("wrong province in the topic", _R.TOPIC_MISMATCH, _province_mismatch),
    MalformedCase("event channel of another kind", _R.TOPIC_MISMATCH, _event_on),
    MalformedCase("comma in the device id", _R.BAD_TOPIC, _topic(_id_variant(lambda i: i + ",x"))),
    MalformedCase("equals sign in the device id", _R.BAD_TOPIC, _topic(_id_variant(lambda i: i + "=1"))),
    MalformedCase("space in the device id", _R.BAD_TOPIC, _topic(_id_variant(lambda i: i + " 2"))),
    MalformedCase("non-ASCII device id", _R.BAD_TOPIC, _topic(_id_variant(lambda i: i + "ñ"))),
    MalformedCase(
        "device id over 64 characters", _R.BAD_TOPIC, _topic(_id_variant(lambda i: (i + "-" + "x" * 64)[:65]))
    ),
    MalformedCase("empty device id", _R.BAD_TOPIC, _topic(_id_variant(lambda i: ""))),
    MalformedCase("unknown kind", _R.BAD_TOPIC, _topic(lambda d: f"{PREFIX}/{d.province}/weather/{d.id}/telemetry")),
    MalformedCase(
        "unknown channel", _R.BAD_TOPIC, _topic(lambda d: f"{PREFIX}/{d.province}/{d.kind.value}/{d.id}/metrics")
    ),
    MalformedCase("extra topic level", _R.BAD_TOPIC, _topic(lambda d: _telemetry(d) + "/extra")),
    MalformedCase("trailing slash", _R.BAD_TOPIC, _topic(lambda d: _telemetry(d) + "/")),
    MalformedCase("missing kind level", _R.BAD_TOPIC, _topic(lambda d: f"{PREFIX}/{d.province}/{d.id}/telemetry")),
    MalformedCase(
        "province is not a slug", _R.BAD_TOPIC, _topic(lambda d: f"{PREFIX}/Tien-Giang/{d.kind.value}/{d.id}/telemetry")
    ),
)
"""Every malformed case, one rule broken each."""


def corpus(device: Device, ts_ms: int) -> list[MalformedMessage]:
    """One message of every case in :data:`ALL_CASES` for ``device``, in a fixed order."""
    return [case.make(device, ts_ms) for case in ALL_CASES]


def malformed_message(rng: random.Random, device: Device, ts_ms: int) -> MalformedMessage:
    """One bad message for ``device``, of a case drawn with ``rng``."""
    return rng.choice(ALL_CASES).make(device, ts_ms)
