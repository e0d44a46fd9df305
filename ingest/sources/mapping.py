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

    def values(self, model: str, obj: Mapping[str, Any]) -> tuple[dict[str, Any], list[Refused]]:
        """(our field → value, refusals) of one decoded object."""
        entry = self._models.get(model)
        if entry is None:
            return {k: v for k, v in obj.items() if k in FIELD_SPECS}, []
        out: dict[str, Any] = {}
        refused: list[Refused] = []
        for name, where in entry.fields.items():
            raw = next((v for v in (lookup(obj, p) for p in where.path) if v is not _MISSING and v is not None), None)
            if raw is None:
                continue
            if where.unit is None:
                out[name] = raw
                continue
            convert = converter(FIELD_SPECS[name].unit, where.unit)
            if convert is None:  # the sources file was checked on load; a unit from the payload may not be
                refused.append(Refused(Reason.BAD_UNIT, f"{name}: cannot convert {where.unit!r}"))
                continue
            try:
                out[name] = convert(as_number(name, raw))
            except Refused as exc:
                refused.append(exc)
        return out, refused
