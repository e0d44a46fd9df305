"""Alert text fit for a phone: one SMS segment.

Two forms ride along with every alert's full texts:

- ``message_sms``: Vietnamese folded to ASCII without diacritics (``Mặn 4,1‰`` → ``Man 4,1%o``),
  at most 160 GSM-7 characters — what brandname SMS gateways send in one segment;
- ``message_short``: Vietnamese with its diacritics, at most 70 characters — one UCS-2 segment
  (a Zalo or SMS text that must keep the accents).

A rule's ``short`` (what, with the value and the place; and the action) makes ``message_short``;
``message_sms`` is the full Vietnamese text folded when it fits, else the short one folded.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

SMS_GSM7_MAX: Final = 160
"""Characters of one GSM-7 SMS segment (an extension character counts two)."""
SHORT_UCS2_MAX: Final = 70
"""Characters (UTF-16 code units) of one UCS-2 SMS segment."""

GSM7_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION: Final = frozenset("^{}\\[~]|€\f")
"""Characters sent as an escape and a septet: two of the 160."""

SPELLED: Final = {
    "‰": "%o",  # phần nghìn, as Vietnamese plain text writes it
    "đ": "d",
    "Đ": "D",
    "–": "-",
    "—": "-",
    "·": "-",
    "…": "...",
    "“": '"',
    "”": '"',
    "‘": "'",
    "’": "'",
    "°": "",  # 29,5°C → 29,5C
    "µ": "u",
    "×": "x",
    "₃": "3",
    "₄": "4",
    "⁺": "+",
    "³": "3",
    "²": "2",
    "\u00a0": " ",
}
"""Characters :func:`fold` spells out in ASCII (before it drops diacritics)."""


_FOLDING_MAX: Final = 65_536
"""Characters :class:`_Folding` remembers."""


class _Folding(dict[int, str]):
    """:meth:`str.translate`'s table of :func:`fold`: each character's ASCII form, worked out the
    first time it is met (texts come from the rule pack and its values: a small alphabet)."""

    def __missing__(self, code: int) -> str:
        spelled = SPELLED.get(chr(code), chr(code))
        bare = "".join(c for c in unicodedata.normalize("NFD", spelled) if not unicodedata.combining(c))
        folded = "".join(c if c.isascii() and (c.isprintable() or c == "\n") else "?" for c in bare)
        if len(self) < _FOLDING_MAX:
            self[code] = folded
        return folded


_FOLDED: Final = _Folding()


def fold(text: str) -> str:
    """``text`` as plain ASCII: diacritics dropped, đ → d, ‰ → %o, dashes and quotes plain; any
    other character outside ASCII becomes ``?`` (never sent as something the gateway rejects).
    Character by character (a combining mark drops alone, as from a decomposed letter)."""
    return text.translate(_FOLDED)


_NOT_GSM7: Final = re.compile("[^" + re.escape("".join(sorted(GSM7_BASIC | GSM7_EXTENSION))) + "]")
_GSM7_EXTENDED: Final = re.compile("[" + re.escape("".join(sorted(GSM7_EXTENSION))) + "]")


def gsm7_length(text: str) -> int | None:
    """Septets ``text`` takes in GSM-7 (an extension character counts two); None when a character has none."""
    if _NOT_GSM7.search(text):
        return None
    return len(text) + len(_GSM7_EXTENDED.findall(text))


def ucs2_length(text: str) -> int:
    """UTF-16 code units ``text`` takes in a UCS-2 SMS (a character beyond the BMP counts two)."""
    return len(text.encode("utf-16-le")) // 2


def fits_sms(text: str) -> bool:
    """Whether ``text`` goes as one GSM-7 SMS segment."""
    length = gsm7_length(text)
    return length is not None and length <= SMS_GSM7_MAX


def cut(text: str, limit: int) -> str:
    """``text`` within ``limit`` UCS-2 units, cut at a word and marked with ``…`` when it was longer."""
    if ucs2_length(text) <= limit:
        return text
    head = text[: limit - 1]
    if " " in head:
        head = head[: head.rfind(" ")]
    return head.rstrip(" ,;:–-") + "…"


def fit_sms(text: str) -> str:
    """``text`` folded (:func:`fold`) and cut at a word to one GSM-7 segment, marked ``...`` when cut."""
    folded = fold(text)
    if fits_sms(folded):
        return folded
    head = folded[: SMS_GSM7_MAX - 3]
    while not fits_sms(head + "..."):  # extension characters count two
        head = head[:-1]
    if " " in head:
        head = head[: head.rfind(" ")]
    return head.rstrip(" ,;:-") + "..."


def sms_forms(full_vi: str, short_vi: str) -> tuple[str, str]:
    """(``message_sms``, ``message_short``) of an alert whose full Vietnamese text is ``full_vi`` and
    whose short one is ``short_vi``: the SMS is the full text folded when it fits in one segment,
    else the short one folded; the short one is cut to one UCS-2 segment if a pack's is longer."""
    short = cut(short_vi, SHORT_UCS2_MAX)
    folded = fold(full_vi)
    sms = folded if fits_sms(folded) else fit_sms(short)  # a user's short text that folds long: cut
    return sms, short
