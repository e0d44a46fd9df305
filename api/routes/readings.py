"""Readings: the newest per device and per area, and one field's history downsampled in InfluxDB."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Response
from pydantic import BaseModel, Field

from api.auth import Reader
from api.deps import InfluxDep, RegistryDep, SettingsDep
from api.errors import ERROR_RESPONSES, ErrorBody, Invalid, NotFoundError
from api.influx import EVERY_MS, Every, Influx
from api.render import CSV_MEDIA_TYPE, csv_text
from api.routes.devices import (
    DEVICE_ID,
    DeviceIdPath,
    DistrictQuery,
    KindName,
    KindQuery,
    ProvinceQuery,
    SiteQuery,
    matching,
    visible_device,
)
from api.times import LOOKBACK_PATTERN, MAX_LOOKBACK_MS, TIME_HELP, TIME_PATTERN, iso, parse_time_ms
from contract.clock import now_ms
from contract.fields import TELEMETRY_FIELDS, Kind, field_specs
from contract.fleet import Device
from rules.pack import parse_duration_ms
from storage import layout

router = APIRouter(prefix="/v1/readings", tags=["readings"], responses=ERROR_RESPONSES)

Format = Literal["json", "csv"]
FormatQuery = Annotated[Format | None, Query(description="csv, or send `Accept: text/csv`")]
AcceptHeader = Annotated[str | None, Header(include_in_schema=False)]
SinceQuery = Annotated[
    str, Query(pattern=LOOKBACK_PATTERN, description="look this far back for the newest reading: 90m, 2h, 7d (≤ 366d)")
]
FIELD_NAMES = sorted({f.name for fields in TELEMETRY_FIELDS.values() for f in fields})
FieldPath = Annotated[
    str,
    Path(
        pattern=r"^[a-z0-9_]{1,64}$",
        json_schema_extra={"enum": FIELD_NAMES},
        description="a telemetry field of the device's kind (another is 404: no such history)",
    ),
]
TimeQuery = Annotated[str, Query(pattern=TIME_PATTERN, description=TIME_HELP)]
EVERY_HELP = "bucket size; mean, min and max per bucket; buckets are cut at local midnight (UTC+7): 1d is a local day"
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "JSON, or CSV when asked for"},
    403: {"model": ErrorBody},
    422: {"model": ErrorBody},
}


class LatestReading(BaseModel):
    """A device's newest telemetry."""

    device_id: str
    kind: KindName
    province: str
    district: str
    site: str
    crop: str
    time: str
    time_ms: int
    values: dict[str, int | float | None] = Field(description="field → value, units in the names (contract fields)")


class AreaField(BaseModel):
    """One field over the newest readings of an area's devices."""

    province: str
    district: str | None
    kind: KindName
    field: str
    unit: str
    devices: int
    min: float
    mean: float
    max: float
    newest: str
    newest_ms: int


class Point(BaseModel):
    time: str
    time_ms: int = Field(description="start of the bucket, epoch ms (6h and 1d buckets start at local midnight, UTC+7)")
    mean: float | None
    min: float | None
    max: float | None
    count: int


class History(BaseModel):
    """One field of one device, downsampled per ``every``."""

    device_id: str
    kind: KindName
    field: str
    unit: str
    every: Every
    from_: str = Field(alias="from")
    to: str
    from_ms: int
    to_ms: int
    points: list[Point]

    model_config = {"populate_by_name": True}


def wants_csv(fmt: str | None, accept: str | None) -> bool:
    """CSV if ``format=csv``, or if ``Accept`` prefers text/csv and no format was given."""
    if fmt is not None:
        return fmt == "csv"
    return accept is not None and "text/csv" in accept.lower()


def csv_response(text: str, filename: str) -> Response:
    return Response(
        text, media_type=CSV_MEDIA_TYPE, headers={"content-disposition": f'attachment; filename="{filename}"'}
    )


def _since(text: str) -> int:
    ms = parse_duration_ms(text)
    if ms > MAX_LOOKBACK_MS:  # the pattern already says so
        raise Invalid(f"since may be at most {MAX_LOOKBACK_MS // 86_400_000}d")
    return now_ms() - ms


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def latest_readings(
    devices: list[Device],
    influx: Influx,
    since_ms: int,
    *,
    province: str | None = None,
    district: str | None = None,
    site: str | None = None,
) -> list[LatestReading]:
    """The newest telemetry of each of ``devices`` (one query per kind)."""
    by_id = {d.id: d for d in devices}
    out: list[LatestReading] = []
    for kind in Kind:
        if not any(d.kind is kind for d in devices):
            continue
        tags = {layout.PROVINCE: province, layout.DISTRICT: district, layout.SITE: site}
        only = [d.id for d in devices] if len(devices) == 1 else None
        fields = [f.name for f in TELEMETRY_FIELDS[kind]]
        for row in influx.latest(kind.value, since_ms, tags, only):
            device = by_id.get(row.get(layout.DEVICE_ID, ""))
            if device is None or device.kind is not kind:
                continue
            out.append(
                LatestReading(
                    device_id=device.id,
                    kind=kind.value,
                    province=device.province,
                    district=device.district,
                    site=device.site,
                    crop=device.crop,
                    time=iso(int(row["time"])),
                    time_ms=int(row["time"]),
                    values={f: _number(row.get(f)) for f in fields if row.get(f) is not None},
                )
            )
    out.sort(key=lambda r: r.device_id)
    return out


def area_summary(readings: list[LatestReading], level: Literal["province", "district"]) -> list[AreaField]:
    """Min, mean and max of each field over an area's newest readings."""
    groups: dict[tuple[str, str | None, str, str], list[tuple[float, int]]] = {}
    for r in readings:
        district = r.district if level == "district" else None
        for name, value in r.values.items():
            if value is not None:
                groups.setdefault((r.province, district, r.kind, name), []).append((value, r.time_ms))
    units = {(k.value, f.name): f.unit for k in Kind for f in TELEMETRY_FIELDS[k]}
    out = []
    for (province, district, kind, name), values in sorted(groups.items(), key=lambda kv: tuple(str(x) for x in kv[0])):
        numbers = [v for v, _ in values]
        newest = max(t for _, t in values)
        out.append(
            AreaField(
                province=province,
                district=district,
                kind=kind,
                field=name,
                unit=units.get((kind, name), ""),
                devices=len(values),
                min=min(numbers),
                mean=sum(numbers) / len(numbers),
                max=max(numbers),
                newest=iso(newest),
                newest_ms=newest,
            )
        )
    return out


@router.get(
    "/latest",
    response_model=list[LatestReading],
    summary="Newest reading of each device",
    responses={**CSV_RESPONSE, 404: {"model": ErrorBody}},
)
def latest(
    principal: Reader,
    registry: RegistryDep,
    influx: InfluxDep,
    province: ProvinceQuery = None,
    district: DistrictQuery = None,
    kind: KindQuery = None,
    site: SiteQuery = None,
    device_id: Annotated[str | None, Query(pattern=DEVICE_ID, description="one device")] = None,
    since: SinceQuery = "7d",
    format: FormatQuery = None,
    accept: AcceptHeader = None,
) -> list[LatestReading] | Response:
    """Each matching device's newest telemetry (JSON, or CSV with `format=csv` / `Accept: text/csv`)."""
    start = _since(since)
    devices = list(matching(registry.devices, principal, province=province, district=district, kind=kind, site=site))
    if device_id is not None:
        visible_device(registry, principal, device_id)
        devices = [d for d in devices if d.id == device_id]
    readings = (
        latest_readings(devices, influx, start, province=province, district=district, site=site) if devices else []
    )
    if wants_csv(format, accept):
        names = list(dict.fromkeys(f.name for k in Kind for f in TELEMETRY_FIELDS[k]))
        present = [n for n in names if any(n in r.values for r in readings)]
        columns = ["device_id", "kind", "province", "district", "site", "crop", "time", "time_ms", *present]
        records = [{**r.model_dump(exclude={"values"}), **r.values} for r in readings]
        return csv_response(csv_text(columns, records), "latest.csv")
    return readings


@router.get("/areas", response_model=list[AreaField], summary="Newest readings summarised per area")
def areas(
    principal: Reader,
    registry: RegistryDep,
    influx: InfluxDep,
    level: Annotated[Literal["province", "district"], Query(description="group by province or district")] = "province",
    province: ProvinceQuery = None,
    kind: KindQuery = None,
    since: SinceQuery = "7d",
) -> list[AreaField]:
    """Per province (or district) and field: how many devices, min, mean and max of their newest values."""
    start = _since(since)
    devices = list(matching(registry.devices, principal, province=province, kind=kind))
    readings = latest_readings(devices, influx, start, province=province) if devices else []
    return area_summary(readings, level)


@router.get(
    "/{device_id}/{field}",
    response_model=History,
    summary="History of one field, downsampled",
    responses={
        **CSV_RESPONSE,
        404: {"model": ErrorBody, "description": "no such device, or its kind has no such field"},
        422: {"model": ErrorBody, "description": "invalid, `to` not after `from`, or over IOC_API_MAX_POINTS buckets"},
    },
)
def history(
    device_id: DeviceIdPath,
    field: FieldPath,
    principal: Reader,
    registry: RegistryDep,
    influx: InfluxDep,
    settings: SettingsDep,
    from_: Annotated[str, Query(alias="from", pattern=TIME_PATTERN, description=f"start: {TIME_HELP}")] = "-24h",
    to: Annotated[str, Query(pattern=TIME_PATTERN, description="end (exclusive), as `from`")] = "now",
    every: Annotated[Every, Query(description=EVERY_HELP)] = "1h",
    format: FormatQuery = None,
    accept: AcceptHeader = None,
) -> History | Response:
    """Mean, min, max and count per `every` bucket between `from` and `to` (JSON or CSV)."""
    device = visible_device(registry, principal, device_id)
    specs = field_specs(device.kind)
    spec = specs.get(field)
    if spec is None:
        raise NotFoundError(f"{field!r} is not a field of {device.kind.value} devices", {"fields": sorted(specs)})
    now = now_ms()
    try:
        start, end = parse_time_ms(from_, now=now), parse_time_ms(to, now=now)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    if end <= start:
        raise Invalid("`to` must be after `from`")
    buckets = (end - start) / EVERY_MS[every]
    if buckets > settings.api_max_points:
        raise Invalid(
            f"{int(buckets)} buckets of {every} is more than {settings.api_max_points}: use a coarser `every` or a "
            "shorter range"
        )
    points = [
        Point(time=iso(b.time_ms), time_ms=b.time_ms, mean=b.mean, min=b.min, max=b.max, count=b.count)
        for b in influx.history(device.kind.value, device.id, spec.name, start, end, every)
    ]
    if wants_csv(format, accept):
        columns = ["time", "time_ms", "mean", "min", "max", "count"]
        return csv_response(csv_text(columns, (p.model_dump() for p in points)), f"{device.id}_{spec.name}_{every}.csv")
    return History(
        device_id=device.id,
        kind=device.kind.value,
        field=spec.name,
        unit=spec.unit,
        every=every,
        from_=iso(start),
        to=iso(end),
        from_ms=start,
        to_ms=end,
        points=points,
    )
