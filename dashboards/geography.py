"""Where things are: the districts' map positions and their order from the sea inland.

InfluxDB holds a station's tags (province, district, site, crop), not its coordinates or its
distance from the sea: those live in the fleet registry and in :mod:`contract.geography`. The
dashboards take them from :mod:`contract.geography` at export time, for every seed district:

* a *gazetteer* (Grafana's lookup file: key → latitude, longitude) that places each station at
  its district on the overview map (:func:`gazetteer`, served by Grafana at
  :data:`GAZETTEER_PATH`);
* a fixed *seaward-first order*: renaming every district's series to
  ``"005 km · <station> · Gò Công Đông (Tiền Giang)"`` and sorting by that name lists stations by
  distance inland (:func:`inland_order`). A district missing from the seed geography keeps its
  slug and sorts after the numbered ones.
"""

from __future__ import annotations

import json
from typing import Final

from grafana_foundation_sdk.models import dashboard as model

from contract.geography import PROVINCES, District, Province

GAZETTEER_FILE: Final = "districts.json"
GAZETTEER_PATH: Final = f"public/gazetteer/mekong-ioc/{GAZETTEER_FILE}"
"""Where Grafana serves the gazetteer (compose mounts grafana/gazetteer/ there)."""


def districts() -> list[tuple[Province, District]]:
    """Every seed district with its province, seaward first (then by name)."""
    pairs = [(p, d) for p in PROVINCES for d in p.districts]
    return sorted(pairs, key=lambda pd: (pd[1].km_from_sea, pd[1].slug))


def km_label(district: District) -> str:
    """``"005 km"``: zero-padded so that sorting the text sorts the distance."""
    return f"{round(district.km_from_sea):03d} km"


def gazetteer() -> str:
    """The districts as a Grafana gazetteer (the legacy worldmap list: key, latitude, longitude)."""
    entries = [
        {
            "key": d.slug,
            "name": d.name,
            "province": p.name,
            "latitude": d.lat,
            "longitude": d.lon,
            "km_from_sea": d.km_from_sea,
        }
        for p, d in districts()
    ]
    return json.dumps(entries, ensure_ascii=False, indent=1) + "\n"


def inland_order(*, by_station: bool) -> list[model.DataTransformerConfig]:
    """Transformations that list series seaward first.

    The query's alias must be ``$tag_district`` (``by_station=False``) or
    ``$tag_district/$tag_device_id`` (``by_station=True``). Each series is renamed to its
    district's distance and name, reduced to one row (max and last) and the rows sorted by name.
    """
    steps: list[model.DataTransformerConfig] = []
    for p, d in districts():
        place = f"{d.name} ({p.name})"
        if by_station:
            regex, pattern = f"^{d.slug}/(.+)$", f"{km_label(d)} · $1 · {place}"
        else:
            regex, pattern = f"^{d.slug}$", f"{km_label(d)} · {place}"
        steps.append(
            model.DataTransformerConfig(id_val="renameByRegex", options={"regex": regex, "renamePattern": pattern})
        )
    steps.append(
        model.DataTransformerConfig(
            id_val="reduce",
            options={"mode": "seriesToRows", "reducers": ["max", "lastNotNull"], "includeTimeField": False},
        )
    )
    steps.append(model.DataTransformerConfig(id_val="sortBy", options={"sort": [{"field": "Field", "desc": False}]}))
    return steps
