"""The types the engine takes and gives: devices, readings as columns, alert transitions."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt


class Severity(enum.IntEnum):
    """How urgent an alert is (ordered: a subscription's minimum compares with it)."""

    INFO = 1
    WARNING = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class State(enum.StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What rules need to know about a device: its kind, its selector tags and how to name it."""

    id: str
    kind: str
    province: str
    district: str
    site: str
    crop: str
    place_vi: str
    """Where it is, as a farmer says it, e.g. "Ba Tri, Bến Tre"."""
    place_en: str
    lat: float | None = field(default=None, kw_only=True)
    """Where it is, WGS84 degrees (None when unknown): subscriptions by point and radius use it."""
    lon: float | None = field(default=None, kw_only=True)


class Readings(Protocol):
    """Readings of one kind as columns (ingest's ``Columns`` satisfies this)."""

    @property
    def device(self) -> npt.NDArray[np.int32]: ...

    @property
    def ts_ms(self) -> npt.NDArray[np.int64]: ...

    @property
    def fields(self) -> dict[str, npt.NDArray[np.float64]]: ...


@dataclass(frozen=True, slots=True)
class Transition:
    """An alert changing state for one (rule, device)."""

    rule_id: str
    device: int
    """Index of the device in the engine's device list."""
    device_id: str
    state: State
    ts_ms: int
    """Device time of the reading that caused it (or the time a no-data rule noticed silence)."""
    value: float
    """The value the condition looked at (NaN when there is none, as for no-data)."""
    severity: Severity
    message_vi: str
    message_en: str
    message_sms: str = ""
    """Vietnamese without diacritics, ≤ 160 GSM-7 characters: one SMS (:mod:`rules.sms`)."""
    message_short: str = ""
    """Vietnamese with diacritics, ≤ 70 characters: one UCS-2 SMS."""
    params: Mapping[str, str] = field(default_factory=dict)
    """The named parameters of a template message (Zalo ZNS, SMS brandname): ``place``, ``value``,
    ``unit``, ``action``, ``time`` — Vietnamese, as the texts show them."""
    family: str = ""
    """The rule's family (levels of one danger); '' = the rule is a family of its own."""
    rank: int = 0
    """The rule's level in its family (1 = lowest)."""
    title_vi: str = ""
    """What the alert is about, for farmers ("mặn vượt 4‰"): an update names the level still active."""
    title_en: str = ""
