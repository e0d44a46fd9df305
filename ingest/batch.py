"""The columnar batch that flows from the decoder to the writer.

A :class:`BatchBuilder` collects accepted readings (already encoded as line protocol, and kept
as flat records per kind, turned into columns for the rule engine on demand), rejections, and the
broker handles to acknowledge once the batch is stored. :meth:`BatchBuilder.seal` hands out an
immutable :class:`Batch` and starts anew.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from msgspec import UNSET

from contract.fields import EVENT_FIELDS, TELEMETRY_FIELDS, FieldSpec
from contract.reasons import Reason
from storage.layout import STATUS_MEASUREMENT, STATUS_ONLINE
from storage.lineprotocol import LineProtocolError, format_int, format_string_field

_NAN: Final = float("nan")


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message or reading refused with a reason, bound for the dead-letter topic."""

    topic: str
    reason: Reason
    detail: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Columns:
    """Readings of one kind as columns: registry index, device time, sequence, numeric fields."""

    device: npt.NDArray[np.int32]
    ts_ms: npt.NDArray[np.int64]
    seq: npt.NDArray[np.int64]
    fields: dict[str, npt.NDArray[np.float64]]
    """Numeric fields by name; NaN where a reading did not carry the field."""


class FieldEncoder:
    """Encodes the fields of one (kind, channel) struct as a line-protocol field set."""

    def __init__(self, specs: tuple[FieldSpec, ...]) -> None:
        self.specs = specs
        self._keys = tuple(f"{s.name}=" for s in specs)
        self._formats = tuple(
            repr if s.type == "float" else (format_int if s.type == "int" else format_string_field) for s in specs
        )
        self.numeric = tuple(i for i, s in enumerate(specs) if s.numeric)
        # Every field present and numeric (the usual reading): one %-format call does it all.
        self._width = len(specs)
        self._all_present: str | None = None
        self.record_line: str | None = None
        """With every field numeric: the line after its series, fields then ``seq`` and ``ts``, as a
        %-format of their JSON texts (``a=%s,b=%si,seq=%si %s``); None when a field is a string."""
        if specs and all(s.numeric for s in specs):
            self._all_present = ",".join(f"{s.name}=" + ("%r" if s.type == "float" else "%di") for s in specs)
            fields = ",".join(f"{s.name}=" + ("%s" if s.type == "float" else "%si") for s in specs)
            self.record_line = fields + ",seq=%si %s"

    def encode(self, values: tuple[Any, ...]) -> str | None:
        """``values`` in spec order (UNSET where absent) → ``a=1.0,b=2i`` ('' when all absent).

        None when a string cannot be carried by line protocol (the decoder's schema refuses those
        already; this is the last line of defence, never an exception on the hot path). Floats are
        formatted with ``repr``: the schema's bounds keep them finite.
        """
        if self._all_present is not None and len(values) == self._width and UNSET not in values:
            return self._all_present % values
        try:
            return ",".join(
                [k + f(v) for k, f, v in zip(self._keys, self._formats, values, strict=False) if v is not UNSET]
            )
        except LineProtocolError:
            return None


@dataclass(slots=True)
class _KindRows:
    specs: tuple[FieldSpec, ...]
    device: list[int] = field(default_factory=list)
    records: list[Any] = field(default_factory=list)
    """Every reading's record, one after another: its values in spec order (UNSET where absent),
    then its seq and ts (``len(specs) + 2`` items each)."""

    def columns(self) -> Columns:
        width = len(self.specs)
        stride = width + 2
        if len(self.records) != stride * len(self.device):  # a decoder's row of the wrong width
            raise ValueError(f"{len(self.records)} record items for {len(self.device)} readings of {width} fields")
        fields: dict[str, npt.NDArray[np.float64]] = {}
        for j, spec in enumerate(self.specs):
            if spec.numeric:
                column = self.records[j::stride]
                try:  # the usual column: every reading carries the field
                    fields[spec.name] = np.array(column, dtype=np.float64)
                except TypeError:  # UNSET in it
                    fields[spec.name] = np.array([_NAN if v is UNSET else v for v in column], dtype=np.float64)
        return Columns(
            np.asarray(self.device, dtype=np.int32),
            np.array(self.records[width + 1 :: stride], dtype=np.int64),
            np.array(self.records[width::stride], dtype=np.int64),
            fields,
        )


EVENTS: Final = "camera_event"
"""Key of camera events in :meth:`Batch.columns` (their fields differ from camera telemetry)."""
EVENT_CODE: Final = FieldSpec("event_code", "", "index of the event class in CAMERA_EVENTS", 0, 100, "int")
ONLINE: Final = FieldSpec(STATUS_ONLINE, "0/1", "the device said online (1) or its will said offline (0)", 0, 1, "int")
"""The field of status reports, which :meth:`Batch.columns` keys by their measurement, ``device_status``."""


@dataclass(frozen=True, slots=True)
class Batch:
    """An immutable, sealed batch."""

    lines: list[str]
    """Line protocol to store, a line or a gateway message's block of lines per item;
    :meth:`~ingest.influx.InfluxWriter.write` empties it once it has the body."""
    readings: int
    statuses: int
    rejections: list[Rejection]
    acks: list[Any]
    """Opaque broker handles, in the order the messages arrived."""
    commands: list[tuple[str, bytes]]
    """Messages to publish once the batch is stored (a Sparkplug rebirth request): topic, payload."""
    opened_at: float
    """``time.monotonic()`` when the first message of the batch arrived."""
    _rows: dict[str, _KindRows]

    def columns(self) -> dict[str, Columns]:
        """The batch's readings as columns per kind, ``camera_event`` and ``device_status``."""
        return {k: r.columns() for k, r in self._rows.items() if r.device}

    @property
    def messages(self) -> int:
        return len(self.acks)

    @staticmethod
    def merged(batches: Sequence[Batch]) -> Batch:
        """One batch of ``batches`` in order, for the rules when several are finished at once: their
        readings, counts, acks and age. Hooks read no more: with several batches, the lines (written
        already), rejections and commands (settled batch by batch) are left empty."""
        if len(batches) == 1:
            only: Batch = batches[0]
            return only
        rows: dict[str, _KindRows] = {}
        for key, first in batches[0]._rows.items():
            into = rows[key] = _KindRows(first.specs)
            for b in batches:
                part = b._rows[key]
                into.device += part.device
                into.records += part.records
        return Batch(
            [],
            sum(b.readings for b in batches),
            sum(b.statuses for b in batches),
            [],
            [a for b in batches for a in b.acks],
            [],
            min(b.opened_at for b in batches),
            rows,
        )


class BatchBuilder:
    """Accumulates one batch; not thread-safe (lives on the event loop)."""

    def __init__(self) -> None:
        self._specs: dict[str, tuple[FieldSpec, ...]] = {k.value: v for k, v in TELEMETRY_FIELDS.items()}
        self._specs[EVENTS] = (EVENT_CODE, *EVENT_FIELDS)
        self._specs[STATUS_MEASUREMENT] = (ONLINE,)
        self._reset()

    def _reset(self) -> None:
        self.lines: list[str] = []
        self.readings = 0
        self.statuses = 0
        self.rejections: list[Rejection] = []
        self.acks: list[Any] = []
        self.commands: list[tuple[str, bytes]] = []
        self.opened_at = 0.0
        self._rows = {k: _KindRows(v) for k, v in self._specs.items()}

    def __len__(self) -> int:
        """Readings, statuses and rejections held."""
        return self.readings + self.statuses + len(self.rejections)

    @property
    def empty(self) -> bool:
        return not self.acks and not self.lines and not self.rejections

    def note_message(self, ack: Any) -> None:
        """Register a received message's broker handle (acknowledged when the batch is stored)."""
        if not self.acks:
            self.opened_at = time.monotonic()
        self.acks.append(ack)

    def add_reading(self, key: str, device: int, ts_ms: int, seq: int, values: tuple[Any, ...], line: str) -> None:
        """Add one accepted reading of ``key`` (a kind, or ``camera_event`` with its event code first)."""
        rows = self._rows[key]
        rows.device.append(device)
        rows.records += values
        rows.records.append(seq)
        rows.records.append(ts_ms)
        self.lines.append(line)
        self.readings += 1

    def add_records(self, key: str, device: int, records: list[Any], count: int, lines: str) -> None:
        """Add ``count`` accepted readings of ``key`` from one device at once: ``records`` holds each
        reading's values in spec order, then its seq and ts; ``lines`` holds their lines."""
        rows = self._rows[key]
        rows.device += [device] * count
        rows.records += records
        self.lines.append(lines)
        self.readings += count

    def add_status(self, device: int, ts_ms: int, online: bool, line: str) -> None:
        """Add one accepted status report."""
        rows = self._rows[STATUS_MEASUREMENT]
        rows.device.append(device)
        rows.records += (int(online), -1, ts_ms)
        self.lines.append(line)
        self.statuses += 1

    def reject(self, rejection: Rejection) -> None:
        self.rejections.append(rejection)

    def command(self, topic: str, payload: bytes) -> None:
        """Publish ``payload`` on ``topic`` after this batch is stored (a decoder asking a device)."""
        self.commands.append((topic, payload))

    def seal(self) -> Batch:
        """Hand out what was collected and start a new batch."""
        batch = Batch(
            self.lines, self.readings, self.statuses, self.rejections, self.acks, self.commands, self.opened_at,
            self._rows,
        )  # fmt: skip
        self._reset()
        return batch
