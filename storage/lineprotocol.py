"""InfluxDB line protocol: escaping and value formatting.

Escaping rules (InfluxDB line protocol reference): measurement names escape comma and space; tag
keys, tag values and field keys escape comma, equals sign and space; string field values escape
double quote and backslash. Backslashes in tags are escaped too so a value can never end in an
escape. Newlines can not be escaped at all: callers must refuse them before (our contract does).
"""

from __future__ import annotations

import math
import re

_PLAIN = re.compile(r"[A-Za-z0-9_.:/@+-]*").fullmatch
"""Text with nothing to escape or refuse (ids, slugs, kinds): returned as it is, without a copy."""
_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ "})
_TAG = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_STRING = str.maketrans({'"': r"\"", "\\": "\\\\"})


class LineProtocolError(ValueError):
    """A value that line protocol cannot carry (a newline in a name or tag)."""


def _no_newline(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise LineProtocolError(f"newline in {value[:40]!r}")
    return value


def _checked_name(value: str) -> str:
    if value.endswith("\\"):
        raise LineProtocolError(f"trailing backslash in {value[:40]!r}")
    return _no_newline(value)


def escape_measurement(name: str) -> str:
    """Escape a measurement name."""
    if _PLAIN(name):
        return name
    return _checked_name(name).translate(_MEASUREMENT)


def escape_tag(value: str) -> str:
    """Escape a tag key, tag value or field key."""
    if _PLAIN(value):
        return value
    return _checked_name(value).translate(_TAG)


def format_string_field(value: str) -> str:
    """A quoted, escaped string field value."""
    return '"' + _no_newline(value).translate(_STRING) + '"'


def format_float(value: float) -> str:
    """A float field value: shortest text that reads back to the same double."""
    if not math.isfinite(value):
        raise LineProtocolError(f"{value} is not a finite number")
    return repr(float(value))


def format_int(value: int) -> str:
    """An integer field value (``i`` suffix)."""
    return f"{int(value)}i"
