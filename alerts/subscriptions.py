"""Webhook subscriptions: where to send, with which secret, for which alerts, in which language.

A subscription's filters are sets; an empty set matches everything, and an alert matches when it
passes every non-empty filter (province *and* district *and* device *and* kind *and* rule *and*
crop), lies within the :class:`Near` circle if there is one, and its severity is at least the
minimum. Names compare case-insensitively after Unicode NFC normalisation, so ``Bến Tre`` typed on
one keyboard matches ``Bến Tre`` from another. Distances are great-circle (haversine) on a sphere
of the Earth's mean radius; an alert without coordinates is never near anything.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol, get_args

from alerts.errors import InvalidSubscription
from alerts.notify import Pacing
from contract.fleet import CROPS
from rules.model import Severity

Language = Literal["vi", "en"]
EARTH_RADIUS_KM = 6371.0088
"""The mean Earth radius (IUGG): haversine distances on this sphere are within 0.5 % of WGS84's."""
MAX_RADIUS_KM = 500.0
"""The widest circle a subscription may draw (the whole delta fits in it)."""
LANGUAGES: tuple[Language, ...] = get_args(Language)


def norm(name: str) -> str:
    """The form filter values are stored and compared in."""
    return unicodedata.normalize("NFC", name).strip().casefold()


def _norm_set(values: Iterable[str] | None) -> frozenset[str]:
    return frozenset(norm(v) for v in values or () if v.strip())


def _crops(values: Iterable[str] | None) -> frozenset[str]:
    crops = _norm_set(values)
    unknown = sorted(crops - set(CROPS))
    if unknown:
        raise InvalidSubscription(f"crops: unknown crop {unknown[0]!r} (one of {', '.join(CROPS)})")
    return crops


TEMPLATE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def parse_template(value: str | None) -> str | None:
    """A template id as a gateway names it (letters, digits, ``_.:-``, at most 64), or None."""
    if value is None:
        return None
    if not TEMPLATE_ID.fullmatch(value):
        raise InvalidSubscription(f"template id must be 1–64 letters, digits or _ . : -, got {value[:70]!r}")
    return value


def parse_language(value: str) -> Language:
    lang = value.strip().lower()
    for known in LANGUAGES:
        if lang == known:
            return known
    raise InvalidSubscription(f"language must be one of {', '.join(LANGUAGES)}, got {value!r}")


def parse_severity(value: str | int | Severity) -> Severity:
    """``critical``, ``WARNING``, ``2`` or a :class:`Severity` → Severity."""
    if isinstance(value, Severity):
        return value
    if isinstance(value, int) or value.strip().isdigit():
        try:
            return Severity(int(value))
        except ValueError:
            pass
    else:
        try:
            return Severity[value.strip().upper()]
        except KeyError:
            pass
    names = ", ".join(s.label for s in Severity)
    raise InvalidSubscription(f"severity must be one of {names}, got {value!r}")


def _num(value: float) -> str:
    """``10.04``, ``106.6``, ``15``: up to 6 decimals (11 cm), no trailing zeros."""
    return f"{value:.6f}".rstrip("0").rstrip(".")


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance between two WGS84 points (degrees), in km."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True, slots=True)
class Near:
    """A circle: alerts of devices within ``radius_km`` of (``lat``, ``lon``). Build with :meth:`make`."""

    lat: float
    lon: float
    radius_km: float

    @classmethod
    def make(cls, lat: float, lon: float, radius_km: float) -> Near:
        """A checked circle (:class:`InvalidSubscription` names the bad value)."""
        checks = (
            ("lat", lat, -90.0, 90.0),
            ("lon", lon, -180.0, 180.0),
            ("radius_km", radius_km, 0.0, MAX_RADIUS_KM),
        )
        for name, value, low, high in checks:
            if not math.isfinite(value) or not low <= value <= high or (name == "radius_km" and value <= 0):
                bound = f"> 0 and <= {high:g}" if name == "radius_km" else f"between {low:g} and {high:g}"
                raise InvalidSubscription(f"near.{name} must be {bound}, got {value!r}")
        return cls(float(lat), float(lon), float(radius_km))

    def contains(self, lat: float | None, lon: float | None) -> bool:
        """True if the point is within the circle (a point without coordinates never is)."""
        if lat is None or lon is None:
            return False
        return haversine_km(self.lat, self.lon, lat, lon) <= self.radius_km

    def describe(self) -> str:
        return f"near={_num(self.lat)},{_num(self.lon)} r={_num(self.radius_km)}km"


class Subject(Protocol):
    """What filters look at (an :class:`~alerts.store.Alert` has these)."""

    @property
    def rule_id(self) -> str: ...
    @property
    def device_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def province(self) -> str: ...
    @property
    def district(self) -> str: ...
    @property
    def crop(self) -> str: ...
    @property
    def lat(self) -> float | None: ...
    @property
    def lon(self) -> float | None: ...
    @property
    def severity(self) -> Severity: ...


@dataclass(frozen=True, slots=True)
class Filters:
    """Which alerts a subscription wants. Build with :meth:`make` to normalise the values."""

    provinces: frozenset[str] = frozenset()
    districts: frozenset[str] = frozenset()
    devices: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()
    rule_ids: frozenset[str] = frozenset()
    min_severity: Severity = Severity.INFO
    crops: frozenset[str] = frozenset()
    near: Near | None = None

    @classmethod
    def make(
        cls,
        *,
        provinces: Iterable[str] | None = None,
        districts: Iterable[str] | None = None,
        devices: Iterable[str] | None = None,
        kinds: Iterable[str] | None = None,
        rule_ids: Iterable[str] | None = None,
        min_severity: str | int | Severity = Severity.INFO,
        crops: Iterable[str] | None = None,
        near: Near | None = None,
    ) -> Filters:
        return cls(
            provinces=_norm_set(provinces),
            districts=_norm_set(districts),
            devices=_norm_set(devices),
            kinds=_norm_set(kinds),
            rule_ids=_norm_set(rule_ids),
            min_severity=parse_severity(min_severity),
            crops=_crops(crops),
            near=near,
        )

    def matches(self, alert: Subject) -> bool:
        """True if the alert passes every filter."""
        if alert.severity < self.min_severity:
            return False
        pairs = (
            (self.provinces, alert.province),
            (self.districts, alert.district),
            (self.devices, alert.device_id),
            (self.kinds, alert.kind),
            (self.rule_ids, alert.rule_id),
            (self.crops, alert.crop),
        )
        if not all(not wanted or norm(value) in wanted for wanted, value in pairs):
            return False
        return self.near is None or self.near.contains(alert.lat, alert.lon)

    def describe(self) -> str:
        """One line for the command line, e.g. ``province=ben_tre severity>=warning``."""
        parts = [
            f"{name}={','.join(sorted(values))}"
            for name, values in (
                ("province", self.provinces),
                ("district", self.districts),
                ("device", self.devices),
                ("kind", self.kinds),
                ("rule", self.rule_ids),
                ("crop", self.crops),
            )
            if values
        ]
        if self.near is not None:
            parts.append(self.near.describe())
        if self.min_severity > Severity.INFO:
            parts.append(f"severity>={self.min_severity.label}")
        return " ".join(parts) or "all alerts"


@dataclass(frozen=True, slots=True)
class Subscription:
    """A webhook subscriber as stored."""

    id: str
    url: str
    secret: str = field(repr=False)
    language: Language
    filters: Filters
    enabled: bool
    description: str
    created_at_ms: int
    updated_at_ms: int
    disabled_reason: str | None = None
    template: str | None = None
    """The template id its gateway sends (Zalo ZNS, SMS brandname): webhooks then carry it with
    named ``params`` (place, value, unit, action, time) besides the texts."""
    pacing: Pacing = field(default_factory=Pacing)
    """Grouping, quiet hours and a rate limit (:mod:`alerts.notify`)."""

    def matches(self, alert: Subject) -> bool:
        return self.enabled and self.filters.matches(alert)
