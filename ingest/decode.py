"""Topic + payload → accepted readings (into a :class:`~ingest.batch.BatchBuilder`) or rejections.

A message holds one reading or a gateway batch ``{"readings": [...]}`` of one device. A batch is
decoded in one pass; only when that fails is it decoded reading by reading, so the good readings
of a batch are kept and each bad one is dead-lettered with its own reason.
"""

from __future__ import annotations

import re
from itertools import chain
from typing import Any, Final

import msgspec
from msgspec import UNSET
from msgspec.structs import astuple

from contract.fields import CAMERA_EVENTS, TS_MAX_AHEAD_MS, Kind
from contract.reasons import Reason
from contract.topics import Channel, DeviceTopic, TopicError, parse_device_topic
from ingest.batch import EVENTS, BatchBuilder, FieldEncoder, Rejection
from ingest.registry import RegisteredDevice, Registry
from ingest.schema import ChannelSchema, build_schemas

_RANGE: Final = re.compile(r"Expected `\w+` (?:of length )?[<>]=?")
_EVENT_CODES: Final = {name: i for i, name in enumerate(CAMERA_EVENTS)}
_BATCH: Final = re.compile(rb'\s*\{\s*"readings"\s*:')
_CONTROL_REGEX: Final = re.compile(r"matching regex '.*'")
_PATH: Final = re.compile(r" - at `\$(?:\.readings\[\d+\])?(?:\.(\w+))?`$")


def classify(error: msgspec.MsgspecError) -> tuple[Reason, str]:
    """Map a msgspec decode/validation error to a rejection reason and a detail text."""
    text = str(error)
    if not isinstance(error, msgspec.ValidationError):
        return Reason.BAD_JSON, text
    match = _PATH.search(text)
    field_name = match.group(1) if match else None
    if field_name == "readings":  # the batch envelope itself, not a reading's field
        if "of length <=" in text:
            return Reason.TOO_LARGE, text
        return Reason.BAD_SHAPE, text
    if text.startswith("Object missing required field"):
        return Reason.MISSING_FIELD, text
    if text.startswith("Object contains unknown field"):
        return Reason.UNKNOWN_FIELD, text
    if field_name is None and ("Expected `object`" in text or "Expected `array`, got" in text):
        return Reason.BAD_SHAPE, text
    if field_name is None and "Expected `array` of length" in text:
        return (Reason.TOO_LARGE if "<=" in text else Reason.BAD_SHAPE), text
    if field_name == "ts" and (_RANGE.match(text) or text.startswith("Number out of range")):
        return Reason.BAD_TIMESTAMP, text
    if _RANGE.match(text) or text.startswith(("Number out of range", "Invalid enum")):
        return Reason.OUT_OF_RANGE, text
    if "matching regex" in text:
        return Reason.BAD_TYPE, _CONTROL_REGEX.sub("without control characters", text)
    return Reason.BAD_TYPE, text


def _add_whole_batch(
    readings: list[Any], encoder: FieldEncoder, device: RegisteredDevice, key: str, limit: int, out: BatchBuilder
) -> bool:
    """Add a gateway batch in one go when every reading carries every field, all numeric, and none
    is ahead of ``limit`` (the usual batch); False, adding nothing, when it is not such a batch.

    All the batch's values, seqs and timestamps are formatted by one ``msgspec.json.encode`` call
    (shortest round-trip floats, several times faster than ``repr``: the same value, though the
    text may differ, ``2.5e-7`` for ``2.5e-07``; InfluxDB reads both) and its lines by one
    %-format: per reading, only the struct's values are taken out in Python. (Cutting the fields a
    reading leaves out of such a text costs more than formatting those readings one by one.)
    """
    if encoder.record_line is None or not readings:
        return False
    records = list(chain.from_iterable(map(astuple, readings)))
    stride = len(encoder.specs) + 2
    if max(records[stride - 1 :: stride]) > limit:
        return False
    try:
        texts = msgspec.json.encode(records)
    except TypeError:  # UNSET: a reading leaves a field out
        return False
    count = len(readings)
    line = "\n" + device.series.replace("%", "%%") + " " + encoder.record_line  # the series' % kept as is
    text = line * count % tuple(texts[1:-1].decode().split(","))
    out.add_records(key, device.index, records, count, text[1:])
    return True


class Decoder:
    """Validates messages against the contract and the registry."""

    def __init__(self, registry: Registry, *, max_payload_bytes: int, max_readings: int) -> None:
        self._registry = registry
        self.max_payload_bytes = max_payload_bytes
        self._telemetry, self._event, self._status = build_schemas(max_readings)
        self._routes: dict[str, tuple[DeviceTopic, RegisteredDevice]] = {}
        self._encoders: dict[int, FieldEncoder] = {
            id(s): FieldEncoder(s.fields) for s in (*self._telemetry.values(), self._event, self._status)
        }

    def registry_changed(self) -> None:
        """Forget the checked topics: a device's tags, province, kind or state may have changed."""
        self._routes.clear()

    def decode(self, topic: str, payload: bytes, *, retained: bool, now_ms: int, out: BatchBuilder) -> None:
        """Decode one message into ``out``: its readings, or its rejections."""
        route = self._routes.get(topic)
        if route is None:
            route = self._route(topic, payload, out)
            if route is None:
                return
        parsed, device = route
        if len(payload) > self.max_payload_bytes:
            detail = f"payload of {len(payload)} bytes is over the limit of {self.max_payload_bytes}"
            out.reject(Rejection(topic, Reason.TOO_LARGE, detail, payload))
            return
        if not payload.isascii():
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError as exc:
                out.reject(Rejection(topic, Reason.BAD_UTF8, f"not UTF-8 at byte {exc.start}", payload))
                return
        if parsed.channel is Channel.STATUS:
            self._decode_status(topic, payload, device, retained, now_ms, out)
        elif parsed.channel is Channel.EVENT:
            self._decode_readings(topic, payload, device, self._event, EVENTS, now_ms, out)
        else:
            self._decode_readings(topic, payload, device, self._telemetry[parsed.kind], parsed.kind.value, now_ms, out)

    def _route(self, topic: str, payload: bytes, out: BatchBuilder) -> tuple[DeviceTopic, RegisteredDevice] | None:
        """Check a topic once: its device registered, its province and kind the registered ones.

        Topics that pass are remembered (at most three per registered device); refused ones are not.
        """
        try:
            parsed = parse_device_topic(topic)
        except TopicError as exc:
            out.reject(Rejection(topic, Reason.BAD_TOPIC, str(exc), payload))
            return None
        device = self._registry.active(parsed.device_id)
        if device is None:
            out.reject(Rejection(topic, Reason.UNKNOWN_DEVICE, self._registry.refusal(parsed.device_id), payload))
            return None
        if device.province != parsed.province or device.device_kind is not parsed.kind:
            detail = f"registered as {device.province}/{device.kind}, topic says {parsed.province}/{parsed.kind.value}"
            out.reject(Rejection(topic, Reason.TOPIC_MISMATCH, detail, payload))
            return None
        if parsed.channel is Channel.EVENT and device.device_kind is not Kind.CAMERA:
            out.reject(Rejection(topic, Reason.TOPIC_MISMATCH, "only cameras publish events", payload))
            return None
        self._routes[topic] = (parsed, device)
        return parsed, device

    def _decode_readings(
        self,
        topic: str,
        payload: bytes,
        device: RegisteredDevice,
        schema: ChannelSchema,
        key: str,
        now_ms: int,
        out: BatchBuilder,
    ) -> None:
        is_batch = _BATCH.match(payload) is not None
        try:
            readings: list[Any] = schema.batch.decode(payload).readings if is_batch else [schema.single.decode(payload)]
        except msgspec.MsgspecError as exc:
            if not is_batch or not isinstance(exc, msgspec.ValidationError):
                reason, detail = classify(exc)
                out.reject(Rejection(topic, reason, detail, payload))
                return
            readings = self._salvage(topic, payload, schema, out)
        encoder = self._encoders[id(schema)]
        is_event = key == EVENTS
        limit = now_ms + TS_MAX_AHEAD_MS
        if is_batch and not is_event and _add_whole_batch(readings, encoder, device, key, limit, out):
            return

        def original(r: Any) -> bytes:
            return msgspec.json.encode(r) if is_batch else payload

        for r in readings:
            values = astuple(r)
            seq, ts = values[-2], values[-1]
            if ts > limit:
                detail = f"ts {ts} is more than 5 minutes ahead of the ingest clock ({now_ms})"
                out.reject(Rejection(topic, Reason.BAD_TIMESTAMP, detail, original(r)))
                continue
            if is_event:
                fields = encoder.encode(values[1:-2])
                series = device.event_series(values[0])
            else:
                fields = encoder.encode(values[:-2])
                series = device.series
            if fields is None:
                out.reject(Rejection(topic, Reason.BAD_TYPE, "a string field line protocol cannot carry", original(r)))
                continue
            if not fields:
                out.reject(Rejection(topic, Reason.MISSING_FIELD, "the reading has no measurement field", original(r)))
                continue
            line = f"{series} {fields},seq={seq}i {ts}"
            row = (_EVENT_CODES[values[0]], *values[1:-2]) if is_event else values[:-2]
            out.add_reading(key, device.index, ts, seq, row, line)

    def _salvage(self, topic: str, payload: bytes, schema: ChannelSchema, out: BatchBuilder) -> list[Any]:
        """Decode a failed gateway batch reading by reading; reject the bad ones."""
        try:
            raws = schema.raw_batch.decode(payload).readings
        except msgspec.MsgspecError as exc:
            reason, detail = classify(exc)
            out.reject(Rejection(topic, reason, detail, payload))
            return []
        good = []
        for i, raw in enumerate(raws):
            try:
                good.append(schema.single.decode(raw))
            except msgspec.MsgspecError as exc:
                reason, detail = classify(exc)
                out.reject(Rejection(topic, reason, f"readings[{i}]: {detail}", bytes(raw)))
        return good

    def _decode_status(
        self,
        topic: str,
        payload: bytes,
        device: RegisteredDevice,
        retained: bool,
        now_ms: int,
        out: BatchBuilder,
    ) -> None:
        schema = self._status
        try:
            status = schema.single.decode(payload)
        except msgspec.MsgspecError as exc:
            reason, detail = classify(exc)
            out.reject(Rejection(topic, reason, detail, payload))
            return
        values = astuple(status)
        state, seq, ts = values[0], values[-2], values[-1]
        if (ts is UNSET) != (seq is UNSET):
            out.reject(Rejection(topic, Reason.MISSING_FIELD, "a status carries both ts and seq, or neither", payload))
            return
        if ts is UNSET:
            if state != "offline" or any(v is not UNSET for v in values[1:-2]):
                detail = 'only the will, exactly {"state": "offline"}, may leave out ts and seq'
                out.reject(Rejection(topic, Reason.MISSING_FIELD, detail, payload))
                return
            if retained:
                return  # a will replayed on subscribe: it was stored when it was first sent
            ts = now_ms  # the broker sent the will: receive time is its true time
        elif ts > now_ms + TS_MAX_AHEAD_MS:
            out.reject(Rejection(topic, Reason.BAD_TIMESTAMP, f"ts {ts} is more than 5 minutes ahead", payload))
            return
        fields = self._encoders[id(schema)].encode(values[1:-2])
        if fields is None:
            out.reject(Rejection(topic, Reason.BAD_TYPE, "a string field line protocol cannot carry", payload))
            return
        online = "online=1i" if state == "online" else "online=0i"
        line = f"{device.status_series} {online}{',' + fields if fields else ''} {ts}"
        out.add_status(device.index, ts, state == "online", line)
