"""Vendor JSON read by a declarative mapping (``json_map``): where the device, time, counter and
fields are, for payloads that follow no standard.

Decided, from the vendor codec outputs of ``../shared/realworld/lorawan_codecs`` (Dragino,
SenseCAP) and the ``{id, t, v}`` arrays users fight Telegraf's ``json_v2`` over:

- **Shape**: a JSON object is one reading; an array of objects is one reading per element (each
  with its own device, time and counter paths). Not JSON → ``bad_json``; anything else →
  ``bad_shape`` naming what was expected; an empty array carries nothing (counted ``empty``).
- **Device**: a topic level, or the value at ``device.path`` (a dotted path; text or a whole
  number), looked up as ``device.scheme`` says. Absent or unknown → ``unknown_device``.
- **Time**: the value at ``time.path`` in ``time.format`` (``unix_s`` … ``unix_ns``: a number or a
  numeric string; ``iso8601``: RFC 3339 text, UTC when it has no offset). Absent, or no ``time``
  option: ingest's receive time. Unreadable → ``bad_timestamp``.
- **Counter**: the whole number at ``seq`` (absent: 0; not a whole number ≥ 0 → ``bad_type``).
- **Fields**: the object through the model's mapping; numeric strings are numbers, anything else
  in a numeric field (``"No Sensor"``) refuses that field alone (``bad_type``).
- **Records** (``records``): readings as an array of ``{name, value[, time]}`` records at
  ``records.path`` (empty: the payload is the array). Each record gives the model the key
  ``str(name)`` (SenseCAP's ``measurementId`` 4097 → ``"4097"``); records of one time form one
  reading, records of different times separate readings (a record's ``time`` is read in
  ``time.format``, ``unix_ms`` without a ``time`` option). Records without a name (SenseCAP's
  battery, interval and version reports on the same uplink) are not readings: a message with no
  named record is counted (``no_records``), not refused. Device, time and counter paths are read in
  the object around the array.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from operator import attrgetter
from typing import Any, Final, NamedTuple

import msgspec
from msgspec import UNSET, UnsetType

from contract.fields import TS_MAX_AHEAD_MS, TS_MIN_MS
from contract.reasons import Reason
from ingest.batch import BatchBuilder, Rejection
from ingest.registry import RegisteredDevice
from ingest.sources.base import SourceContext
from ingest.sources.config import Records, Source, TimeFormat
from ingest.sources.identity import DeviceLookup
from ingest.sources.mapping import lookup
from ingest.sources.shapes import FlatShapes, Take
from ingest.sources.sink import ReadingSink

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
_INT_TO_MS: Final[dict[str, tuple[int, int]]] = {
    "unix_s": (1000, 1),
    "unix_ms": (1, 1),
    "unix_us": (1, 1000),
    "unix_ns": (1, 1_000_000),
}
"""Exact scaling to ms: multiply, then floor-divide."""
_DIGITS: Final = 24
"""Digits before the point beyond any time in any unit (refused before any arithmetic on them)."""
_decode_json = msgspec.json.Decoder().decode
_ABSENT: Final = object()
MAX_NAMES: Final = 4_096
"""Record names remembered as text; past it the map starts again."""
KNOWN_MAX: Final = 65_536
"""Devices whose usual records are worked out (:class:`_Known`), per source; past it the map starts again."""
KNOWN_PER_DEVICE: Final = 4
"""Usual record lists worked out per device (a device may send a few): the latest learnt."""
KNOWN_RECORDS_MAX: Final = 64
"""Records of a list worth working out (a device's usual list has a few; longer ones take the general path):
what the known lists keep is at most :data:`KNOWN_MAX` × :data:`KNOWN_PER_DEVICE` × this many names."""
_NAME_OF: Final = attrgetter("name")


class _Known(NamedTuple):
    """A device's usual records worked out once: their names in order (as the payload writes them:
    whole numbers or text, none twice as text) and the shape's take of their values in that order."""

    device: RegisteredDevice
    names: list[int | str]
    take: Take


class _Typed(NamedTuple):
    """A decoder of the usual payload of a source whose paths are plain keys: the object around the
    records, its device, time and counter (UNSET where absent), and each record's name and value."""

    decoder: msgspec.json.Decoder[Any]
    device: bool
    time: bool
    seq: bool


def _typed(source: Source) -> _Typed | None:
    """The usual payload's decoder for ``source``; None when a path it reads is dotted or empty, the
    records carry their own times, times are ISO 8601 text, or two paths are one key (the general path
    reads those)."""
    records = source.records
    if records is None or records.time is not None:
        return None
    if source.time is not None and source.time.format not in _INT_TO_MS:
        return None
    keys = {"records": records.path}
    if source.device is not None and source.device.path is not None:
        keys["device"] = source.device.path
    if source.time is not None:
        keys["time"] = source.time.path
    if source.seq is not None:
        keys["seq"] = source.seq
    record_keys = {"name": records.name, "value": records.value}
    written = [*keys.values(), *record_keys.values()]
    if any(not key or "." in key for key in written) or len(set(keys.values())) < len(keys) or (
        records.name == records.value
    ):
        return None
    record = msgspec.defstruct(
        "Record", [("name", int | str | UnsetType, UNSET), ("value", Any, UNSET)], rename=record_keys, gc=False
    )
    array = list[record]  # type: ignore[valid-type]
    fields: list[tuple[str, Any, Any] | tuple[str, Any]] = [("records", array)]
    fields += [(k, Any, UNSET) for k in keys if k != "records"]
    around = msgspec.defstruct("Around", fields, rename=keys, gc=False)
    return _Typed(msgspec.json.Decoder(around), "device" in keys, "time" in keys, "seq" in keys)


class _Refusal(Exception):
    """A reading refused with its reason (raised inside, added to the batch by the caller)."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _is_whole(raw: Any) -> bool:
    return isinstance(raw, int) and not isinstance(raw, bool)


def time_ms(raw: Any, fmt: TimeFormat) -> int:
    """``raw`` (a payload's time in ``fmt``) as ms since the epoch, floored; ValueError when it is not
    one. Decimal numbers are read exactly (``1700000000.123`` s is ...123 ms, not ...122.99)."""
    if fmt == "iso8601":
        if not isinstance(raw, str):
            raise ValueError("not text")
        at = datetime.fromisoformat(raw.strip())
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        return (at - _EPOCH) // _MS
    times, per = _INT_TO_MS[fmt]
    if _is_whole(raw):
        return int(raw) * times // per
    if isinstance(raw, bool) or not isinstance(raw, str | float):
        raise ValueError("not a number")
    try:
        number = Decimal(raw.strip() if isinstance(raw, str) else repr(raw))
    except ArithmeticError:  # decimal.InvalidOperation
        raise ValueError("not a number") from None
    if not number.is_finite() or number.adjusted() > _DIGITS:
        raise ValueError("not a time")
    return math.floor(number * times / per)


class JsonMap:
    """JSON payloads read as the source's ``device``, ``time``, ``seq`` and ``records`` say."""

    FORMAT = "json_map"

    def __init__(self, source: Source, context: SourceContext) -> None:
        if source.device is None:  # the sources file requires it
            raise ValueError("json_map needs device")
        self._mapper = context.mapper
        self._ignore = context.ignore
        self._sink = ReadingSink()
        self._shapes = FlatShapes(context.mapper)
        self._model = source.model
        self._devices = DeviceLookup(source.device, context.registry)
        self._time = source.time
        self._time_format: TimeFormat = source.time.format if source.time is not None else "unix_ms"
        self._seq = source.seq
        self._records: Records | None = source.records
        self._int_to_ms = _INT_TO_MS.get(self._time_format)
        self._names: dict[int, str] = {}
        """Records' whole-number names as text (``4097`` → ``"4097"``), made once each; at most :data:`MAX_NAMES`."""
        self._typed = _typed(source)
        self._known: dict[int, tuple[_Known, ...]] = {}
        """By device index, newest first: usual records worked out, as the general path stores them."""

    def decode(self, topic: str, payload: bytes, *, retained: bool, now_ms: int, out: BatchBuilder) -> None:
        if self._typed is not None and self._known and self._usual(self._typed, topic, payload, now_ms, out):
            return
        try:
            doc = _decode_json(payload)
        except msgspec.DecodeError as exc:
            out.reject(Rejection(topic, Reason.BAD_JSON, f"not JSON: {exc}", payload))
            return
        if self._records is not None:
            self._from_records(topic, payload, doc, self._records, now_ms, out)
        elif isinstance(doc, dict):
            self._one(topic, payload, doc, "", now_ms, out)
        elif isinstance(doc, list) and doc:
            for i, element in enumerate(doc):
                if isinstance(element, dict):
                    self._one(topic, payload, element, f"element {i}: ", now_ms, out)
                else:
                    detail = f"element {i} is {_kind(element)}, not a JSON object (a reading)"
                    out.reject(Rejection(topic, Reason.BAD_SHAPE, detail, payload))
        elif isinstance(doc, list):
            self._ignore("empty")
        else:
            detail = f"expected a JSON object (a reading) or an array of them, not {_kind(doc)}"
            out.reject(Rejection(topic, Reason.BAD_SHAPE, detail, payload))

    def _usual(self, typed: _Typed, topic: str, payload: bytes, now_ms: int, out: BatchBuilder) -> bool:
        """The usual payload — its device's known records (:class:`_Known`), an int time and counter —
        stored by their take, as the general path stores it; False: nothing was done (the general path's)."""
        try:
            doc = typed.decoder.decode(payload)
        except msgspec.DecodeError:  # ValidationError is one
            return False
        if typed.device:
            raw = doc.device
            device = self._devices.named(raw) if type(raw) is str else None
        else:
            device = self._devices.in_topic(topic)
        knowns = self._known.get(device.index) if device is not None else None
        if knowns is None or device is None:
            return False
        ts = now_ms
        if typed.time:
            raw = doc.time
            if type(raw) is not int or self._int_to_ms is None:  # _typed made none for iso8601 times
                return False
            times, per = self._int_to_ms
            ts = raw * times // per
        seq = doc.seq if typed.seq else 0
        if type(seq) is not int or seq < 0:
            return False
        records = doc.records
        names = list(map(_NAME_OF, records))
        for known in knowns:
            if known.names == names and known.device is device:  # the time window: FlatShapes.take's, inline
                return TS_MIN_MS <= ts <= now_ms + TS_MAX_AHEAD_MS and known.take(records, None, device, ts, seq, out)
        return False

    def _learn(self, device: RegisteredDevice, names: list[int | str], keys: tuple[str, ...]) -> None:
        """Remember the records ``names`` (as text: ``keys``, each once) of ``device`` as its newest usual ones
        (those it has already: as they were)."""
        before = tuple(k for k in self._known.get(device.index, ()) if k.device is device)
        if len(names) > KNOWN_RECORDS_MAX or any(k.names == names for k in before):
            return
        model = self._model or device.model
        take = self._shapes.positional(model, device.device_kind, keys, (None,) * len(keys), "value")
        if take is None:
            return
        if not before and len(self._known) >= KNOWN_MAX:
            self._known.clear()
        self._known[device.index] = (_Known(device, names, take), *before[: KNOWN_PER_DEVICE - 1])

    def _one(self, topic: str, payload: bytes, obj: dict[str, Any], where: str, now_ms: int, out: BatchBuilder) -> None:
        """One object, one reading."""
        try:
            device = self._device(topic, obj)
            ts = self._message_time(obj, now_ms)
            seq = self._counter(obj)
        except _Refusal as exc:
            out.reject(Rejection(topic, exc.reason, f"{where}{exc}", payload))
            return
        self._store(topic, payload, device, ts, seq, obj, where, now_ms, out)

    def _from_records(
        self, topic: str, payload: bytes, doc: Any, records: Records, now_ms: int, out: BatchBuilder
    ) -> None:
        """The readings of an array of ``{name, value[, time]}`` records, one per distinct time."""
        array = doc if not records.path else lookup(doc, records.path) if isinstance(doc, dict) else None
        if not isinstance(array, list):
            where = f"an array of records at {records.path!r}" if records.path else "a JSON array of records"
            out.reject(Rejection(topic, Reason.BAD_SHAPE, f"expected {where}, not {_kind(array)}", payload))
            return
        around: dict[str, Any] = doc if isinstance(doc, dict) else {}
        try:
            device = self._device(topic, around)
            ts = self._message_time(around, now_ms)
            seq = self._counter(around)
        except _Refusal as exc:
            out.reject(Rejection(topic, exc.reason, str(exc), payload))
            return
        name_path, value_path, time_path = records.name, records.value, records.time
        name_dotted, value_dotted = "." in name_path, "." in value_path
        if time_path is None and not name_dotted and not value_dotted:  # the usual: one reading, plain keys
            obj: dict[str, Any] = {}
            names = self._names
            for record in array:
                if type(record) is not dict:
                    break  # refused below, with the record's number
                try:  # both keys there (the usual record): indexed, faster than get()
                    name: Any = record[name_path]
                    value = record[value_path]
                except KeyError:
                    name, value = record.get(name_path), record.get(value_path)  # absent: None
                kind = type(name)
                if kind is int:
                    try:
                        obj[names[name]] = value
                    except KeyError:
                        obj[self._name(name)] = value
                elif kind is str:
                    obj[name] = value
            else:
                if obj:
                    taken = self._store(topic, payload, device, ts, seq, obj, "", now_ms, out)
                    if taken and self._typed is not None and len(obj) == len(array):  # each name once, as text too
                        self._learn(device, [record[name_path] for record in array], tuple(obj))
                else:
                    self._ignore("no_records")
                return
        by_time: dict[int, dict[str, Any]] = {}
        for i, record in enumerate(array):
            if type(record) is not dict:
                detail = f"record {i} is {_kind(record)}, not a JSON object"
                out.reject(Rejection(topic, Reason.BAD_SHAPE, detail, payload))
                continue
            name = record.get(name_path, _ABSENT)  # lookup(), inline: the key as it is, else the dotted path
            if name is _ABSENT and name_dotted:
                name = lookup(record, name_path)
            kind = type(name)
            if kind is not str and kind is not int:
                continue  # not a quantity: a vendor's metadata record
            at = ts
            if time_path is not None:
                try:
                    at = self._record_time(record, time_path, i, ts)
                except _Refusal as exc:
                    out.reject(Rejection(topic, exc.reason, str(exc), payload))
                    continue
            value = record.get(value_path, _ABSENT)
            if value is _ABSENT and value_dotted:
                value = lookup(record, value_path)
            here = by_time.get(at)
            if here is None:
                here = by_time[at] = {}
            here[name if kind is str else str(name)] = value if type(value) in _KINDS else None  # absent: None
        if not by_time:
            self._ignore("no_records")
            return
        for at, here in by_time.items():
            self._store(topic, payload, device, at, seq, here, "", now_ms, out)

    def _name(self, name: int) -> str:
        """``str(name)``, remembered (a bounded map: names come from payloads)."""
        if len(self._names) >= MAX_NAMES:
            self._names.clear()
        text = self._names[name] = str(name)
        return text

    def _record_time(self, record: dict[str, Any], path: str, i: int, ts: int) -> int:
        """Record ``i``'s own time at ``path`` as ms (absent: ``ts``, the message's), or :class:`_Refusal`."""
        raw = lookup(record, path)
        if raw is None or not _json(raw):
            return ts
        if isinstance(raw, dict | list | bool):
            raise _Refusal(Reason.BAD_TIMESTAMP, f"record {i}: {path} is {_kind(raw)}, not a {self._time_format} time")
        try:
            return time_ms(raw, self._time_format)
        except (ValueError, OverflowError):
            detail = f"record {i}: {path} {str(raw)[:40]!r} is not a {self._time_format} time"
            raise _Refusal(Reason.BAD_TIMESTAMP, detail) from None

    def _device(self, topic: str, obj: Mapping[str, Any]) -> RegisteredDevice:
        """The registered device the message names, or :class:`_Refusal`."""
        devices = self._devices
        path = devices.path
        if path is None:
            device = devices.in_topic(topic)
            if device is None:
                raise _Refusal(Reason.UNKNOWN_DEVICE, devices.not_in_topic(topic))
            return device
        raw = lookup(obj, path)
        if type(raw) is str:  # the usual name: found as below
            device = devices.named(raw)
            if device is not None:
                return device
        if raw is None or not _json(raw):
            raise _Refusal(Reason.UNKNOWN_DEVICE, f"no {path!r} names the device")
        if not isinstance(raw, str | int) or isinstance(raw, bool):
            raise _Refusal(Reason.BAD_SHAPE, f"{path} is {_kind(raw)}, not a device name (text or whole number)")
        name = str(raw)
        device = devices.named(name)
        if device is None:
            raise _Refusal(Reason.UNKNOWN_DEVICE, f"{path} {name!r} is not an active registered device")
        return device

    def _message_time(self, obj: Mapping[str, Any], now_ms: int) -> int:
        """The time at ``time.path`` as ms (absent: ``now_ms``), or :class:`_Refusal`."""
        if self._time is None:
            return now_ms
        raw = lookup(obj, self._time.path)
        if type(raw) is int and self._int_to_ms is not None:  # the usual time: a whole number, as time_ms reads it
            times, per = self._int_to_ms
            return raw * times // per
        if raw is None or not _json(raw):  # absent
            return now_ms
        try:
            if isinstance(raw, dict | list | bool):
                raise ValueError(_kind(raw))
            return time_ms(raw, self._time.format)
        except (ValueError, OverflowError):
            detail = f"{self._time.path} {str(raw)[:40]!r} is not a {self._time.format} time"
            raise _Refusal(Reason.BAD_TIMESTAMP, detail) from None

    def _counter(self, obj: Mapping[str, Any]) -> int:
        """The whole number at ``seq`` (absent: 0), or :class:`_Refusal`."""
        if self._seq is None:
            return 0
        raw = lookup(obj, self._seq)
        if type(raw) is int and raw >= 0:  # the usual counter
            return raw
        if raw is None or not _json(raw):
            return 0
        whole_text = isinstance(raw, str) and raw.strip().isdigit() and raw.isascii()
        value: Any = int(raw) if whole_text or (isinstance(raw, float) and raw.is_integer()) else raw
        if not _is_whole(value) or value < 0:
            raise _Refusal(Reason.BAD_TYPE, f"seq {self._seq}: {str(raw)[:40]!r} is not a whole number ≥ 0")
        return int(value)

    def _store(
        self,
        topic: str,
        payload: bytes,
        device: RegisteredDevice,
        ts_ms: int,
        seq: int,
        obj: Mapping[str, Any],
        where: str,
        now_ms: int,
        out: BatchBuilder,
    ) -> bool:
        """One reading through the model's mapping into the sink; True: its shape's take stored it."""
        model = self._model or device.model
        if self._shapes.reading(device, model, obj, ts_ms, seq, now_ms=now_ms, out=out):
            return True
        values, refused = self._mapper.values(model, obj)
        self._sink.mapped(
            topic, payload, device, ts_ms, seq, values, refused, hint=self._mapper.hint(model), where=where,
            missing="no field maps to ours", now_ms=now_ms, out=out,
        )  # fmt: skip
        return False


_KINDS: Final[dict[type, str]] = {
    dict: "an object",
    list: "an array",
    str: "text",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    type(None): "null",
}


def _kind(value: Any) -> str:
    """What a JSON value is, for a refusal's detail ("absent" for a path with nothing there)."""
    return _KINDS.get(type(value), "absent")


def _json(value: Any) -> bool:
    """Whether :func:`lookup` found a JSON value (rather than nothing)."""
    return type(value) in _KINDS
