"""Webhook subscriptions: create, list, change, delete, test, delivery log, dead letters, replay.

A subscription's secret is returned once — in the answer that created (or rotated) it — and
never again. A key limited to provinces manages only subscriptions limited to its provinces.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from alerts.delivery import post_webhook, webhook_client
from alerts.notify import DEFAULT_GROUP_INTERVAL_S, DEFAULT_GROUP_WAIT_S, MAX_WAIT_S, Pacing
from alerts.outbox import DeadLetter, DeliveryAttempt, Verdict
from alerts.signing import SECRET_PATTERN, generate_secret
from alerts.store import AlertStore
from alerts.subscriptions import MAX_RADIUS_KM, TEMPLATE_ID, Filters, Near, Subscription
from api.auth import Operator, Principal
from api.deps import SettingsDep, StoreDep
from api.errors import ERROR_RESPONSES, ErrorBody, NotFoundError
from api.routes.devices import SeverityName
from api.times import iso, iso_or_none
from contract.clock import now_ms

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"], responses=ERROR_RESPONSES)

SubIdPath = Annotated[str, Path(max_length=64, description="a subscription id (sub_…)")]
ERRORS: dict[int | str, dict[str, Any]] = {403: {"model": ErrorBody}, 404: {"model": ErrorBody}}
URL_REFUSED: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorBody, "description": "invalid, or the URL's host resolves to an address the policy refuses"}
}
Names = Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=200)]
URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9._~%:\[\]-]+(?:[/?#][!-~]*)?$"
"""http(s), a host (name, IPv4, [IPv6]) with an optional port, then ASCII: the policy then checks where it points."""
URL_HELP = "http(s) URL the alerts are POSTed to; it must resolve to addresses the target policy allows"
TEST_EVENT = "test.ping"


class NearIn(BaseModel):
    """A circle: alerts of devices within `radius_km` of the point."""

    model_config = ConfigDict(extra="forbid", strict=True)

    lat: float = Field(ge=-90, le=90, description="latitude of the centre, WGS84 degrees")
    lon: float = Field(ge=-180, le=180, description="longitude of the centre, WGS84 degrees")
    radius_km: float = Field(gt=0, le=MAX_RADIUS_KM, description="great-circle distance from the centre, km")

    def near(self) -> Near:
        return Near.make(self.lat, self.lon, self.radius_km)


class NearOut(BaseModel):
    lat: float
    lon: float
    radius_km: float


QUIET_PATTERN = r"^([01]?[0-9]|2[0-3]):[0-5][0-9]-([01]?[0-9]|2[0-3]):[0-5][0-9]$"


class PacingIn(BaseModel):
    """How messages are paced for this subscriber (alerts.notify): grouping, quiet hours, a rate limit."""

    model_config = ConfigDict(extra="forbid", strict=True)

    group_wait_s: int = Field(
        DEFAULT_GROUP_WAIT_S, ge=0, le=MAX_WAIT_S,
        description="alerts of one family in one district starting within this many seconds go as one message",
    )  # fmt: skip
    group_interval_s: int = Field(
        DEFAULT_GROUP_INTERVAL_S, ge=0, le=MAX_WAIT_S,
        description="later changes of a group still alerting go as one update at most this often (critical ones "
        "do not wait)",
    )  # fmt: skip
    quiet_hours: str | None = Field(
        None, pattern=QUIET_PATTERN, examples=["21:00-05:30"],
        description="local time (UTC+7) when only critical alerts are sent; what waited goes as one digest at "
        "the end; null: none",
    )  # fmt: skip
    max_per_hour: int | None = Field(
        None, ge=1, le=3600,
        description="at most this many messages in any hour (critical ones always go); the rest go as one "
        "summary when the hour allows; null: no limit",
    )  # fmt: skip

    def pacing(self) -> Pacing:
        return Pacing.make(group_wait_s=self.group_wait_s, group_interval_s=self.group_interval_s,
                           quiet=self.quiet_hours, max_per_hour=self.max_per_hour)  # fmt: skip


class PacingOut(BaseModel):
    group_wait_s: int
    group_interval_s: int
    quiet_hours: str | None
    max_per_hour: int | None


class FiltersOut(BaseModel):
    provinces: list[str]
    districts: list[str]
    devices: list[str]
    kinds: list[str]
    rule_ids: list[str]
    crops: list[str]
    near: NearOut | None = Field(description="only alerts of devices within this circle; null: anywhere")
    min_severity: SeverityName


class SubscriptionOut(BaseModel):
    """A webhook subscriber (its secret is only ever in the answer that created it)."""

    id: str
    url: str
    language: Literal["vi", "en"]
    enabled: bool
    disabled_reason: str | None
    description: str
    filters: FiltersOut
    template: str | None = Field(description="the template id webhooks carry with their `params`; null: none")
    pacing: PacingOut
    pending: int = Field(description="messages queued and not delivered yet")
    waiting: int = Field(
        description="alert notices no message carries yet: grouping, quiet hours or the rate limit hold them"
    )
    created_at: str
    updated_at: str
    secret: str | None = Field(None, description="whsec_…: only in the answer that created or rotated it")


class SubscriptionIn(BaseModel):
    url: str = Field(max_length=2048, pattern=URL_PATTERN, description=URL_HELP)
    secret: str | None = Field(
        None, pattern=SECRET_PATTERN, description="whsec_<base64 of 16–64 bytes>; leave out to have one generated"
    )
    language: Literal["vi", "en"] = "vi"
    provinces: Names = []
    districts: Names = []
    devices: Names = []
    kinds: Names = []
    rule_ids: Names = []
    crops: Names = Field([], description="the device's crop tag, e.g. durian, rice, shrimp")
    near: NearIn | None = Field(None, description="only alerts of devices within this circle")
    min_severity: SeverityName = "info"
    description: str = Field("", max_length=500)
    template: str | None = Field(
        None, pattern=TEMPLATE_ID.pattern,
        description="a template id its gateway sends (Zalo ZNS, SMS brandname): each webhook then carries "
        "`template` and `params` {place, value, unit, action, time} besides the texts",
    )  # fmt: skip
    pacing: PacingIn = Field(default_factory=PacingIn, description="grouping, quiet hours and a rate limit")


class SubscriptionPatch(BaseModel):
    """Fields to change; a filter given replaces that filter (`near: null` removes the circle)."""

    url: str | None = Field(None, max_length=2048, pattern=URL_PATTERN, description=URL_HELP)
    language: Literal["vi", "en"] | None = None
    provinces: Names | None = None
    districts: Names | None = None
    devices: Names | None = None
    kinds: Names | None = None
    rule_ids: Names | None = None
    crops: Names | None = None
    near: NearIn | None = Field(None, description="a new circle; null removes it")
    min_severity: SeverityName | None = None
    enabled: bool | None = None
    description: str | None = Field(None, max_length=500)
    template: str | None = Field(
        None, pattern=TEMPLATE_ID.pattern,
        description="a new template id (Zalo ZNS, SMS brandname) for the webhooks' `template` and `params`; "
        "null removes it",
    )  # fmt: skip
    pacing: PacingIn | None = Field(None, description="new pacing (replaces the whole of it)")
    rotate_secret: bool = Field(False, description="generate a new secret (returned in this answer only)")


class TestResult(BaseModel):
    """What happened to the signed test event."""

    webhook_id: str
    url: str
    delivered: bool
    status: int | None
    error: str | None
    duration_ms: int


class DeliveryOut(BaseModel):
    id: int
    seq: int
    event_id: str
    attempt: int
    at: str
    at_ms: int
    duration_ms: int
    status: int | None
    error: str | None
    verdict: Literal["delivered", "retry", "gone", "dead"]


class DeadLetterOut(BaseModel):
    id: int
    seq: int
    event_id: str
    event_type: str
    attempts: int
    last_status: int | None
    last_error: str | None
    dead_at: str
    replayed_at: str | None


class ReplayIn(BaseModel):
    ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] | None = Field(
        None, min_length=1, max_length=10_000, description="dead-letter ids; leave out for all"
    )


class Replayed(BaseModel):
    replayed: int


def subscription_out(store: AlertStore, sub: Subscription, *, secret: bool = False) -> SubscriptionOut:
    """The subscription as the API shows it, with its queue (``pending``) and its ``waiting`` notices."""
    f = sub.filters
    return SubscriptionOut(
        id=sub.id,
        url=sub.url,
        language=sub.language,
        enabled=sub.enabled,
        disabled_reason=sub.disabled_reason,
        description=sub.description,
        filters=FiltersOut(
            provinces=sorted(f.provinces),
            districts=sorted(f.districts),
            devices=sorted(f.devices),
            kinds=sorted(f.kinds),
            rule_ids=sorted(f.rule_ids),
            crops=sorted(f.crops),
            near=None if f.near is None else NearOut(lat=f.near.lat, lon=f.near.lon, radius_km=f.near.radius_km),
            min_severity=f.min_severity.label,
        ),
        template=sub.template,
        pacing=PacingOut(
            group_wait_s=sub.pacing.group_wait_s,
            group_interval_s=sub.pacing.group_interval_s,
            quiet_hours=None if sub.pacing.quiet is None else str(sub.pacing.quiet),
            max_per_hour=sub.pacing.max_per_hour,
        ),
        pending=store.pending_count(sub.id),
        waiting=store.waiting_count(sub.id),
        created_at=iso(sub.created_at_ms),
        updated_at=iso(sub.updated_at_ms),
        secret=sub.secret if secret else None,
    )


def _owned(store: AlertStore, sub_id: str, principal: Principal) -> Subscription:
    """The subscription, if the key may manage it; else 404, as for one that does not exist."""
    sub = store.get_subscription(sub_id)
    if not principal.may_manage(sub.filters.provinces):
        raise NotFoundError(f"no subscription {sub_id!r}")
    return sub


def _areas(principal: Principal, provinces: list[str] | None) -> list[str] | None:
    """A limited key's subscriptions must name provinces it covers (default: all of them)."""
    if not principal.limited:
        return provinces
    if not provinces:
        return sorted(principal.provinces)
    principal.check_provinces(p.strip().casefold() for p in provinces)
    return provinces


@router.post(
    "",
    response_model=SubscriptionOut,
    status_code=201,
    summary="Add a subscriber",
    responses=URL_REFUSED,
)
def create(principal: Operator, store: StoreDep, body: Annotated[SubscriptionIn, Body()]) -> SubscriptionOut:
    """Add a webhook subscriber; the answer carries its secret, the only time it is shown."""
    sub = store.add_subscription(
        body.url,
        body.secret,
        provinces=_areas(principal, body.provinces),
        districts=body.districts,
        devices=body.devices,
        kinds=body.kinds,
        rule_ids=body.rule_ids,
        min_severity=body.min_severity,
        language=body.language,
        description=body.description,
        crops=body.crops,
        near=body.near.near() if body.near is not None else None,
        template=body.template,
        pacing=body.pacing.pacing(),
    )
    return subscription_out(store, sub, secret=True)


@router.get("", response_model=list[SubscriptionOut], summary="List subscribers")
def list_subscriptions(principal: Operator, store: StoreDep) -> list[SubscriptionOut]:
    """Every subscriber this key may manage, in the order they were added (no secrets)."""
    out = []
    for sub in store.list_subscriptions():
        if not principal.may_manage(sub.filters.provinces):
            continue
        out.append(subscription_out(store, sub))
    return out


@router.get("/{sub_id}", response_model=SubscriptionOut, summary="One subscriber", responses=ERRORS)
def get_subscription(sub_id: SubIdPath, principal: Operator, store: StoreDep) -> SubscriptionOut:
    """One subscriber (no secret)."""
    sub = _owned(store, sub_id, principal)
    return subscription_out(store, sub)


@router.patch(
    "/{sub_id}", response_model=SubscriptionOut, summary="Change a subscriber", responses={**ERRORS, **URL_REFUSED}
)
def update(
    sub_id: SubIdPath, principal: Operator, store: StoreDep, body: Annotated[SubscriptionPatch, Body()]
) -> SubscriptionOut:
    """Change URL, language, filters, enabled or description; `rotate_secret` returns a new secret once."""
    sub = _owned(store, sub_id, principal)
    filters = None
    given = body.model_fields_set & {
        "provinces", "districts", "devices", "kinds", "rule_ids", "crops", "near", "min_severity"
    }  # fmt: skip
    if given:
        f = sub.filters
        provinces = body.provinces if body.provinces is not None else sorted(f.provinces)
        filters = Filters.make(
            provinces=_areas(principal, provinces),
            districts=body.districts if body.districts is not None else f.districts,
            devices=body.devices if body.devices is not None else f.devices,
            kinds=body.kinds if body.kinds is not None else f.kinds,
            rule_ids=body.rule_ids if body.rule_ids is not None else f.rule_ids,
            min_severity=body.min_severity or f.min_severity,
            crops=body.crops if body.crops is not None else f.crops,
            near=(body.near.near() if body.near is not None else None) if "near" in body.model_fields_set else f.near,
        )
    secret = generate_secret() if body.rotate_secret else None
    updated = store.update_subscription(
        sub.id,
        url=body.url,
        secret=secret,
        filters=filters,
        language=body.language,
        enabled=body.enabled,
        description=body.description,
        template=body.template if "template" in body.model_fields_set else ...,
        pacing=body.pacing.pacing() if body.pacing is not None else None,
    )
    return subscription_out(store, updated, secret=secret is not None)


@router.delete("/{sub_id}", status_code=204, summary="Remove a subscriber", responses=ERRORS)
def delete(sub_id: SubIdPath, principal: Operator, store: StoreDep) -> Response:
    """Remove a subscriber with its queue, delivery log and dead letters."""
    _owned(store, sub_id, principal)
    store.remove_subscription(sub_id)
    return Response(status_code=204)


def test_body(sub: Subscription, webhook_id: str, at_ms: int) -> str:
    """The test event: shaped like an alert event so receivers can try their parsing, marked as a test."""
    body = {
        "type": TEST_EVENT,
        "id": webhook_id,
        "timestamp": iso(at_ms),
        "subscription_id": sub.id,
        "language": sub.language,
        "test": True,
        "message": "Tin thử từ Mekong IOC" if sub.language == "vi" else "Test event from Mekong IOC",
        "message_vi": "Tin thử từ Mekong IOC: webhook của bạn nhận được cảnh báo.",
        "message_en": "Test event from Mekong IOC: your webhook receives alerts.",
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


@router.post("/{sub_id}/test", response_model=TestResult, summary="Send a signed test event", responses=ERRORS)
async def send_test(sub_id: SubIdPath, principal: Operator, store: StoreDep, settings: SettingsDep) -> TestResult:
    """POST a signed `test.ping` event to the subscriber now and report what it answered (not queued, not logged)."""
    sub = await asyncio.to_thread(_owned, store, sub_id, principal)
    webhook_id = f"evt_test_{uuid.uuid4().hex}"
    body = test_body(sub, webhook_id, now_ms())
    policy = settings.target_policy()
    began = time.monotonic()
    async with webhook_client(policy, settings.webhook_timeout_s) as client:
        outcome = await post_webhook(
            client,
            policy,
            url=sub.url,
            secret=sub.secret,
            webhook_id=webhook_id,
            body=body,
            timeout_s=settings.webhook_timeout_s,
        )
    return TestResult(
        webhook_id=webhook_id,
        url=sub.url,
        delivered=outcome.verdict is Verdict.DELIVERED,
        status=outcome.status,
        error=outcome.error,
        duration_ms=round((time.monotonic() - began) * 1000),
    )


def delivery_out(d: DeliveryAttempt) -> DeliveryOut:
    return DeliveryOut(
        id=d.id,
        seq=d.seq,
        event_id=d.event_id,
        attempt=d.attempt,
        at=iso(d.at_ms),
        at_ms=d.at_ms,
        duration_ms=d.duration_ms,
        status=d.status,
        error=d.error,
        verdict=d.verdict.value,
    )


def dead_out(d: DeadLetter) -> DeadLetterOut:
    return DeadLetterOut(
        id=d.id,
        seq=d.seq,
        event_id=d.event_id,
        event_type=d.event_type,
        attempts=d.attempts,
        last_status=d.last_status,
        last_error=d.last_error,
        dead_at=iso(d.dead_at_ms),
        replayed_at=iso_or_none(d.replayed_at_ms),
    )


@router.get("/{sub_id}/deliveries", response_model=list[DeliveryOut], summary="Delivery log", responses=ERRORS)
def deliveries(
    sub_id: SubIdPath, principal: Operator, store: StoreDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[DeliveryOut]:
    """Every delivery attempt to this subscriber, newest first."""
    _owned(store, sub_id, principal)
    return [delivery_out(d) for d in store.deliveries(subscription_id=sub_id, limit=limit)]


@router.get("/{sub_id}/dead-letters", response_model=list[DeadLetterOut], summary="Dead letters", responses=ERRORS)
def dead_letters(
    sub_id: SubIdPath,
    principal: Operator,
    store: StoreDep,
    include_replayed: Annotated[bool, Query(description="also those already replayed")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeadLetterOut]:
    """Events this subscriber never took (retries exhausted or 410), oldest first."""
    _owned(store, sub_id, principal)
    return [
        dead_out(d) for d in store.dead_letters(subscription_id=sub_id, include_replayed=include_replayed, limit=limit)
    ]


@router.post("/{sub_id}/replay", response_model=Replayed, summary="Replay dead letters", responses=ERRORS)
def replay(
    sub_id: SubIdPath, principal: Operator, store: StoreDep, body: Annotated[ReplayIn | None, Body()] = None
) -> Replayed:
    """Queue this subscriber's dead letters again (all, or `ids`), with the same webhook-id."""
    _owned(store, sub_id, principal)
    ids = body.ids if body is not None else None
    return Replayed(replayed=store.replay(ids, subscription_id=sub_id))
