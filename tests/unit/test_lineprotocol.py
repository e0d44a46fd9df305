"""Line protocol escaping and value formatting (storage.lineprotocol)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.lineprotocol import (
    LineProtocolError,
    escape_measurement,
    escape_tag,
    format_float,
    format_int,
    format_string_field,
)

# --- a minimal line-protocol reader, written independently of the code under test -------------
# InfluxDB 1.x: in names, tag keys/values and field keys a backslash escapes only a following
# comma, equals sign or space; before any other character (a backslash included) it is literal.

_ESCAPABLE: Final = ",= "
_MEASUREMENT_ESCAPABLE: Final = ", "  # a measurement name does not unescape "\\="


def _split_unescaped(text: str, sep: str) -> list[str]:
    """Split on ``sep`` where it is not escaped (escapes are kept in the parts)."""
    parts, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in _ESCAPABLE:
            cur.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(text: str, escapable: str = _ESCAPABLE) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in escapable:
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _parse_series(series: str) -> tuple[str, list[tuple[str, str]]]:
    """``measurement,k=v,...`` → (measurement, [(k, v), ...]) with every escape undone."""
    first, *pairs = _split_unescaped(series, ",")
    tags: list[tuple[str, str]] = []
    for pair in pairs:
        kv = _split_unescaped(pair, "=")
        assert len(kv) == 2, f"tag pair {pair!r} does not split into key=value"
        tags.append((_unescape(kv[0]), _unescape(kv[1])))
    return _unescape(first, _MEASUREMENT_ESCAPABLE), tags


def _unquote_string_field(text: str) -> str:
    """A string field value: only ``\\"`` and ``\\\\`` are escapes, and both must be used."""
    assert text.startswith('"'), text
    assert text.endswith('"'), text
    body, out, i = text[1:-1], [], 0
    while i < len(body):  # every quote and backslash inside must be escaped
        if body[i] == "\\":
            assert i + 1 < len(body), f"dangling escape in {text!r}"
            assert body[i + 1] in '"\\', f"lone backslash in {text!r}"
            out.append(body[i + 1])
            i += 2
            continue
        assert body[i] != '"', f"unescaped quote in {text!r}"
        out.append(body[i])
        i += 1
    return "".join(out)


def test_reader_treats_backslash_as_escape_only_before_separators() -> None:
    assert _parse_series("m\\x\\ y,k\\x=v\\,w\\\\z") == ("m\\x y", [("k\\x", "v,w\\\\z")])
    assert _split_unescaped("k\\\\=v", "=") == ["k\\\\=v"]  # literal "\\", escaped "="
    assert _split_unescaped("a\\\\,b", ",") == ["a\\\\,b"]
    assert _unescape("a\\b\\\\") == "a\\b\\\\"


# --- escaping tables ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("water_quality", "water_quality"),
        ("a b", r"a\ b"),
        ("a,b", r"a\,b"),
        ("a=b", "a=b"),  # equals needs no escape in a measurement
        ("a\\b", "a\\b"),  # a backslash is literal unless it precedes "," or " "
        ("a\\\\b", "a\\\\b"),
        ("\\lead", "\\lead"),
        ("a\\ b", "a\\\\ b"),  # the literal backslash, then the escaped space
        ("a\\,b", "a\\\\,b"),
        ("x, y", r"x\,\ y"),
        ("Nhiệt độ", r"Nhiệt\ độ"),
    ],
)
def test_escape_measurement(name: str, expected: str) -> None:
    assert escape_measurement(name) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ben_tre", "ben_tre"),
        ("a,b", r"a\,b"),
        ("a=b", r"a\=b"),
        ("a b", r"a\ b"),
        ("a\\b", "a\\b"),  # a backslash is literal unless it precedes ",", "=" or " "
        ("a\\\\b", "a\\\\b"),
        ("\\=", "\\\\="),  # the literal backslash, then the escaped equals sign
        ("\\,x", "\\\\,x"),
        (",= \\x", "\\,\\=\\ \\x"),
        ('quote"d', 'quote"d'),  # quotes are literal in tags
        ("Cà Mau", r"Cà\ Mau"),
        ("", ""),
    ],
)
def test_escape_tag(value: str, expected: str) -> None:
    assert escape_tag(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2.4.1", '"2.4.1"'),
        ('say "hi"', r'"say \"hi\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("ends\\", '"ends\\\\"'),
        ("a,b=c d", '"a,b=c d"'),  # commas, equals and spaces are literal inside quotes
        ("", '""'),
        ('\\"', '"\\\\\\""'),
    ],
)
def test_format_string_field(value: str, expected: str) -> None:
    assert format_string_field(value) == expected


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "\n", "trailing\n", "x\r\n", "\\\n"])
@pytest.mark.parametrize("func", [escape_measurement, escape_tag, format_string_field])
def test_newline_refused(func: Callable[[str], str], bad: str) -> None:
    with pytest.raises(LineProtocolError, match="newline"):
        func(bad)


@pytest.mark.parametrize("bad", ["\\", "ends\\", "a b\\", "two\\\\", ",\\"])
@pytest.mark.parametrize("func", [escape_measurement, escape_tag])
def test_trailing_backslash_refused(func: Callable[[str], str], bad: str) -> None:
    # it would escape the separator that follows the name or tag
    with pytest.raises(LineProtocolError, match="trailing backslash"):
        func(bad)


def test_line_protocol_error_is_a_value_error() -> None:
    assert issubclass(LineProtocolError, ValueError)


# --- numbers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, "1.0"),
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (7.5, "7.5"),
        (0.1, "0.1"),
        (29.4, "29.4"),
        (1e-300, "1e-300"),
        (5e-324, "5e-324"),
        (1e300, "1e+300"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (123456789.123, "123456789.123"),
    ],
)
def test_format_float_table(value: float, expected: str) -> None:
    text = format_float(value)
    assert text == expected
    assert float(text) == float(value)
    assert not text.endswith("i")


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_format_float_round_trips(value: float) -> None:
    text = format_float(value)
    back = float(text)
    assert back == value
    assert math.copysign(1.0, back) == math.copysign(1.0, value)
    assert " " not in text
    assert "," not in text


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_format_float_refuses_non_finite(value: float) -> None:
    with pytest.raises(LineProtocolError):
        format_float(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0i"),
        (5, "5i"),
        (-3, "-3i"),
        (2**63 - 1, "9223372036854775807i"),
        (10**9, "1000000000i"),
    ],
)
def test_format_int(value: int, expected: str) -> None:
    assert format_int(value) == expected


# --- properties: the escapes can be undone by a reader -----------------------------------------

_no_newline_text = st.text(
    alphabet=st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=40
)
_tricky = st.text(alphabet=st.sampled_from(list(",= \\\"'aZ0_é")), max_size=20)
_name = st.one_of(_no_newline_text, _tricky).filter(lambda s: not s.endswith("\\"))


@settings(max_examples=300)
@given(value=_name, key=_name, name=_name)
def test_tag_value_recovered_by_parser(value: str, key: str, name: str) -> None:
    series = (
        f"{escape_measurement(name or 'm')},{escape_tag(key or 'k')}={escape_tag(value)},device_id={escape_tag('d-1')}"
    )
    measurement, tags = _parse_series(series)
    assert measurement == (name or "m")
    assert tags == [(key or "k", value), ("device_id", "d-1")]
    # the series key contains no unescaped space: it ends where the field set starts
    assert len(_split_unescaped(series, " ")) == 1


@given(st.one_of(_no_newline_text, _tricky))
def test_string_field_recovered(value: str) -> None:
    assert _unquote_string_field(format_string_field(value)) == value
