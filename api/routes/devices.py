"""The device registry with each device's state: online or offline, battery, last seen, alerts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from alerts.store import AlertStore
from api.auth import Principal, Reader
from api.deps import InfluxDep, RegistryDep, SettingsDep, StoreDep
from api.errors import ERROR_RESPONSES, ErrorBody, NotFoundError
from api.influx import STATUS, TELEMETRY, Influx
from api.services import Registry
from api.times import iso_or_none
from contract.clock import now_ms
from contract.fields import TELEMETRY_FIELDS, Kind
from contract.fleet import Crop, Device, Site
from contract.geography import PROVINCE_BY_SLUG

router = APIRouter(prefix="/v1/devices", tags=["devices"], responses=ERROR_RESPONSES)

LOOKBACK_MS = 30 * 86_400_000
"""How far back the state queries look for a device's last reading, status and battery."""

DEVICE_ID = r"^[A-Za-z0-9_-]{1,64}$"
SLUG = r"^[a-z0-9][a-z0-9_]{0,63}$"
State = Literal["online", "offline", "unknown"]
SeverityName = Literal["info", "warning", "critical"]
KindName = Literal["water_quality", "salinity", "light_trap", "camera"]

DeviceIdPath = Annotated[str, Path(pattern=DEVICE_ID, description="a registered device id")]
ProvinceQuery = Annotated[str | None, Query(pattern=SLUG, description="province slug, e.g. ben_tre")]
DistrictQuery = Annotated[str | None, Query(pattern=SLUG, description="district slug, e.g. ba_tri")]
KindQuery = Annotated[KindName | None, Query(description="device kind")]
SiteQuery = Annotated[Site | None, Query(description="site type")]


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


def device_state(last_seen_ms: int | None, status: tuple[int, int] | None, now: int, offline_after_ms: float) -> State:
    """online / offline / unknown from the newest reading and the newest status report (time, 1|0)."""
    if status is not None and status[1] == 0 and (last_seen_ms is None or status[0] >= last_seen_ms):
        return "offline"
    if last_seen_ms is None:
        return "unknown"
    return "offline" if now - last_seen_ms > offline_after_ms else "online"


def names(province: str, district: str) -> tuple[str, str]:
    """(province name, district name) from the seed geography, falling back to the slugs."""
    p = PROVINCE_BY_SLUG.get(province)
    if p is None:
        return province, district
    d = next((d for d in p.districts if d.slug == district), None)
    return p.name, d.name if d else district


def select(
    devices: Sequence[Device],
    principal: Principal,
    *,
    province: str | None = None,
    district: str | None = None,
    kind: str | None = None,
    site: str | None = None,
) -> list[Device]:
    """Devices matching every given filter that the key may see (403 for a province it may not)."""
    if province is not None:
        principal.check_province(province)
    return [
        d
        for d in devices
        if principal.may_see(d.province)
        and (province is None or d.province == province)
        and (district is None or d.district == district)
        and (kind is None or d.kind.value == kind)
        and (site is None or d.site == site)
    ]


def visible_device(registry: Registry, principal: Principal, device_id: str) -> Device:
    """The registered device, or 404 — also when it is outside the key's provinces (the same answer)."""
    device = registry.get(device_id)
    if device is None or not principal.may_see(device.province):
        raise NotFoundError(f"no device {device_id!r} in the registry")
    return device


def describe(
    devices: Sequence[Device], influx: Influx, store: AlertStore, offline_after_s: float, *, one: bool = False
) -> list[DeviceOut]:
    """State of ``devices`` from InfluxDB (3 queries) and the alert store."""
    now = now_ms()
    since = now - LOOKBACK_MS
    only = [d.id for d in devices] if one else None
    seen = influx.last("seq", (*TELEMETRY, STATUS), since, only)
    status = influx.last("online", (STATUS,), since, only)
    battery = influx.last("battery_v", (STATUS, *(k for k in TELEMETRY if k != Kind.CAMERA.value)), since, only)
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
                status=device_state(last_seen, st, now, offline_after_s * 1000),
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


@router.get("", response_model=list[DeviceOut], summary="List devices with their state")
def list_devices(
    principal: Reader,
    registry: RegistryDep,
    influx: InfluxDep,
    store: StoreDep,
    settings: SettingsDep,
    province: ProvinceQuery = None,
    district: DistrictQuery = None,
    kind: KindQuery = None,
    site: SiteQuery = None,
) -> list[DeviceOut]:
    """Registered devices (filter by province, district, kind, site) with status, battery and alerts."""
    chosen = select(registry.devices, principal, province=province, district=district, kind=kind, site=site)
    if not chosen:
        return []
    return describe(chosen, influx, store, settings.api_offline_after_s)


@router.get(
    "/{device_id}",
    response_model=DeviceDetail,
    summary="One device with its state and fields",
    responses={404: {"model": ErrorBody}, 403: {"model": ErrorBody}},
)
def get_device(
    device_id: DeviceIdPath,
    principal: Reader,
    registry: RegistryDep,
    influx: InfluxDep,
    store: StoreDep,
    settings: SettingsDep,
) -> DeviceDetail:
    """One registered device, its state, and the telemetry fields its kind reports."""
    device = visible_device(registry, principal, device_id)
    state = describe([device], influx, store, settings.api_offline_after_s, one=True)[0]
    fields = [
        FieldOut(name=f.name, unit=f.unit, description=f.description, min=f.lo, max=f.hi)
        for f in TELEMETRY_FIELDS[device.kind]
    ]
    return DeviceDetail(**state.model_dump(), fields=fields)
