"""Alerts: list and filter, one with its events, acknowledge."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from alerts.store import Alert, AlertEvent
from api.auth import Operator, Principal, Reader
from api.deps import StoreDep
from api.errors import ERROR_RESPONSES, ErrorBody, Invalid, NotFoundError
from api.routes.devices import DEVICE_ID, DistrictQuery, ProvinceQuery, SeverityName
from api.times import TIME_HELP, TIME_PATTERN, iso, iso_or_none, parse_time_ms
from contract.clock import now_ms
from rules.model import Severity

router = APIRouter(prefix="/v1/alerts", tags=["alerts"], responses=ERROR_RESPONSES)

AlertIdPath = Annotated[str, Path(max_length=64, description="an alert id")]
ERRORS: dict[int | str, dict[str, Any]] = {403: {"model": ErrorBody}, 404: {"model": ErrorBody}}


class AlertOut(BaseModel):
    """An alert: opened when its rule fired for a device, closed when it resolved."""

    id: str
    rule_id: str
    device_id: str
    kind: str
    province: str
    district: str
    site: str
    crop: str
    place_vi: str
    place_en: str
    severity: SeverityName
    state: Literal["firing", "resolved"]
    active: bool
    fired_at: str = Field(description="device time of the reading that fired it")
    fired_at_ms: int
    value: float | None
    message_vi: str
    message_en: str
    resolved_at: str | None
    resolved_at_ms: int | None
    resolved_value: float | None
    resolved_message_vi: str | None
    resolved_message_en: str | None
    acknowledged_by: str | None = Field(description="the name of the API key that acknowledged it")
    acknowledged_at: str | None
    acknowledged_at_ms: int | None
    lat: float | None = Field(None, description="its device's latitude when it fired (WGS84; null: unknown)")
    lon: float | None = Field(None, description="its device's longitude when it fired (WGS84; null: unknown)")


class EventOut(BaseModel):
    id: str
    type: Literal["alert.firing", "alert.resolved"]
    ts: str
    ts_ms: int
    value: float | None
    severity: SeverityName
    message_vi: str
    message_en: str
    message_sms: str = Field(description="Vietnamese without diacritics, ≤ 160 GSM-7 characters: one SMS")
    message_short: str = Field(description="Vietnamese with diacritics, ≤ 70 characters: one UCS-2 SMS segment")
    notice: Literal["opened", "escalated", "deescalated", "cleared", "inhibited", ""] = Field(
        description="what it means to farmers: a level of its family opened, escalated, de-escalated or cleared; "
        "`inhibited`: a change below the highest active level, sent to no one ('' before schema 4)"
    )
    queued_for: list[str] = Field(description="subscriptions a notice of it was queued for")


class AlertDetail(AlertOut):
    events: list[EventOut]


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def alert_out(a: Alert) -> AlertOut:
    return AlertOut(
        id=a.id,
        rule_id=a.rule_id,
        device_id=a.device_id,
        kind=a.kind,
        province=a.province,
        district=a.district,
        site=a.site,
        crop=a.crop,
        place_vi=a.place_vi,
        place_en=a.place_en,
        severity=a.severity.label,
        state=a.state.value,
        active=a.active,
        fired_at=iso(a.fired_at_ms),
        fired_at_ms=a.fired_at_ms,
        value=_finite(a.value),
        message_vi=a.message_vi,
        message_en=a.message_en,
        resolved_at=iso_or_none(a.resolved_at_ms),
        resolved_at_ms=a.resolved_at_ms,
        resolved_value=_finite(a.resolved_value),
        resolved_message_vi=a.resolved_message_vi,
        resolved_message_en=a.resolved_message_en,
        acknowledged_by=a.acknowledged_by,
        acknowledged_at=iso_or_none(a.acknowledged_at_ms),
        acknowledged_at_ms=a.acknowledged_at_ms,
        lat=_finite(a.lat),
        lon=_finite(a.lon),
    )


def event_out(e: AlertEvent) -> EventOut:
    return EventOut(
        id=e.id,
        type=e.type,
        ts=iso(e.ts_ms),
        ts_ms=e.ts_ms,
        value=_finite(e.value),
        severity=e.severity.label,
        message_vi=e.message_vi,
        message_en=e.message_en,
        message_sms=e.message_sms,
        message_short=e.message_short,
        notice=e.notice,
        queued_for=list(e.queued_for),
    )


def _visible(store: StoreDep, alert_id: str, principal: Principal) -> Alert:
    """The alert, or 404 — also when it is outside the key's provinces (the store's own words)."""
    alert = store.get(alert_id)
    if not principal.may_see(alert.province):
        raise NotFoundError(f"no alert {alert_id!r}")
    return alert


@router.get("", response_model=list[AlertOut], summary="List alerts", responses={403: {"model": ErrorBody}})
def list_alerts(
    principal: Reader,
    store: StoreDep,
    active: Annotated[bool | None, Query(description="true: firing now; false: resolved")] = None,
    severity: Annotated[SeverityName | None, Query(description="at least this severity")] = None,
    province: ProvinceQuery = None,
    district: DistrictQuery = None,
    rule_id: Annotated[str | None, Query(max_length=64, description="one rule")] = None,
    device_id: Annotated[str | None, Query(pattern=DEVICE_ID, description="one device")] = None,
    acknowledged: Annotated[bool | None, Query(description="acknowledged by an operator or not")] = None,
    since: Annotated[str | None, Query(pattern=TIME_PATTERN, description=f"fired at or after: {TIME_HELP}")] = None,
    until: Annotated[str | None, Query(pattern=TIME_PATTERN, description="fired before, as `since`")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AlertOut]:
    """Alerts matching every filter, most recently fired first (a key limited to provinces sees only those)."""
    now = now_ms()
    try:
        since_ms = parse_time_ms(since, now=now) if since is not None else None
        until_ms = parse_time_ms(until, now=now) if until is not None else None
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    state = None if active is None else ("firing" if active else "resolved")
    found: list[Alert] = []
    allowed = principal.areas(province)
    areas: list[str | None] = list(allowed) if allowed is not None else [None]
    for area in areas:
        found.extend(
            store.list(
                state=state,
                severity_min=Severity[severity.upper()] if severity else None,
                province=area,
                district=district,
                rule_id=rule_id,
                device_id=device_id,
                acknowledged=acknowledged,
                since_ms=since_ms,
                until_ms=until_ms,
                limit=limit,
            )
        )
    found.sort(key=lambda a: (a.fired_at_ms, a.created_at_ms), reverse=True)
    return [alert_out(a) for a in found[:limit]]


@router.get("/{alert_id}", response_model=AlertDetail, summary="One alert with its events", responses=ERRORS)
def get_alert(alert_id: AlertIdPath, principal: Reader, store: StoreDep) -> AlertDetail:
    """An alert and its state changes (firing, resolved) with the subscriptions each was sent to."""
    alert = _visible(store, alert_id, principal)
    return AlertDetail(**alert_out(alert).model_dump(), events=[event_out(e) for e in store.events(alert.id)])


@router.post("/{alert_id}/acknowledge", response_model=AlertOut, summary="Acknowledge an alert", responses=ERRORS)
def acknowledge(alert_id: AlertIdPath, principal: Operator, store: StoreDep) -> AlertOut:
    """Record that the key's operator has seen the alert, and when (the first acknowledgement stands)."""
    _visible(store, alert_id, principal)
    return alert_out(store.acknowledge(alert_id, principal.name, now_ms()))
