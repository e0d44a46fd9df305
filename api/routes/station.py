"""A station's story for the alert desk: the thresholds its rules watch, and a camera's recent events."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.auth import Reader
from api.deps import InfluxDep, RegistryDep, RulesDep
from api.errors import ERROR_RESPONSES, ErrorBody
from api.influx import ident, literal, rows, tags_equal, time_range
from api.routes.devices import DeviceIdPath, SeverityName, visible_device
from api.times import iso
from contract.clock import now_ms
from contract.fields import EVENT_FIELDS, Kind
from contract.fleet import Device
from rules.model import Severity
from rules.pack import Op, Pack, Range, Rule, Threshold
from storage.layout import DEVICE_ID, EVENT, KIND_MEASUREMENTS

router = APIRouter(prefix="/v1/devices", tags=["devices"], responses=ERROR_RESPONSES)
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}
MAX_CAMERA_EVENTS = 1000


class ThresholdOut(BaseModel):
    """A fixed level of one field that a rule of the loaded pack fires at, for this device."""

    rule_id: str
    field: str
    op: Op = Field(description="fires when `value_of_field op value`")
    value: float
    severity: SeverityName = Field(description="the alert's severity at this level")
    name_vi: str = Field(description="what the rule is about (its title; its id when it has none)")
    name_en: str


class CameraEvent(BaseModel):
    """One detection a camera reported on its event channel."""

    ts: str
    ts_ms: int
    event: str = Field(description="the event class (contract: CAMERA_EVENTS)")
    confidence: float | None
    frames: int | None
    water_above_line_cm: float | None = None
    speed_kmh: float | None = None
    image_url: str | None = None


def levels(rule: Rule) -> list[tuple[str, Op, float, Severity]]:
    """(field, op, value, severity) of each fixed level of a threshold or range rule (none for the others)."""
    c = rule.condition
    if isinstance(c, Threshold):
        found: list[tuple[str, Op, float, Severity]] = [(c.field, c.op, c.value, rule.severity)]
        if rule.critical_above is not None and rule.severity < Severity.CRITICAL:
            # the engine escalates at the level itself, on the side the rule's danger lies (rules/engine.py)
            upward = c.op in (">", ">=")
            found.append((c.field, ">=" if upward else "<=", rule.critical_above, Severity.CRITICAL))
        return found
    if isinstance(c, Range):
        return [(c.field, "<", c.low, rule.severity), (c.field, ">", c.high, rule.severity)]
    return []


def thresholds(pack: Pack, device: Device) -> list[ThresholdOut]:
    """The fixed levels of the threshold and range rules that apply to ``device`` (a range: both ends;
    a threshold with ``critical_above``: that level too), by field, then level."""
    out = [
        ThresholdOut(
            rule_id=rule.id,
            field=field,
            op=op,
            value=value,
            severity=severity.label,
            name_vi=rule.title.vi if rule.title else rule.id,
            name_en=rule.title.en if rule.title else rule.id,
        )
        for rule in pack.rules
        if rule.reads(device)
        for field, op, value, severity in levels(rule)
    ]
    out.sort(key=lambda t: (t.field, t.value, t.rule_id))
    return out


def camera_events_query(device_id: str, start_ms: int, limit: int) -> str:
    """A camera's event points (those with an ``event`` tag) since ``start_ms``, newest first."""
    columns = ", ".join(ident(f.name) for f in EVENT_FIELDS)
    conditions = [*tags_equal({DEVICE_ID: device_id}), f"{ident(EVENT)} != {literal('')}", *time_range(start_ms)]
    return (
        f"SELECT {columns}, {ident(EVENT)} FROM {ident(KIND_MEASUREMENTS[Kind.CAMERA])}"
        f" WHERE {' AND '.join(conditions)} ORDER BY time DESC LIMIT {int(limit)}"
    )


def camera_event(row: dict[str, Any]) -> CameraEvent:
    t = int(row["time"])
    frames = row.get("frames")
    return CameraEvent(
        ts=iso(t),
        ts_ms=t,
        event=str(row.get(EVENT) or ""),
        confidence=row.get("confidence"),
        frames=int(frames) if frames is not None else None,
        water_above_line_cm=row.get("water_above_line_cm"),
        speed_kmh=row.get("speed_kmh"),
        image_url=row.get("image_url"),
    )


@router.get(
    "/{device_id}/thresholds", response_model=list[ThresholdOut], summary="A device's thresholds", responses=NOT_FOUND
)
def device_thresholds(device_id: DeviceIdPath, principal: Reader, registry: RegistryDep, rules: RulesDep) -> Any:
    """The fixed levels the loaded rule pack's threshold and range rules watch on this device (to draw on
    its charts); rules of other condition types are left out."""
    device = visible_device(registry, principal, device_id)
    return thresholds(rules.current.pack, device)


@router.get(
    "/{device_id}/camera-events",
    response_model=list[CameraEvent],
    summary="A camera's recent events",
    responses=NOT_FOUND,
)
def camera_events(
    device_id: DeviceIdPath,
    principal: Reader,
    registry: RegistryDep,
    influx: InfluxDep,
    hours: Annotated[float, Query(gt=0, le=24 * 366, description="how far back, hours")] = 72,
    limit: Annotated[int, Query(ge=1, le=MAX_CAMERA_EVENTS)] = 200,
) -> Any:
    """A camera's detections (class, confidence…) over the last ``hours``, newest first (`[]` for a
    device that is not a camera)."""
    device = visible_device(registry, principal, device_id)
    if device.kind is not Kind.CAMERA:
        return []
    start = now_ms() - round(hours * 3_600_000)
    return [camera_event(r) for r in rows(influx.query(camera_events_query(device.id, start, limit)))]
