"""Alert text: the rule's Vietnamese and English templates, filled in for one device and value."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from typing import Final

from rules.model import DeviceInfo, State, Texts
from rules.pack import Rule
from rules.sms import sms_forms

ALL_CLEAR: Final = "hết cảnh báo"
"""An all-clear's action, in a template message's ``params``."""
LOCAL_OFFSET_MS: Final = 7 * 3_600_000
"""The Mekong Delta keeps UTC+7 all year."""

SITE_VI: Final = {
    "river": "sông", "canal": "kênh", "pond": "ao", "field": "ruộng", "sluice": "cống",
    "kitchen": "bếp", "road": "đường", "market": "chợ", "school": "trường học",
}  # fmt: skip


def local_time(ts_ms: int) -> str:
    """``HH:MM dd/mm`` in Delta local time."""
    t = time.gmtime((ts_ms + LOCAL_OFFSET_MS) / 1000)
    return f"{t.tm_hour:02d}:{t.tm_min:02d} {t.tm_mday:02d}/{t.tm_mon:02d}"


class _Number:
    """A value in a message: ``?`` when missing; a decimal comma in Vietnamese (0,5‰)."""

    def __init__(self, value: float, *, vietnamese: bool, whole: bool = False) -> None:
        self.value, self.vietnamese, self.whole = value, vietnamese, whole

    def __format__(self, spec: str) -> str:
        if not math.isfinite(self.value):
            return "?"
        if self.whole:
            text = format(round(self.value), spec or ",d")
            return text.replace(",", ".") if self.vietnamese else text  # 1.272 con / 1,272 insects
        text = format(self.value, spec or ".4g")
        return text.replace(".", ",") if self.vietnamese else text


def render(template: str, *, device: DeviceInfo, value: float, unit: str, ts_ms: int, vietnamese: bool) -> str:
    """Fill a message template (placeholders: see ``rules.pack.PLACEHOLDERS``)."""
    try:
        return template.format(
            value=_Number(value, vietnamese=vietnamese),
            unit=unit,
            device=device.id,
            place=device.place_vi if vietnamese else device.place_en,
            time=local_time(ts_ms),
            n=_Number(value, vietnamese=vietnamese, whole=True),
            site=SITE_VI.get(device.site, device.site) if vietnamese else device.site,
        )
    except (ValueError, KeyError, IndexError):  # a format spec that does not fit a number
        return template


_VALUE = re.compile(r"\{(?:value|n)(?::[^}]*)?\}")


def template_params(
    templates: Sequence[str], *, device: DeviceInfo, value: float, unit: str, ts_ms: int, action: str
) -> dict[str, str]:
    """A template message's parameters (Vietnamese): the value as the first of ``templates`` with a
    ``{value}`` or ``{n}`` shows it ('' when none does, or there is no value), its unit, the place,
    the action and the local time."""
    shown = ""
    for template in templates:
        found = _VALUE.search(template)
        if found is not None:
            shown = "" if math.isnan(value) else render(found.group(0), device=device, value=value, unit=unit,
                                                          ts_ms=ts_ms, vietnamese=True)  # fmt: skip
            break
    return {"place": device.place_vi, "value": shown, "unit": unit if shown else "", "action": action,
            "time": local_time(ts_ms)}  # fmt: skip


def unit_spacer(unit: str) -> str:
    """What goes between a value and its unit: nothing before ‰, % and °, else a space."""
    return "" if unit.startswith(("‰", "%", "°")) else " "


def resolved_text(device: DeviceInfo, title: str, *, value: float, unit: str, ts_ms: int, vietnamese: bool) -> str:
    """The message sent when an alert resolves: what it was about, where, the value now, when."""
    spacer = unit_spacer(unit)
    shown = "" if math.isnan(value) else f"{_Number(value, vietnamese=vietnamese):.4g}{spacer}{unit}".rstrip()
    when = local_time(ts_ms)
    if vietnamese:
        now = f", hiện {shown}" if shown else ""
        return f"Hết cảnh báo: {title} tại {device.place_vi}{now} (lúc {when})."
    now = f", now {shown}" if shown else ""
    return f"All clear: {title} at {device.place_en}{now} (at {when})."


def alert_texts(rule: Rule, device: DeviceInfo, state: State, ts_ms: int, value: float) -> Texts:
    """The texts of ``rule``'s alert on ``device`` firing or resolving at ``ts_ms`` with ``value``."""
    unit_vi = rule.unit_vi or rule.unit
    if state is State.FIRING:
        vi = render(rule.message.vi, device=device, value=value, unit=unit_vi, ts_ms=ts_ms, vietnamese=True)
        en = render(rule.message.en, device=device, value=value, unit=rule.unit, ts_ms=ts_ms, vietnamese=False)
        short = vi
        action = rule.short.action if rule.short is not None else ""
        if rule.short is not None:
            what = render(rule.short.vi, device=device, value=value, unit=unit_vi, ts_ms=ts_ms, vietnamese=True)
            short = f"{what} – {rule.short.action}"
    else:
        title_vi, title_en = (rule.title.vi, rule.title.en) if rule.title else (rule.id, rule.id)
        vi = resolved_text(device, title_vi, value=value, unit=unit_vi, ts_ms=ts_ms, vietnamese=True)
        en = resolved_text(device, title_en, value=value, unit=rule.unit, ts_ms=ts_ms, vietnamese=False)
        short = vi
        action = ALL_CLEAR
        if rule.short is not None:
            what = render(rule.short.vi, device=device, value=value, unit=unit_vi, ts_ms=ts_ms, vietnamese=True)
            short = f"Hết cảnh báo: {what}"
    sms, short = sms_forms(vi, short)
    templates = (rule.short.vi, rule.message.vi) if rule.short is not None else (rule.message.vi,)
    params = template_params(templates, device=device, value=value, unit=unit_vi, ts_ms=ts_ms, action=action)
    return Texts(vi, en, sms, short, params)
