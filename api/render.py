"""Pure renderings: CSV tables and the stations GeoJSON (RFC 7946)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from contract.fleet import Device

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
GEOJSON_MEDIA_TYPE = "application/geo+json"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return "" if not math.isfinite(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    text = str(value)
    # A spreadsheet would run "=…" as a formula (CSV injection); numbers above are never text.
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


def csv_text(columns: Sequence[str], records: Iterable[Mapping[str, Any]]) -> str:
    """A CSV table (RFC 4180, CRLF line ends) with a header row; missing values are empty cells."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for record in records:
        writer.writerow([_cell(record.get(c)) for c in columns])
    return buffer.getvalue()


def station_feature(device: Device) -> dict[str, Any]:
    """One device as a GeoJSON Feature: a Point at [lon, lat] (GeoJSON's order)."""
    return {
        "type": "Feature",
        "id": device.id,
        "geometry": {"type": "Point", "coordinates": [device.lon, device.lat]},
        "properties": {
            "id": device.id,
            "kind": device.kind.value,
            "province": device.province,
            "district": device.district,
            "site": device.site,
            "crop": device.crop,
        },
    }


def stations_geojson(devices: Iterable[Device]) -> dict[str, Any]:
    """The registry's devices as a GeoJSON FeatureCollection."""
    return {"type": "FeatureCollection", "features": [station_feature(d) for d in devices]}
