"""InfluxDB line protocol over MQTT (Telegraf ``data_format = "influx"``, ``outputs.mqtt``): ``influx_lp``.

Decided, from the InfluxDB 2 line protocol reference and the payloads of
``../shared/realworld/influx_line_protocol`` (Telegraf's parser tests, ChirpStack's integration,
InfluxDB's docs):

- **Parser**: our own (regular expressions with possessive quantifiers: no backtracking blow-up on
  hostile lines), not PyPI ``line-protocol-parser`` 2.0.1. That C extension is maintained and reads
  every corpus line right, but one line at a time: a message must be cut into lines first, and a
  string field may hold a newline (Telegraf's "field string newline" case), so the cutting is
  itself a line protocol parser; its errors give no position either. Ours reads a whole message,
  names each bad line, and parses over 100,000 lines/s: the parser is not what limits a reading.
- **Escapes** as Telegraf reads them: in the measurement ``\\ `` and ``\\,``; in tag keys, tag
  values and field keys also ``\\=``; a backslash before anything else is itself (``two\\\\ words``
  is ``two\\ words``). In a string field ``\\"`` and ``\\\\``. ``#`` starts a comment line.
- **Types**: floats (``42``, ``-1.5E-3``; no ``+``, NaN or infinity), ``42i`` (int64), ``42u``
  (uint64), ``"text"``, booleans ``t T true True TRUE f F false False FALSE``. An integer out of
  its 64-bit range refuses the line, as InfluxDB does.
- **Lines**: a message holds any number; a line that does not parse is dead-lettered ``bad_shape``
  naming its number (at most :data:`MAX_LINE_REFUSALS` per message), the others are stored.
- **Device**: a topic level (Telegraf's ``telegraf/{host}/{plugin}``: level 1) or a tag's value
  (``device.path`` is a tag key), looked up as ``device.scheme`` says. Unknown → ``unknown_device``.
- **Time**: the line's timestamp in the source's ``precision`` (the line does not say it), to ms;
  a line without one takes ingest's receive time.
- **Readings**: the lines of one device at one time are one reading (a Telegraf batch, ChirpStack's
  one measurement per field). The model maps each field ``f`` of measurement ``m`` as ``m.f`` or as
  a bare ``f`` (when several measurements carry ``f``, the last line's). Strings and booleans are
  not numbers: mapped to one of our fields they are refused ``bad_type``. Tags are not readings.
- **Counter**: line protocol has none: ``seq`` is 0.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from contract.fields import Kind
from contract.reasons import Reason
from ingest.batch import BatchBuilder, Rejection
from ingest.registry import RegisteredDevice
from ingest.sources.base import SourceContext
from ingest.sources.config import FIELD_SPECS, Source
from ingest.sources.identity import DeviceLookup
from ingest.sources.shapes import FlatShapes, Take
from ingest.sources.sink import ReadingSink
from ingest.sources.units import Convert

MAX_LINE_REFUSALS: Final = 20
"""Lines of one message refused one by one; past it, one dead letter counts the rest."""

FieldValue = float | int | str | bool

# A name: any character but the separators, ``\`` before a separator escapes it, before anything
# else it is itself. Possessive (``++``): a line that does not parse fails in linear time.
_MEASUREMENT = r"(?:[^ \t\r\n,\\]|\\[ ,]|\\(?![ ,]))++"
_NAME = r"(?:[^ \t\r\n,=\\]|\\[ ,=]|\\(?![ ,=]))++"
_HEAD = re.compile(rf"[ \t]*+({_MEASUREMENT})((?:,{_NAME}={_NAME})*+)").match
_KEY = re.compile(rf"({_NAME})=").match
_SPACE = re.compile(r"[ \t]++").match
_VALUE = r'"(?:[^"\\]|\\[\s\S])*+"|[^ \t\r\n,"]++'
_FIELD = re.compile(rf"({_NAME})=({_VALUE})").match
_END = r"(?:[ \t]++(-?[0-9]++))?[ \t\r]*+(?:\n|\Z)"
_TAIL = re.compile(_END).match
_LINE = re.compile(
    rf"[ \t]*+({_MEASUREMENT})((?:,{_NAME}={_NAME})*+)[ \t]++"
    rf"((?:{_NAME})=(?:{_VALUE})(?:,(?:{_NAME})=(?:{_VALUE}))*+){_END}"
).match
"""A whole line: measurement, raw tag set, raw field set, timestamp (one call; :func:`_diagnose` says
what is wrong with a line it does not match)."""
_TAGS = re.compile(rf"({_NAME})=({_NAME})").findall
_FIELDS = re.compile(rf"({_NAME})=({_VALUE})").findall
_SKIPPED = frozenset(" \t\r\n#")
_BLANK = re.compile(r"[ \t\r]*+(?:#[^\n]*+)?(?:\n|\Z)").match
_FLOAT = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?").fullmatch
_INTEGER = re.compile(r"-?[0-9]+i").fullmatch
_UNSIGNED = re.compile(r"[0-9]+u").fullmatch
_UNESCAPE_STRING = re.compile(r'\\(["\\])').sub
_BOOLEANS: Final = {
    **dict.fromkeys(("t", "T", "true", "True", "TRUE"), True),
    **dict.fromkeys(("f", "F", "false", "False", "FALSE"), False),
}
_DIGITS: Final = frozenset("0123456789.")
_FLOAT_START: Final = frozenset("-.0123456789")
_INFINITE: Final = (float("inf"), float("-inf"))
_INT64: Final = 2**63
_UINT64: Final = 2**64

TO_MS: Final[dict[str, Callable[[int], int]]] = {
    "s": lambda t: t * 1000,
    "ms": lambda t: t,
    "us": lambda t: t // 1000,
    "ns": lambda t: t // 1_000_000,
}
"""A line's timestamp in the source's precision, as ms."""


class Point(NamedTuple):
    """One parsed line."""

    line: int
    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    time: int | None


class LineError(NamedTuple):
    """A line that does not parse: its number, what is wrong, and its text."""

    line: int
    problem: str
    text: str


class _Bad(ValueError):
    """What is wrong with the line being parsed."""


def _name(raw: str) -> str:
    """A tag key, tag value or field key unescaped (``\\`` before ``␣,=``)."""
    if "\\" not in raw:
        return raw
    return raw.replace("\\ ", " ").replace("\\,", ",").replace("\\=", "=")


def _measurement(raw: str) -> str:
    """A measurement unescaped (``\\`` before ``␣,``)."""
    if "\\" not in raw:
        return raw
    return raw.replace("\\ ", " ").replace("\\,", ",")


def _value(key: str, raw: str) -> FieldValue:
    """A field's typed value (by its suffix or quotes), or :class:`_Bad`."""
    if raw[0] == '"':
        body = raw[1:-1]
        return _UNESCAPE_STRING(r"\1", body) if "\\" in body else body
    last = raw[-1]
    if last in _DIGITS and raw[0] in _FLOAT_START and raw.isascii():
        try:
            number_f = float(raw)  # the usual field; float() also takes "_", "nan", "inf": checked
        except ValueError:
            pass
        else:
            if "_" not in raw and number_f not in _INFINITE:
                return number_f
    if last == "i" and _INTEGER(raw):
        number = int(raw[:-1])
        if not -_INT64 <= number < _INT64:
            raise _Bad(f"field {key!r}: {raw} is outside the 64-bit integer range")
        return number
    if last == "u" and _UNSIGNED(raw):
        number = int(raw[:-1])
        if number >= _UINT64:
            raise _Bad(f"field {key!r}: {raw} is outside the 64-bit unsigned range")
        return number
    boolean = _BOOLEANS.get(raw)
    if boolean is not None:
        return boolean
    if _FLOAT(raw):
        number_f = float(raw)
        if number_f in _INFINITE:
            raise _Bad(f"field {key!r}: {raw} is beyond a 64-bit float")
        return number_f
    raise _Bad(f'field {key!r}: {raw[:40]!r} is not a float, integer (i), unsigned (u), boolean or "string"')


def _diagnose(text: str, pos: int) -> str:
    """What is wrong with the line at ``pos`` (which :data:`_LINE` does not match)."""
    try:
        _parse_slowly(text, pos)
    except _Bad as exc:
        return str(exc)
    return "the line does not parse"


def _parse_slowly(text: str, pos: int) -> None:
    """The line at ``pos`` step by step, raising :class:`_Bad` at the first thing wrong with it."""
    head = _HEAD(text, pos)
    if head is None:
        raise _Bad("no measurement name")
    raw_m = head[1]
    measurement = _measurement(raw_m)
    at = head.end()
    space = _SPACE(text, at)
    if space is None:
        if text.startswith(",", at):
            raise _Bad("a tag is not key=value")
        if at >= len(text) or text[at] in "\r\n":
            raise _Bad(f"{measurement!r} has no field set")
        raise _Bad(f"unexpected {text[at]!r} after the measurement and tags (a space and the fields)")
    at = space.end()
    fields: dict[str, FieldValue] = {}
    spans_lines = False
    while True:
        found = _FIELD(text, at)
        if found is None:
            key_only = _KEY(text, at)
            if key_only is None:
                raise _Bad("a field is not key=value")
            if text.startswith('"', key_only.end()):
                raise _Bad(f"field {_name(key_only[1])!r}: the string is not closed")
            raise _Bad(f"field {_name(key_only[1])!r} has no value")
        key, raw = _name(found[1]), found[2]
        fields[key] = _value(key, raw)
        spans_lines = spans_lines or "\n" in raw
        at = found.end()
        if text.startswith(",", at):
            at += 1
            continue
        break
    tail = _TAIL(text, at)
    if tail is None:
        if spans_lines:
            raise _Bad("a string field runs past the end of its line (a closing quote missing?)")
        raise _Bad("unexpected text after the fields (a timestamp is one integer)")
    _timestamp(tail[1])


def _timestamp(stamp: str | None) -> int | None:
    if stamp is None:
        return None
    time = int(stamp)
    if not -_INT64 <= time < _INT64:
        raise _Bad(f"timestamp {stamp} is outside the 64-bit integer range")
    return time


def _point(found: re.Match[str], line: int) -> Point:
    """The point of a line :data:`_LINE` matched, or :class:`_Bad` for a value out of range."""
    raw_m, raw_tags, raw_fields, stamp = found.groups()
    measurement = _measurement(raw_m)
    if not raw_tags:
        tags = {}
    elif "\\" in raw_tags:
        tags = {_name(k): _name(v) for k, v in _TAGS(raw_tags)}
    else:  # the usual tag set: nothing escaped, every tag one k=v
        tags = dict(tag.split("=", 1) for tag in raw_tags[1:].split(","))
    fields: dict[str, FieldValue] = {}
    if "\\" in raw_fields or '"' in raw_fields:
        for raw_key, raw in _FIELDS(raw_fields):
            key = _name(raw_key)
            fields[key] = _value(key, raw)
    else:  # the usual field set: no escapes, no strings
        for field_ in raw_fields.split(","):
            key, _, raw = field_.partition("=")
            fields[key] = _value(key, raw)
    return Point(line, measurement, tags, fields, _timestamp(stamp))


def _plain_point(text: str, line: int) -> Point | None:
    """The point of a plain line (no escape, string, tab or CR; not blank): ``m[,k=v…] f=v[,f=v…][ ts]``
    with single spaces, as :data:`_LINE` reads it; None when it is anything else (the full parser
    then reads it and says what is wrong). A value out of range is :class:`_Bad`, as in :func:`_point`."""
    parts = text.split(" ")
    n = len(parts)
    if n == 3:
        head, raw_fields, stamp = parts
        digits = stamp[1:] if stamp[:1] == "-" else stamp
        if not (digits.isdigit() and digits.isascii()):
            return None
    elif n == 2:
        head, raw_fields = parts
        stamp = None
    else:
        return None
    measurement, comma, raw_tags = head.partition(",")
    if not measurement or not raw_fields:
        return None
    tags: dict[str, str] = {}
    if comma:
        for tag in raw_tags.split(","):
            key, _, value = tag.partition("=")
            if not key or not value or "=" in value:
                return None
            tags[key] = value
    fields: dict[str, FieldValue] = {}
    ascii_ = raw_fields.isascii()
    for field_ in raw_fields.split(","):
        key, _, raw = field_.partition("=")
        if not key or not raw:
            return None
        if ascii_:  # the usual fields, inline: what _value reads them as
            last = raw[-1]
            if last in _DIGITS:
                if raw[0] in _FLOAT_START and "_" not in raw:
                    try:
                        number_f = float(raw)
                    except ValueError:
                        pass
                    else:
                        if number_f not in _INFINITE:  # a finite float
                            fields[key] = number_f
                            continue
            elif last == "i":
                body = raw[:-1]
                if body.isdigit() or (body[:1] == "-" and body[1:].isdigit()):  # ASCII: [0-9]+
                    number = int(body)
                    if -_INT64 <= number < _INT64:  # an int64 (_value says what is wrong otherwise)
                        fields[key] = number
                        continue
        fields[key] = _value(key, raw)
    return _stamped(line, measurement, tags, fields, stamp)


_UNKNOWN: Final[Any] = object()
"""What a cache gives for a key not seen yet."""


def _head(head: str, tag: str) -> tuple[str, str] | None:
    """A plain line's measurement and the value of its tag ``tag`` ("" when it has none), as
    :func:`_plain_point` reads them; None when the head is not plain (the full parser's)."""
    measurement, comma, raw_tags = head.partition(",")
    if not measurement:
        return None
    tags: dict[str, str] = {}
    if comma:
        for tag_ in raw_tags.split(","):
            key, _, value = tag_.partition("=")
            if not key or not value or "=" in value:
                return None
            tags[key] = value
    return measurement, tags.get(tag, "")


def _stamped(
    line: int, measurement: str, tags: dict[str, str], fields: dict[str, FieldValue], stamp: str | None
) -> Point:
    """The point, its timestamp (ASCII digits, perhaps signed) read; :class:`_Bad` out of int64's range."""
    if stamp is None:
        return Point(line, measurement, tags, fields, None)
    time = int(stamp)
    if not -_INT64 <= time < _INT64:
        raise _Bad(f"timestamp {stamp} is outside the 64-bit integer range")
    return Point(line, measurement, tags, fields, time)


def parse(text: str) -> Iterator[Point | LineError]:
    """Every line of ``text``: a :class:`Point`, or a :class:`LineError`. Blank and comment lines are
    skipped; line numbers count from 1 (a string field's newline is inside its line)."""
    # escapes, strings (which may span lines), tabs and CRs: only the full parser reads them
    if "\\" in text or '"' in text or "\t" in text or "\r" in text:
        yield from _parse(text, 1)
        return
    for line, line_text in enumerate(text.split("\n"), 1):  # the usual message: plain lines, split at once
        if not line_text or line_text[0] in " #":
            if line_text.lstrip(" ")[:1] in ("", "#"):
                continue  # blank or a comment
            yield from _parse(line_text, line)
            continue
        try:
            point = _plain_point(line_text, line)
        except _Bad as exc:
            yield LineError(line, str(exc), line_text)
            continue
        if point is None:
            yield from _parse(line_text, line)
        else:
            yield point


def _parse(text: str, line: int) -> Iterator[Point | LineError]:
    """:func:`parse` by the full grammar, the first line numbered ``line``."""
    pos, end = 0, len(text)
    while pos < end:
        if text[pos] in _SKIPPED:
            blank = _BLANK(text, pos)
            if blank is not None:
                pos = blank.end()
                line += 1
                continue
        found = _LINE(text, pos)
        try:
            if found is None:
                raise _Bad(_diagnose(text, pos))
            point = _point(found, line)
        except _Bad as exc:
            stop = text.find("\n", pos)
            stop = end if stop < 0 else stop
            yield LineError(line, str(exc), text[pos:stop].rstrip("\r"))
            pos = stop + 1
            line += 1
            continue
        yield point
        after = found.end()
        line += text.count("\n", pos, after)
        pos = after


def _lines(numbers: list[int]) -> str:
    """``line 3`` / ``lines 1, 3, 5`` (the first ten)."""
    if len(numbers) == 1:
        return f"line {numbers[0]}"
    shown = ", ".join(str(n) for n in numbers[:10])
    return f"lines {shown}{f', … ({len(numbers)} lines)' if len(numbers) > 10 else ''}"


MAX_PLANS: Final = 1_024
"""(model, measurement, field keys) whose mapping is remembered; keys come from payloads, so past it
the map starts again."""

_Plan = tuple[tuple[str, str, Convert | None], ...]
"""Of one line: (our field, the line's field key, its converter or None to take the value as it is)."""


@dataclass(slots=True)
class _Reading:
    """The lines of one device at one time: the one line's point, or the object of several lines."""

    device: RegisteredDevice
    ts_ms: int
    lines: list[int]
    point: Point
    values: dict[str, Any] | None = None
    """The object the model maps, once a second line joins the first (None: :attr:`point` alone)."""


def _mapped(plan: _Plan, fields: dict[str, FieldValue]) -> dict[str, Any] | None:
    """What the mapper makes of a one-line reading's ``fields`` by its ``plan``; None when the mapper
    itself must say (a value that is not a plain number where one is converted)."""
    values: dict[str, Any] = {}
    for name, field_key, convert in plan:
        raw = fields[field_key]
        if convert is None:
            values[name] = raw
            continue
        if type(raw) is float:
            values[name] = convert(raw)
        elif type(raw) is int:
            values[name] = convert(float(raw))
        else:
            return None  # a boolean or a string where a unit is converted: the mapper refuses it
    return values


def _add(values: dict[str, Any], point: Point) -> None:
    """A line's fields into the object the model maps: each as ``f`` (the last line's) and as ``m.f``."""
    fields, prefix = point.fields, f"{point.measurement}."
    values.update(fields)
    for key, value in fields.items():
        values[prefix + key] = value


class InfluxLineProtocol:
    """Line protocol messages (one or more lines) on the source's topics."""

    FORMAT = "influx_lp"

    def __init__(self, source: Source, context: SourceContext) -> None:
        if source.device is None or source.precision is None:  # the sources file requires both
            raise ValueError("influx_lp needs device and precision")
        self._mapper = context.mapper
        self._ignore = context.ignore
        self._sink = ReadingSink()
        self._shapes = FlatShapes(context.mapper)
        self._model = source.model
        self._devices = DeviceLookup(source.device, context.registry)
        self._tag = source.device.path
        self._to_ms = TO_MS[source.precision]
        self._heads: dict[str, tuple[str, str] | None] = {}
        """A plain line's head (measurement and tags) read once: (measurement, the device tag's value or ""),
        None when it is not plain (:func:`_head`)."""
        self._plans: dict[tuple[str, Kind, str, tuple[str, ...]], tuple[_Plan | None, Take | None]] = {}
        """A one-line reading's mapping by (model, kind, measurement, field keys), found once (None: the
        mapper's), and its take (:meth:`FlatShapes.planned`; None: none)."""

    def decode(self, topic: str, payload: bytes, *, retained: bool, now_ms: int, out: BatchBuilder) -> None:
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            out.reject(Rejection(topic, Reason.BAD_UTF8, f"line protocol is UTF-8 text: {exc}", payload))
            return
        by_topic: RegisteredDevice | None = None
        if self._tag is None:
            by_topic = self._devices.in_topic(topic)
            if by_topic is None:
                out.reject(Rejection(topic, Reason.UNKNOWN_DEVICE, self._devices.not_in_topic(topic), payload))
                return
        if self._one_line(topic, text, by_topic, now_ms, out):
            return
        readings: dict[tuple[int, int], _Reading] = {}
        unknown: dict[str, list[int]] = {}
        bad = 0
        tag, named, to_ms = self._tag or "", self._devices.named, self._to_ms
        for item in parse(text):
            if type(item) is LineError:
                bad += 1
                if bad <= MAX_LINE_REFUSALS:
                    detail = f"line {item.line}: {item.problem}: {item.text[:80]!r}"
                    out.reject(Rejection(topic, Reason.BAD_SHAPE, detail, payload))
                continue
            assert type(item) is Point
            device = by_topic
            if device is None:
                name = item.tags.get(tag, "")
                device = named(name)
                if device is None:
                    unknown.setdefault(name, []).append(item.line)
                    continue
            ts = now_ms if item.time is None else to_ms(item.time)
            at = (device.index, ts)
            reading = readings.get(at)
            if reading is None:
                readings[at] = _Reading(device, ts, [item.line], item)
                continue
            reading.lines.append(item.line)
            values = reading.values
            if values is None:
                values = reading.values = {}
                _add(values, reading.point)
            _add(values, item)
        if bad > MAX_LINE_REFUSALS:
            detail = f"{bad - MAX_LINE_REFUSALS} more lines do not parse (only the first {MAX_LINE_REFUSALS} are named)"
            out.reject(Rejection(topic, Reason.BAD_SHAPE, detail, payload))
        for name, lines in unknown.items():
            if name:
                detail = f"tag {self._tag}={name!r} ({_lines(lines)}) is not an active registered device"
            else:
                detail = f"{_lines(lines)}: no tag {self._tag!r} names the device"
            out.reject(Rejection(topic, Reason.UNKNOWN_DEVICE, detail, payload))
        for reading in readings.values():
            self._store(topic, payload, reading, now_ms, out)
        if not readings and not bad and not unknown:
            self._ignore("empty")

    def _one_line(
        self, topic: str, text: str, by_topic: RegisteredDevice | None, now_ms: int, out: BatchBuilder
    ) -> bool:
        """The usual message, one plain line (as :func:`_plain_point` reads it: no escape, string, tab or
        CR) of floats and ``i`` integers, stored straight by its plan's take; False: nothing was done
        (anything else, or a reading the take does not store: :meth:`decode`'s general path says)."""
        body = text[:-1] if text[-1:] == "\n" else text
        if (
            not body or body[0] in " #" or "\n" in body or "\\" in body or '"' in body or "\t" in body
            or "\r" in body or not body.isascii()
        ):  # fmt: skip
            return False
        parts = body.split(" ")
        if len(parts) == 3:
            head, raw_fields, stamp = parts
            digits = stamp[1:] if stamp[:1] == "-" else stamp
            if not digits.isdigit():  # ASCII: [0-9]+
                return False
            time = int(stamp)
            if not -_INT64 <= time < _INT64:
                return False
            ts = self._to_ms(time)
        elif len(parts) == 2:
            head, raw_fields = parts
            ts = now_ms
        else:
            return False
        found = self._heads.get(head, _UNKNOWN)
        if found is _UNKNOWN:
            if len(self._heads) >= MAX_PLANS:
                self._heads.clear()
            found = self._heads[head] = _head(head, self._tag or "")
        if found is None:
            return False
        measurement, name = found
        device = by_topic if by_topic is not None else self._devices.named(name)
        if device is None:
            return False
        fields: dict[str, FieldValue] = {}
        for field_ in raw_fields.split(","):  # what _plain_point reads, else the general path's
            key, _, raw = field_.partition("=")
            if not key or not raw:
                return False
            last = raw[-1]
            if last in _DIGITS:
                if raw[0] not in _FLOAT_START or "_" in raw:
                    return False
                try:
                    number_f = float(raw)
                except ValueError:
                    return False
                if number_f in _INFINITE:
                    return False
                fields[key] = number_f
            elif last == "i":
                body = raw[:-1]
                if not (body.isdigit() or (body[:1] == "-" and body[1:].isdigit())):
                    return False
                number = int(body)
                if not -_INT64 <= number < _INT64:
                    return False
                fields[key] = number
            else:
                return False
        model = self._model or device.model
        kind = device.device_kind
        planned = self._plans.get((model, kind, measurement, tuple(fields)))
        if planned is None:
            planned = self._plan_of(model, kind, Point(1, measurement, {}, fields, None))
        take = planned[1]
        return take is not None and self._shapes.take(take, device, fields, ts, 0, now_ms=now_ms, out=out)

    def _store(self, topic: str, payload: bytes, reading: _Reading, now_ms: int, out: BatchBuilder) -> None:
        """One reading through the model's mapping into the sink (a field's refusal names the field,
        as the sink's do; a reading refused whole names its lines)."""
        device = reading.device
        model = self._model or device.model
        mapped: dict[str, Any] | None = None
        if reading.values is None:  # one line: by its plan's take when it can (the usual line), else its plan
            fields = reading.point.fields
            plan, take = self._plan_of(model, device.device_kind, reading.point)
            if take is not None and self._shapes.take(take, device, fields, reading.ts_ms, 0, now_ms=now_ms, out=out):
                return
            mapped = None if plan is None else _mapped(plan, fields)
        if mapped is None:
            values_in = reading.values
            if values_in is None:
                values_in = {}
                _add(values_in, reading.point)
            values, refused = self._mapper.values(model, values_in)
        elif self._shapes.ours(reading.device, mapped, reading.ts_ms, 0, now_ms=now_ms, out=out):
            return  # plain numbers of the device's kind, in range: stored as the sink stores them
        else:
            values, refused = mapped, []
        missing = None if values or refused else f"{_lines(reading.lines)}: no field maps to ours"  # only then said
        self._sink.mapped(
            topic, payload, reading.device, reading.ts_ms, 0, values, refused, hint=self._mapper.hint(model),
            missing=missing, now_ms=now_ms, out=out,
        )  # fmt: skip

    def _plan_of(self, model: str, kind: Kind, point: Point) -> tuple[_Plan | None, Take | None]:
        """A one-line reading's remembered plan (:meth:`_plan`) and its take (:meth:`FlatShapes.planned`)."""
        key = (model, kind, point.measurement, tuple(point.fields))
        try:
            return self._plans[key]
        except KeyError:
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()
            plan = self._plan(model, point)
            found = self._plans[key] = (plan, None if plan is None else self._shapes.planned(kind, plan))
            return found

    def _plan(self, model: str, point: Point) -> _Plan | None:
        """Which of the line's fields feed which of ours, as :meth:`FieldMapper.values` finds them in
        the object a lone line makes (each target's first path present wins; a dotted path into a
        scalar finds nothing); None when only the mapper can say (a unit it cannot convert)."""
        sample: dict[str, Any] = {}
        _add(sample, point._replace(fields={k: k for k in point.fields}))  # each key → the line's field key
        if not self._mapper.has(model):  # no entry: our field names are taken as they are
            return tuple((key, src, None) for key, src in sample.items() if key in FIELD_SPECS)
        best: dict[int, tuple[int, str, str, Convert | None]] = {}  # each field: its first path present
        for key, src in sample.items():
            for i, rank, name, how in self._mapper.plan(model, key, None) or ():
                if isinstance(how, str):
                    return None  # a unit it cannot convert: the mapper says so
                if i not in best or rank < best[i][0]:
                    best[i] = (rank, name, src, how)
        return tuple((name, src, how) for _, name, src, how in (best[i] for i in sorted(best)))
