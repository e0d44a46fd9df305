"""Rule packs: rules as data (YAML), validated once on load.

A rule reads one kind of device, selects devices by their registry tags, and fires when its
condition holds. Every field a rule reads must be one its devices send (:mod:`contract.fields`)
or one derived from them (:mod:`rules.derived`), every camera event one cameras report: a typo
would otherwise load and never fire. Errors name the file, the rule and the problem::

    rules/packs/mekong.yaml: rule SAL_FRUIT: condition.op: Input should be '<', '<=', '>' or '>='
    my.yaml: rule SAL_FRUIT: condition.field: no field 'salnity_ppt' on salinity devices; did you mean salinity_ppt?
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from contract.fields import CAMERA_EVENTS, EVENT_FIELDS, TELEMETRY_FIELDS, Kind
from contract.yamltext import safe_load
from rules.derived import DERIVED
from rules.errors import PackError
from rules.model import Severity

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
PLACEHOLDERS = ("value", "unit", "device", "place", "time", "n", "site")


def parse_duration_ms(text: str | int | float) -> int:
    """``"15m"`` → 900000. Plain numbers are seconds."""
    if isinstance(text, int | float):
        return int(text * 1000)
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration like 30s, 15m, 2h or 7d")
    return int(float(match.group(1)) * _UNIT_MS[match.group(2)])


Duration = Annotated[int, Field(ge=0)]
Op = Literal["<", "<=", ">", ">="]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Timed(_Strict):
    """Durations in the YAML are text ("15m"); in the model, milliseconds."""

    @field_validator("for_ms", "window_ms", "after_ms", "resolve_after_ms", mode="before", check_fields=False)
    @classmethod
    def _duration(cls, v: Any) -> Any:
        return parse_duration_ms(v) if isinstance(v, str | int | float) and not isinstance(v, bool) else v


class Threshold(_Timed):
    """``field op value``; clears when the value is back past ``clear`` (hysteresis)."""

    type: Literal["threshold"]
    field: str
    op: Op
    value: float
    clear: float | None = None
    consecutive: int = Field(1, ge=1, le=1000)
    for_ms: Duration = Field(0, alias="for")

    @model_validator(mode="after")
    def _clear_side(self) -> Threshold:
        if self.clear is not None:
            upward = self.op in (">", ">=")
            if (upward and self.clear > self.value) or (not upward and self.clear < self.value):
                raise ValueError(f"clear {self.clear} must lie on the safe side of {self.value} for {self.op}")
        return self


class Range(_Timed):
    """Fires when the value leaves [low, high]; clears back inside [clear_low, clear_high]."""

    type: Literal["range"]
    field: str
    low: float
    high: float
    clear_low: float | None = None
    clear_high: float | None = None
    consecutive: int = Field(1, ge=1, le=1000)
    for_ms: Duration = Field(0, alias="for")

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        lo = self.clear_low if self.clear_low is not None else self.low
        hi = self.clear_high if self.clear_high is not None else self.high
        if not (self.low <= lo <= hi <= self.high):
            raise ValueError("need low <= clear_low <= clear_high <= high")
        return self


class Window(_Timed):
    """A rolling statistic of the device's recent values (1 h mean, 24 h range…) against a level."""

    type: Literal["window"]
    field: str
    stat: Literal["mean", "min", "max", "range"]
    window_ms: Duration = Field(alias="window")
    op: Op
    value: float
    clear: float | None = None

    @field_validator("window_ms")
    @classmethod
    def _window(cls, v: int) -> int:
        if not 60_000 <= v <= 7 * 86_400_000:
            raise ValueError("window must be between 1m and 7d")
        return v


class Change(_Strict):
    """Today's statistic minus yesterday's (local calendar days, UTC+7) against a level."""

    type: Literal["change"]
    field: str
    stat: Literal["max", "min", "mean"] = "max"
    op: Op
    value: float


class Surge(_Strict):
    """A value at least ``factor`` × the median of the device's previous ``baseline`` values, and ≥ ``min``."""

    type: Literal["surge"]
    field: str
    baseline: int = Field(7, ge=2, le=60)
    factor: float = Field(gt=1)
    min: float = 0.0


class AfterPeak(_Strict):
    """The ``count`` values after a peak ≥ ``peak`` are each below ``fraction`` × the peak."""

    type: Literal["after_peak"]
    field: str
    peak: float
    count: int = Field(3, ge=1, le=30)
    fraction: float = Field(0.5, gt=0, lt=1)


class NoData(_Timed):
    """The device has been silent longer than ``after``, or its will said it went offline."""

    type: Literal["no_data"]
    after_ms: Duration = Field(alias="after")
    offline: bool = True


class Event(_Timed):
    """A camera event of a class, confident enough; resolves after ``resolve_after`` without one."""

    type: Literal["event"]
    event: str
    min_confidence: float = Field(0.0, ge=0, le=1)
    min_frames: int = Field(1, ge=1)
    field: str = "confidence"
    for_ms: Duration = Field(0, alias="for")
    """Fire only once matching events have gone on this long (e.g. flooding for 10 min)."""
    resolve_after_ms: Duration = Field(1_800_000, alias="resolve_after")


Condition = Annotated[
    Threshold | Range | Window | Change | Surge | AfterPeak | NoData | Event, Field(discriminator="type")
]


class Trend(_Timed):
    """A gate: the field's current value is below (falling) or above (rising) its mean over ``window``."""

    field: str
    trend: Literal["falling", "rising"]
    window_ms: Duration = Field(3_600_000, alias="window")


class Tagged(Protocol):
    """A device as a selector sees it: its id, kind and tags (a registry ``Device``, a ``DeviceInfo``)."""

    @property
    def id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def province(self) -> str: ...
    @property
    def district(self) -> str: ...
    @property
    def site(self) -> str: ...
    @property
    def crop(self) -> str: ...


class Selector(_Strict):
    """Which devices a rule reads: every listed tag must match (an empty selector takes all)."""

    province: tuple[str, ...] = ()
    district: tuple[str, ...] = ()
    site: tuple[str, ...] = ()
    crop: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()

    def takes(self, device: Tagged) -> bool:
        """Whether ``device`` has one of the values of every tag listed, and is listed if devices are
        (one device at a time; the engine selects a whole fleet at once, :meth:`rules.engine._Tags.select`)."""
        return (
            (not self.province or device.province in self.province)
            and (not self.district or device.district in self.district)
            and (not self.site or device.site in self.site)
            and (not self.crop or device.crop in self.crop)
            and (not self.devices or device.id in self.devices)
        )


class Messages(_Strict):
    vi: str = Field(min_length=1, max_length=500)
    en: str = Field(min_length=1, max_length=500)

    @field_validator("vi", "en")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        for name in re.findall(r"\{(\w*)[^}]*\}", v):
            if name not in PLACEHOLDERS:
                raise ValueError(f"unknown placeholder {{{name}}}; use {', '.join(PLACEHOLDERS)}")
        return v


class Short(_Strict):
    """The alert in one SMS segment (:mod:`rules.sms`): what, with its value and place, and the action."""

    vi: str = Field(min_length=1, max_length=200)
    action: str = Field(min_length=1, max_length=100)

    @field_validator("vi")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        return Messages._placeholders(v)


class Rule(_Timed):
    """One rule of a pack."""

    id: str = Field(pattern=r"^[A-Z][A-Z0-9_]{1,63}$")
    kind: Literal["water_quality", "salinity", "light_trap", "camera"]
    select: Selector = Selector()
    condition: Condition
    also: tuple[Trend, ...] = ()
    severity: Severity
    critical_above: float | None = None
    """Escalate to critical while the value is beyond this (e.g. NH4 warn > 0.3, crit > 0.9)."""
    unit: str = ""
    unit_vi: str = ""
    """The unit as written in Vietnamese text, when it differs (``con/đêm`` for insects/night)."""
    audience: Literal["farmers", "operators"] = "farmers"
    title: Messages | None = None
    """A short name of what the alert is about, for farmers (the resolve message uses it)."""
    message: Messages
    short: Short | None = None
    """``message_short`` (and ``message_sms`` when the full text is too long): ``{vi} – {action}``;
    without it the full Vietnamese text is cut to one segment (its action may be lost)."""
    source: str = Field(min_length=1)
    enabled: bool = True
    min_gap_ms: Duration = Field(600_000, alias="min_gap")
    """Flapping suppression: after a resolve, no new fire for this long."""
    family: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]{0,63}$")
    """Rules that are levels of one danger (the salinity ladder): for a device, farmers hear only
    the highest active level (:mod:`alerts.notify`). Without one a rule is a family of its own."""
    rank: int = Field(0, ge=0, le=99)
    """This rule's level in its family, 1 = lowest; required with ``family``."""

    def reads(self, device: Tagged) -> bool:
        """Whether this rule, enabled, reads ``device``: one of its kind that its selector takes."""
        return self.enabled and self.kind == device.kind and self.select.takes(device)

    @model_validator(mode="after")
    def _ranked(self) -> Rule:
        if self.family is not None and self.rank < 1:
            raise ValueError(f"family {self.family!r} needs a rank (1 = its lowest level)")
        if self.family is None and self.rank:
            raise ValueError("rank needs a family")
        return self

    @field_validator("severity", mode="before")
    @classmethod
    def _severity(cls, v: Any) -> Any:
        if isinstance(v, str):
            try:
                return Severity[v.upper()]
            except KeyError:
                raise ValueError("severity must be info, warning or critical") from None
        return v

    @field_validator("min_gap_ms", mode="before")
    @classmethod
    def _gap(cls, v: Any) -> Any:
        return parse_duration_ms(v) if isinstance(v, str) else v


class Pack(_Strict):
    """A rule pack file."""

    version: Literal[1] = 1
    name: str
    description: str = ""
    rules: tuple[Rule, ...]

    @model_validator(mode="after")
    def _unique(self) -> Pack:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id} appears twice")
            seen.add(rule.id)
        ranks: dict[tuple[str, int], str] = {}
        for rule in self.rules:
            if rule.family is not None:
                other = ranks.setdefault((rule.family, rule.rank), rule.id)
                if other != rule.id:
                    raise ValueError(f"rules {other} and {rule.id} both have rank {rule.rank} in family {rule.family}")
        return self


def _locate(raw: Any, loc: tuple[int | str, ...]) -> tuple[str, str]:
    """(rule label, path inside the rule) for a pydantic error location."""
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rules = raw.get("rules") if isinstance(raw, dict) else None
        rule_id = None
        if isinstance(rules, list) and loc[1] < len(rules) and isinstance(rules[loc[1]], dict):
            rule_id = rules[loc[1]].get("id")
        label = f"rule {rule_id}" if rule_id else f"rule #{loc[1] + 1}"
        rest = [str(p) for p in loc[2:] if not (isinstance(p, str) and p in _CONDITION_TAGS)]
        return label, ".".join(rest)
    return "pack", ".".join(str(p) for p in loc)


_CONDITION_TAGS = {"threshold", "range", "window", "change", "surge", "after_peak", "no_data", "event"}


def readable_fields(kinds: Iterable[str]) -> tuple[str, ...]:
    """The numeric fields a rule may read on devices of every one of ``kinds``: sent or derived."""
    common: set[str] | None = None
    for kind in kinds:
        sent = {f.name for f in TELEMETRY_FIELDS[Kind(kind)] if f.numeric}
        names = sent | {name for name, d in DERIVED.items() if kind in d.kinds}
        common = names if common is None else common & names
    return tuple(sorted(common or ()))


EVENT_RULE_FIELDS: Final = tuple(f.name for f in EVENT_FIELDS if f.numeric)
"""The numeric fields of a camera event, which an event condition may read."""


def _unknown(what: str, name: str, known: Sequence[str], where: str) -> str:
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"did you mean {' or '.join(close)}?" if close else f"use one of {', '.join(known)}"
    return f"no {what} {name!r} {where}; {hint}"


def _unknown_names(rule: Rule) -> Iterator[tuple[str, str]]:
    """(where in the rule, problem) for each field or camera event the rule names that does not exist."""
    kinds = (rule.kind,)  # the kinds whose readings the rule reads (one per rule today)
    fields = readable_fields(kinds)
    on = f"on {' and '.join(kinds)} devices"
    c = rule.condition
    if isinstance(c, Event):
        if rule.kind != Kind.CAMERA.value:
            yield "condition.type", "event conditions read camera events: use kind: camera"
        if c.event not in CAMERA_EVENTS:
            yield "condition.event", _unknown("camera event", c.event, CAMERA_EVENTS, "that cameras report")
        if c.field not in EVENT_RULE_FIELDS:
            yield "condition.field", _unknown("field", c.field, EVENT_RULE_FIELDS, "on camera events")
    elif not isinstance(c, NoData) and c.field not in fields:
        yield "condition.field", _unknown("field", c.field, fields, on)
    for i, gate in enumerate(rule.also):
        if gate.field not in fields:
            yield f"also.{i}.field", _unknown("field", gate.field, fields, on)


def parse_pack(raw: Any, source: str) -> Pack:
    """Validate already-parsed YAML; raise :class:`PackError` naming ``source``, the rule and the problem."""
    try:
        pack = Pack.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for e in exc.errors()[:10]:
            label, where = _locate(raw, tuple(e["loc"]))
            problems.append(f"{source}: {label}: {where + ': ' if where else ''}{e['msg']}")
        raise PackError("\n".join(problems)) from exc
    unknown = [f"{source}: rule {r.id}: {where}: {problem}" for r in pack.rules for where, problem in _unknown_names(r)]
    if unknown:
        raise PackError("\n".join(unknown[:10]))
    return pack


def load_pack(path: Path) -> Pack:
    """Read and validate a rule pack file."""
    try:
        raw = safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PackError(f"{path}: cannot read the rule pack ({exc.strerror})") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PackError(f"{path}: not valid YAML ({exc})") from exc
    return parse_pack(raw, str(path))


DEFAULT_PACK = Path(__file__).parent / "packs" / "mekong.yaml"
