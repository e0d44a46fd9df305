"""The fleet file: the device registry (YAML), validated once on load.

The registry is the only source of a device's tags (province, district, site, crop): nothing in a
payload can change them. Simulator hints (``km_from_sea``, ``coast``, ``faults``) live beside the
registry facts because they describe the same physical place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final, Literal, NamedTuple, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from contract.fields import Kind
from contract.yamltext import safe_load

Site = Literal["river", "canal", "pond", "field", "sluice", "kitchen", "road", "market", "school"]
Crop = Literal["rice", "durian", "fruit", "pineapple", "shrimp", "pangasius", "none"]
Fault = Literal["drift", "stuck", "spikes", "gaps", "battery_sag", "offline"]
SITES: Final = get_args(Site)
CROPS: Final = get_args(Crop)
FAULTS: Final = get_args(Fault)

DeviceState = Literal["active", "suspended", "decommissioned"]
DEVICE_STATES: Final = get_args(DeviceState)

DeviceId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_]{0,63}$")]
SENML_SEPARATORS = ":/._-"
"""What ends a SenML base name without naming anything (``urn:dev:ow:10e2073a01080063:``)."""
EXTERNAL_ID_PATTERN = r"^[\x21-\x7e]([\x20-\x7e]{0,126}[\x21-\x7e])?$"
"""Printable ASCII, inner spaces allowed (ThingsBoard names "Device A", Sparkplug ids "Edge Node 1")."""
ExternalId = Annotated[str, Field(min_length=1, max_length=128, pattern=EXTERNAL_ID_PATTERN)]


class FleetError(ValueError):
    """The fleet file is missing or invalid; the message names the file and the problem."""


class ExternalIds(BaseModel):
    """The ids a device has in other systems: how a payload in their format names it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dev_eui: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")] | None = Field(
        None, description="LoRaWAN DevEUI, 16 lower-case hex digits"
    )
    tts_device_id: ExternalId | None = Field(None, description="The Things Stack device id")
    sparkplug: ExternalId | None = Field(None, description="Sparkplug B group/edge node[/device]")
    thingsboard: ExternalId | None = Field(None, description="ThingsBoard device name or access user")
    senml: ExternalId | None = Field(None, description="SenML base name (bn)")

    @model_validator(mode="before")
    @classmethod
    def _lower_eui(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("dev_eui"), str):
            data = {**data, "dev_eui": data["dev_eui"].lower()}
        if isinstance(data, dict) and isinstance(data.get("senml"), str):  # as ingest reads a base name
            data = {**data, "senml": data["senml"].rstrip(SENML_SEPARATORS)}
        return data


class DeviceTags(NamedTuple):
    """What ingest and the rule engine need of a device — identity, kind, tags, state, and how its
    payloads name it (model, external ids) — and nothing more; the field names are the registry's
    column names."""

    id: str
    kind: Kind
    province: str
    district: str
    site: str
    crop: str
    state: str
    model: str = "ioc_v1"
    dev_eui: str | None = None
    tts_device_id: str | None = None
    sparkplug: str | None = None
    thingsboard: str | None = None
    senml: str | None = None
    lat: float | None = None
    """WGS84 degrees (None: unknown), for alerts by point and radius."""
    lon: float | None = None

    @property
    def active(self) -> bool:
        return self.state == "active"


class Device(BaseModel):
    """One registered device."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: DeviceId
    kind: Kind
    province: Slug
    district: Slug
    site: Site
    crop: Crop = "none"
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    km_from_sea: float = Field(default=50.0, ge=0, le=500)
    coast: Literal["east", "west"] = "east"
    faults: tuple[Fault, ...] = ()
    model: Slug = Field("ioc_v1", description="hardware and payload format it speaks")
    external_ids: ExternalIds = ExternalIds()
    state: DeviceState = Field("active", description="only active devices are stored; others are dead-lettered")

    @property
    def active(self) -> bool:
        return self.state == "active"

    def tags(self) -> DeviceTags:
        x = self.external_ids
        return DeviceTags(
            self.id, self.kind, self.province, self.district, self.site, self.crop, self.state,
            self.model, x.dev_eui, x.tts_device_id, x.sparkplug, x.thingsboard, x.senml, self.lat, self.lon,
        )  # fmt: skip


class Fleet(BaseModel):
    """The device registry."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    devices: tuple[Device, ...]

    @model_validator(mode="after")
    def _unique_ids(self) -> Fleet:
        seen: set[str] = set()
        for d in self.devices:
            if d.id in seen:
                raise ValueError(f"device id {d.id!r} appears twice")
            seen.add(d.id)
        return self

    def by_id(self) -> dict[str, Device]:
        return {d.id: d for d in self.devices}


def load_fleet(path: Path) -> Fleet:
    """Read and validate a fleet file; raise :class:`FleetError` with a clear message."""
    try:
        raw = safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FleetError(f"{path}: cannot read the fleet file ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise FleetError(f"{path}: the fleet file is not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        raise FleetError(f"{path}: not valid YAML ({exc})") from exc
    try:
        return Fleet.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:10])
        raise FleetError(f"{path}: invalid fleet file: {problems}") from exc


def fleet_yaml(fleet: Fleet) -> str:
    """``fleet`` as YAML: one mapping per device, stable key order, external ids only where set."""
    data = fleet.model_dump(mode="json")
    for d in data["devices"]:
        ids = {k: v for k, v in d.pop("external_ids").items() if v is not None}
        if ids:
            d["external_ids"] = ids
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=120)


def dump_fleet(fleet: Fleet, path: Path) -> None:
    """Write ``fleet`` as a YAML fleet file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(fleet_yaml(fleet), encoding="utf-8")
