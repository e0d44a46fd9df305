"""The fast path of the usual decoded payload: a flat object of numbers, mapped by a model.

A device's codec writes the same keys in every uplink. For each (model, device kind, keys) the
mapping is worked out once (:meth:`FieldMapper.plan`): which key feeds which of our fields, with
which unit conversion, at which position of the kind's row, with which range — and the line
protocol's field set as one ``%`` format. A payload of that shape whose values are all numbers (or
numeric text, as codecs write it) within their fields' ranges then becomes a row and a line in one
pass. Anything else — a model with no entry, a nested object, ``null``, other text, a value out of
range, a status field, a time the sink refuses — is left to the general path (:meth:`FieldMapper.values`, then
:meth:`ReadingSink.mapped`), which stores or refuses it with its reason: the fast path never
refuses, so both paths store exactly the same readings.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from msgspec import UNSET

from contract.fields import SEQ_MAX, TELEMETRY_FIELDS, TS_MAX_AHEAD_MS, TS_MIN_MS, Kind
from ingest.batch import BatchBuilder
from ingest.registry import RegisteredDevice
from ingest.sources.mapping import FieldMapper
from ingest.sources.units import INLINE, Convert

MAX_SHAPES: Final = 4_096
"""Shapes remembered; keys come from payloads, so past it the map starts again."""
EXTRA: Final = "rssi_dbm"
"""The one field a decoder may add beside the payload's (a LoRaWAN gateway's RSSI), unless mapped."""

_Take = tuple[str | int | None, int, float, float, bool, Convert | None, bool]
"""(payload key — its index, in a positional take; None: the extra value —, position in the row, low, high,
whole number, conversion, whether the conversion takes numbers alone — not numeric text, as a format's own
plan converts)."""


Take = Callable[[Any, "float | None", RegisteredDevice, int, int, BatchBuilder], bool]
"""A shape's reading of one payload ``(obj, extra, device, ts_ms, seq, out)`` added to ``out`` (the kind's row
and its line, as :meth:`ReadingSink.reading` makes them); False: nothing was done (the general path's).
``obj`` is the payload's mapping, or the sequence of its values of a :meth:`FlatShapes.positional` take."""


def _converted(convert: Convert | None, n: int, raw: str) -> str:
    """The text of ``raw`` through take ``n``'s conversion: its operator in place when it is one (:data:`INLINE`)."""
    if convert is None:
        return raw
    inline = INLINE.get(convert)
    return f"{raw} {inline[0]} cv{n}" if inline is not None else f"cv{n}({raw})"


def _how(convert: Convert | None) -> str | None:
    """How a take's value is converted, as its factory's text says it: not, an operator, or a call."""
    if convert is None:
        return None
    inline = INLINE.get(convert)
    return inline[0] if inline is not None else "call"


def _operand(convert: Convert | None) -> Convert | float | None:
    """A take's conversion as its factory is given it: the operand of an operator in place, else itself."""
    inline = INLINE.get(convert) if convert is not None else None
    return inline[1] if inline is not None else convert


def _source(takes: tuple[_Take, ...], width: int, attribute: str = "") -> str:
    """The Python text of a factory of one shape's :data:`Take` (for takes of this structure:
    which position, whole or not, converted or not — of numbers alone or not —, the extra value or a
    payload key; with ``attribute``, the value is that attribute of the payload's item). Only names of ours
    appear in it; keys, ranges and conversions (or their operands) are the factory's arguments."""
    if attribute and (not attribute.isidentifier() or keyword.iskeyword(attribute)):
        raise ValueError(f"not an attribute name: {attribute!r}")
    item = f".{attribute}" if attribute else ""
    args = ["UNSET", "SEQ_MAX", "fields"]
    body: list[str] = []
    at: dict[int, str] = {}
    for n, (name, position, _lo, _hi, whole, convert, numbers_only) in enumerate(takes):
        args += [f"k{n}", f"lo{n}", f"hi{n}", f"cv{n}"]
        v = f"v{n}"
        at[position] = v
        body.append("raw = extra" if name is None else f"raw = obj[k{n}]{item}")
        body.append("kind = type(raw)")
        if whole and convert is not None:  # a count converted (a format's own plan): a whole number after it
            body += [
                "if kind is float:", f"    cv = {_converted(convert, n, 'raw')}",
                "elif kind is int:", "    try:", f"        cv = {_converted(convert, n, 'float(raw)')}",
                "    except OverflowError:", "        return False",
                "else:", "    return False",
                "if not cv.is_integer():", "    return False", f"{v} = int(cv)",
            ]  # fmt: skip
        elif whole:  # a count: an int, or a float that is a whole number (2.0)
            body += [
                "if kind is int:", f"    {v} = raw",
                "elif kind is float and raw.is_integer():", f"    {v} = int(raw)",
                "else:", "    return False",
            ]  # fmt: skip
        elif convert is not None and numbers_only:  # a float, or an int as a float, converted
            body += [
                "if kind is float:", f"    {v} = {_converted(convert, n, 'raw')}",
                "elif kind is int:", "    try:", f"        {v} = {_converted(convert, n, 'float(raw)')}",
                "    except OverflowError:", "        return False",
                "else:", "    return False",
            ]  # fmt: skip
        else:  # a number, or numeric text ("24.59") as the general path reads it
            body += [
                "if kind is float:", f"    {v} = {_converted(convert, n, 'raw')}",
                "elif kind is int or kind is str:", "    try:",
                f"        {v} = {_converted(convert, n, 'float(raw)')}",
                "    except (ValueError, OverflowError):", "        return False",
                "else:", "    return False",
            ]  # fmt: skip
        body.append(f"if not lo{n} <= {v} <= hi{n}:")  # NaN and ±inf fail too
        body.append("    return False")
    row = ", ".join(at.get(i, "UNSET") for i in range(width))
    values = ", ".join(f"v{n}" for n in range(len(takes)))
    body += [
        "if not 0 <= seq < SEQ_MAX:", "    seq = seq % SEQ_MAX",
        f"out.add_reading(device.kind, device.index, ts_ms, seq, ({row},),"
        f' f"{{device.series}} {{fields % ({values},)}},seq={{seq}}i {{ts_ms}}")',
        "return True",
    ]  # fmt: skip
    lines = "\n".join("        " + line for line in body)
    head = "def take(obj, extra, device, ts_ms, seq, out):"
    return f"def factory({', '.join(args)}):\n    {head}\n{lines}\n    return take\n"


_UNKNOWN: Final[Any] = object()
"""What the shape map gives for keys not worked out yet (None means: no fast path for them)."""


class FlatShapes:
    """Rows and lines of flat, plainly numeric payloads, by (model, kind, keys) worked out once."""

    def __init__(self, mapper: FieldMapper) -> None:
        self._mapper = mapper
        self._shapes: dict[tuple[Any, ...], Take | None] = {}
        """By (model, kind, keys, with the extra value[, the keys' units]): the shape's take, or None (the general
        path's)."""
        self._positional: dict[tuple[Any, ...], Take | None] = {}
        """:meth:`positional` takes by (model, kind, keys, units, attribute): devices of one model share them."""
        self._factories: dict[tuple[tuple[tuple[Any, ...], ...], int, str], Callable[..., Take]] = {}
        """Factories of :data:`Take` by the takes' structure (a payload's own keys do not make a new one)."""
        self._kinds = {
            kind: ({s.name: (i, s.lo, s.hi, s.type == "int") for i, s in enumerate(specs) if s.numeric}, specs)
            for kind, specs in TELEMETRY_FIELDS.items()
        }

    def reading(
        self,
        device: RegisteredDevice,
        model: str,
        obj: Mapping[str, Any],
        ts_ms: int,
        seq: int,
        *,
        units: Mapping[str, str] | None = None,
        extra: float | None = None,
        now_ms: int,
        out: BatchBuilder,
    ) -> bool:
        """Add the reading when ``obj`` takes the fast path; False: nothing was done (use the general path).

        ``units``: the units the payload gives its keys (SenML ``u``), which win over the model's;
        ``extra``: the value of :data:`EXTRA` when the payload does not map one.
        """
        if not TS_MIN_MS <= ts_ms <= now_ms + TS_MAX_AHEAD_MS:
            return False
        keys = tuple(obj)
        key: tuple[Any, ...] = (
            (model, device.device_kind, keys, extra is not None, tuple(map(units.get, keys)))
            if units
            else (model, device.device_kind, keys, extra is not None)
        )  # the payload's own units, when it gives any
        take = self._shapes.get(key, _UNKNOWN)
        if take is _UNKNOWN:
            take = self._remember(key, self._compile(*key))
        return take is not None and take(obj, extra, device, ts_ms, seq, out)

    def ours(
        self, device: RegisteredDevice, values: Mapping[str, Any], ts_ms: int, seq: int, *, now_ms: int,
        out: BatchBuilder,
    ) -> bool:  # fmt: skip
        """:meth:`reading` of values already by our field names, converted (what a format's own plan
        made of its payload): stored as :meth:`ReadingSink.reading` stores them, or False (use it)."""
        if not TS_MIN_MS <= ts_ms <= now_ms + TS_MAX_AHEAD_MS:
            return False
        key = (None, device.device_kind, tuple(values))
        take = self._shapes.get(key, _UNKNOWN)
        if take is _UNKNOWN:
            take = self._remember(key, self._compile_ours(device.device_kind, key[2]))
        return take is not None and take(values, None, device, ts_ms, seq, out)

    def planned(self, kind: Kind, plan: Iterable[tuple[str, str, Convert | None]]) -> Take | None:
        """The take of a format's own ``plan`` for ``kind``: (our field, the payload's key, its converter —
        None: the value as it is; else a float, or an int as a float, converted —). It stores what
        :meth:`ours` stores of the values the plan makes of a payload, or does nothing where the plan
        makes none (text where a value is converted, a count converted to a fraction); None when ours()
        never would (a status field, no field)."""
        bounds = self._kinds[kind][0]
        takes: list[_Take] = []
        for name, key, convert in plan:
            bound = bounds.get(name)
            if bound is None:
                return None
            position, lo, hi, whole = bound
            takes.append((key, position, lo, hi, whole, convert, True))
        return self._shape(kind, takes) if takes else None

    def positional(
        self, model: str, kind: Kind, keys: tuple[str, ...], units: tuple[str | None, ...], attribute: str
    ) -> Take | None:
        """The take of :meth:`reading` for payloads of ``keys`` (distinct), with ``units``, that reads the
        values from a sequence of items in ``keys``' order — each value the item's ``attribute`` — rather
        than from a mapping: it stores of ``items`` what :meth:`reading` stores of
        ``{key: getattr(item, attribute) for key, item in zip(keys, items)}`` at a time :meth:`reading`
        takes (the caller checks the time, as :meth:`take` does). None: the general path's."""
        key = (model, kind, keys, units, attribute)
        if key in self._positional:
            return self._positional[key]
        if len(set(keys)) != len(keys):
            raise ValueError(f"keys repeat: {keys}")
        if len(self._positional) >= MAX_SHAPES:
            self._positional.clear()
        take = self._positional[key] = self._compile(model, kind, keys, False, units, attribute=attribute)
        return take

    @staticmethod
    def take(
        take: Take, device: RegisteredDevice, obj: Any, ts_ms: int, seq: int, *, now_ms: int, out: BatchBuilder
    ) -> bool:
        """The reading of ``obj`` by a take of :meth:`planned` or :meth:`positional`, at a time :meth:`ours`
        takes; False: nothing was done."""
        return TS_MIN_MS <= ts_ms <= now_ms + TS_MAX_AHEAD_MS and take(obj, None, device, ts_ms, seq, out)

    def _remember(self, key: tuple[Any, ...], take: Take | None) -> Take | None:
        if len(self._shapes) >= MAX_SHAPES:
            self._shapes.clear()
        self._shapes[key] = take
        return take

    def _compile_ours(self, kind: Kind, keys: tuple[str, ...]) -> Take | None:
        bounds = self._kinds[kind][0]
        takes: list[_Take] = []
        for name in keys:
            bound = bounds.get(name)
            if bound is None:  # a status field, or none of this kind's: the sink says what it is
                return None
            position, lo, hi, whole = bound
            takes.append((name, position, lo, hi, whole, None, False))
        return self._shape(kind, takes) if takes else None

    def _compile(
        self, model: str, kind: Kind, keys: tuple[str, ...], with_extra: bool, units: tuple[str | None, ...] = (),
        *, attribute: str = "",
    ) -> Take | None:  # fmt: skip
        """The take of ``keys`` (and ``units``); with ``attribute``, a :meth:`positional` one."""
        bounds = self._kinds[kind][0]
        chosen: dict[int, tuple[int, str | None, str, Convert | None]] = {}
        for key, unit in zip(keys, units or (None,) * len(keys), strict=True):
            steps = self._mapper.plan(model, key, unit)
            if steps is None:  # no entry for the model: the general path takes the payload's own names
                return None
            if self._mapper.nests(model, key):  # a path walks into this key's object
                return None
            for i, rank, name, how in steps:
                if isinstance(how, str):  # a unit that does not convert: the general path refuses it
                    return None
                if i not in chosen or rank < chosen[i][0]:
                    chosen[i] = (rank, key, name, None if how is float else how)
        if not chosen:  # no field of ours: the general path says so (not a reading of the extra alone)
            return None
        names = {name for _, _, name, _ in chosen.values()}
        if with_extra and EXTRA not in names:
            chosen[-1] = (0, None, EXTRA, None)
        takes: list[_Take] = []
        for _, source, name, how in chosen.values():
            bound = bounds.get(name)
            if bound is None:  # a status field, or none of this kind's: the general path says what it is
                return None
            position, lo, hi, whole = bound
            if whole and how is not None:
                return None
            at = keys.index(source) if attribute and source is not None else source
            takes.append((at, position, lo, hi, whole, how, False))
        return self._shape(kind, takes, attribute)

    def _shape(self, kind: Kind, takes: list[_Take], attribute: str = "") -> Take:
        """The take of ``takes``, made by the factory of their structure (made once)."""
        specs = self._kinds[kind][1]
        takes.sort(key=lambda t: t[1])  # the line protocol's field order is the kind's
        fields = ",".join(f"{specs[t[1]].name}=" + ("%di" if t[4] else "%r") for t in takes)
        structure = tuple((t[0] is None, t[1], t[4], _how(t[5]), t[6]) for t in takes), len(specs), attribute
        factory = self._factories.get(structure)
        if factory is None:
            if len(self._factories) >= MAX_SHAPES:
                self._factories.clear()
            scope: dict[str, Any] = {}
            exec(_source(tuple(takes), len(specs), attribute), scope)  # our text: no payload's key is in it
            factory = self._factories[structure] = scope["factory"]
        args = [a for name, _, lo, hi, _, convert, _ in takes for a in (name, lo, hi, _operand(convert))]
        return factory(UNSET, SEQ_MAX, fields, *args)
