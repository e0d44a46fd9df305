"""msgspec payload types generated from the contract's field specs.

Decoding into these structs validates types, ranges, required and unknown fields in one pass (in
C). What msgspec cannot know statically (the ingest clock) is checked in :mod:`ingest.decode`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from contract.fields import (
    CAMERA_EVENTS,
    EVENT_FIELDS,
    SEQ_MAX,
    STATUS_FIELDS,
    TELEMETRY_FIELDS,
    TS_MIN_MS,
    FieldSpec,
    Kind,
)

Ts = Annotated[int, Meta(ge=TS_MIN_MS)]
Seq = Annotated[int, Meta(ge=0, lt=SEQ_MAX)]
_NO_CONTROL: Final = r"^[^\x00-\x1f\x7f]*\Z"


def _field_type(spec: FieldSpec) -> Any:
    if spec.type == "string":
        return Annotated[str, Meta(max_length=spec.max_length, pattern=_NO_CONTROL)]
    base: type = int if spec.type == "int" else float
    return Annotated[base, Meta(ge=spec.lo, le=spec.hi)]


def _fields(specs: tuple[FieldSpec, ...]) -> list[tuple[Any, ...]]:
    """Struct fields: required ones must be present; the others default to UNSET."""
    return [
        (s.name, _field_type(s), msgspec.NODEFAULT) if s.required else (s.name, _field_type(s) | UnsetType, UNSET)
        for s in specs
    ]


@dataclass(frozen=True, slots=True)
class ChannelSchema:
    """Decoders and field names for one (kind, channel)."""

    reading: type[msgspec.Struct]
    single: msgspec.json.Decoder[Any]
    batch: msgspec.json.Decoder[Any]
    raw_batch: msgspec.json.Decoder[Any]
    fields: tuple[FieldSpec, ...]


def _channel_schema(
    name: str,
    fields: list[tuple[Any, ...]],
    specs: tuple[FieldSpec, ...],
    max_readings: int,
    *,
    ts_required: bool = True,
) -> ChannelSchema:
    # seq before ts: a reading's values then come in the order of its line's tail, ``seq=…i ts``.
    head: list[tuple[str, Any] | tuple[str, Any, Any]] = (
        [("seq", Seq), ("ts", Ts)] if ts_required else [("seq", Seq | UnsetType, UNSET), ("ts", Ts | UnsetType, UNSET)]
    )
    reading = msgspec.defstruct(name, [*fields, *head], forbid_unknown_fields=True, kw_only=True)
    many = Annotated[list[reading], Meta(min_length=1, max_length=max_readings)]  # type: ignore[valid-type]
    raw_many = Annotated[list[msgspec.Raw], Meta(min_length=1, max_length=max_readings)]
    batch = msgspec.defstruct(name + "Batch", [("readings", many)], forbid_unknown_fields=True)
    raw_batch = msgspec.defstruct(name + "RawBatch", [("readings", raw_many)], forbid_unknown_fields=True)
    return ChannelSchema(
        reading,
        msgspec.json.Decoder(reading),
        msgspec.json.Decoder(batch),
        msgspec.json.Decoder(raw_batch),
        specs,
    )


def build_schemas(max_readings: int) -> tuple[dict[Kind, ChannelSchema], ChannelSchema, ChannelSchema]:
    """Telemetry schemas per kind, the camera event schema and the status schema."""
    telemetry = {
        kind: _channel_schema(f"{kind.value.title()}Reading", _fields(specs), specs, max_readings)
        for kind, specs in TELEMETRY_FIELDS.items()
    }
    event_type: Any = Literal[CAMERA_EVENTS]  # a Literal of the vocabulary tuple
    event_fields: list[tuple[Any, ...]] = [("event", event_type), *_fields(EVENT_FIELDS)]
    event = _channel_schema("CameraEvent", event_fields, EVENT_FIELDS, max_readings)
    status_fields: list[tuple[Any, ...]] = [("state", Literal["online", "offline"]), *_fields(STATUS_FIELDS)]
    status = _channel_schema("Status", status_fields, STATUS_FIELDS, 1, ts_required=False)
    return telemetry, event, status
