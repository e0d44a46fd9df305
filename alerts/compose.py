"""The texts of a message that is more than one alert event: a de-escalation, a group, a digest.

A message of one notice carries its event's texts (the rule's own words). These functions write
the others, in the same four forms — full Vietnamese and English, ``message_sms`` (≤ 160 GSM-7)
and ``message_short`` (≤ 70 UCS-2, :mod:`rules.sms`) — and the template ``params`` (place, value,
unit, action, time). Vietnamese first, plain: the number of stations, where, the highest value and
the action of the highest level; every station is named in the full texts.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from alerts.notify import Notice
from rules.messages import ALL_CLEAR, local_time, unit_spacer
from rules.model import Severity
from rules.sms import cut, fit_sms, fits_sms, fold, sms_forms


@dataclass(frozen=True, slots=True)
class Texts:
    """A message's words in every form a gateway may send."""

    vi: str
    en: str
    sms: str
    short: str
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Item:
    """One notice as a composed message shows it."""

    notice: Notice
    device_id: str
    severity: Severity
    rank: int
    place_vi: str
    place_en: str
    value: float | None
    value_vi: str
    """The value as the Vietnamese text shows it, e.g. ``4,2`` ('' when there is none)."""
    unit: str
    """The unit as the Vietnamese text writes it."""
    action: str
    """What to do, in Vietnamese (the rule's short action; ``hết cảnh báo`` for an all-clear)."""
    title_vi: str
    title_en: str
    ts_ms: int

    @classmethod
    def of(cls, params: Mapping[str, str], **fields: Any) -> Item:
        """An item whose shown value, unit and action are a template's ``params`` (rules.messages)."""
        return cls(value_vi=params.get("value", ""), unit=params.get("unit", ""), action=params.get("action", ""),
                   **fields)  # fmt: skip


def _latin(unit: str) -> bool:
    """A unit English text can show as it is (‰, mg/L, °C; not ``con/đêm``)."""
    return "đ" not in unit.lower() and not any(unicodedata.combining(c) for c in unicodedata.normalize("NFD", unit))


def shown_vi(item: Item) -> str:
    """``4,2‰``, ``1.240 con/đêm`` or '' when the notice has no value."""
    return f"{item.value_vi}{unit_spacer(item.unit)}{item.unit}".strip() if item.value_vi else ""


def shown_en(item: Item) -> str:
    if item.value is None or not math.isfinite(item.value):
        return ""
    unit = item.unit if _latin(item.unit) else ""
    return f"{item.value:.4g}{unit_spacer(unit)}{unit}".strip()


def _texts(vi: str, en: str, short: str, params: Mapping[str, str]) -> Texts:
    sms, short = sms_forms(vi, short)
    return Texts(vi, en, sms, short, dict(params))


def deescalated(now: Item, remaining: Item) -> Texts:
    """A device's highest level ended and ``remaining`` is still active: ``now`` has the value."""
    value_vi, value_en, when = shown_vi(now), shown_en(now), local_time(now.ts_ms)
    at_vi = f", hiện {value_vi}" if value_vi else ""
    at_en = f", now {value_en}" if value_en else ""
    vi = f"Giảm mức: còn {remaining.title_vi} tại {now.place_vi}{at_vi} (lúc {when}) – {remaining.action}."
    en = f"Lower level: still {remaining.title_en} at {now.place_en}{at_en} (at {when})."
    short = f"Giảm còn {value_vi} tại {now.place_vi} – {remaining.action}" if value_vi else vi
    params = {"place": now.place_vi, "value": now.value_vi, "unit": now.unit if now.value_vi else "",
              "action": remaining.action, "time": when}  # fmt: skip
    return _texts(vi, en, short, params)


def latest_per_device(items: Sequence[Item]) -> list[Item]:
    """Each device's last notice, in the order the devices first appear."""
    last: dict[str, Item] = {}
    for item in items:
        last[item.device_id] = item  # a key keeps its first place
    return list(last.values())


def _listing(items: Sequence[Item], english: bool) -> str:
    parts = []
    for item in items:
        value = shown_en(item) if english else shown_vi(item)
        parts.append(f"{item.device_id} {value}".strip())
    return ", ".join(parts)


def group(items: Sequence[Item], *, others: int = 0) -> Texts:
    """The message of a group: one family's notices in one district (several stations, or one while
    ``others`` stations of the group are still alerting — an all-clear must not read as the district's)."""
    latest = latest_per_device(items)
    active = sorted((i for i in latest if i.notice is not Notice.CLEARED), key=lambda i: (-i.rank, -(i.value or 0)))
    cleared = [i for i in latest if i.notice is Notice.CLEARED]
    place_vi, place_en = latest[-1].place_vi, latest[-1].place_en
    when = local_time(max(i.ts_ms for i in items))
    if active:
        top = active[0]
        vi = (f"Cảnh báo tại {len(active)} trạm ở {place_vi}: {_listing(active, False)}. Cao nhất: {top.title_vi}"
              f" – {top.action}.")  # fmt: skip
        en = f"Alert at {len(active)} stations in {place_en}: {_listing(active, True)}. Highest: {top.title_en}."
        if cleared:
            vi += f" Hết cảnh báo tại {len(cleared)} trạm: {_listing(cleared, False)}."
            en += f" All clear at {len(cleared)}: {_listing(cleared, True)}."
        highest = shown_vi(top)
        alerting = len(active) + others
        short = f"{alerting} trạm {place_vi}" + (f" đến {highest}" if highest else "") + f" – {top.action}"
        params = {"place": place_vi, "value": top.value_vi, "unit": top.unit if top.value_vi else "",
                  "action": top.action, "time": when, "stations": str(alerting)}  # fmt: skip
    elif others:
        lowest = min(cleared, key=lambda i: i.rank)
        vi = f"Hết cảnh báo {lowest.title_vi} tại {len(cleared)} trạm ở {place_vi}: {_listing(cleared, False)}."
        en = f"All clear ({lowest.title_en}) at {len(cleared)} stations in {place_en}: {_listing(cleared, True)}."
        short = f"Hết cảnh báo {len(cleared)} trạm, còn {others} trạm ở {place_vi}"
        params = {"place": place_vi, "value": "", "unit": "", "action": lowest.action, "time": when,
                  "stations": str(others)}  # fmt: skip
    else:
        lowest = min(cleared, key=lambda i: i.rank)
        vi = f"Hết cảnh báo: {lowest.title_vi} tại {len(cleared)} trạm ở {place_vi}: {_listing(cleared, False)}."
        en = f"All clear: {lowest.title_en} at {len(cleared)} stations in {place_en}: {_listing(cleared, True)}."
        short = f"Hết cảnh báo: {len(cleared)} trạm {place_vi}"
        params = {"place": place_vi, "value": "", "unit": "", "action": ALL_CLEAR, "time": when,
                  "stations": "0"}  # fmt: skip
    if others:
        vi += f" Vẫn còn cảnh báo tại {others} trạm khác."
        en += f" Still alerting at {others} other stations."
    return _texts(vi, en, short, params)


def digest(groups: Sequence[Texts], *, held_by: str, count: int) -> Texts:
    """One message for what waited: quiet hours (``held_by="quiet"``) or the rate limit (``"rate"``).

    ``groups`` are the texts each group would have had; ``count`` the notices they hold.
    """
    head_vi = "Trong giờ nghỉ" if held_by == "quiet" else "Tin gộp (giới hạn tin nhắn)"
    head_en = "During quiet hours" if held_by == "quiet" else "Held back by the message limit"
    vi = f"{head_vi}: {count} cảnh báo. " + " ".join(g.vi for g in groups)
    en = f"{head_en}: {count} alert notices. " + " ".join(g.en for g in groups)
    short = cut(f"{head_vi}: {count} cảnh báo. " + "; ".join(g.short for g in groups), 70)
    sms = fold(vi)
    if not fits_sms(sms):
        sms = fit_sms(f"{head_vi}: {count} cảnh báo. " + "; ".join(g.short for g in groups))
    last = groups[-1].params
    params = {"place": "; ".join(dict.fromkeys(g.params.get("place", "") for g in groups)), "value": "", "unit": "",
              "action": last.get("action", ""), "time": last.get("time", ""), "count": str(count)}  # fmt: skip
    return Texts(vi, en, sms, short, params)


__all__ = ["Item", "Texts", "deescalated", "digest", "group", "latest_per_device", "shown_en", "shown_vi"]
