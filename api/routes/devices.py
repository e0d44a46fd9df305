"""The device registry: each device with its state (online or offline, battery, last seen, alerts),
and provisioning — create, change, decommission, import a fleet file.

Reads come from the API's snapshot of the registry (:class:`api.services.Registry`), which follows
the registry database within a second or so; writes go to the database and into the snapshot at
once. Listing is by id, a page at a time (keyset pagination: ``after`` the last id seen), the next
page's URL in a ``Link: <…>; rel="next"`` header (RFC 8288).
"""

from __future__ import annotations

import csv
import logging
import re
from bisect import bisect_right
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import yaml
from fastapi import APIRouter, Body, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.convertors import StringConvertor, register_url_convertor

from alerts.store import AlertStore
from api.auth import Operator, Principal, Reader
from api.config import ApiSettings
from api.deps import InfluxDep, RegistryDep, RulesDep, SettingsDep, StoreDep
from api.errors import (
    ERROR_RESPONSES,
    ApiError,
    Conflict,
    ErrorBody,
    Forbidden,
    Invalid,
    NotFoundError,
    UnsupportedMedia,
    Upstream,
)
from api.influx import Influx
from api.services import Registry
from api.times import iso, iso_or_none
from contract.clock import now_ms
from contract.fields import TELEMETRY_FIELDS, Kind
from contract.fleet import EXTERNAL_ID_PATTERN, Crop, Device, DeviceState, Site
from contract.geography import PROVINCE_BY_SLUG
from registry.broker_accounts import BrokerAccountError, BrokerAccounts
from registry.errors import ImportRefused
from registry.files import FileFormat, parse
from registry.store import DeviceRecord
from rules.pack import NoData, Pack
from storage.layout import KIND_MEASUREMENTS, STATUS_MEASUREMENT, STATUS_ONLINE, TELEMETRY_MEASUREMENTS

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/devices", tags=["devices"], responses=ERROR_RESPONSES)

LOOKBACK_MS = 30 * 86_400_000
"""How far back the state queries look for a device's last reading, status and battery."""

DEVICE_ID = r"^[A-Za-z0-9_-]{1,64}$"
SLUG = r"^[a-z0-9][a-z0-9_]{0,63}$"
EXTERNAL_ID = EXTERNAL_ID_PATTERN
DEV_EUI = r"^[0-9A-Fa-f]{16}$"
State = Literal["online", "offline", "unknown"]
SeverityName = Literal["info", "warning", "critical"]
KindName = Literal["water_quality", "salinity", "light_trap", "camera"]
LISTED_STATES: tuple[DeviceState, ...] = ("active", "suspended")
"""What a list shows unless ``state`` is given: decommissioned devices only when asked for."""
MAX_PAGE = 1000

RESERVED_ID = "import"
"""``/v1/devices/import`` is the import, not a device: the API registers no device by that name."""


class DeviceIdConvertor(StringConvertor):
    """A path segment that is not ``import`` (so ``/v1/devices/import`` is one resource, with one method)."""

    regex = f"(?!{RESERVED_ID}$)[^/]+"


register_url_convertor("device_id", DeviceIdConvertor())

DeviceIdPath = Annotated[str, Path(pattern=DEVICE_ID, description="a registered device id")]
RESERVED_RESPONSE: dict[int | str, dict[str, Any]] = {
    405: {
        "model": ErrorBody,
        "description": f"`{RESERVED_ID}` is no device id: /v1/devices/{RESERVED_ID} is the import",
    }
}
RegistryIdPath = Annotated[
    str,
    Path(pattern=DEVICE_ID, description="a registered device id", json_schema_extra={"not": {"const": RESERVED_ID}}),
]
ProvinceQuery = Annotated[str | None, Query(pattern=SLUG, description="province slug, e.g. ben_tre")]
DistrictQuery = Annotated[str | None, Query(pattern=SLUG, description="district slug, e.g. ba_tri")]
KindQuery = Annotated[KindName | None, Query(description="device kind")]
SiteQuery = Annotated[Site | None, Query(description="site type")]
StateQuery = Annotated[
    list[DeviceState] | None,
    Query(description="registry state, repeatable (default: active and suspended; decommissioned only when asked)"),
]
AfterQuery = Annotated[
    str | None, Query(pattern=DEVICE_ID, description="the page after this device id (the `Link` header's cursor)")
]
LimitQuery = Annotated[int, Query(ge=1, le=MAX_PAGE, description="devices per page")]
FORMATS: dict[str, FileFormat] = {
    "text/csv": "csv",
    "application/yaml": "yaml",
    "application/x-yaml": "yaml",
    "text/yaml": "yaml",
}
"""The media types an import reads."""
YAML_MAX_DEPTH = 16


class ExternalIdsOut(BaseModel):
    """The ids a device has in other systems (null: none)."""

    dev_eui: str | None = Field(description="LoRaWAN DevEUI, 16 lower-case hex digits")
    tts_device_id: str | None = Field(description="The Things Stack device id")
    sparkplug: str | None = Field(description="Sparkplug B group/edge node[/device]")
    thingsboard: str | None = Field(description="ThingsBoard device name")
    senml: str | None = Field(description="SenML base name (bn)")


class DeviceOut(BaseModel):
    """A registered device and its current state."""

    id: str
    kind: KindName
    province: str
    province_name: str
    district: str
    district_name: str
    site: Site
    crop: Crop
    lat: float
    lon: float
    model: str = Field(description="hardware and payload format it speaks")
    external_ids: ExternalIdsOut
    state: DeviceState = Field(description="registry state: only an active device's readings are stored")
    status: State = Field(description="offline: its will said so, or silent longer than IOC_API_OFFLINE_AFTER_S")
    last_seen: str | None = Field(description="newest reading or status report (device time, ISO 8601 UTC)")
    last_seen_ms: int | None
    last_status: Literal["online", "offline"] | None = Field(description="the newest report on its status channel")
    last_status_at: str | None
    battery_v: float | None
    active_alerts: int
    worst_severity: SeverityName | None


class FieldOut(BaseModel):
    name: str
    unit: str
    description: str
    min: float
    max: float


class DeviceDetail(DeviceOut):
    fields: list[FieldOut] = Field(description="telemetry fields of its kind (for /v1/readings history)")


class RegisteredDevice(BaseModel):
    """A device as the registry holds it (what a write answers: no InfluxDB is asked)."""

    id: str
    kind: KindName
    province: str
    district: str
    site: Site
    crop: Crop
    lat: float
    lon: float
    model: str
    external_ids: ExternalIdsOut
    state: DeviceState
    created_at: str
    updated_at: str
    revision: int = Field(description="the registry revision of its last change")
    mqtt_username: str | None = Field(
        None, description="its broker account (when the API manages accounts: IOC_BROKER_ADMIN_URL), at creation"
    )
    mqtt_password: str | None = Field(
        None, description="the account's generated password: shown this once, never stored by the API"
    )


class ExternalIdsIn(BaseModel):
    """Ids in other systems; each must belong to no other device."""

    model_config = ConfigDict(extra="forbid", strict=True)

    dev_eui: str | None = Field(None, pattern=DEV_EUI, description="LoRaWAN DevEUI, 16 hex digits (stored lower-case)")
    tts_device_id: str | None = Field(None, pattern=EXTERNAL_ID, description="The Things Stack device id")
    sparkplug: str | None = Field(None, pattern=EXTERNAL_ID, description="Sparkplug B group/edge node[/device]")
    thingsboard: str | None = Field(None, pattern=EXTERNAL_ID, description="ThingsBoard device name")
    senml: str | None = Field(None, pattern=EXTERNAL_ID, description="SenML base name (bn)")


class DeviceIn(BaseModel):
    """A device to register."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: str = Field(
        pattern=DEVICE_ID,
        json_schema_extra={"not": {"const": RESERVED_ID}},
        description=f"its id, as in its MQTT topic; never reused (not `{RESERVED_ID}`)",
    )
    kind: KindName
    province: str = Field(pattern=SLUG, description="province slug, e.g. ben_tre")
    district: str = Field(pattern=SLUG, description="district slug, e.g. ba_tri")
    site: Site
    crop: Crop = "none"
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    model: str = Field("ioc_v1", pattern=SLUG, description="hardware and payload format it speaks")
    external_ids: ExternalIdsIn = Field(default_factory=ExternalIdsIn)
    state: Literal["active", "suspended"] = Field("active", description="suspended: registered, readings not stored")

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v == RESERVED_ID:
            raise ValueError(f"{RESERVED_ID!r} is reserved (POST /v1/devices/{RESERVED_ID} imports a fleet file)")
        return v


class DevicePatch(BaseModel):
    """Fields to change (absent or null: unchanged). In ``external_ids`` a null removes that id."""

    model_config = ConfigDict(extra="forbid", strict=True)

    province: str | None = Field(None, pattern=SLUG)
    district: str | None = Field(None, pattern=SLUG)
    site: Site | None = None
    crop: Crop | None = None
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    model: str | None = Field(None, pattern=SLUG)
    external_ids: ExternalIdsIn | None = Field(None, description="the ids given are set (null: removed); others stay")
    state: DeviceState | None = Field(None, description="a decommissioned device stays decommissioned (409)")


class ImportOut(BaseModel):
    """What an import did."""

    added: int
    changed: int
    unchanged: int
    revision: int = Field(description="the registry revision after the import")


def external_ids_out(device: Device) -> ExternalIdsOut:
    return ExternalIdsOut(**device.external_ids.model_dump())


def registered(record: DeviceRecord) -> RegisteredDevice:
    d = record.device
    return RegisteredDevice(
        id=d.id,
        kind=d.kind.value,
        province=d.province,
        district=d.district,
        site=d.site,
        crop=d.crop,
        lat=d.lat,
        lon=d.lon,
        model=d.model,
        external_ids=external_ids_out(d),
        state=d.state,
        created_at=iso(record.created_ms),
        updated_at=iso(record.updated_ms),
        revision=record.revision,
    )


def device_state(last_seen_ms: int | None, status: tuple[int, int] | None, now: int, offline_after_ms: float) -> State:
    """online / offline / unknown from the newest reading and the newest status report (time, 1|0)."""
    if status is not None and status[1] == 0 and (last_seen_ms is None or status[0] >= last_seen_ms):
        return "offline"
    if last_seen_ms is None:
        return "unknown"
    return "offline" if now - last_seen_ms > offline_after_ms else "online"


def silent_after_ms(pack: Pack, device: Device, default_s: float) -> float:
    """How long ``device`` may be silent and still count as online: what the pack's no-data rules that
    read it allow (the shortest; a light trap reports every 3 h by day), else ``default_s``."""
    afters = [r.condition.after_ms for r in pack.rules if isinstance(r.condition, NoData) and r.reads(device)]
    return float(min(afters)) if afters else default_s * 1000


def names(province: str, district: str) -> tuple[str, str]:
    """(province name, district name) from the seed geography, falling back to the slugs."""
    p = PROVINCE_BY_SLUG.get(province)
    if p is None:
        return province, district
    d = next((d for d in p.districts if d.slug == district), None)
    return p.name, d.name if d else district


def matching(
    devices: Iterable[Device],
    principal: Principal,
    *,
    province: str | None = None,
    district: str | None = None,
    kind: str | None = None,
    site: str | None = None,
    states: Collection[str] | None = None,
) -> Iterable[Device]:
    """Devices matching every given filter that the key may see, lazily (403 at once for a province
    the key may not see)."""
    if province is not None:
        principal.check_province(province)
    return (
        d
        for d in devices
        if principal.may_see(d.province)
        and (province is None or d.province == province)
        and (district is None or d.district == district)
        and (kind is None or d.kind.value == kind)
        and (site is None or d.site == site)
        and (states is None or d.state in states)
    )


def not_found(device_id: str) -> NotFoundError:
    """The answer for a device that is not there — or that the key may not see: the same words."""
    return NotFoundError(f"no device {device_id!r} in the registry")


def visible_device(registry: Registry, principal: Principal, device_id: str) -> Device:
    """The registered device, or 404 — also when it is outside the key's provinces (the same answer)."""
    device = registry.get(device_id)
    if device is None or not principal.may_see(device.province):
        raise not_found(device_id)
    return device


def visible_record(registry: Registry, principal: Principal, device_id: str) -> DeviceRecord:
    """As :func:`visible_device`, from the database itself (what a write is about to change)."""
    record = registry.record(device_id)
    if record is None or not principal.may_see(record.device.province):
        raise not_found(device_id)
    return record


def describe(
    devices: Sequence[Device],
    influx: Influx,
    store: AlertStore,
    pack: Pack,
    offline_after_s: float,
    *,
    one: bool = False,
) -> list[DeviceOut]:
    """State of ``devices`` from InfluxDB (3 queries) and the alert store; silent longer than
    :func:`silent_after_ms` is offline."""
    now = now_ms()
    since = now - LOOKBACK_MS
    only = [d.id for d in devices] if one else None
    seen = influx.last("seq", (*TELEMETRY_MEASUREMENTS, STATUS_MEASUREMENT), since, only)
    status = influx.last(STATUS_ONLINE, (STATUS_MEASUREMENT,), since, only)
    powered = (m for k, m in KIND_MEASUREMENTS.items() if k is not Kind.CAMERA)
    battery = influx.last("battery_v", (STATUS_MEASUREMENT, *powered), since, only)
    wanted = {d.id for d in devices}
    counts: dict[str, int] = {}
    worst: dict[str, int] = {}
    for alert in store.active():
        if alert.device_id in wanted:
            counts[alert.device_id] = counts.get(alert.device_id, 0) + 1
            worst[alert.device_id] = max(worst.get(alert.device_id, 0), int(alert.severity))
    labels: dict[int, SeverityName] = {1: "info", 2: "warning", 3: "critical"}
    out = []
    for d in devices:
        last_seen = seen[d.id][0] if d.id in seen else None
        st = (status[d.id][0], int(status[d.id][1])) if d.id in status else None
        province_name, district_name = names(d.province, d.district)
        bat = battery.get(d.id)
        out.append(
            DeviceOut(
                id=d.id,
                kind=d.kind.value,
                province=d.province,
                province_name=province_name,
                district=d.district,
                district_name=district_name,
                site=d.site,
                crop=d.crop,
                lat=d.lat,
                lon=d.lon,
                model=d.model,
                external_ids=external_ids_out(d),
                state=d.state,
                status=device_state(last_seen, st, now, silent_after_ms(pack, d, offline_after_s)),
                last_seen=iso_or_none(last_seen),
                last_seen_ms=last_seen,
                last_status=None if st is None else ("online" if st[1] else "offline"),
                last_status_at=None if st is None else iso_or_none(st[0]),
                battery_v=float(bat[1]) if bat is not None else None,
                active_alerts=counts.get(d.id, 0),
                worst_severity=labels.get(worst.get(d.id, 0)),
            )
        )
    return out


LINK_HEADER: dict[str, Any] = {
    "Link": {
        "description": 'the next page, when there is one: `</v1/devices?…&after=ID&limit=N>; rel="next"` (RFC 8288)',
        "schema": {"type": "string"},
    }
}


def next_link(request: Request, after: str, limit: int) -> str:
    """``<path?same filters&after=…&limit=…>; rel="next"``: the URL of the page after ``after``."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in ("after", "limit")]
    query = urlencode([*kept, ("after", after), ("limit", str(limit))])
    return f'<{request.url.path}?{query}>; rel="next"'


@router.get(
    "",
    response_model=list[DeviceOut],
    summary="List devices with their state",
    responses={200: {"headers": LINK_HEADER, "description": "a page of devices, by id"}},
)
def list_devices(
    request: Request,
    response: Response,
    principal: Reader,
    registry: RegistryDep,
    influx: InfluxDep,
    store: StoreDep,
    settings: SettingsDep,
    rules: RulesDep,
    province: ProvinceQuery = None,
    district: DistrictQuery = None,
    kind: KindQuery = None,
    site: SiteQuery = None,
    state: StateQuery = None,
    after: AfterQuery = None,
    limit: LimitQuery = MAX_PAGE,
) -> list[DeviceOut]:
    """Registered devices by id (filter by province, district, kind, site, state) with status, battery and
    alerts; a page at a time: the `Link` header names the next page."""
    snapshot = registry.snapshot()
    start = bisect_right(snapshot.ids, after) if after is not None else 0
    states = frozenset(state) if state else frozenset(LISTED_STATES)
    found = matching(
        islice(snapshot.devices, start, None),
        principal,
        province=province,
        district=district,
        kind=kind,
        site=site,
        states=states,
    )
    chosen = list(islice(found, limit + 1))
    if len(chosen) > limit:
        chosen = chosen[:limit]
        response.headers["link"] = next_link(request, chosen[-1].id, limit)
    if not chosen:
        return []
    return describe(chosen, influx, store, rules.current.pack, settings.api_offline_after_s)


@router.get(
    "/{device_id:device_id}",
    response_model=DeviceDetail,
    summary="One device with its state and fields",
    responses={404: {"model": ErrorBody}, 403: {"model": ErrorBody}, **RESERVED_RESPONSE},
)
def get_device(
    device_id: RegistryIdPath,
    principal: Reader,
    registry: RegistryDep,
    influx: InfluxDep,
    store: StoreDep,
    settings: SettingsDep,
    rules: RulesDep,
) -> DeviceDetail:
    """One registered device, its state, and the telemetry fields its kind reports."""
    device = visible_device(registry, principal, device_id)
    state = describe([device], influx, store, rules.current.pack, settings.api_offline_after_s, one=True)[0]
    fields = [
        FieldOut(name=f.name, unit=f.unit, description=f.description, min=f.lo, max=f.hi)
        for f in TELEMETRY_FIELDS[device.kind]
    ]
    return DeviceDetail(**state.model_dump(), fields=fields)


# -- provisioning ------------------------------------------------------------------------------

WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    502: {
        "model": ErrorBody,
        "description": "the registry took the change but the broker refused the device's account change or could "
        "not be reached (`ioc devices sync-broker` brings the accounts in line)",
    },
    503: {"model": ErrorBody, "description": "the registry database is unreachable"},
}
CREATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    201: {
        "description": "registered; `Location` is its URL",
        "headers": {"Location": {"description": "/v1/devices/{id}", "schema": {"type": "string"}}},
    },
    403: {"model": ErrorBody, "description": "the key's scope is too low, or the province is not one of the key's"},
    409: {"model": ErrorBody, "description": "the id, or one of the external ids, is registered already"},
    **WRITE_ERRORS,
}
PATCH_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorBody, "description": "the key's scope is too low, or the new province is not one of the key's"},
    404: {"model": ErrorBody, "description": "no such device (or one outside the key's provinces)"},
    409: {
        "model": ErrorBody,
        "description": "an external id belongs to another device, or the device is decommissioned",
    },
    **RESERVED_RESPONSE,
    **WRITE_ERRORS,
}
DELETE_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "no such device (or one outside the key's provinces)"},
    **RESERVED_RESPONSE,
    **WRITE_ERRORS,
}
IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "a fleet file: YAML (`{version: 1, devices: [...]}` or a list of devices) or CSV with a "
        "header row (docs/api.md)",
        "content": {media: {"schema": {"type": "string"}} for media in FORMATS},
    }
}
IMPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"model": ErrorBody, "description": "scope too low, or rows outside the key's provinces (`detail.rows`)"},
    415: {"model": ErrorBody, "description": "the body is not text/csv or YAML (application/yaml)"},
    422: {
        "model": ErrorBody,
        "description": "not a fleet file, or bad rows: `detail.problems` names each (row, device, field); "
        "nothing was imported",
    },
    **WRITE_ERRORS,
}


@router.post(
    "",
    response_model=RegisteredDevice,
    status_code=201,
    summary="Register a device",
    responses=CREATE_RESPONSES,
)
def create_device(
    principal: Operator,
    registry: RegistryDep,
    settings: SettingsDep,
    response: Response,
    body: Annotated[DeviceIn, Body()],
) -> RegisteredDevice:
    """Register a new device (`operate`); a running ingest stores its readings within seconds.

    Where the API manages broker accounts (`IOC_BROKER_ADMIN_URL`), the device gets its account too,
    and the answer carries its password, this once."""
    principal.check_province(body.province)
    device = Device.model_validate(body.model_dump())
    record = registry.add(device)
    response.headers["location"] = f"{router.prefix}/{device.id}"
    out = registered(record)
    with broker_accounts(settings, device.id) as accounts:
        if accounts is not None:
            cred = accounts.create_devices([device.id])[0]
            out.mqtt_username, out.mqtt_password = cred.username, cred.password
    return out


@contextmanager
def broker_accounts(settings: ApiSettings, device_id: str) -> Iterator[BrokerAccounts | None]:
    """The broker's account admin, logged in (None where the API does not manage accounts); its
    failure after the registry changed is a 502 that says so."""
    try:
        with settings.session() as accounts:
            yield accounts
    except BrokerAccountError as exc:
        log.error("broker account of %s not changed: %s", device_id, exc)
        raise Upstream(
            f"device {device_id!r} is registered as asked, but its broker account was not changed: {exc}; "
            "`ioc devices sync-broker` brings the accounts in line"
        ) from None


def _follow_state(settings: ApiSettings, record: DeviceRecord) -> None:
    """Enable or disable the device's broker account after its state changed (if accounts are managed)."""
    with broker_accounts(settings, record.device.id) as accounts:
        if accounts is not None:
            accounts.set_enabled([record.device.id], record.device.active)


@router.patch(
    "/{device_id:device_id}", response_model=RegisteredDevice, summary="Change a device", responses=PATCH_RESPONSES
)
def update_device(
    device_id: RegistryIdPath,
    principal: Operator,
    registry: RegistryDep,
    settings: SettingsDep,
    body: Annotated[DevicePatch, Body()],
) -> RegisteredDevice:
    """Change a device's place and tags, model, external ids or state (`operate`); its id and kind stay."""
    current = visible_record(registry, principal, device_id).device
    changes: dict[str, Any] = {
        name: getattr(body, name)
        for name in ("province", "district", "site", "crop", "lat", "lon", "model", "state")
        if getattr(body, name) is not None
    }
    if body.external_ids is not None:
        given = body.external_ids.model_dump(include=body.external_ids.model_fields_set)
        changes["external_ids"] = {**current.external_ids.model_dump(), **given}
    if "province" in changes:
        principal.check_province(changes["province"])
    if current.state == "decommissioned" and changes.get("state", "decommissioned") != "decommissioned":
        raise Conflict(
            f"device {device_id!r} is decommissioned: it stays so (register the hardware under a new id)",
            {"state": current.state},
        )
    record = registry.update(device_id, changes)
    if "state" in changes and changes["state"] != current.state:
        _follow_state(settings, record)
    return registered(record)


@router.delete(
    "/{device_id:device_id}",
    response_model=RegisteredDevice,
    summary="Decommission a device",
    responses=DELETE_RESPONSES,
)
def decommission_device(
    device_id: RegistryIdPath, principal: Operator, registry: RegistryDep, settings: SettingsDep
) -> RegisteredDevice:
    """Decommission a device (`operate`): its readings are dead-lettered from now on, its id is never reused.

    It stays in the registry: `GET /v1/devices/{id}` shows it, the list only with `state=decommissioned`.
    Decommissioning it again changes nothing (200)."""
    before = visible_record(registry, principal, device_id).device.state
    record = registry.update(device_id, {"state": "decommissioned"})
    if before != "decommissioned":
        _follow_state(settings, record)
    return registered(record)


def _fleet_format(request: Request) -> FileFormat:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    fmt = FORMATS.get(media)
    if fmt is None:
        raise UnsupportedMedia(
            f"import a fleet file as {', '.join(FORMATS)}; got {media or 'no content type'}",
            {"accepted": list(FORMATS)},
        )
    return fmt


def _plain_yaml(text: str) -> None:
    """422 for YAML an import must not expand: aliases (a "billion laughs") or deep nesting."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise Invalid("request body: aliases (*name) are not allowed in an imported fleet")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > YAML_MAX_DEPTH:
                    raise Invalid(f"request body: nested deeper than {YAML_MAX_DEPTH} levels: not a fleet file")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError as exc:
        raise Invalid(f"request body: not valid YAML ({exc})") from None


def _parse_fleet(text: str, fmt: FileFormat) -> list[Device]:
    if fmt == "yaml":
        _plain_yaml(text)
    try:
        return parse(text, fmt, "request body")
    except csv.Error as exc:
        raise Invalid(f"request body: not valid CSV ({exc})") from None


_OWNER = re.compile(r"belongs to device '([^']*)'")


def _rows_outside(devices: Sequence[Device], fmt: FileFormat, registry: Registry, principal: Principal) -> list[int]:
    """Row numbers (as the file's problems count them) of devices outside the key's provinces, or moved from there."""
    first = 2 if fmt == "csv" else 1  # a CSV's row 1 is its header
    known = registry.refresh().by_id
    out = []
    for number, d in enumerate(devices, start=first):
        existing = known.get(d.id)
        if not principal.may_see(d.province) or (existing is not None and not principal.may_see(existing.province)):
            out.append(number)
    return out


def _import(devices: list[Device], fmt: FileFormat, registry: Registry, principal: Principal) -> ImportOut:
    if principal.limited:
        outside = _rows_outside(devices, fmt, registry, principal)
        if outside:
            raise Forbidden(
                f"this key is limited to {', '.join(sorted(principal.provinces))}; "
                f"{len(outside)} row(s) are outside them: nothing imported",
                {"rows": outside},
            )
    try:
        result = registry.import_devices(devices, source="request body")
    except ImportRefused as exc:
        if not principal.limited:
            raise
        seen = registry.snapshot().by_id

        def hide(m: re.Match[str]) -> str:
            owner = seen.get(m.group(1))
            return (
                m.group(0) if owner is not None and principal.may_see(owner.province) else "belongs to another device"
            )

        raise ImportRefused("request body", [_OWNER.sub(hide, p) for p in exc.problems]) from None
    return ImportOut(added=result.added, changed=result.changed, unchanged=result.unchanged, revision=result.revision)


@router.post(
    "/import",
    response_model=ImportOut,
    summary="Import a fleet file (all or nothing)",
    openapi_extra=IMPORT_BODY,
    responses=IMPORT_RESPONSES,
)
async def import_devices(request: Request, principal: Operator, registry: RegistryDep) -> ImportOut:
    """Add or change every device of a YAML or CSV fleet file (`operate`): all of them, or none — a 422 names
    every bad row. Importing the same file again changes nothing."""
    fmt = _fleet_format(request)
    body = await request.body()
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApiError("bad request", f"the body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    devices = _parse_fleet(text, fmt)
    return await run_in_threadpool(_import, devices, fmt, registry, principal)
