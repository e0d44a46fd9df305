"""SenML packs (RFC 8428), in JSON (``application/senml+json``) or CBOR (``application/senml+cbor``).

Decided, from the RFC's own examples (``../shared/realworld/senml``):

- **Encoding**, per message: a payload whose first byte is a CBOR array (major type 4, ``0x80``–
  ``0x9f``; after an optional self-described-CBOR tag ``d9 d9 f7``) is CBOR, anything else is JSON
  (``[`` is ``0x5b`` and JSON's whitespace is below ``0x21``: never a CBOR array). Malformed JSON →
  ``bad_json``; malformed CBOR, or either that is not an array of records with the RFC's types →
  ``bad_shape``, naming the record and the label.
- **Resolution** (RFC 8428 §4.6): base fields apply to the records that follow until a record sets
  them again; name = ``bn`` + ``n``, time = ``bt`` + ``t`` (seconds), unit = ``u`` else ``bu``,
  value = ``bv`` + ``v``, sum = ``bs`` + ``s``. A resolved time below 2**28 is relative to "now":
  the time the message arrived. Records are then put in chronological order (stable).
  :func:`resolve` does it, and reproduces every resolved example of the RFC.
- **Strictness** where the RFC says MUST: a resolved name outside ``A-Z a-z 0-9 - : . / _`` (or not
  starting with a letter or digit), two value fields in a record, a label ending in ``_`` (an
  extension that must be understood), records that disagree on ``bver``, or a version other than
  1–10 or 26 (10 + RFC 9100's "secondary units", which the unit table reads) → the whole pack is
  refused ``bad_shape``; a time that is not finite → ``bad_timestamp``; more than
  :data:`MAX_RECORDS` records → ``too_large``. Unknown labels are ignored; a record with no value
  and no sum only sets base fields.
- **Identity**: the base name is the device (registry external id ``senml``), without trailing
  separators (``urn:dev:ow:10e2073a01080063:`` and ``urn:dev:ow:10e2073a01080063`` are one device, as
  the RFC's examples use both). A record without a base name: its whole name is the device if
  registered (``urn:dev:ow:10e2073a01080063`` in RFC example 1), else the part before its last ``:``
  or ``/`` (``urn:dev:ow:10e2073a01080063:voltage``). A pack may carry several devices; each unknown
  or inactive one → one ``unknown_device``, and the others are stored.
- **Fields**: a record's key is its name relative to the device (``n``), or its unit when that is
  empty (``[{"bn": "urn:dev:ow:…", "bu": "%RH", "v": 21.2}]`` is keyed ``%RH``), through the model's
  mapping; the record's own unit wins over the model's (``Cel``, ``S/m`` converted; one we cannot
  convert → ``bad_unit`` for that field alone). Records of a device at one time are one reading;
  a mapped status-only field (``battery_pct``) goes to a ``device_status`` point at that time.
  A later record of the same key and time wins.
- **Other values**: ``vs`` is text (a numeric one is a number, as everywhere in ingest), ``vb`` a
  boolean and ``vd`` bytes: unmapped they are left out, mapped they are refused ``bad_type``. The
  sum ``s`` is an integral over time (unit × seconds) that no field of ours carries: not read.
  ``ut`` and ``l`` are not read. SenML has no counter: ``seq`` is 0.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from operator import attrgetter, itemgetter
from typing import Any, Final, NamedTuple

import cbor2
import msgspec
from msgspec import UNSET, UnsetType

from contract.fields import TS_MAX_AHEAD_MS, TS_MIN_MS
from contract.fleet import SENML_SEPARATORS
from contract.reasons import Reason
from ingest.batch import BatchBuilder, Rejection
from ingest.registry import RegisteredDevice
from ingest.sources.base import SourceContext
from ingest.sources.config import Source
from ingest.sources.identity import DeviceLookup
from ingest.sources.shapes import FlatShapes, Take
from ingest.sources.sink import ReadingSink

RELATIVE_BELOW: Final = 2**28
"""A resolved time (seconds) below this is relative to "now" (RFC 8428 §4.5.3)."""
MAX_RECORDS: Final = 10_000
"""Records per pack (ingest's ``max_readings_per_message`` default); more → ``too_large``."""
VERSIONS: Final = frozenset((*range(1, 11), 26))
"""``bver`` read: RFC 8428's 10 and its drafts' earlier numbers, and 26 = 10 + secondary units (RFC 9100)."""

CBOR_LABELS: Final = {
    -1: "bver", -2: "bn", -3: "bt", -4: "bu", -5: "bv", -6: "bs",
    0: "n", 1: "u", 2: "v", 3: "vs", 4: "vb", 5: "s", 6: "t", 7: "ut", 8: "vd", 9: "l",
}  # fmt: skip
"""RFC 8428 §6: CBOR's integer labels (the table is conclusive; extensions use text labels)."""

_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-:./_]*")
_NAME_CHARS: Final = re.compile(r"[A-Za-z0-9\-:./_]*")
_ALNUM: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_SEPARATORS: Final = SENML_SEPARATORS
_CBOR_SELF_DESCRIBED: Final = b"\xd9\xd9\xf7"
_VALUES: Final = ("v", "vs", "vb", "vd")
_T_MS: Final = itemgetter(3)
_PARTS_MAX: Final = 4096
_parts: set[str] = set()
"""Names (``n``) seen to be of SenML's characters only, at most :data:`_PARTS_MAX` (then forgotten)."""


class PackError(ValueError):
    """The pack as a whole is refused: its reason and what to say."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class _Record(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """One record's labels read and type-checked (RFC 8428 §5, §6); UNSET where absent. JSON packs
    decode straight into it, unless they have other labels; ``vd`` is bytes when it came from CBOR."""

    bn: str | UnsetType = UNSET
    bt: float | UnsetType = UNSET
    bu: str | UnsetType = UNSET
    bv: float | UnsetType = UNSET
    bs: float | UnsetType = UNSET
    bver: int | UnsetType = UNSET
    n: str = ""
    u: str | UnsetType = UNSET
    v: float | UnsetType = UNSET
    vs: str | UnsetType = UNSET
    vb: bool | UnsetType = UNSET
    vd: str | UnsetType = UNSET
    s: float | UnsetType = UNSET
    t: float = 0.0
    ut: Any = UNSET
    """Not read (nor ``l``): decoded only to be checked as JSON as other packs are."""
    l: Any = UNSET  # noqa: E741 (RFC 8428's label)


_JSON_PACK: Final = msgspec.json.Decoder(list[_Record])


class _Plain(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, gc=False):
    """A record of the usual pack (:meth:`SenML._plain`): a base name and time (the first record's; later
    ones may repeat its base name), a name, a unit, a value; a record with any other label does not
    decode into it."""

    bn: str | UnsetType = UNSET
    bt: float | UnsetType = UNSET
    n: str = ""
    u: str | UnsetType = UNSET
    v: float


_PLAIN_PACK: Final = msgspec.json.Decoder(list[_Plain])
_LATER: Final = attrgetter("bn", "bt", "n", "u")
KNOWN_MAX: Final = 32_768
"""Devices (base names) whose usual packs are worked out (:class:`_Known`), per source; past it the map starts again."""
KNOWN_PER_NAME: Final = 4
"""Usual packs worked out per base name (a device may send a few): the latest learnt."""
KNOWN_RECORDS_MAX: Final = 64
"""Records of a pack worth working out (a device's usual pack has a few; larger ones take the general path).
With base names learnt only as the device's name or it and one separator, what the known packs keep is bounded:
:data:`KNOWN_MAX` names × :data:`KNOWN_PER_NAME` packs × this many labels."""

_Labels = tuple[str | UnsetType, float | UnsetType, str, str | UnsetType]
"""A record's (bn, bt, n, u)."""


def _base_ms(bt: float | UnsetType, now_ms: int) -> int | None:
    """The usual pack's time in ms: its base time ``bt`` (absent: 0), relative ones counted from
    ``now_ms`` (:data:`RELATIVE_BELOW`); None when it is not finite."""
    seconds = 0.0 if bt is UNSET else bt
    if not math.isfinite(seconds * 1000):
        return None
    t_ms = round(seconds * 1000)
    return t_ms + now_ms if seconds < RELATIVE_BELOW else t_ms


class _Known(NamedTuple):
    """A usual pack of one base name worked out once: its first record's ``n`` and ``u`` and its later
    records' labels (``later``: they set no base time), its device — found by ``name`` — and the shape's
    take of its records' values in order."""

    n: str
    u: str | UnsetType
    later: list[_Labels]
    name: str
    device: RegisteredDevice
    take: Take


class Resolved(NamedTuple):
    """One resolved record (RFC 8428 §4.6), its base name kept apart from its own name."""

    base: str
    """The base name in force ("" when none)."""
    name: str
    """The record's own name (``n``)."""
    unit: str | None
    t_ms: int
    """Absolute time, Unix milliseconds (a relative time resolved against the arrival time)."""
    kind: str | None
    """Which value it has: ``v``, ``vs``, ``vb``, ``vd``; None when it has only a sum."""
    value: Any
    sum: float | None

    def rfc(self) -> dict[str, Any]:
        """The RFC's resolved form: ``{"n", "u", "t" (seconds), "v"|"vs"|"vb"|"vd", "s"}``."""
        doc: dict[str, Any] = {"n": self.base + self.name, "t": self.t_ms / 1000}
        if self.unit is not None:
            doc["u"] = self.unit
        if self.kind is not None:
            doc[self.kind] = self.value
        if self.sum is not None:
            doc["s"] = self.sum
        return doc


def _text(label: str, value: Any, i: int) -> str:
    if not isinstance(value, str):
        raise PackError(Reason.BAD_SHAPE, f"record {i}: {label} must be text, not {type(value).__name__}")
    return value


def _number(label: str, value: Any, i: int) -> float:
    if type(value) is float or type(value) is int or isinstance(value, Decimal | Fraction):  # CBOR tags 4, 30
        try:
            return float(value)
        except (OverflowError, ValueError):  # an integer beyond a double, a signalling NaN
            raise PackError(Reason.BAD_SHAPE, f"record {i}: {label} {str(value)[:40]} is not a number") from None
    raise PackError(Reason.BAD_SHAPE, f"record {i}: {label} must be a number, not {type(value).__name__}")


def _bool(label: str, value: Any, i: int) -> bool:
    if not isinstance(value, bool):
        raise PackError(Reason.BAD_SHAPE, f"record {i}: {label} must be true or false, not {type(value).__name__}")
    return value


def _data(label: str, value: Any, i: int) -> str | bytes:
    if not isinstance(value, str | bytes):  # base64url text in JSON, a byte string in CBOR
        raise PackError(Reason.BAD_SHAPE, f"record {i}: {label} must be data, not {type(value).__name__}")
    return value


def _version(label: str, value: Any, i: int) -> int:
    if type(value) is not int:
        raise PackError(Reason.BAD_SHAPE, f"record {i}: {label} must be an unsigned integer")
    if value not in VERSIONS:
        raise PackError(Reason.BAD_SHAPE, f"record {i}: SenML version {value} is not one ingest reads (1-10, 26)")
    return value


_CHECKS: Final[dict[str, Callable[[str, Any, int], Any]]] = {
    "bn": _text, "bt": _number, "bu": _text, "bv": _number, "bs": _number, "bver": _version,
    "n": _text, "u": _text, "v": _number, "vs": _text, "vb": _bool, "vd": _data, "s": _number, "t": _number,
}  # fmt: skip
"""Each label read, with its type (RFC 8428 §5 and §6); ``ut`` and ``l`` are not read."""


def _labels(raw: Mapping[Any, Any], i: int) -> _Record:
    """One record's labels read and type-checked (CBOR's integer labels as their names)."""
    record: dict[str, Any] = {}
    for key, value in raw.items():
        label = CBOR_LABELS.get(key) if type(key) is int else key
        if not isinstance(label, str):
            continue
        check = _CHECKS.get(label)
        if check is not None:
            record[label] = check(label, value, i)
        elif label.endswith("_"):
            detail = f"record {i}: label {label[:40]!r} must be understood (RFC 8428 §4.4) and is not"
            raise PackError(Reason.BAD_SHAPE, detail)
    return _Record(**record)


def resolve(pack: Any, now_ms: int) -> list[Resolved]:
    """A decoded pack's records resolved (RFC 8428 §4.6) in chronological order; :class:`PackError`
    when it is not a SenML pack. Records with neither value nor sum are left out."""
    return [Resolved._make(r) for r in _resolve(_checked(pack), now_ms)]


Row = tuple[str, str, str | None, int, str | None, Any, float | None]
"""A resolved record as a plain tuple, in :class:`Resolved`'s order."""


def _checked(pack: Any) -> Iterator[_Record]:
    """The records of a decoded pack, each type-checked as it is reached (so errors come in record order)."""
    if not isinstance(pack, list | tuple):
        raise PackError(Reason.BAD_SHAPE, f"not a SenML pack: expected an array of records, not {type(pack).__name__}")
    if len(pack) > MAX_RECORDS:
        raise PackError(Reason.TOO_LARGE, f"{len(pack)} records in one pack; the limit is {MAX_RECORDS}")
    return (_record(raw, i) for i, raw in enumerate(pack))


def _record(raw: Any, i: int) -> _Record:
    if type(raw) is not dict and not isinstance(raw, Mapping):
        raise PackError(Reason.BAD_SHAPE, f"record {i}: expected an object, not {type(raw).__name__}")
    return _labels(raw, i)


def _json_records(payload: bytes) -> list[_Record] | None:
    """A JSON pack decoded and type-checked in one step, or None when it needs :func:`parse` and
    :func:`_checked` (CBOR, anything malformed, a label we do not read: they say why)."""
    body = payload[3:] if payload.startswith(_CBOR_SELF_DESCRIBED) else payload
    if body and 0x80 <= body[0] <= 0x9F:
        return None
    try:
        records = _JSON_PACK.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if len(records) > MAX_RECORDS:
        raise PackError(Reason.TOO_LARGE, f"{len(records)} records in one pack; the limit is {MAX_RECORDS}")
    return records


def _kind(r: _Record, i: int) -> tuple[str | None, Any]:
    """The record's value field and value, or (None, None); :class:`PackError` when it has two."""
    found = [(k, getattr(r, k)) for k in _VALUES if getattr(r, k) is not UNSET]
    if len(found) > 1:
        raise PackError(Reason.BAD_SHAPE, f"record {i}: more than one value ({found[0][0]}, {found[1][0]})")
    return found[0] if found else (None, None)


def _name_ok(base_ok: bool, bn: str, n: str) -> bool:
    """Whether ``bn + n`` is a SenML name, given whether ``bn`` (non-empty) is one."""
    if bn and not base_ok:
        return False
    if not bn and (not n or n[0] not in _ALNUM):
        return False
    if n in _parts:
        return True
    if _NAME_CHARS.fullmatch(n) is None:
        return False
    if len(_parts) >= _PARTS_MAX:
        _parts.clear()
    _parts.add(n)
    return True


def _resolve(records: Iterable[_Record], now_ms: int) -> list[Row]:
    """:func:`resolve`'s work on type-checked records, as plain tuples."""
    bn, bt = "", 0.0
    base_ok = False
    bu: str | None = None
    bv: float | None = None
    bs: float | None = None
    version: int | None = None
    out: list[Row] = []
    ordered = True
    at: float | None = None
    t_ms = last = -(1 << 62)
    for i, r in enumerate(records):
        if (
            r.bn is not UNSET or r.bt is not UNSET or r.bu is not UNSET
            or r.bv is not UNSET or r.bs is not UNSET or r.bver is not UNSET
        ):  # fmt: skip
            if r.bver is not UNSET:
                _version("bver", r.bver, i)
                if version is not None and r.bver != version:
                    raise PackError(Reason.BAD_SHAPE, f"record {i}: bver {r.bver} differs from the pack's {version}")
                version = r.bver
            if r.bn is not UNSET and r.bn != bn:
                bn = r.bn
                base_ok = _NAME.fullmatch(bn) is not None
            if r.bt is not UNSET:
                bt = r.bt
            if r.bu is not UNSET:
                bu = r.bu
            if r.bv is not UNSET:
                bv = r.bv
            if r.bs is not UNSET:
                bs = r.bs
        kind: str | None
        value = r.v
        if value is not UNSET and r.vs is UNSET and r.vb is UNSET and r.vd is UNSET:  # the common record
            kind = "v"
            if bv is not None:
                value = bv + value
        else:
            kind, value = _kind(r, i)
            if kind == "v" and bv is not None:
                value = bv + value
            elif kind is None and bv is not None:  # a missing Value counts as zero: the base value alone
                kind, value = "v", bv
        total = bs if r.s is UNSET else r.s + (bs or 0.0)
        if kind is None and total is None:
            continue
        name = r.n
        if not (base_ok and name in _parts) and not _name_ok(base_ok, bn, name):
            full = bn + name
            if not full:
                raise PackError(Reason.BAD_SHAPE, f"record {i}: no name (neither bn nor n)")
            detail = (f"record {i}: name {full[:60]!r} is not a SenML name (RFC 8428 §4.5.1: "
                      "letters, digits and - : . / _, starting with a letter or digit)")  # fmt: skip
            raise PackError(Reason.BAD_SHAPE, detail)
        seconds = bt + r.t
        if seconds != at:  # records of a pack mostly share their time
            if not math.isfinite(seconds * 1000):
                raise PackError(Reason.BAD_TIMESTAMP, f"record {i}: time {seconds} is not a time")
            at = seconds
            t_ms = round(seconds * 1000)
            if seconds < RELATIVE_BELOW:
                t_ms += now_ms
            if t_ms < last:
                ordered = False
            last = t_ms
        out.append((bn, name, (bu if r.u is UNSET else r.u) or None, t_ms, kind, value, total))
    if not ordered:
        out.sort(key=_T_MS)
    return out


def parse(payload: bytes) -> Any:
    """The pack as Python values, JSON or CBOR by its first byte; :class:`PackError` when malformed."""
    body = payload[3:] if payload.startswith(_CBOR_SELF_DESCRIBED) else payload
    if body and 0x80 <= body[0] <= 0x9F:
        fp = io.BytesIO(body)
        try:
            pack = cbor2.CBORDecoder(fp, max_depth=8).decode()
        except Exception as exc:  # cbor2 raises CBORDecodeError, but also ValueError/TypeError on odd tags
            raise PackError(Reason.BAD_SHAPE, f"not a SenML CBOR pack: {exc}") from None
        if fp.tell() != len(body):
            raise PackError(Reason.BAD_SHAPE, f"not a SenML CBOR pack: {len(body) - fp.tell()} bytes after the array")
        return pack
    try:
        return msgspec.json.decode(payload)
    except msgspec.ValidationError as exc:  # a number beyond a double
        raise PackError(Reason.BAD_SHAPE, f"not a SenML pack: {exc}") from None
    except msgspec.DecodeError as exc:
        raise PackError(Reason.BAD_JSON, f"neither SenML JSON nor a CBOR array: {exc}") from None


@dataclass(slots=True)
class _Device:
    """One device's records of a pack: by time, its keys' values and units."""

    found: RegisteredDevice | None
    times: dict[int, tuple[dict[str, Any], dict[str, str]]]


class SenML:
    """SenML packs on the sources file's topics (SenML has no standard topic)."""

    FORMAT = "senml"

    def __init__(self, source: Source, context: SourceContext) -> None:
        self._registry = context.registry
        self._mapper = context.mapper
        self._sink = ReadingSink()
        self._shapes = FlatShapes(context.mapper)
        self._model = source.model
        self._topic_device = DeviceLookup(source.device, context.registry) if source.device is not None else None
        """With the source's ``device`` option: the device the topic names, the only one a pack may speak for."""
        self._known: dict[str, tuple[_Known, ...]] = {}
        """Usual packs by base name, newest first, learnt as :meth:`_plain` stores one."""
        self._labels: dict[_Labels, _Labels] = {}
        """One copy of each record's labels that known packs keep (most are their model's: shared)."""

    def decode(self, topic: str, payload: bytes, *, retained: bool, now_ms: int, out: BatchBuilder) -> None:
        if self._plain(topic, payload, now_ms, out):
            return
        try:
            records = _json_records(payload)
            rows = _resolve(_checked(parse(payload)) if records is None else records, now_ms)
        except PackError as exc:
            out.reject(Rejection(topic, exc.reason, exc.detail, payload))
            return
        devices: dict[str, _Device] = {}
        named: dict[str, tuple[str, str]] = {}
        based = based_label = ""
        at: tuple[str, int] | None = None
        values: dict[str, Any] = {}
        units: dict[str, str] = {}
        for base, name, unit, t_ms, kind, value, _ in rows:
            if base:
                if base != based:
                    based, based_label = base, self._device(base.rstrip(_SEPARATORS), devices)
                label, key = based_label, name
            else:
                where = named.get(name)
                if where is None:
                    where = named[name] = self._identify(name, devices)
                label, key = where
            if kind is None:  # a sum alone: not a reading of ours
                continue
            key = key or unit or ""
            if at is None or at[0] != label or at[1] != t_ms:
                at = (label, t_ms)
                times = devices[label].times
                group = times.get(t_ms)
                if group is None:
                    group = times[t_ms] = ({}, {})
                values, units = group
            values[key] = value if kind != "vd" or isinstance(value, bytes) else value.encode()
            if unit is not None:
                units[key] = unit
            elif units:
                units.pop(key, None)
        if not devices:
            out.reject(Rejection(topic, Reason.MISSING_FIELD, "the pack has no record with a value", payload))
            return
        bound = self._topic_device.in_topic(topic) if self._topic_device is not None else None
        for label, d in devices.items():
            if d.found is None:
                detail = f"SenML device {label!r} is not an active registered device (external id senml)"
                out.reject(Rejection(topic, Reason.UNKNOWN_DEVICE, detail, payload))
            elif self._topic_device is not None and d.found is not bound:  # a device speaking for another
                detail = f"SenML device {label!r} is not the device of its topic ({topic!r})"
                out.reject(Rejection(topic, Reason.UNKNOWN_DEVICE, detail, payload))
            else:
                self._readings(topic, payload, label, d.found, d.times, now_ms, out)

    def _plain(self, topic: str, payload: bytes, now_ms: int, out: BatchBuilder) -> bool:
        """The usual pack — JSON, the first record with a base name (and perhaps a base time), every
        record a name, perhaps a unit, and a value ``v``, nothing else — stored by its shape's take
        (:meth:`FlatShapes.reading`), as :meth:`decode` stores it; False: nothing was done (anything
        else, or a reading the take does not store: the general path says)."""
        if payload[:1] != b"[":  # CBOR, or JSON with whitespace first: the general path's
            return False
        try:
            records = _PLAIN_PACK.decode(payload)
        except msgspec.DecodeError:  # ValidationError is one
            return False
        if not records or len(records) > MAX_RECORDS:
            return False
        first = records[0]
        bn = first.bn
        if not isinstance(bn, str):
            return False
        knowns = self._known.get(bn)
        if knowns is not None:
            later = list(map(_LATER, records[1:]))
            for known in knowns:
                if known.later == later and known.n == first.n and known.u == first.u:
                    if self._registry.external("senml", known.name) is known.device:
                        return self._take_known(known, first.bt, records, topic, now_ms, out)
                    del self._known[bn]  # the registry changed since: work it out again
                    break
        if not bn or _NAME.fullmatch(bn) is None:
            return False
        t_ms = _base_ms(first.bt, now_ms)
        if t_ms is None:
            return False
        values: dict[str, Any] = {}
        units: dict[str, str] = {}
        parts = _parts
        for r in records:
            if r is not first and (r.bt is not UNSET or (r.bn is not UNSET and r.bn != bn)):
                return False  # a base time, or another base name, past the first record
            name = r.n
            if name not in parts and not _name_ok(True, bn, name):
                return False
            unit = r.u or None  # UNSET and "" are no unit
            key = name or unit or ""
            values[key] = r.v
            if unit is not None:
                units[key] = unit
            elif units:
                units.pop(key, None)
        name = bn.rstrip(_SEPARATORS)
        device = self._registry.external("senml", name)
        if device is None:
            return False
        if self._topic_device is not None and device is not self._topic_device.in_topic(topic):
            return False
        model = self._model or device.model
        if not self._shapes.reading(device, model, values, t_ms, 0, units=units, now_ms=now_ms, out=out):
            return False
        # each key once (the take reads the values in record order), and what is kept bounded (KNOWN_RECORDS_MAX)
        if len(values) == len(records) <= KNOWN_RECORDS_MAX and len(bn) <= len(name) + 1:
            keys = tuple(values)
            take = self._shapes.positional(model, device.device_kind, keys, tuple(map(units.get, keys)), "v")
            if take is not None:
                self._learn(bn, _Known(first.n, first.u, list(map(_LATER, records[1:])), name, device, take))
        return True

    def _learn(self, bn: str, known: _Known) -> None:
        """Remember ``known`` as the newest usual pack of ``bn``."""
        if len(self._labels) >= KNOWN_MAX:
            self._labels.clear()
        shared = self._labels
        known.later[:] = [shared.setdefault(x, x) for x in known.later]
        before = self._known.get(bn, ())
        if not before and len(self._known) >= KNOWN_MAX:
            self._known.clear()
        self._known[bn] = (known, *before[: KNOWN_PER_NAME - 1])

    def _take_known(
        self, known: _Known, bt: float | UnsetType, records: list[_Plain], topic: str, now_ms: int, out: BatchBuilder
    ) -> bool:
        """:meth:`_plain`'s reading of a pack whose labels are ``known`` (its device still the registry's),
        at its base time ``bt``. (The time window is :meth:`FlatShapes.take`'s, inline: this is the hot path.)"""
        t_ms = _base_ms(bt, now_ms)
        if t_ms is None:
            return False
        device = known.device
        if self._topic_device is not None and device is not self._topic_device.in_topic(topic):
            return False
        return TS_MIN_MS <= t_ms <= now_ms + TS_MAX_AHEAD_MS and known.take(records, None, device, t_ms, 0, out)

    def _device(self, label: str, devices: dict[str, _Device]) -> str:
        """``label``, its device looked up and added to ``devices`` if it is not there yet."""
        if label not in devices:
            devices[label] = _Device(self._registry.external("senml", label), {})
        return label

    def _identify(self, name: str, devices: dict[str, _Device]) -> tuple[str, str]:
        """(device name, the record's key relative to it) of a record without a base name; the
        device is added to ``devices``."""
        registry = self._registry
        label, key = name.rstrip(_SEPARATORS), ""
        found = registry.external("senml", label)
        cut = max(label.rfind(":"), label.rfind("/"))
        if found is None and cut > 0:
            prefix = label[:cut].rstrip(_SEPARATORS)
            found = registry.external("senml", prefix)
            if found is not None:
                label, key = prefix, label[cut + 1 :]
        if label not in devices:
            devices[label] = _Device(found, {})
        return label, key

    def _readings(
        self,
        topic: str,
        payload: bytes,
        label: str,
        device: RegisteredDevice,
        times: dict[int, tuple[dict[str, Any], dict[str, str]]],
        now_ms: int,
        out: BatchBuilder,
    ) -> None:
        """One reading (and status report, for status-only fields) per time of one device's records."""
        model = self._model or device.model
        sink = self._sink
        mapped = False
        for t_ms, (obj, units) in times.items():
            if self._shapes.reading(device, model, obj, t_ms, 0, units=units, now_ms=now_ms, out=out):
                mapped = True
                continue
            values, refused = self._mapper.values(model, obj, units)
            mapped = mapped or bool(values or refused)
            status = sink.split_status(device, values)
            stored = bool(values) and sink.reading(topic, payload, device, t_ms, 0, values, now_ms=now_ms, out=out)
            if status:
                stored = sink.status(topic, payload, device, t_ms, True, status, now_ms=now_ms, out=out) or stored
            sink.refuse(topic, payload, refused, stored=stored, out=out)
        if not mapped:
            detail = f"no record of SenML device {label!r} maps to our fields{self._mapper.hint(model)}"
            out.reject(Rejection(topic, Reason.MISSING_FIELD, detail, payload))
