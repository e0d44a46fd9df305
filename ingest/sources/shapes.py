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

from collections.abc import Mapping
from typing import Any, Final

from msgspec import UNSET

from contract.fields import SEQ_MAX, TELEMETRY_FIELDS, TS_MAX_AHEAD_MS, TS_MIN_MS, Kind
from ingest.batch import BatchBuilder
from ingest.registry import RegisteredDevice
from ingest.sources.mapping import FieldMapper
from ingest.sources.units import Convert

MAX_SHAPES: Final = 4_096
"""Shapes remembered; keys come from payloads, so past it the map starts again."""
EXTRA: Final = "rssi_dbm"
"""The one field a decoder may add beside the payload's (a LoRaWAN gateway's RSSI), unless mapped."""

_Take = tuple[str | None, int, float, float, bool, Convert | None]
"""(payload key — None: the extra value —, position in the row, low, high, whole number, conversion)."""


class _Shape:
    __slots__ = ("fields", "takes", "width")

    def __init__(self, takes: tuple[_Take, ...], fields: str, width: int) -> None:
        self.takes = takes
        self.fields = fields
        """The line's field set as a ``%`` format of the values in ``takes`` order."""
        self.width = width


class FlatShapes:
    """Rows and lines of flat, plainly numeric payloads, by (model, kind, keys) worked out once."""

    def __init__(self, mapper: FieldMapper) -> None:
        self._mapper = mapper
        self._shapes: dict[tuple[str, Kind, tuple[str, ...], tuple[str | None, ...], bool], _Shape | None] = {}
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
        given = tuple(units.get(k) for k in keys) if units else (None,) * len(keys)
        key = (model, device.device_kind, keys, given, extra is not None)
        try:
            shape = self._shapes[key]
        except KeyError:
            if len(self._shapes) >= MAX_SHAPES:
                self._shapes.clear()
            shape = self._shapes[key] = self._compile(*key)
        if shape is None:
            return False
        row: list[Any] = [UNSET] * shape.width
        values: list[float | int] = []
        for name, position, lo, hi, whole, convert in shape.takes:
            raw = obj[name] if name is not None else extra
            kind = type(raw)
            if whole:
                if kind is float and raw.is_integer():  # type: ignore[union-attr]  # 2.0 for a count
                    raw = int(raw)  # type: ignore[arg-type]
                elif kind is not int:
                    return False
                if not lo <= raw <= hi:  # type: ignore[operator]
                    return False
                value: float | int = raw  # type: ignore[assignment]
            else:
                if kind is not float and kind is not int and kind is not str:  # text: a codec's "24.59"
                    return False
                try:
                    number = float(raw)  # type: ignore[arg-type]  # as the general path reads it
                except (ValueError, OverflowError):  # not a number; an integer of hundreds of digits
                    return False
                value = number if convert is None else convert(number)
                if not lo <= value <= hi:  # NaN and ±inf fail too
                    return False
            row[position] = value
            values.append(value)
        if not 0 <= seq < SEQ_MAX:
            seq = seq % SEQ_MAX
        line = f"{device.series} {shape.fields % tuple(values)},seq={seq}i {ts_ms}"
        out.add_reading(device.kind, device.index, ts_ms, seq, tuple(row), line)
        return True

    def _compile(
        self, model: str, kind: Kind, keys: tuple[str, ...], units: tuple[str | None, ...], with_extra: bool
    ) -> _Shape | None:
        bounds, specs = self._kinds[kind]
        chosen: dict[int, tuple[int, str | None, str, Convert | None]] = {}
        for key, unit in zip(keys, units, strict=True):
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
            takes.append((source, position, lo, hi, whole, how))
        takes.sort(key=lambda t: t[1])  # the line protocol's field order is the kind's
        fields = ",".join(f"{specs[t[1]].name}=" + ("%di" if t[4] else "%r") for t in takes)
        return _Shape(tuple(takes), fields, len(specs))
