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

Format = Literal["ioc_v1", "chirpstack_v4", "tts_v3"]
"""The payload formats this version decodes."""

PLANNED: Final = ("sparkplug_b", "senml", "thingsboard", "influx_lp", "json_map")
"""Formats named by the sources design that this version does not decode yet (refused on load)."""

DEFAULT_TOPICS: Final[dict[str, tuple[str, ...]]] = {
    "ioc_v1": ("ioc/v1/#",),
    "chirpstack_v4": ("application/+/device/+/event/+",),
    "tts_v3": ("v3/+/devices/+/up",),
}
"""Where each format's publisher puts it by default (ChirpStack's template is configurable)."""

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


class Source(BaseModel):
    """Topics that carry one payload format."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Format
    topics: tuple[TopicFilter, ...] = ()
    """MQTT topic filters (``+`` and ``#`` wildcards); empty: the format's default topics."""

    @field_validator("format", mode="before")
    @classmethod
    def _planned(cls, value: Any) -> Any:
        if value in PLANNED:
            raise ValueError(
                f"format {value!r} is planned, not decoded by this version: use ioc_v1, chirpstack_v4, tts_v3"
            )
        return value

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
        for s in self.sources:
            for f in s.filters:
                if seen.setdefault(f, s.format) != s.format:
                    raise ValueError(f"topic filter {f!r} is given to both {seen[f]} and {s.format}")
        return self


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
