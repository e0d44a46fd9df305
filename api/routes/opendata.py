"""Open data: the station registry as GeoJSON, for public open-data portals and maps."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.auth import Reader
from api.deps import RegistryDep
from api.errors import ERROR_RESPONSES
from api.render import GEOJSON_MEDIA_TYPE, stations_geojson
from api.routes.devices import KindQuery, ProvinceQuery

router = APIRouter(prefix="/v1/opendata", tags=["open data"], responses=ERROR_RESPONSES)


class Geometry(BaseModel):
    type: Literal["Point"]
    coordinates: list[float] = Field(min_length=2, max_length=2, description="longitude, latitude (GeoJSON order)")


class StationProperties(BaseModel):
    id: str
    kind: str
    province: str
    district: str
    site: str
    crop: str


class Feature(BaseModel):
    type: Literal["Feature"]
    id: str
    geometry: Geometry
    properties: StationProperties


class FeatureCollection(BaseModel):
    type: Literal["FeatureCollection"]
    features: list[Feature]


@router.get(
    "/stations.geojson",
    response_model=FeatureCollection,
    summary="Stations as GeoJSON",
    responses={200: {"content": {GEOJSON_MEDIA_TYPE: {}}}},
)
def stations(_: Reader, registry: RegistryDep, province: ProvinceQuery = None, kind: KindQuery = None) -> JSONResponse:
    """Every registered station (decommissioned ones left out) as a GeoJSON Point (RFC 7946) with id, kind,
    province, district, site, crop."""
    devices = [
        d
        for d in registry.devices
        if d.state != "decommissioned"
        and (province is None or d.province == province)
        and (kind is None or d.kind.value == kind)
    ]
    return JSONResponse(stations_geojson(devices), media_type=GEOJSON_MEDIA_TYPE)
