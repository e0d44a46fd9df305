"""Webhook subscriptions: where to send, with which secret, for which alerts, in which language.

A subscription's filters are sets; an empty set matches everything, and an alert matches when it
passes every non-empty filter (province *and* district *and* device *and* kind *and* rule) and its
severity is at least the minimum. Names compare case-insensitively after Unicode NFC
normalisation, so ``Bến Tre`` typed on one keyboard matches ``Bến Tre`` from another.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol, get_args

from alerts.errors import InvalidSubscription
from rules.model import Severity

Language = Literal["vi", "en"]
LANGUAGES: tuple[Language, ...] = get_args(Language)


def norm(name: str) -> str:
    """The form filter values are stored and compared in."""
    return unicodedata.normalize("NFC", name).strip().casefold()


def _norm_set(values: Iterable[str] | None) -> frozenset[str]:
    return frozenset(norm(v) for v in values or () if v.strip())


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
    ) -> Filters:
        return cls(
            provinces=_norm_set(provinces),
            districts=_norm_set(districts),
            devices=_norm_set(devices),
            kinds=_norm_set(kinds),
            rule_ids=_norm_set(rule_ids),
            min_severity=parse_severity(min_severity),
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
        )
        return all(not wanted or norm(value) in wanted for wanted, value in pairs)

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
            )
            if values
        ]
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

    def matches(self, alert: Subject) -> bool:
        return self.enabled and self.filters.matches(alert)
