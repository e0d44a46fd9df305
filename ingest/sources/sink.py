"""Readings of any payload format into the columnar batch, validated as the native contract is.

A format's decoder finds the device and the time and hands over its values by *our* field names
(after the model's mapping and unit conversion); :class:`ReadingSink` checks each value against the
field's type and physical range exactly as the native schema does, builds the line and the
engine's row, and adds them to the batch. A bad value refuses that field alone, with its reason
(a dead letter that says the rest of the reading was stored); a reading left with no field at all
is refused whole.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from msgspec import UNSET

from contract.fields import SEQ_MAX, STATUS_FIELDS, TELEMETRY_FIELDS, TS_MAX_AHEAD_MS, TS_MIN_MS, FieldSpec
from contract.reasons import Reason
from ingest.batch import BatchBuilder, FieldEncoder, Rejection
from ingest.registry import RegisteredDevice

NO_FIELD: Final = "no field of the payload maps to ours"
"""What a reading none of whose fields maps to ours says (``missing_field``), unless its format says more."""
STORED_NOTE: Final = "; the rest of the reading was stored"
"""What a field's refusal adds when the rest of its reading was stored."""


class Refused(ValueError):
    """One value refused: its reason and what to say."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def field_value(spec: FieldSpec, raw: Any) -> float | int | str:
    """``raw`` as the field's type, in range: a number (or a numeric string, as codecs write them),
    or a short text without control characters for a string field."""
    if spec.type == "string":
        if not isinstance(raw, str) or len(raw) > spec.max_length or not raw.isprintable():
            raise Refused(Reason.BAD_TYPE, f"{spec.name}: {str(raw)[:40]!r} is not text of at most {spec.max_length}")
        return str(raw)
    value: Any = raw
    if isinstance(raw, str):
        try:
            value = float(raw)  # surrounding white space is allowed
        except ValueError:
            raise Refused(Reason.BAD_TYPE, f"{spec.name}: {raw[:40]!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Refused(Reason.BAD_TYPE, f"{spec.name}: {type(raw).__name__} {str(raw)[:40]!r} is not a number")
    try:
        typed: float | int = float(value)  # an integer of hundreds of digits does not fit
    except OverflowError:
        detail = f"{spec.name}: a number of hundreds of digits is outside its range"
        raise Refused(Reason.OUT_OF_RANGE, detail) from None
    if not math.isfinite(typed):
        raise Refused(Reason.OUT_OF_RANGE, f"{spec.name}: {value} is not a finite number")
    if spec.type == "int":
        if typed != int(typed):
            raise Refused(Reason.BAD_TYPE, f"{spec.name}: {value} is not a whole number")
        typed = int(typed)
    if not spec.lo <= typed <= spec.hi:
        raise Refused(Reason.OUT_OF_RANGE, f"{spec.name}: {value} is outside {spec.lo:g}..{spec.hi:g} {spec.unit}")
    return typed


class _Channel:
    """The fields of one kind (or of status reports), their encoder and positions."""

    def __init__(self, specs: tuple[FieldSpec, ...]) -> None:
        self.specs = specs
        self.position = {s.name: i for i, s in enumerate(specs)}
        self.encoder = FieldEncoder(specs)
        self.width = len(specs)
        self.bounds = {s.name: (i, s.lo, s.hi, s.type == "int") for i, s in enumerate(specs) if s.numeric}
        """Numeric fields: (position, lo, hi, whole) — the plain number's fast path of :meth:`ReadingSink._row`."""


class ReadingSink:
    """Validated readings and status reports of any format, into a :class:`BatchBuilder`."""

    def __init__(self) -> None:
        self._kinds = {kind: _Channel(specs) for kind, specs in TELEMETRY_FIELDS.items()}
        self._status = _Channel(STATUS_FIELDS)
        self._status_only = {
            kind: frozenset(self._status.position).difference(c.position) for kind, c in self._kinds.items()
        }

    def reading(
        self,
        topic: str,
        payload: bytes,
        device: RegisteredDevice,
        ts_ms: int,
        seq: int,
        values: Mapping[str, Any],
        *,
        now_ms: int,
        out: BatchBuilder,
    ) -> bool:
        """Add one reading of ``device``; False when nothing of it could be stored (it was refused)."""
        if not self._time_ok(topic, payload, ts_ms, now_ms, out):
            return False
        if not 0 <= seq < SEQ_MAX:
            seq = seq % SEQ_MAX
        status_only = self._status_only[device.device_kind]
        if not status_only.isdisjoint(values):  # a status field mapped with the reading (battery_pct): a status point
            values = dict(values)
            status = {k: values.pop(k) for k in status_only.intersection(values)}
            self.status(topic, payload, device, ts_ms, True, status, now_ms=now_ms, out=out)
            if not values:
                return True
        channel = self._kinds[device.device_kind]
        row = self._row(topic, payload, channel, values, out)
        if row is None:
            return False
        fields = channel.encoder.encode(row)
        if not fields:
            return False
        out.add_reading(device.kind, device.index, ts_ms, seq, row, f"{device.series} {fields},seq={seq}i {ts_ms}")
        return True

    def mapped(
        self,
        topic: str,
        payload: bytes,
        device: RegisteredDevice,
        ts_ms: int,
        seq: int,
        values: Mapping[str, Any],
        refused: list[Refused],
        *,
        hint: str = "",
        where: str = "",
        missing: str | None = NO_FIELD,
        now_ms: int,
        out: BatchBuilder,
    ) -> bool:
        """A reading of a model mapping's ``values`` and the fields it ``refused``: each refusal is
        dead-lettered (saying the rest was stored only when it was), and nothing mapped at all is
        ``missing_field``, saying ``missing`` (with ``hint``; None: the caller says it). ``where``
        prefixes every detail (a line, an element)."""
        stored = bool(values) and self.reading(topic, payload, device, ts_ms, seq, values, now_ms=now_ms, out=out)
        if refused:
            self.refuse(topic, payload, refused, stored=stored, where=where, out=out)
        elif not values and missing is not None:
            out.reject(Rejection(topic, Reason.MISSING_FIELD, f"{where}{missing}{hint}", payload))
        return stored

    @staticmethod
    def refuse(
        topic: str, payload: bytes, refused: list[Refused], *, stored: bool, where: str = "", out: BatchBuilder
    ) -> None:
        """Dead-letter a mapping's refusals, saying the rest of the reading was stored when it was."""
        note = STORED_NOTE if stored else ""
        for r in refused:
            out.reject(Rejection(topic, r.reason, f"{where}{r}{note}", payload))

    def split_status(self, device: RegisteredDevice, values: dict[str, Any]) -> dict[str, Any]:
        """The fields of ``values`` that are no reading of the device's kind but of its status
        (``battery_pct``, ``fw``; a camera's ``battery_v``), taken out of ``values``."""
        status_only = self._status_only[device.device_kind]
        if status_only.isdisjoint(values):
            return {}
        status = {k: v for k, v in values.items() if k in status_only}
        for k in status:
            del values[k]
        return status

    def status(
        self,
        topic: str,
        payload: bytes,
        device: RegisteredDevice,
        ts_ms: int,
        online: bool,
        values: Mapping[str, Any],
        *,
        now_ms: int,
        out: BatchBuilder,
    ) -> bool:
        """Add one status report (online or not, with battery and signal when given)."""
        if not self._time_ok(topic, payload, ts_ms, now_ms, out):
            return False
        row = self._row(topic, payload, self._status, values, out, empty_ok=True)
        fields = self._status.encoder.encode(row) if row is not None else ""
        state = "online=1i" if online else "online=0i"
        line = f"{device.status_series} {state}{',' + fields if fields else ''} {ts_ms}"
        out.add_status(device.index, ts_ms, online, line)
        return True

    @staticmethod
    def _time_ok(topic: str, payload: bytes, ts_ms: int, now_ms: int, out: BatchBuilder) -> bool:
        """Whether ``ts_ms`` is a time ingest stores (refused ``bad_timestamp`` when not)."""
        if TS_MIN_MS <= ts_ms <= now_ms + TS_MAX_AHEAD_MS:
            return True
        if ts_ms < TS_MIN_MS:
            detail = f"time {ts_ms} is before 2000 (a clock never set?)"
        else:
            detail = f"time {ts_ms} is more than 5 minutes ahead of the ingest clock ({now_ms})"
        out.reject(Rejection(topic, Reason.BAD_TIMESTAMP, detail, payload))
        return False

    @staticmethod
    def _row(
        topic: str,
        payload: bytes,
        channel: _Channel,
        values: Mapping[str, Any],
        out: BatchBuilder,
        *,
        empty_ok: bool = False,
    ) -> tuple[Any, ...] | None:
        row: list[Any] = [UNSET] * channel.width
        refused: list[Refused] = []
        stored = False
        bounds = channel.bounds
        for name, raw in values.items():
            if raw is None:  # a codec's "no value": absent, as the native contract leaves a field out
                continue
            kind = type(raw)
            if kind is str:  # a codec's numeric text ("24.59"): a float field's fast path below
                fast = bounds.get(name)
                if fast is not None and not fast[3]:
                    try:
                        raw = float(raw)
                        kind = float
                    except ValueError:
                        pass  # field_value refuses it, saying why
            if kind is float or kind is int:  # the usual value: a plain number within the field's range
                fast = bounds.get(name)
                if fast is not None and fast[1] <= raw <= fast[2]:  # NaN and ±inf fail: field_value says why
                    if not fast[3]:
                        row[fast[0]] = float(raw)
                        stored = True
                        continue
                    if kind is int:
                        row[fast[0]] = raw
                        stored = True
                        continue
            i = channel.position.get(name)
            if i is None:
                refused.append(Refused(Reason.UNKNOWN_FIELD, f"{name}: not a field of this device's readings"))
                continue
            try:
                row[i] = field_value(channel.specs[i], raw)
                stored = True
            except Refused as exc:
                refused.append(exc)
        if refused:
            ReadingSink.refuse(topic, payload, refused, stored=stored, out=out)
        if not stored and not empty_ok:
            if not refused:
                out.reject(Rejection(topic, Reason.MISSING_FIELD, "the reading has no measurement field", payload))
            return None
        return tuple(row)
