"""The types the engine takes and gives: devices, readings as columns, alert transitions."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

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
class Texts:
    """An alert's texts: full Vietnamese and English, the two SMS forms and a template's parameters."""

    vi: str
    en: str
    sms: str = ""
    """Vietnamese without diacritics, ≤ 160 GSM-7 characters: one SMS (:mod:`rules.sms`)."""
    short: str = ""
    """Vietnamese with diacritics, ≤ 70 characters: one UCS-2 SMS."""
    params: Mapping[str, str] = field(default_factory=dict)
    """The named parameters of a template message (Zalo ZNS, SMS brandname): ``place``, ``value``,
    ``unit``, ``action``, ``time`` — Vietnamese, as the texts show them."""


_Render = tuple[Callable[..., Texts], tuple[Any, ...]]
"""How to render texts: a function and its arguments (cheaper to make than a ``functools.partial``)."""


class Transition:
    """An alert changing state for one (rule, device); immutable.

    Its texts (``message_*``, ``params``) are given, or rendered by ``texts`` when first read: the
    engine leaves them to whoever records or delivers the alert, off its hot path. (Its values sit in
    one tuple: an engine makes many of these, and a frozen class's own slots are slow to set.)
    """

    __slots__ = ("_f", "_t")
    _f: tuple[str, int, str, State, int, float, Severity, str, int, str, str]
    _t: list[Texts | _Render]
    """[the texts] once known, else [(function, arguments) that render them]."""

    def __init__(
        self,
        rule_id: str,
        device: int,
        device_id: str,
        state: State,
        ts_ms: int,
        value: float,
        severity: Severity,
        message_vi: str = "",
        message_en: str = "",
        message_sms: str = "",
        message_short: str = "",
        params: Mapping[str, str] | None = None,
        *,
        family: str = "",
        rank: int = 0,
        title_vi: str = "",
        title_en: str = "",
        texts: Callable[[], Texts] | None = None,
    ) -> None:
        f = (rule_id, device, device_id, state, ts_ms, value, severity, family, rank, title_vi, title_en)
        object.__setattr__(self, "_f", f)
        if texts is None:
            given = Texts(message_vi, message_en, message_sms, message_short, dict(params or {}))
            object.__setattr__(self, "_t", [given])
        else:
            object.__setattr__(self, "_t", [(texts, ())])

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Transition is immutable: cannot set {name!r}")

    @classmethod
    def deferred(
        cls,
        fields: tuple[str, int, str, State, int, float, Severity, str, int, str, str],
        render: Callable[..., Texts],
        args: tuple[Any, ...] = (),
    ) -> Transition:
        """``Transition(*fields[:7], family=, rank=, title_vi=, title_en=, texts=partial(render, *args))``,
        faster: an engine's."""
        t = object.__new__(cls)
        object.__setattr__(t, "_f", fields)
        object.__setattr__(t, "_t", [(render, args)])
        return t

    def order(self) -> tuple[int, str, int]:
        """(time, rule, device): the order an engine gives its transitions in."""
        f = self._f
        return f[4], f[0], f[1]

    @property
    def rule_id(self) -> str:
        return self._f[0]

    @property
    def device(self) -> int:
        """Index of the device in the engine's device list."""
        return self._f[1]

    @property
    def device_id(self) -> str:
        return self._f[2]

    @property
    def state(self) -> State:
        return self._f[3]

    @property
    def ts_ms(self) -> int:
        """Device time of the reading that caused it (or the time a no-data rule noticed silence)."""
        return self._f[4]

    @property
    def value(self) -> float:
        """The value the condition looked at (NaN when there is none, as for no-data)."""
        return self._f[5]

    @property
    def severity(self) -> Severity:
        return self._f[6]

    @property
    def family(self) -> str:
        """The rule's family (levels of one danger); '' = the rule is a family of its own."""
        return self._f[7]

    @property
    def rank(self) -> int:
        """The rule's level in its family (1 = lowest)."""
        return self._f[8]

    @property
    def title_vi(self) -> str:
        """What the alert is about, for farmers ("mặn vượt 4‰"): an update names the level still active."""
        return self._f[9]

    @property
    def title_en(self) -> str:
        return self._f[10]

    @property
    def texts(self) -> Texts:
        """Its texts, rendered on first read."""
        t = self._t[0]
        if not isinstance(t, Texts):
            render, args = t
            t = self._t[0] = render(*args)
        return t

    @property
    def message_vi(self) -> str:
        return self.texts.vi

    @property
    def message_en(self) -> str:
        return self.texts.en

    @property
    def message_sms(self) -> str:
        """Vietnamese without diacritics, ≤ 160 GSM-7 characters: one SMS (:mod:`rules.sms`)."""
        return self.texts.sms

    @property
    def message_short(self) -> str:
        """Vietnamese with diacritics, ≤ 70 characters: one UCS-2 SMS."""
        return self.texts.short

    @property
    def params(self) -> Mapping[str, str]:
        """The named parameters of a template message (Zalo ZNS, SMS brandname): ``place``, ``value``,
        ``unit``, ``action``, ``time`` — Vietnamese, as the texts show them."""
        return self.texts.params

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Transition):
            return NotImplemented
        return self._f == other._f and self.texts == other.texts

    __hash__ = None  # type: ignore[assignment]  # as the frozen dataclass it was, holding a dict: unhashable

    def __repr__(self) -> str:
        return (
            f"Transition(rule_id={self.rule_id!r}, device={self.device!r}, device_id={self.device_id!r}, "
            f"state={self.state!r}, ts_ms={self.ts_ms!r}, value={self.value!r}, severity={self.severity!r}, "
            f"message_vi={self.message_vi!r}, message_en={self.message_en!r})"
        )
