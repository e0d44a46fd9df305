"""A device model's payload keys → our fields, with units converted (the sources file's ``models``).

Without an entry for the device's model, keys that are our field names are taken as they are (a
device or codec that already speaks our names). Keys of the payload that the model does not map are
not readings of ours and are left out; a mapped value that is not a number, or is in a unit that
cannot be converted, is refused with its reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from contract.reasons import Reason
from ingest.sources.config import FIELD_SPECS, Model
from ingest.sources.sink import Refused
from ingest.sources.units import Convert, _identity, converter

_MISSING: Final = object()
MAX_UNITS: Final = 4_096
"""(field, unit) pairs whose converter is remembered; units come from payloads, so past it the map starts again."""

Step = tuple[int, int, str, Convert | str | None]
"""How one key of a flat payload feeds one of our fields (:meth:`FieldMapper.plan`): (the field's
index in its model, the key's rank among the field's paths, the field, how its value is taken —
None: as it is; ``float``: as a number; a converter: as a number, converted; text: refused
``bad_unit``, saying that text)."""


def lookup(obj: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` in nested objects (a key with dots is tried whole first)."""
    if path in obj:
        return obj[path]
    return _walk(obj, tuple(path.split(".")))


def _walk(obj: Mapping[str, Any], parts: tuple[str, ...]) -> Any:
    here: Any = obj
    for part in parts:
        if not (type(here) is dict or isinstance(here, Mapping)) or part not in here:
            return _MISSING
        here = here[part]
    return here


def as_number(name: str, raw: Any) -> float:
    """A number, or a numeric string as codecs write them (``"24.59"``); :class:`Refused` otherwise."""
    kind = type(raw)
    if kind is float:
        return float(raw)
    if kind is str:
        try:
            return float(raw)  # surrounding white space is allowed
        except ValueError:
            raise Refused(Reason.BAD_TYPE, f"{name}: {raw[:40]!r} is not a number") from None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise Refused(Reason.BAD_TYPE, f"{name}: {str(raw)[:40]!r} is not a number")
    try:
        return float(raw)
    except OverflowError:  # an integer of hundreds of digits
        raise Refused(Reason.OUT_OF_RANGE, f"{name}: a number of hundreds of digits is too large") from None


@dataclass(frozen=True, slots=True)
class _Target:
    """One of our fields in a model, compiled: where to look (dotted paths split once) and its unit."""

    name: str
    paths: tuple[tuple[str, tuple[str, ...] | None], ...]
    """(path, its parts when it has dots) in the order tried."""
    unit: str | None
    convert: Convert | None
    """From ``unit`` to the field's own (None: no conversion)."""


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A model's targets, which targets each payload key feeds, and the targets' dotted paths."""

    targets: tuple[_Target, ...]
    by_key: dict[str, tuple[tuple[int, int], ...]]
    """Payload key (a path taken whole) → (target index, the path's rank among the target's)."""
    dotted: tuple[tuple[int, tuple[tuple[int, str, tuple[str, ...]], ...]], ...]
    """(target index, its dotted paths as (rank, path, parts)) of targets that have any."""


def _compile(model: Model) -> _Compiled:
    targets = []
    for name, where in model.fields.items():
        paths = tuple((p, tuple(p.split(".")) if "." in p else None) for p in where.path)
        convert = converter(FIELD_SPECS[name].unit, where.unit) if where.unit is not None else None
        targets.append(_Target(name, paths, where.unit, convert))
    by_key: dict[str, tuple[tuple[int, int], ...]] = {}
    dotted = []
    for i, t in enumerate(targets):
        for rank, (path, _) in enumerate(t.paths):
            by_key[path] = (*by_key.get(path, ()), (i, rank))
        walks = tuple((rank, path, parts) for rank, (path, parts) in enumerate(t.paths) if parts is not None)
        if walks:
            dotted.append((i, walks))
    return _Compiled(tuple(targets), by_key, tuple(dotted))


class FieldMapper:
    """Maps the decoded payload of a device's model to our field names and units (each model
    compiled once; converters of units payloads give remembered)."""

    def __init__(self, models: Mapping[str, Model]) -> None:
        self._models = {name: _compile(model) for name, model in models.items()}
        """Each model compiled once."""
        self._converters: dict[tuple[str, str], Convert | None] = {}

    def has(self, model: str) -> bool:
        return model in self._models

    def hint(self, model: str) -> str:
        """What to add to "no field maps to ours": that ``model`` has no entry, when it has none."""
        return "" if model in self._models else f" (model {model!r} has no entry in the sources file)"

    def values(
        self, model: str, obj: Mapping[str, Any], units: Mapping[str, str] | None = None
    ) -> tuple[dict[str, Any], list[Refused]]:
        """(our field → value, refusals) of one decoded object; ``units`` are the units the payload
        itself gives its keys (SenML ``u``, Sparkplug ``engUnit``), which win over the model's."""
        compiled = self._models.get(model)
        out: dict[str, Any] = {}
        refused: list[Refused] = []
        if compiled is None:
            for key, raw in obj.items():
                if key in FIELD_SPECS and raw is not None:
                    given = units.get(key) if units else None
                    if given is None:
                        out[key] = raw
                    else:
                        self._put(out, refused, key, raw, given, self._converter(key, given))
            return out, refused
        targets, by_key = compiled.targets, compiled.by_key
        if len(obj) < len(targets):  # a small payload, a big model: walk the payload's keys
            found: dict[int, tuple[int, str, Any]] = {}
            for key, raw in obj.items():
                hits = by_key.get(key)
                if hits is None or raw is None:
                    continue
                for i, rank in hits:
                    if i not in found or rank < found[i][0]:
                        found[i] = (rank, key, raw)
            for i, walks in compiled.dotted:  # a dotted path into a nested object, if it ranks before
                best = found[i][0] if i in found else len(targets[i].paths)
                for rank, dotted_path, steps in walks:
                    if rank >= best:
                        break
                    if steps[0] in obj:
                        raw = _walk(obj, steps)
                        if raw is not _MISSING and raw is not None:
                            found[i] = (rank, dotted_path, raw)
                            break
            for i in sorted(found):
                _, path, raw = found[i]
                self._take(out, refused, targets[i], path, raw, units)
            return out, refused
        get = obj.get
        for t in targets:
            for path, parts in t.paths:
                raw = get(path, _MISSING)
                if raw is _MISSING and parts is not None and parts[0] in obj:
                    raw = _walk(obj, parts)
                if raw is not _MISSING and raw is not None:
                    self._take(out, refused, t, path, raw, units)
                    break
        return out, refused

    def nests(self, model: str, key: str) -> bool:
        """Whether ``key`` is where a dotted path of ``model`` starts (its value may be an object
        walked into): no flat plan of a payload with that key holds."""
        compiled = self._models.get(model)
        return compiled is not None and any(steps[0] == key for _, walks in compiled.dotted for _, _, steps in walks)

    def plan(self, model: str, key: str, unit: str | None) -> tuple[Step, ...] | None:
        """What :meth:`values` makes of ``key`` of a *flat* payload (no value is an object, so a
        dotted path matches only a key that is that whole path) given in ``unit`` (the payload's own;
        None: the model's), worked out once for a payload that names its keys ahead of their values
        (a Sparkplug birth): one :data:`Step` per field ``key`` feeds, in the model's order. The
        values of a payload are then the best-ranked (first in :attr:`Where.path`) present key's of
        each field, in the fields' order. None for a model without an entry (its keys are taken
        in the payload's order: use :meth:`values`)."""
        compiled = self._models.get(model)
        if compiled is None:
            return None
        steps: list[Step] = []
        for i, rank in compiled.by_key.get(key, ()):
            t = compiled.targets[i]
            how: Convert | str | None
            if unit is None or unit == t.unit:
                if t.unit is None:
                    steps.append((i, rank, t.name, None))
                    continue
                given, how = t.unit, t.convert
            else:
                given, how = unit, self._converter(t.name, unit)
            if how is None:
                how = f"{t.name}: cannot convert {given!r} to {FIELD_SPECS[t.name].unit!r}"
            elif how is _identity:
                how = float
            steps.append((i, rank, t.name, how))
        return tuple(steps)

    def _take(
        self,
        out: dict[str, Any],
        refused: list[Refused],
        t: _Target,
        path: str,
        raw: Any,
        units: Mapping[str, str] | None,
    ) -> None:
        """``raw``, found at ``path``, as ``t``'s value: in the payload's unit for it, else the model's."""
        given = units.get(path) if units else None
        if given is None or given == t.unit:
            if t.unit is None:
                out[t.name] = raw
                return
            unit, convert = t.unit, t.convert
        else:
            unit, convert = given, self._converter(t.name, given)
        if convert is not None and type(raw) is float:  # the usual value
            out[t.name] = convert(raw)
        else:
            self._put(out, refused, t.name, raw, unit, convert)

    def _converter(self, name: str, unit: str) -> Convert | None:
        """From ``unit`` (a payload's) to field ``name``'s own, remembered."""
        key = (name, unit)
        try:
            return self._converters[key]
        except KeyError:
            if len(self._converters) >= MAX_UNITS:
                self._converters.clear()
            convert = self._converters[key] = converter(FIELD_SPECS[name].unit, unit)
            return convert

    @staticmethod
    def _put(
        out: dict[str, Any], refused: list[Refused], name: str, raw: Any, unit: str, convert: Convert | None
    ) -> None:
        """``raw`` in ``unit`` as field ``name``'s value (converted by ``convert``), or its refusal."""
        if convert is None:  # the sources file was checked on load; a unit from the payload may not be
            refused.append(Refused(Reason.BAD_UNIT, f"{name}: cannot convert {unit!r} to {FIELD_SPECS[name].unit!r}"))
            return
        try:
            out[name] = convert(as_number(name, raw))
        except Refused as exc:
            refused.append(exc)
