"""The sources file: which topics carry which payload format, and how a device model names its fields.

``ioc ingest --sources FILE`` (``IOC_SOURCES``) reads it once at start-up; without one, ingest takes
its own ``ioc/v1`` contract alone. Every mistake is refused on load, naming the file, the entry and
the field, like the rule pack::

    version: 1
    sources:
      - format: ioc_v1                      # the native contract (topics default per format)
      - format: chirpstack_v4
        topics: ["application/+/device/+/event/+"]
    models:
      dragino_lse01:                        # a device's `model` in the registry
        fields:
          ec_us_cm: conduct_SOIL            # our field: the codec's key (a dotted path)
          temp_c: {path: temp_SOIL, unit: Cel}
          battery_v: {path: Bat, unit: V}
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from contract.fields import STATUS_FIELDS, TELEMETRY_FIELDS, FieldSpec
from contract.yamltext import safe_load
from ingest.errors import ConfigError
from ingest.sources.units import converter

Format = Literal["ioc_v1", "chirpstack_v4", "tts_v3", "sparkplug_b", "senml", "thingsboard", "influx_lp", "json_map"]
"""The payload formats ingest decodes."""

DEFAULT_TOPICS: Final[dict[str, tuple[str, ...]]] = {
    "ioc_v1": ("ioc/v1/#",),
    "chirpstack_v4": ("application/+/device/+/event/+",),
    "tts_v3": ("v3/+/devices/+/up",),
    "sparkplug_b": ("spBv1.0/#",),
    "thingsboard": (
        "v1/devices/+/telemetry",
        "v1/devices/+/attributes",
        "v1/gateway/telemetry",
        "v1/gateway/attributes",
        "v1/gateway/connect",
        "v1/gateway/disconnect",
    ),
    "influx_lp": ("telegraf/+/+",),
}
"""Where each format's publisher puts it by default (ChirpStack's template is configurable; SenML
and vendor JSON have no standard topic: their sources must name theirs)."""

Scheme = Literal["id", "dev_eui", "tts_device_id", "sparkplug", "thingsboard", "senml"]
"""Which of the registry's names a payload's device name is: its own id, or an external id."""

TimeFormat = Literal["unix_s", "unix_ms", "unix_us", "unix_ns", "iso8601"]
"""How a payload writes its time: a Unix number in a unit, or an RFC 3339 / ISO 8601 text."""

Precision = Literal["s", "ms", "us", "ns"]
"""Line protocol's timestamp unit, which the line itself does not say."""

FIELD_SPECS: Final[dict[str, FieldSpec]] = {
    s.name: s for specs in (*TELEMETRY_FIELDS.values(), STATUS_FIELDS) for s in specs
}
"""Every field a device may report, by name (a name has one unit whatever the kind)."""


def _topic_filter(value: str) -> str:
    """An MQTT topic filter: ``+`` a whole level, ``#`` the whole last level (MQTT 5 §4.7.1)."""
    levels = value.split("/")
    for i, level in enumerate(levels):
        if ("#" in level and (level != "#" or i != len(levels) - 1)) or ("+" in level and level != "+"):
            raise ValueError(f"{value!r} is not an MQTT topic filter: + takes a whole level, # the whole last one")
    return value


TopicFilter = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_topic_filter)]


KeyPath = Annotated[str, Field(min_length=1, max_length=200)]
"""A key of a decoded object; dots go into nested objects (``uplink.rssi``)."""


class DeviceRef(BaseModel):
    """Where a message names its device (exactly one of a topic level or a payload path), and which
    of the registry's names that is (``scheme``): the device is always one the registry issued."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    topic_level: int | None = Field(None, ge=0, le=31)
    """The topic level holding it, from 0 (``vendor/{device}/data``: 1)."""
    path: KeyPath | None = None
    """The payload's key holding it (for ``influx_lp``: a tag key)."""
    scheme: Scheme = "id"

    @model_validator(mode="after")
    def _one_place(self) -> DeviceRef:
        if (self.topic_level is None) == (self.path is None):
            raise ValueError("give exactly one of topic_level and path")
        return self


class TimeRef(BaseModel):
    """Where a payload holds its reading's time, and how it writes it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: KeyPath
    format: TimeFormat = "unix_ms"


class Records(BaseModel):
    """A payload whose readings are an array of ``{id, t, v}`` records (one quantity each)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field("", max_length=200)
    """Where the array is; empty: the payload itself is the array."""
    name: KeyPath = "id"
    """The record's key naming its quantity (the key a model's ``fields`` map)."""
    value: KeyPath = "v"
    time: KeyPath | None = None
    """The record's own time (in ``time.format``); None: the message's."""


_OPTIONS: Final[dict[str, tuple[str, ...]]] = {
    "model": ("chirpstack_v4", "tts_v3", "sparkplug_b", "senml", "thingsboard", "influx_lp", "json_map"),
    "precision": ("influx_lp",),
    "device": ("influx_lp", "json_map", "senml"),
    "time": ("json_map",),
    "seq": ("json_map",),
    "records": ("json_map",),
    "rebirth": ("sparkplug_b",),
}
"""Which formats take which option."""


class Source(BaseModel):
    """Topics that carry one payload format, and the options that format takes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Format
    topics: tuple[TopicFilter, ...] = ()
    """MQTT topic filters (``+`` and ``#`` wildcards); empty: the format's default topics."""
    model: str | None = Field(None, min_length=1, max_length=64)
    """The ``models`` entry these payloads are read with; None: each device's own model."""
    precision: Precision | None = None
    """``influx_lp`` (required): the unit of the lines' timestamps."""
    device: DeviceRef | None = None
    """``influx_lp`` and ``json_map`` (required): where a message names its device; ``senml``
    (optional): the device the topic names, the only one its packs may speak for."""
    time: TimeRef | None = None
    """``json_map``: the reading's time; None: ingest's receive time."""
    seq: KeyPath | None = None
    """``json_map``: a frame counter (the reading's ``seq``)."""
    records: Records | None = None
    """``json_map``: readings as an array of ``{id, t, v}`` records."""
    rebirth: bool = True
    """``sparkplug_b``: ask an edge node to rebirth (NCMD) when its data cannot be read."""

    @model_validator(mode="after")
    def _options_of_the_format(self) -> Source:
        for option, formats in _OPTIONS.items():
            given = option in self.model_fields_set
            if given and self.format not in formats:
                raise ValueError(f"{option}: only for {', '.join(formats)}, not {self.format}")
        if not self.topics and self.format not in DEFAULT_TOPICS:
            raise ValueError(f"topics: {self.format} has no standard topic; name the topics it arrives on")
        if self.format == "influx_lp" and self.precision is None:
            raise ValueError("precision: line protocol does not say its timestamps' unit; give s, ms, us or ns")
        if self.format in ("influx_lp", "json_map") and self.device is None:
            raise ValueError(f"device: say where a {self.format} message names its device (topic_level or path)")
        return self

    @property
    def filters(self) -> tuple[str, ...]:
        return self.topics or DEFAULT_TOPICS[self.format]


class FieldMap(BaseModel):
    """Where a model's payload holds one of our fields, and in which unit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("path", mode="before")
    @classmethod
    def _one_path(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    path: tuple[Annotated[str, Field(min_length=1, max_length=200)], ...] = Field(min_length=1, max_length=8)
    """Keys of the decoded object, the first present wins (codec versions rename keys); dots go into
    nested objects (``temperature.a``). One key may be given as a plain string."""
    unit: str | None = None
    """The payload's unit; None: already ours."""


class Model(BaseModel):
    """How the payloads of one device model name our fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fields: dict[str, FieldMap]

    @field_validator("fields", mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: {"path": v} if isinstance(v, str | list) else v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _known_fields_and_units(self) -> Model:
        for name, m in self.fields.items():
            spec = FIELD_SPECS.get(name)
            if spec is None or not spec.numeric:
                raise ValueError(f"fields.{name}: no numeric field {name!r} in the contract (docs/contract.md)")
            if m.unit is not None and converter(spec.unit, m.unit) is None:
                raise ValueError(f"fields.{name}: cannot convert {m.unit!r} to {spec.unit!r}")
        return self


class SourcesFile(BaseModel):
    """A whole sources file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    sources: tuple[Source, ...] = Field(min_length=1)
    models: dict[str, Model] = {}

    @model_validator(mode="after")
    def _one_format_per_filter(self) -> SourcesFile:
        seen: dict[str, str] = {}
        for i, s in enumerate(self.sources):
            if s.model is not None and s.model not in self.models:
                raise ValueError(f"sources.{i}.model: no model {s.model!r} under models:")
            for f in s.filters:
                if f in seen:  # the first source would take every message: the second, never used
                    raise ValueError(f"topic filter {f!r} is given to both {seen[f]} and {s.format}")
                seen[f] = s.format
        return self

    @property
    def external_schemes(self) -> frozenset[str]:
        """The registry's external id schemes its sources name devices by (none: the native contract
        alone, which names devices by their own id); ingest keeps and indexes only these."""
        schemes = {scheme for s in self.sources for scheme in FORMAT_SCHEMES[s.format]}
        schemes.update(s.device.scheme for s in self.sources if s.device is not None and s.device.scheme != "id")
        return frozenset(schemes)


FORMAT_SCHEMES: Final[dict[Format, tuple[Scheme, ...]]] = {
    "ioc_v1": (), "chirpstack_v4": ("dev_eui",), "tts_v3": ("tts_device_id", "dev_eui"),
    "sparkplug_b": ("sparkplug",), "senml": ("senml",), "thingsboard": ("thingsboard",), "influx_lp": (),
    "json_map": (),
}  # fmt: skip
"""The external id schemes each format's decoder looks devices up by (besides a ``device`` option's)."""

NATIVE_ONLY: Final = SourcesFile(sources=(Source(format="ioc_v1"),))
"""What ingest takes without a sources file."""


def parse_sources(raw: Any, source: str) -> SourcesFile:
    """Validate parsed YAML; :class:`ConfigError` naming ``source``, the entry and the field."""
    try:
        return SourcesFile.model_validate(raw)
    except ValidationError as exc:
        problems = []
        errors = exc.errors()
        if any(e["type"] != "too_short" for e in errors):  # an entry refused leaves the list short too
            errors = [e for e in errors if e["type"] != "too_short"]
        for e in errors[:10]:
            where = ".".join(str(p) for p in e["loc"])
            message = str(e["msg"]).removeprefix("Value error, ")
            problems.append(f"{source}: {where + ': ' if where else ''}{message}")
        raise ConfigError("; ".join(problems)) from None


def load_sources(path: Path) -> SourcesFile:
    """Read and validate a sources file (:class:`ConfigError` with the file, entry and field)."""
    try:
        raw = safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the sources file ({exc.strerror}) (--sources, IOC_SOURCES)") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}) (--sources, IOC_SOURCES)") from None
    return parse_sources(raw, str(path))
