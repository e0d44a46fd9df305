"""Line protocol over MQTT (``influx_lp``): the parser, and each decoding rule, with a real registry
and batch. The corpus (``../shared/realworld/influx_line_protocol``) is read in place."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.fields import Kind
from contract.fleet import DeviceTags
from contract.reasons import Reason
from ingest.batch import BatchBuilder
from ingest.decode import Decoder
from ingest.registry import Registry
from ingest.sources.config import parse_sources
from ingest.sources.lineprotocol import MAX_LINE_REFUSALS, InfluxLineProtocol, LineError, Point, parse
from ingest.sources.router import Router
from ingest.sources.shapes import FlatShapes
from storage.lineprotocol import escape_measurement, escape_tag, format_float, format_string_field
from tests import corpus

LP = corpus.CORPUS / "influx_line_protocol"
needs_corpus = corpus.needs_corpus("influx_line_protocol")

NOW = 1_750_000_000_000
TELEGRAF = {"format": "influx_lp", "topics": ["telegraf/+/+"], "precision": "ns", "device": {"topic_level": 1}}
BY_ROOM = {"format": "influx_lp", "topics": ["home/+"], "precision": "s", "device": {"path": "room"}}
BY_EUI = {
    "format": "influx_lp",
    "topics": ["cs/+"],
    "precision": "ns",
    "device": {"path": "dev_eui", "scheme": "dev_eui"},
}
MODELS: dict[str, Any] = {
    "telegraf_host": {
        "fields": {
            "air_temp_c": "sensors.temp",  # measurement.field
            "humidity_pct": "hum",  # a bare field, whichever measurement
            "battery_v": {"path": "power.battery_mv", "unit": "mV"},
            "lamp_on": "lamp.on",
        }
    },
    "home": {"fields": {"air_temp_c": "temp", "humidity_pct": "home.hum"}},
    "planned": {
        "fields": {
            "air_temp_c": {"path": "sensors.temp", "unit": "K"},  # converted
            "humidity_pct": ["hum", "sensors.rh"],  # bare, ranked
            "battery_v": {"path": "power.battery", "unit": "mV"},
            "rssi_dbm": {"path": "radio.rssi", "unit": "dBm"},  # a unit that is ours
            "bph_count": "trap.bph",  # a count
            "interval_s": {"path": "trap.interval", "unit": "min"},  # a count converted: a whole number after it
            "battery_pct": "power.pct",  # a status field: never the fast path
        }
    },
}
REGISTRY = Registry(
    [
        DeviceTags("web01", Kind.LIGHT_TRAP, "ben_tre", "ba_tri", "field", "none", "active", "telegraf_host"),
        DeviceTags("Kitchen", Kind.LIGHT_TRAP, "ben_tre", "ba_tri", "field", "none", "active", "home"),
        DeviceTags("Attic", Kind.LIGHT_TRAP, "ben_tre", "ba_tri", "field", "none", "suspended", "home"),
        DeviceTags(
            "cs-1", Kind.LIGHT_TRAP, "ben_tre", "ba_tri", "field", "none", "active", "ours", dev_eui="0102030405060708"
        ),
    ]
)


def _decode(source: dict[str, Any], topic: str, payload: str | bytes) -> tuple[BatchBuilder, list[str]]:
    sources = parse_sources({"sources": [source], "models": MODELS}, "test sources")
    ignored: list[str] = []
    router = Router(sources, Decoder(REGISTRY, max_payload_bytes=65_536, max_readings=100), REGISTRY, ignored.append)
    out = BatchBuilder()
    raw = payload.encode() if isinstance(payload, str) else payload
    router.decode(topic, raw, retained=False, now_ms=NOW, out=out)
    return out, ignored


def _stored(out: BatchBuilder) -> list[tuple[str, dict[str, Any], int | None]]:
    """Each stored line as (device_id, fields, time), read back with the parser."""
    points = [p for p in parse("\n".join(out.lines)) if isinstance(p, Point)]
    assert len(points) == len(out.lines)
    return [(p.tags["device_id"], p.fields, p.time) for p in points]


def _reasons(out: BatchBuilder) -> list[tuple[Reason, str]]:
    return [(r.reason, r.detail) for r in out.rejections]


# --- the parser --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "measurement", "tags", "fields", "time"),
    [
        ("cpu value=42 0", "cpu", {}, {"value": 42.0}, 0),
        (r"c\ pu,ho\,st=a\ b\=c va\=l\ ue=1i", "c pu", {"ho,st": "a b=c"}, {"va=l ue": 1}, None),
        (r"c\=pu x=1", r"c\=pu", {}, {"x": 1.0}, None),  # a measurement does not unescape "="
        (r"cpu,h=two\\ words x=1", "cpu", {"h": r"two\ words"}, {"x": 1.0}, None),  # "\\" is no escape
        (r"cpu,h=two\\\ words x=1", "cpu", {"h": r"two\\ words"}, {"x": 1.0}, None),
        (r"cpu va\lue=1", "cpu", {}, {r"va\lue": 1.0}, None),
        (
            'cpu s="how\\"dy",t="how\\\\dy",u="a,b c=d"',
            "cpu",
            {},
            {"s": 'how"dy', "t": "how\\dy", "u": "a,b c=d"},
            None,
        ),
        (
            "cpu a=-1.5E-3,b=.5,c=1.,d=1e3,e=-7i,f=7u",
            "cpu",
            {},
            {"a": -0.0015, "b": 0.5, "c": 1.0, "d": 1000.0, "e": -7, "f": 7},
            None,
        ),
        (
            "cpu a=t,b=T,c=true,d=True,e=TRUE,f=f,g=F,h=false,i=False,j=FALSE",
            "cpu",
            {},
            {**dict.fromkeys("abcde", True), **dict.fromkeys("fghij", False)},
            None,
        ),
        (
            "cpu a=9223372036854775807i,b=-9223372036854775808i,c=18446744073709551615u",
            "cpu",
            {},
            {"a": 2**63 - 1, "b": -(2**63), "c": 2**64 - 1},
            None,
        ),
        ("  cpu  x=1   -5  \r", "cpu", {}, {"x": 1.0}, -5),
        ('cpu x="4\n2" 7', "cpu", {}, {"x": "4\n2"}, 7),  # a string's newline stays in its line
    ],
)
def test_lines_parse_with_telegrafs_escapes_and_types(
    line: str, measurement: str, tags: dict[str, str], fields: dict[str, Any], time: int | None
) -> None:
    [point] = parse(line)
    assert point == Point(1, measurement, tags, fields, time)
    for key, value in fields.items():
        assert isinstance(point, Point)
        assert type(point.fields[key]) is type(value)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("cpu", "'cpu' has no field set"),
        ("cpu,host=a", "'cpu' has no field set"),
        ("cpu value", "a field is not key=value"),
        ("cpu value=", "field 'value' has no value"),
        ("cpu value=1,", "a field is not key=value"),
        ("cpu,a= x=1", "a tag is not key=value"),
        ("cpu,=a x=1", "a tag is not key=value"),
        (",a=b x=1", "no measurement name"),
        ("cpu x=1 1.5", "unexpected text after the fields (a timestamp is one integer)"),
        ("cpu x=1 2 3", "unexpected text after the fields (a timestamp is one integer)"),
        ('cpu x="open', "field 'x': the string is not closed"),
        ("cpu x=9223372036854775808i", "field 'x': 9223372036854775808i is outside the 64-bit integer range"),
        ("cpu x=-9223372036854775809i", "field 'x': -9223372036854775809i is outside the 64-bit integer range"),
        ("cpu x=18446744073709551616u", "field 'x': 18446744073709551616u is outside the 64-bit unsigned range"),
        ("cpu x=-1u", "field 'x': '-1u' is not a float"),
        ("cpu x=1e400", "field 'x': 1e400 is beyond a 64-bit float"),
        ("cpu x=+1", "field 'x': '+1' is not a float"),
        ("cpu x=NaN", "field 'x': 'NaN' is not a float"),
        ("cpu x=inf", "field 'x': 'inf' is not a float"),
        ("cpu x=1_000", "field 'x': '1_000' is not a float"),
        ("cpu x=yes", "field 'x': 'yes' is not a float"),
        ("cpu x=1 99999999999999999999", "timestamp 99999999999999999999 is outside the 64-bit integer range"),
    ],
)
def test_a_line_that_does_not_parse_says_what_is_wrong(line: str, problem: str) -> None:
    [error] = parse(line)
    assert isinstance(error, LineError)
    assert error.problem.startswith(problem)
    assert error.text == line


def test_a_bad_line_does_not_take_the_others_with_it_and_lines_are_numbered() -> None:
    text = 'a x=1\n# a comment\n\nb x=\nc x="two\nlines"\r\n  \nd x="open\ne x=2\n'
    got = list(parse(text))
    assert [(type(p).__name__, p.line) for p in got] == [
        ("Point", 1), ("LineError", 4), ("Point", 5), ("LineError", 8), ("Point", 9),
    ]  # fmt: skip
    assert got[3] == LineError(8, "field 'x': the string is not closed", 'd x="open')
    [error, _] = parse('d x="open\ne x="2"')
    assert error == LineError(1, "a string field runs past the end of its line (a closing quote missing?)", 'd x="open')


@needs_corpus
def test_every_valid_corpus_line_parses_and_the_invalid_ones_are_refused_line_by_line() -> None:
    for path in LP.glob("*.lp"):
        got = list(parse(path.read_text(encoding="utf-8")))
        errors = [p for p in got if isinstance(p, LineError)]
        if path.name == "telegraf_parser_invalid_cases.lp":
            assert [(e.line, e.problem.split(":")[-1].strip()) for e in errors] == [
                (1, "9223372036854775808i is outside the 64-bit integer range"),
                (2, "18446744073709551616u is outside the 64-bit unsigned range"),
                (3, "'cpu' has no field set"),
            ]
        else:
            assert errors == [], path.name
    [point] = parse((LP / "telegraf_parser_string_with_newline.lp").read_text(encoding="utf-8"))
    assert point == Point(1, "cpu", {}, {"value": "4\n2"}, None)
    valid = [
        p for p in parse((LP / "telegraf_parser_valid_cases.lp").read_text(encoding="utf-8")) if isinstance(p, Point)
    ]
    assert [p.tags for p in valid if p.tags][4:] == [{"host": "two words"}, {"host": r"two\ words"},
                                                    {"host": r"two\\ words"}]  # fmt: skip
    assert {k for p in valid for k in p.fields} == {"value", r"va\lue", "va=lue", "va,lue", "va lue"}


NAME = st.text(st.characters(codec="utf-8", exclude_characters="\n\r\t"), min_size=1, max_size=12).filter(
    lambda s: not s.endswith("\\") and not s.startswith("#")
)
VALUE = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(2**63), 2**63 - 1)
    | st.booleans()
    | st.text(st.characters(codec="utf-8"), max_size=12)
)


def _format(value: bool | int | float | str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return format_float(value)
    if "\n" in value or "\r" in value:  # our writer refuses them; line protocol carries them in strings
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return format_string_field(value)


@settings(max_examples=300, deadline=None)
@given(
    points=st.lists(
        st.tuples(
            NAME,
            st.dictionaries(NAME, NAME, max_size=3),
            st.dictionaries(NAME, VALUE, min_size=1, max_size=4),
            st.none() | st.integers(-(2**63), 2**63 - 1),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_what_our_writer_escapes_reads_back_the_same(
    points: list[tuple[str, dict[str, str], dict[str, Any], int | None]],
) -> None:
    """storage.lineprotocol's escaping (our own writer) and strings with newlines, read back."""
    lines = []
    for measurement, tags, fields, time in points:
        tag_set = "".join(f",{escape_tag(k)}={escape_tag(v)}" for k, v in tags.items())
        field_set = ",".join(f"{escape_tag(k)}={_format(v)}" for k, v in fields.items())
        lines.append(f"{escape_measurement(measurement)}{tag_set} {field_set}{'' if time is None else f' {time}'}")
    got = list(parse("\n".join(lines)))
    assert [(p.measurement, p.tags, p.fields, p.time) for p in got] == points  # type: ignore[union-attr]


# --- the decoder ---------------------------------------------------------------------------------

T_NS = 1_700_000_000_123_456_789


def test_a_telegraf_batch_of_one_host_at_one_time_is_one_reading() -> None:
    payload = (
        f"sensors,host=web01,chip=bme280 temp=21.5,hum=61.5 {T_NS}\n"
        f"power,host=web01 battery_mv=3625i {T_NS}\n"
        f'lamp,host=web01 on=1i,state="on" {T_NS}\n'
        f"cpu,host=web01 usage_idle=99.1 {T_NS}\n"  # not mapped: left out
    )
    out, _ = _decode(TELEGRAF, "telegraf/web01/inputs", payload)
    assert out.rejections == []
    assert out.lines == [
        "light_trap,crop=none,device_id=web01,district=ba_tri,province=ben_tre,site=field "
        "lamp_on=1i,air_temp_c=21.5,humidity_pct=61.5,battery_v=3.625,seq=0i 1700000000123"
    ]


@pytest.mark.parametrize(
    ("precision", "stamp"),
    [("s", "1700000000"), ("ms", "1700000000123"), ("us", "1700000000123456"), ("ns", "1700000000123456789")],
)
def test_the_timestamp_is_read_in_the_sources_precision(precision: str, stamp: str) -> None:
    out, _ = _decode({**BY_ROOM, "precision": precision}, "home/x", f"home,room=Kitchen temp=20 {stamp}")
    assert _stored(out) == [("Kitchen", {"air_temp_c": 20.0, "seq": 0}, 1700000000000 if precision == "s" else
                             1700000000123)]  # fmt: skip


def test_lines_at_different_times_are_separate_readings_and_no_timestamp_is_the_receive_time() -> None:
    payload = "home,room=Kitchen temp=20 1700000000\nhome,room=Kitchen temp=21 1700000060\nhome,room=Kitchen hum=50\n"
    out, _ = _decode(BY_ROOM, "home/x", payload)
    assert out.rejections == []
    assert _stored(out) == [
        ("Kitchen", {"air_temp_c": 20.0, "seq": 0}, 1700000000000),
        ("Kitchen", {"air_temp_c": 21.0, "seq": 0}, 1700000060000),
        ("Kitchen", {"humidity_pct": 50.0, "seq": 0}, NOW),
    ]


def test_the_device_tag_is_unescaped_and_unknown_ones_are_refused_naming_their_lines() -> None:
    payload = (
        "home,room=Living\\ Room temp=21.1 1641024000\n"
        "home,room=Kitchen temp=21.0 1641024000\n"
        "home,room=Living\\ Room temp=21.4 1641027600\n"
        "home,room=Attic temp=9 1641027600\n"  # suspended
        "home temp=1 1641027600\n"  # no room tag
    )
    out, _ = _decode(BY_ROOM, "home/x", payload)
    assert _stored(out) == [("Kitchen", {"air_temp_c": 21.0, "seq": 0}, 1641024000000)]
    assert _reasons(out) == [
        (Reason.UNKNOWN_DEVICE, "tag room='Living Room' (lines 1, 3) is not an active registered device"),
        (Reason.UNKNOWN_DEVICE, "tag room='Attic' (line 4) is not an active registered device"),
        (Reason.UNKNOWN_DEVICE, "line 5: no tag 'room' names the device"),
    ]


def test_a_dev_eui_tag_is_looked_up_in_lower_case() -> None:
    out, _ = _decode(BY_EUI, "cs/x", "device_uplink,dev_eui=0102030405060708 air_temp_c=20.5,rssi=-55i")
    assert _stored(out) == [("cs-1", {"air_temp_c": 20.5, "seq": 0}, NOW)]  # model "ours": our names only
    out, _ = _decode(BY_EUI, "cs/x", "device_uplink,dev_eui=0102030405060708 rssi=-55i")
    assert _reasons(out) == [
        (Reason.MISSING_FIELD, "line 1: no field maps to ours (model 'ours' has no entry in the sources file)")
    ]
    out, _ = _decode(BY_EUI, "cs/x", "device_uplink,dev_eui=01020304050607AA air_temp_c=1")
    assert _reasons(out) == [
        (Reason.UNKNOWN_DEVICE, "tag dev_eui='01020304050607AA' (line 1) is not an active registered device")
    ]


def test_an_unknown_host_in_the_topic_refuses_the_message() -> None:
    out, _ = _decode(TELEGRAF, "telegraf/web99/cpu", "sensors temp=1")
    assert _reasons(out) == [(Reason.UNKNOWN_DEVICE, "topic level 1 ('web99') is not an active registered device")]
    out, _ = _decode({**TELEGRAF, "device": {"topic_level": 5}}, "telegraf/web01/cpu", "sensors temp=1")
    assert _reasons(out) == [(Reason.UNKNOWN_DEVICE, "topic level 5 ('') is not an active registered device")]


def test_a_bad_line_is_refused_by_number_and_the_other_lines_are_stored() -> None:
    payload = f"sensors temp=21.5 {T_NS}\nsensors temp=oops {T_NS}\n\nsensors hum=60 {T_NS}\n"
    out, _ = _decode(TELEGRAF, "telegraf/web01/x", payload)
    assert _stored(out) == [("web01", {"air_temp_c": 21.5, "humidity_pct": 60.0, "seq": 0}, 1700000000123)]
    assert _reasons(out) == [
        (
            Reason.BAD_SHAPE,
            "line 2: field 'temp': 'oops' is not a float, integer (i), unsigned (u), boolean or \"string\": "
            f"'sensors temp=oops {T_NS}'",
        )
    ]


def test_strings_and_booleans_are_not_numbers_only_where_they_are_mapped() -> None:
    payload = f'sensors temp="warm",hum=60,note="ok" {T_NS}\nlamp on=true {T_NS}'
    out, _ = _decode(TELEGRAF, "telegraf/web01/x", payload)
    assert _stored(out) == [("web01", {"humidity_pct": 60.0, "seq": 0}, 1700000000123)]
    assert sorted(_reasons(out)) == [
        (Reason.BAD_TYPE, "air_temp_c: 'warm' is not a number; the rest of the reading was stored"),
        (Reason.BAD_TYPE, "lamp_on: bool 'True' is not a number; the rest of the reading was stored"),
    ]


def test_values_out_of_range_or_time_are_refused_with_their_reason() -> None:
    out, _ = _decode(TELEGRAF, "telegraf/web01/x", f"sensors temp=99 {T_NS}\nsensors temp=20 0")
    assert [r for r, _ in _reasons(out)] == [Reason.OUT_OF_RANGE, Reason.BAD_TIMESTAMP]
    assert out.lines == []


def test_a_message_without_lines_is_counted_and_one_not_utf8_is_refused() -> None:
    out, ignored = _decode(TELEGRAF, "telegraf/web01/x", "\n# only a comment\n  \n")
    assert (out.lines, out.rejections, ignored) == ([], [], ["empty"])
    out, _ = _decode(TELEGRAF, "telegraf/web01/x", b"sensors temp=\xff1")
    assert [r for r, _ in _reasons(out)] == [Reason.BAD_UTF8]


def test_a_flood_of_bad_lines_is_refused_once_past_the_limit() -> None:
    out, _ = _decode(TELEGRAF, "telegraf/web01/x", "junk\n" * (MAX_LINE_REFUSALS + 5) + f"sensors temp=20 {T_NS}")
    assert len(out.lines) == 1
    assert len(out.rejections) == MAX_LINE_REFUSALS + 1
    assert out.rejections[-1].detail == f"5 more lines do not parse (only the first {MAX_LINE_REFUSALS} are named)"


@needs_corpus
def test_the_corpus_invalid_file_is_refused_line_by_line_through_the_decoder() -> None:
    out, _ = _decode(TELEGRAF, "telegraf/web01/cpu", (LP / "telegraf_parser_invalid_cases.lp").read_bytes())
    assert out.lines == []
    assert [(r.reason, r.detail.split(":")[0]) for r in out.rejections] == [
        (Reason.BAD_SHAPE, "line 1"), (Reason.BAD_SHAPE, "line 2"), (Reason.BAD_SHAPE, "line 3"),
    ]  # fmt: skip


LP_TEXT = st.lists(
    st.text(st.sampled_from(list('cpuhost=temp, "\\\n\t#0123456789.-eiuTtrfals')), max_size=40)
    | st.sampled_from(["sensors temp=21", f"sensors,host=web01 hum=50 {T_NS}", "home,room=Kitchen temp=2 1", ""]),
    max_size=6,
).map("\n".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=LP_TEXT,
    raw=st.binary(max_size=64),
    use_raw=st.booleans(),
    source=st.sampled_from([TELEGRAF, BY_ROOM, BY_EUI]),
)
def test_fuzz_no_crash_and_every_refusal_has_a_reason(
    text: str, raw: bytes, use_raw: bool, source: dict[str, Any]
) -> None:
    topic = {"telegraf/+/+": "telegraf/web01/x", "home/+": "home/x", "cs/+": "cs/x"}[source["topics"][0]]
    out, ignored = _decode(source, topic, raw if use_raw else text.encode())
    for r in out.rejections:
        assert isinstance(r.reason, Reason)
        assert r.detail
    if not out.lines and not ignored:
        assert out.rejections, "a message neither stored, counted nor refused"


PLANNED_FIELDS = {
    "sensors": ["temp", "rh", "hum", "x"], "power": ["battery", "pct", "hum"], "radio": ["rssi"],
    "trap": ["bph", "interval"], "other": ["hum", "temp"],
}  # fmt: skip
PLANNED_VALUES = ["21.5", "300.15", "250", "-0.0", "1e300", "4006i", "-7i", "7u", "0i", "3.0", "1000001i", "t",
                  "false", '"24.5"', '"300.15"', '"4006"', '"warm"', "-104.9", "12", "95.5", "1.001"]  # fmt: skip
PLANNED_LINE = (
    st.sampled_from(sorted(PLANNED_FIELDS))
    .flatmap(
        lambda m: st.tuples(
            st.just(m),
            st.dictionaries(
                st.sampled_from(PLANNED_FIELDS[m]), st.sampled_from(PLANNED_VALUES), min_size=1, max_size=4
            ),
            st.sampled_from([f" {T_NS}", "", " 0"]),
        )
    )
    .map(lambda t: f"{t[0]},host=web01 " + ",".join(f"{k}={v}" for k, v in t[1].items()) + t[2])
)


def _rows(out: BatchBuilder) -> dict[str, list[tuple[Any, ...]]]:
    """The rows the rule engine gets, with their types (1 and 1.0 differ here)."""
    return {k: [(type(v), v) for v in r.records] for k, r in out._rows.items() if r.records}


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(PLANNED_LINE, min_size=1, max_size=2))
def test_a_lines_plan_take_stores_what_its_mapped_values_store(lines: list[str]) -> None:
    """The take of a line's plan (:meth:`FlatShapes.planned`) stores and refuses exactly what the
    values the plan maps do through :meth:`FlatShapes.ours` and the sink (the path without it)."""
    source = {**TELEGRAF, "model": "planned"}
    payload = "\n".join(lines)
    fast, fast_ignored = _decode(source, "telegraf/web01/x", payload)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FlatShapes, "planned", lambda self, kind, plan: None)
        general, general_ignored = _decode(source, "telegraf/web01/x", payload)
    assert fast.lines == general.lines
    assert _rows(fast) == _rows(general)
    assert _reasons(fast) == _reasons(general)
    assert fast_ignored == general_ignored


def test_the_usual_line_is_stored_by_its_plans_take() -> None:
    taken: list[bool] = []
    original = FlatShapes.take

    def spy(take: Any, *args: Any, **kwargs: Any) -> bool:
        taken.append(original(take, *args, **kwargs))
        return taken[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FlatShapes, "take", staticmethod(spy))
        out, _ = _decode({**TELEGRAF, "model": "planned"}, "telegraf/web01/x",
                         f"sensors,host=web01 temp=300.15,hum=55,x=1i {T_NS}")  # fmt: skip
    assert taken == [True]
    assert _stored(out) == [("web01", {"air_temp_c": 27.0, "humidity_pct": 55.0, "seq": 0}, 1700000000123)]


ONE_LINE_VALUES = [*PLANNED_VALUES, "1_0", "+5", "nan", "inf", "1e999", "-", ".", "5.", ".5", "1.2.3", "1e5",
                   "9223372036854775808i", "-9223372036854775808i", "１2", "1=2", "", "--1", "-0i", "+1i",
                   "1_0i"]  # fmt: skip
TRICKY = ["1_0", "+5", "1e999", "-1e999", "1_0i", "+1i", "9223372036854775808i", "-9223372036854775809i", "１2",
          "1.2.3", "5.", ".5", "-0i", "1e5", "-.5"]  # fmt: skip
"""Values a plain line's fast path must read exactly as the parser does (or leave to it)."""
ONE_LINE_GOOD = {
    "sensors": {"temp": ["300.15", "21.5", "290i"], "hum": ["55", "61.5"], "rh": ["40.0"], "x": ["1i", "2.5"]},
    "power": {"battery": ["4006i", "3625.0"], "battery_mv": ["3625i"], "pct": ["80"], "hum": ["50"]},
    "radio": {"rssi": ["-104.9", "-70i"]},
    "trap": {"bph": ["12", "3.0", "4i"], "interval": ["60", "1i", "0.01", "1.001", "2.5"]},
    "home": {"temp": ["21.5"], "hum": ["50.5"]},
}
ONE_LINE = (
    st.sampled_from(sorted(ONE_LINE_GOOD))
    .flatmap(
        lambda m: st.tuples(
            st.sampled_from([m] * 8 + ["#sensors", " sensors", "é"]),
            st.sampled_from(
                [",host=web01", ",room=Kitchen", ",host=web01,room=Kitchen"] * 4
                + [",room=Attic", ",room=Nobody", "", ",room", ",room=a=b", ",=x", ",room=Kitchen,room=Attic", ",x=é"]
            ),
            st.lists(st.sampled_from(sorted(ONE_LINE_GOOD[m])), min_size=1, max_size=3, unique=True).flatmap(
                lambda keys: st.tuples(*[st.tuples(st.just(k), st.sampled_from(ONE_LINE_GOOD[m][k])) for k in keys])
            ),
            st.lists(
                st.tuples(
                    st.sampled_from(["x", "y", "hum"]), st.sampled_from(ONE_LINE_VALUES) | st.sampled_from(TRICKY)
                ),
                min_size=1,
                max_size=1,
            ),
            st.sampled_from(
                [f" {T_NS}", "", " 1700000000"] * 4
                + [" 0", " -5", " 9223372036854775808", " -9223372036854775809", " 12a", "  1", " ١"]
            ),
            st.sampled_from(["", "\n"] * 4 + ["\n\n", " ", "\r\n", "\t"]),
        )
    )
    .map(lambda t: t[0] + t[1] + " " + ",".join(f"{k}={v}" for k, v in (*t[2], *t[3])) + t[4] + t[5])
)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    line=ONE_LINE | PLANNED_LINE,
    source=st.sampled_from([{**TELEGRAF, "model": "planned"}, {**BY_ROOM, "model": "planned"}, BY_ROOM, TELEGRAF]),
)
def test_a_one_line_message_stores_by_its_fast_path_what_the_general_path_stores(
    line: str, source: dict[str, Any]
) -> None:
    """A message of one plain line, read straight into its plan's take (:meth:`InfluxLineProtocol._one_line`),
    stores and refuses exactly what the general path (the parser, the readings, the mapper and the
    sink, without any take) does."""
    topic = "telegraf/web01/x" if source["topics"] == TELEGRAF["topics"] else "home/x"
    fast, fast_ignored = _decode(source, topic, line)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(InfluxLineProtocol, "_one_line", lambda self, *args, **kwargs: False)
        patch.setattr(FlatShapes, "planned", lambda self, kind, plan: None)  # no take: the mapper and the sink
        general, general_ignored = _decode(source, topic, line)
    assert fast.lines == general.lines
    assert _rows(fast) == _rows(general)
    assert _reasons(fast) == _reasons(general)
    assert fast_ignored == general_ignored


def test_the_usual_one_line_message_takes_the_fast_path() -> None:
    taken: list[bool] = []
    original = InfluxLineProtocol._one_line

    def spy(self: InfluxLineProtocol, *args: Any, **kwargs: Any) -> bool:
        taken.append(original(self, *args, **kwargs))
        return taken[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(InfluxLineProtocol, "_one_line", spy)
        out, _ = _decode({**TELEGRAF, "model": "planned"}, "telegraf/web01/x",
                         f"sensors,host=web01 temp=300.15,hum=55,x=1i {T_NS}\n")  # fmt: skip
        two, _ = _decode({**BY_ROOM, "model": "planned"}, "home/x", "sensors,room=Kitchen temp=300.15 1700000000\n")
    assert taken == [True, True]
    assert _stored(out) == [("web01", {"air_temp_c": 27.0, "humidity_pct": 55.0, "seq": 0}, 1700000000123)]
    assert _stored(two) == [("Kitchen", {"air_temp_c": 27.0, "seq": 0}, 1700000000000)]
