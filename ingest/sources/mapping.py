"""A device model's payload keys → our fields, with units converted (the sources file's ``models``).

Without an entry for the device's model, keys that are our field names are taken as they are (a
device or codec that already speaks our names). Keys of the payload that the model does not map are
not readings of ours and are left out; a mapped value that is not a number, or is in a unit that
cannot be converted, is refused with its reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from contract.reasons import Reason
from ingest.sources.config import FIELD_SPECS, Model
from ingest.sources.sink import Refused
from ingest.sources.units import converter

_MISSING: Final = object()


def lookup(obj: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` in nested objects (a key with dots is tried whole first)."""
    if path in obj:
        return obj[path]
    here: Any = obj
    for part in path.split("."):
        if not isinstance(here, Mapping) or part not in here:
            return _MISSING
        here = here[part]
    return here


def as_number(name: str, raw: Any) -> float:
    """A number, or a numeric string as codecs write them (``"24.59"``); :class:`Refused` otherwise."""
    if isinstance(raw, bool):
        raise Refused(Reason.BAD_TYPE, f"{name}: {raw!r} is a boolean, not a number")
    if isinstance(raw, int | float):
        return float(raw)
    if isinstance(raw, str):
        try:
            return float(raw.strip())
        except ValueError:
            pass
    raise Refused(Reason.BAD_TYPE, f"{name}: {str(raw)[:40]!r} is not a number")


class FieldMapper:
    """Maps the decoded payload of a device's model to our field names and units."""

    def __init__(self, models: Mapping[str, Model]) -> None:
        self._models = dict(models)

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
        entry = self._models.get(model)
        out: dict[str, Any] = {}
        refused: list[Refused] = []
        if entry is None:
            for key, raw in obj.items():
                if key in FIELD_SPECS and raw is not None:
                    self._put(out, refused, key, raw, units.get(key) if units else None)
            return out, refused
        for name, where in entry.fields.items():
            for path in where.path:
                raw = lookup(obj, path)
                if raw is not _MISSING and raw is not None:
                    given = units.get(path) if units else None
                    self._put(out, refused, name, raw, given or where.unit)
                    break
        return out, refused

    @staticmethod
    def _put(out: dict[str, Any], refused: list[Refused], name: str, raw: Any, unit: str | None) -> None:
        """``raw`` in ``unit`` as field ``name``'s value (converted), or its refusal."""
        if unit is None:
            out[name] = raw
            return
        convert = converter(FIELD_SPECS[name].unit, unit)
        if convert is None:  # the sources file was checked on load; a unit from the payload may not be
            refused.append(Refused(Reason.BAD_UNIT, f"{name}: cannot convert {unit!r} to {FIELD_SPECS[name].unit!r}"))
            return
        try:
            out[name] = convert(as_number(name, raw))
        except Refused as exc:
            refused.append(exc)
