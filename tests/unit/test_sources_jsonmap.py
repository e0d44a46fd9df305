"""Vendor JSON by a declarative mapping (``json_map``): each decoding rule with a real registry and
batch, and the vendor codec outputs of ``../shared/realworld/lorawan_codecs`` (read in place)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.fields import TS_MAX_AHEAD_MS, TS_MIN_MS, Kind
from contract.fleet import DeviceTags
from contract.reasons import Reason
from ingest.batch import BatchBuilder
from ingest.decode import Decoder
from ingest.registry import Registry
from ingest.sources.config import SourcesFile, parse_sources
from ingest.sources.jsonmap import time_ms
from ingest.sources.lineprotocol import Point, parse
from ingest.sources.router import Router
from tests import corpus

CODECS = corpus.CORPUS / "lorawan_codecs"
needs_corpus = corpus.needs_corpus("lorawan_codecs")

NOW = 1_750_000_000_000
BY_PATH: dict[str, Any] = {
    "format": "json_map",
    "topics": ["vendor/#"],
    "device": {"path": "meta.eui", "scheme": "dev_eui"},
    "time": {"path": "ts", "format": "iso8601"},
    "seq": "cnt",
}
BY_TOPIC: dict[str, Any] = {"format": "json_map", "topics": ["codec/+/up"], "device": {"topic_level": 1}}
SENSECAP: dict[str, Any] = {
    **BY_TOPIC,
    "records": {"path": "output_data.messages", "name": "measurementId", "value": "measurementValue"},
}
MODELS: dict[str, Any] = {
    "vendor_wq": {"fields": {"temp_c": "temperature", "ec_us_cm": {"path": "ec", "unit": "mS/cm"}, "ph": "ph"}},
    "sensecap_s210x": {"fields": {"air_temp_c": "4097", "humidity_pct": "4098"}},
    "dragino_lse01": {
        "fields": {
            "ec_us_cm": "output_data.conduct_SOIL",
            "temp_c": ["output_data.temp_SOIL", "output_data.TEMP_SOIL"],
            "battery_v": {"path": "output_data.Bat", "unit": "V"},
        }
    },
    "dragino_lsph01": {
        "fields": {"ph": "output_data.PH1_SOIL", "temp_c": "output_data.TEMP_SOIL", "battery_v": "output_data.Bat"}
    },
    "dragino_ldds75": {
        "fields": {"water_level_cm": {"path": "output_data.distance", "unit": "mm"}, "battery_v": "output_data.Bat"}
    },
}
EUI = "a84041000181c0de"
REGISTRY = Registry(
    [
        DeviceTags("bt-wq-1", Kind.WATER_QUALITY, "ben_tre", "ba_tri", "field", "none", "active", "vendor_wq", EUI),
        DeviceTags("bt-trap-1", Kind.LIGHT_TRAP, "ben_tre", "ba_tri", "field", "none", "active", "sensecap_s210x"),
        DeviceTags("bt-lse01", Kind.WATER_QUALITY, "ben_tre", "ba_tri", "field", "none", "active", "dragino_lse01"),
        DeviceTags("bt-lsph01", Kind.WATER_QUALITY, "ben_tre", "ba_tri", "field", "none", "active", "dragino_lsph01"),
        DeviceTags("bt-ldds75", Kind.SALINITY, "ben_tre", "ba_tri", "field", "none", "active", "dragino_ldds75"),
        DeviceTags("bt-old", Kind.SALINITY, "ben_tre", "ba_tri", "field", "none", "decommissioned", "x"),
    ]
)


def _decode(source: dict[str, Any], topic: str, doc: Any) -> tuple[BatchBuilder, list[str]]:
    sources = parse_sources({"sources": [source], "models": MODELS}, "test sources")
    ignored: list[str] = []
    router = Router(sources, Decoder(REGISTRY, max_payload_bytes=65_536, max_readings=100), REGISTRY, ignored.append)
    out = BatchBuilder()
    payload = doc if isinstance(doc, bytes) else msgspec.json.encode(doc)
    router.decode(topic, payload, retained=False, now_ms=NOW, out=out)
    return out, ignored


def _stored(out: BatchBuilder) -> list[tuple[str, dict[str, Any], int | None]]:
    """Each stored line as (device_id, fields, time)."""
    points = [p for p in parse("\n".join(out.lines)) if isinstance(p, Point)]
    assert len(points) == len(out.lines)
    return [(p.tags["device_id"], p.fields, p.time) for p in points]


def _reasons(out: BatchBuilder) -> list[tuple[Reason, str]]:
    return [(r.reason, r.detail) for r in out.rejections]


def test_an_object_gives_device_time_counter_and_mapped_fields() -> None:
    doc = {"meta": {"eui": EUI.upper()}, "ts": "2023-11-14T22:13:20.123Z", "cnt": "42",
           "temperature": "24.59", "ec": 28.2, "ph": None, "rssi": -80}  # fmt: skip
    out, _ = _decode(BY_PATH, "vendor/x", doc)
    assert out.rejections == []
    assert out.lines == [
        "water_quality,crop=none,device_id=bt-wq-1,district=ba_tri,province=ben_tre,site=field "
        "temp_c=24.59,ec_us_cm=28200.0,seq=42i 1700000000123"
    ]


def test_an_array_of_objects_is_one_reading_each_and_a_stray_element_is_refused() -> None:
    doc = [
        {"meta": {"eui": EUI}, "ts": "2023-11-14T22:13:20Z", "temperature": 20},
        {"meta": {"eui": EUI}, "ts": "2023-11-14T22:14:20Z", "temperature": 21, "cnt": 2},
        "garbage",
        {"meta": {"eui": "ffffffffffffffff"}, "temperature": 1},
    ]
    out, _ = _decode(BY_PATH, "vendor/x", doc)
    assert _stored(out) == [
        ("bt-wq-1", {"temp_c": 20.0, "seq": 0}, 1700000000000),
        ("bt-wq-1", {"temp_c": 21.0, "seq": 2}, 1700000060000),
    ]
    assert _reasons(out) == [
        (Reason.BAD_SHAPE, "element 2 is text, not a JSON object (a reading)"),
        (Reason.UNKNOWN_DEVICE, "element 3: meta.eui 'ffffffffffffffff' is not an active registered device"),
    ]


@pytest.mark.parametrize(
    ("fmt", "raw", "ms"),
    [
        ("unix_s", 1700000000, 1700000000000),
        ("unix_s", 1700000000.123, 1700000000123),
        ("unix_s", "1700000000", 1700000000000),
        ("unix_s", " 1.7e9 ", 1700000000000),
        ("unix_ms", 1700000000123.9, 1700000000123),
        ("unix_ms", 1700000000123, 1700000000123),
        ("unix_ms", "1700000000123", 1700000000123),
        ("unix_us", 1700000000123456, 1700000000123),
        ("unix_ns", 1700000000123456789, 1700000000123),
        ("unix_ns", "1700000000123456789", 1700000000123),
        ("iso8601", "2023-11-14T22:13:20.123456789+00:00", 1700000000123),
        ("iso8601", "2023-11-15T05:13:20.123+07:00", 1700000000123),
        ("iso8601", "2023-11-14T22:13:20.123", 1700000000123),  # no offset: UTC
        ("iso8601", "2023-11-14 22:13:20.123Z", 1700000000123),
    ],
)
def test_times_in_each_format(fmt: Any, raw: Any, ms: int) -> None:
    assert time_ms(raw, fmt) == ms


@pytest.mark.parametrize(
    ("fmt", "raw"),
    [
        ("unix_s", "soon"),
        ("unix_s", "nan"),
        ("unix_s", "1e999999999"),
        ("unix_ms", True),
        ("unix_ms", [1]),
        ("iso8601", 1700000000),
        ("iso8601", "14/11/2023"),
    ],
)
def test_a_time_that_is_not_one_is_a_bad_timestamp(fmt: Any, raw: Any) -> None:
    source = {**BY_PATH, "time": {"path": "ts", "format": fmt}}
    out, _ = _decode(source, "vendor/x", {"meta": {"eui": EUI}, "ts": raw, "temperature": 20})
    assert out.lines == []
    [(reason, detail)] = _reasons(out)
    assert reason == Reason.BAD_TIMESTAMP
    assert detail.endswith(f"is not a {fmt} time")


def test_no_time_is_the_receive_time_and_a_bad_counter_is_refused() -> None:
    out, _ = _decode(BY_PATH, "vendor/x", {"meta": {"eui": EUI}, "temperature": 20, "ts": None})
    assert _stored(out) == [("bt-wq-1", {"temp_c": 20.0, "seq": 0}, NOW)]
    for cnt in ("x", -1, 1.5, True, {"n": 1}):
        out, _ = _decode(BY_PATH, "vendor/x", {"meta": {"eui": EUI}, "temperature": 20, "cnt": cnt})
        assert [r for r, _ in _reasons(out)] == [Reason.BAD_TYPE], cnt
        assert out.lines == []


@pytest.mark.parametrize(
    ("doc", "reason", "detail"),
    [
        (b"{nope", Reason.BAD_JSON, "not JSON: "),
        (b"\xff", Reason.BAD_JSON, "not JSON: "),
        (42, Reason.BAD_SHAPE, "expected a JSON object (a reading) or an array of them, not a number"),
        ({"temperature": 20}, Reason.UNKNOWN_DEVICE, "no 'meta.eui' names the device"),
        ({"meta": {"eui": [1]}, "temperature": 20}, Reason.BAD_SHAPE, "meta.eui is an array, not a device name"),
        ({"meta": {"eui": EUI}, "rssi": 1}, Reason.MISSING_FIELD, "no field maps to ours"),
        ({"meta": {"eui": EUI}, "ph": 15}, Reason.OUT_OF_RANGE, "ph: 15 is outside 0..14 pH"),
        ({"meta": {"eui": EUI}, "ts": "2031-01-01T00:00:00Z", "ph": 7}, Reason.BAD_TIMESTAMP, "time 1924992000000"),
    ],
)
def test_refusals_name_their_reason(doc: Any, reason: Reason, detail: str) -> None:
    out, _ = _decode(BY_PATH, "vendor/x", doc)
    assert out.lines == []
    [(got_reason, got_detail)] = _reasons(out)
    assert (got_reason, got_detail[: len(detail)]) == (reason, detail)


def test_an_empty_array_is_counted_not_refused() -> None:
    out, ignored = _decode(BY_PATH, "vendor/x", [])
    assert (out.lines, out.rejections, ignored) == ([], [], ["empty"])


def test_garbage_in_one_field_refuses_that_field_and_keeps_the_rest() -> None:
    doc = {"output_data": {"distance": "No Sensor", "Bat": 3.6}}
    out, _ = _decode(BY_TOPIC, "codec/bt-ldds75/up", doc)
    assert _stored(out) == [("bt-ldds75", {"battery_v": 3.6, "seq": 0}, NOW)]
    assert _reasons(out) == [
        (Reason.BAD_TYPE, "water_level_cm: 'No Sensor' is not a number; the rest of the reading was stored")
    ]


def test_records_of_one_time_are_one_reading_and_of_different_times_separate_ones() -> None:
    source = {
        "format": "json_map",
        "topics": ["kep/+"],
        "device": {"topic_level": 1},
        "time": {"path": "timestamp", "format": "unix_ms"},
        "records": {"path": "values", "name": "id", "value": "v", "time": "t"},
        "model": "sensecap_s210x",
    }
    doc = {
        "timestamp": 1700000000000,
        "values": [
            {"id": "4097", "v": 21.4, "t": 1700000060000},
            {"id": 4098, "v": "31.4", "t": 1700000060000},
            {"id": 4097, "v": 22.0},  # the message's time
            {"type": "upload_battery", "battery": 100},  # no name: metadata, not a reading
        ],
    }
    out, _ = _decode(source, "kep/bt-trap-1", doc)
    assert out.rejections == []
    assert _stored(out) == [
        ("bt-trap-1", {"air_temp_c": 21.4, "humidity_pct": 31.4, "seq": 0}, 1700000060000),
        ("bt-trap-1", {"air_temp_c": 22.0, "seq": 0}, 1700000000000),
    ]
    doc["values"] = [{"id": 4097, "v": 1, "t": "later"}, 7, {"id": 4098, "v": 50}]
    out, _ = _decode(source, "kep/bt-trap-1", doc)
    assert _stored(out) == [("bt-trap-1", {"humidity_pct": 50.0, "seq": 0}, 1700000000000)]
    assert _reasons(out) == [
        (Reason.BAD_TIMESTAMP, "record 0: t 'later' is not a unix_ms time"),
        (Reason.BAD_SHAPE, "record 1 is a number, not a JSON object"),
    ]


RECORD_VALUES = st.one_of(
    st.floats(-100, 200), st.integers(-5, 200), st.sampled_from(["24.5", "No Sensor", "", "7"]),
    st.none(), st.booleans(), st.just({"v": 1.0}), st.just([1]),
)  # fmt: skip
RECORDS = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {"id": st.sampled_from([4097, "4097", 4098, "4098", "other", None, True, 1.5])},
            optional={"v": RECORD_VALUES, "x": st.integers(-10, 10)},
        ),
        st.sampled_from([7, "text", None, [1]]),  # not a record
    ),
    max_size=6,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=RECORDS)
def test_records_of_the_message_time_read_alike_by_both_loops(records: list[Any]) -> None:
    """Records without a time path of their own take a loop of their own (one reading): it stores and
    refuses exactly what the general loop does (here with a time path no record has)."""
    source = {**BY_TOPIC, "topics": ["kep/+"], "records": {"path": "values", "name": "id", "value": "v"},
              "model": "sensecap_s210x"}  # fmt: skip
    general = {**source, "records": {**source["records"], "time": "no_such_key"}}
    fast_out, fast_ignored = _decode(source, "kep/bt-trap-1", {"values": records})
    general_out, general_ignored = _decode(general, "kep/bt-trap-1", {"values": records})
    assert fast_out.lines == general_out.lines
    assert _reasons(fast_out) == _reasons(general_out)
    assert fast_ignored == general_ignored


def test_the_payload_itself_may_be_the_array_of_records() -> None:
    source = {**SENSECAP, "records": {"name": "measurementId", "value": "measurementValue"}}
    doc = [{"measurementId": 4097, "measurementValue": 21.4}, {"measurementId": 4098, "measurementValue": 31.4}]
    out, _ = _decode(source, "codec/bt-trap-1/up", doc)
    assert _stored(out) == [("bt-trap-1", {"air_temp_c": 21.4, "humidity_pct": 31.4, "seq": 0}, NOW)]
    out, _ = _decode(source, "codec/bt-trap-1/up", {"measurementId": 4097})
    assert _reasons(out) == [(Reason.BAD_SHAPE, "expected a JSON array of records, not an object")]
    out, _ = _decode(SENSECAP, "codec/bt-trap-1/up", {"output_data": {}})
    assert _reasons(out) == [(Reason.BAD_SHAPE, "expected an array of records at 'output_data.messages', not absent")]


def test_a_message_whose_records_have_no_quantity_is_counted_not_refused() -> None:
    doc = {"output_data": {"messages": [{"type": "upload_battery", "battery": 100}]}}
    out, ignored = _decode(SENSECAP, "codec/bt-trap-1/up", doc)
    assert (out.lines, out.rejections, ignored) == ([], [], ["no_records"])


def test_a_device_by_topic_level_must_be_active() -> None:
    out, _ = _decode(BY_TOPIC, "codec/bt-old/up", {"x": 1})
    assert _reasons(out) == [(Reason.UNKNOWN_DEVICE, "topic level 1 ('bt-old') is not an active registered device")]


CODEC_EXPECTED: dict[str, tuple[str, dict[str, Any], list[tuple[Reason, str]], list[str]]] = {
    # file: (device, stored fields, refusals, ignored)
    "dragino_lse01_soil_ec.json": ("bt-lse01", {"ec_us_cm": 28200.0, "temp_c": 24.59, "battery_v": 3.625}, [], []),
    "dragino_lsph01_soil_ph.json": ("bt-lsph01", {"ph": 5.96, "temp_c": 24.9, "battery_v": 3.363}, [], []),
    "dragino_ldds75_distance_no_sensor.json": (
        "bt-ldds75",
        {},
        [(Reason.BAD_TYPE, "water_level_cm: 'No Sensor' is not a number")],
        [],
    ),
    "sensecap_s210x_telemetry.json": ("bt-trap-1", {"air_temp_c": 21.4, "humidity_pct": 31.4}, [], []),
    "sensecap_s210x_device_properties.json": ("bt-trap-1", {}, [], ["no_records"]),
}


@needs_corpus
@pytest.mark.parametrize("file", sorted(CODEC_EXPECTED))
def test_each_vendor_codec_output_of_the_corpus_has_its_predicted_outcome(file: str) -> None:
    device, fields, refusals, ignored_events = CODEC_EXPECTED[file]
    source = SENSECAP if file.startswith("sensecap") else BY_TOPIC
    out, ignored = _decode(source, f"codec/{device}/up", (CODECS / file).read_bytes())
    assert _reasons(out) == refusals
    assert ignored == ignored_events
    assert _stored(out) == ([(device, {**fields, "seq": 0}, NOW)] if fields else [])


JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
SCALAR = st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=12)
OBJECT = st.fixed_dictionaries(
    {},
    optional={
        "meta": st.fixed_dictionaries({"eui": st.sampled_from([EUI, EUI.upper(), "x", ""]) | SCALAR}) | JSON,
        "ts": st.sampled_from(["2023-11-14T22:13:20Z", "nonsense", "1999-01-01T00:00:00Z"]) | JSON,
        "cnt": st.integers() | JSON,
        "temperature": SCALAR,
        "ec": SCALAR,
        "output_data": st.fixed_dictionaries(
            {},
            optional={
                "messages": st.lists(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "measurementId": st.sampled_from([4097, "4098", 1.5]) | SCALAR,
                            "measurementValue": SCALAR,
                        },
                    )
                    | JSON,
                    max_size=4,
                )
                | JSON,
                "distance": SCALAR,
            },
        )
        | JSON,
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    doc=OBJECT | st.lists(OBJECT, max_size=3) | JSON,
    raw=st.binary(max_size=64),
    use_raw=st.booleans(),
    where=st.sampled_from([(BY_PATH, "vendor/x"), (SENSECAP, "codec/bt-trap-1/up"), (BY_TOPIC, "codec/bt-ldds75/up")]),
)
def test_fuzz_no_crash_and_every_refusal_has_a_reason(
    doc: Any, raw: bytes, use_raw: bool, where: tuple[dict[str, Any], str]
) -> None:
    source, topic = where
    out, ignored = _decode(source, topic, raw if use_raw else json.dumps(doc).encode())
    for r in out.rejections:
        assert isinstance(r.reason, Reason)
        assert r.detail
    if not out.lines and not ignored:
        assert out.rejections, "a message neither stored, counted nor refused"


@settings(max_examples=400, deadline=None)
@given(
    fmt=st.sampled_from(["unix_s", "unix_ms", "unix_us", "unix_ns"]),
    raw=st.one_of(
        st.integers(-(10**20), 10**20),
        st.sampled_from([0, 1_700_000_000, NOW, NOW * 1000, NOW * 1_000_000, -1]),
    ),
    name=st.sampled_from([EUI, EUI.upper(), "a84041000181c0df", "", 7, None, True]),
)
def test_a_whole_number_time_and_a_text_device_name_read_as_the_general_rules_read_them(
    fmt: Any, raw: int, name: Any
) -> None:
    """The usual time (a whole number) and device name (text) have fast paths of their own: what they
    store is what :func:`time_ms` and the registry say, and anything else is refused as before."""
    source = {**BY_PATH, "time": {"path": "ts", "format": fmt}}
    out, _ = _decode(source, "vendor/x", {"meta": {"eui": name}, "ts": raw, "temperature": 20})
    ms = time_ms(raw, fmt)
    if name not in (EUI, EUI.upper()):
        assert [r for r, _ in _reasons(out)] == [Reason.BAD_SHAPE if name is True else Reason.UNKNOWN_DEVICE]
    elif TS_MIN_MS <= ms <= NOW + TS_MAX_AHEAD_MS:
        assert _stored(out) == [("bt-wq-1", {"temp_c": 20.0, "seq": 0}, ms)]
        assert out.rejections == []
    else:
        assert out.lines == []
        assert [r for r, _ in _reasons(out)] == [Reason.BAD_TIMESTAMP]


KNOWN_SOURCES: list[dict[str, Any]] = [
    {"format": "json_map", "topics": ["kep/+"], "device": {"path": "dev"}, "time": {"path": "ts", "format": "unix_ms"},
     "seq": "cnt", "records": {"path": "values", "name": "id", "value": "v"}},
    {"format": "json_map", "topics": ["kep/+"], "device": {"topic_level": 1},
     "time": {"path": "ts", "format": "unix_s"}, "records": {"path": "values", "name": "id", "value": "v"},
     "model": "sensecap_s210x"},
    {**BY_TOPIC, "topics": ["kep/+"], "records": {"path": "values", "name": "id", "value": "v"}},
]  # fmt: skip
KNOWN_NAMES = [4097, 4098, "4097", "4098", "other", 4099]


@st.composite
def _record_stream(draw: st.DrawFn) -> list[tuple[str, Any]]:
    """Messages one after another on one decoder: a few usual record lists, each sent again with
    other values, times and counters (its names known by then), some a little off the usual."""
    names_of = st.lists(st.sampled_from(KNOWN_NAMES), min_size=1, max_size=4)
    bases = [draw(names_of) for _ in range(draw(st.integers(1, 3)))]
    stream: list[tuple[str, Any]] = []
    for _ in range(draw(st.integers(1, 10))):
        names: list[Any] = list(draw(st.sampled_from(bases)))
        records: list[Any] = [{"id": name, "v": draw(RECORD_VALUES)} for name in names]
        if draw(st.integers(0, 4)) == 0:  # off the usual: a stray record, a name of another kind, a value absent
            at = draw(st.integers(0, len(records) - 1))
            off = [7, {"id": True, "v": 1}, {"id": 4097.0, "v": 1}, {"id": 4097}, {"v": 1}]
            records[at] = draw(st.sampled_from(off))
        doc: dict[str, Any] = {"values": records}
        for key, values in (
            ("dev", ["bt-trap-1", "bt-trap-1", "bt-wq-1", "nobody", 7]),
            ("ts", [NOW - 1000, NOW // 1000, NOW, "1750000000000", 1.5, -1, NOW * 10]),
            ("cnt", [0, 5, -1, 2**40, "3"]),
        ):
            if draw(st.integers(0, 5)):
                doc[key] = draw(st.sampled_from(values))
        topic = draw(st.sampled_from(["kep/bt-trap-1", "kep/bt-trap-1", "kep/bt-wq-1"]))
        stream.append((topic, doc))
    return stream


def _with_and_without_the_usual_decoder(
    sources: SourcesFile, payloads: list[tuple[str, bytes]]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Each message's outcome (lines, rows, refusals, counted events) on one router, message after message:
    with the usual payload's decoder, and with the general path alone."""
    from ingest.sources.jsonmap import JsonMap

    def run() -> list[tuple[Any, ...]]:
        ignored: list[str] = []
        native = Decoder(REGISTRY, max_payload_bytes=65_536, max_readings=100)
        router = Router(sources, native, REGISTRY, ignored.append)
        outcomes = []
        for topic, payload in payloads:
            out = BatchBuilder()
            router.decode(topic, payload, retained=False, now_ms=NOW, out=out)
            rows = {k: [(type(v), v) for v in r.records] for k, r in out._rows.items()}
            outcomes.append((out.lines, rows, _reasons(out), list(ignored)))
            ignored.clear()
        return outcomes

    warm = run()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(JsonMap, "_usual", lambda self, *args: False)
        return warm, run()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=_record_stream(), source=st.sampled_from(KNOWN_SOURCES))
def test_known_records_store_what_the_general_path_stores_message_after_message(
    stream: list[tuple[str, Any]], source: dict[str, Any]
) -> None:
    """Records whose names a device sent before (``_Known``), read by the usual payload's decoder, store,
    refuse and count, message by message, exactly what the general path does."""

    sources = parse_sources({"sources": [source], "models": MODELS}, "test sources")
    warm, general = _with_and_without_the_usual_decoder(sources, [(t, msgspec.json.encode(d)) for t, d in stream])
    assert warm == general


def test_a_device_whose_records_are_known_reads_them_by_the_usual_decoder_while_it_stays_the_registrys() -> None:
    from ingest.sources.jsonmap import JsonMap

    source = {**KNOWN_SOURCES[0], "model": "sensecap_s210x"}
    sources = parse_sources({"sources": [source], "models": MODELS}, "test sources")
    registry = Registry(REGISTRY.devices[1:2])
    trap = REGISTRY.devices[1].tags()
    router = Router(sources, Decoder(registry, max_payload_bytes=65_536, max_readings=100), registry, lambda e: None)
    usual: list[bool] = []
    original = JsonMap._usual

    def spy(self: JsonMap, *args: Any) -> bool:
        usual.append(original(self, *args))
        return usual[-1]

    def send(temp: float) -> BatchBuilder:
        out = BatchBuilder()
        doc = {"dev": "bt-trap-1", "ts": NOW, "cnt": 3, "values": [{"id": 4097, "v": temp}, {"id": 4098, "v": 50}]}
        router.decode("kep/x", msgspec.json.encode(doc), retained=False, now_ms=NOW, out=out)
        return out

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(JsonMap, "_usual", spy)
        assert _stored(send(21.5)) == [("bt-trap-1", {"air_temp_c": 21.5, "humidity_pct": 50.0, "seq": 3}, NOW)]
        assert usual == [], "nothing known yet: the usual decoder is not tried"
        assert _stored(send(22.5)) == [("bt-trap-1", {"air_temp_c": 22.5, "humidity_pct": 50.0, "seq": 3}, NOW)]
        assert usual == [True]
        registry.apply([trap._replace(state="suspended")])
        assert [r for r, _ in _reasons(send(23.5))] == [Reason.UNKNOWN_DEVICE]
        registry.apply([trap])
        assert _stored(send(24.5)) == [("bt-trap-1", {"air_temp_c": 24.5, "humidity_pct": 50.0, "seq": 3}, NOW)]
        assert _stored(send(25.5)) == [("bt-trap-1", {"air_temp_c": 25.5, "humidity_pct": 50.0, "seq": 3}, NOW)]
    assert usual == [True, False, False, True], "a changed device is worked out again"


@pytest.mark.parametrize(
    ("source", "typed"),
    [
        (KNOWN_SOURCES[0], True),
        (SENSECAP, False),  # the records at a dotted path
        ({**KNOWN_SOURCES[0], "records": {"path": "values", "name": "id", "value": "v", "time": "t"}}, False),
        ({**KNOWN_SOURCES[0], "seq": "ts"}, False),  # two paths, one key
        ({**KNOWN_SOURCES[0], "records": {"path": "", "name": "id", "value": "v"}}, False),  # the payload is the array
        ({**KNOWN_SOURCES[0], "device": {"path": "meta.dev"}}, False),
        ({**KNOWN_SOURCES[0], "time": {"path": "ts", "format": "iso8601"}}, False),  # text times: the general path's
    ],
)
def test_the_usual_payloads_decoder_is_made_only_for_plain_distinct_keys(source: dict[str, Any], typed: bool) -> None:
    from ingest.sources.jsonmap import _typed

    [parsed] = parse_sources({"sources": [source], "models": MODELS}, "test sources").sources
    assert (_typed(parsed) is not None) == typed


USUAL_RECORDS = b'{"dev":"bt-trap-1","ts":1750000000000,"cnt":3,"values":[{"id":4097,"v":21.5},{"id":4098,"v":50}]}'


@pytest.mark.parametrize(
    "payload",
    [
        USUAL_RECORDS,
        USUAL_RECORDS.replace(b'"cnt":3', b'"cnt":3,"cnt":4'),  # a key twice: the last one
        USUAL_RECORDS.replace(b'"dev":"bt-trap-1"', b'"dev":"bt-trap-1","dev":"bt-wq-1"'),
        USUAL_RECORDS.replace(b'"d', b'"\\u0064', 1),  # an escaped key
        USUAL_RECORDS.replace(b'"id":4098', b'"id":"4098"'),
        USUAL_RECORDS.replace(b'"id":4098', b'"id":4098.0'),
        USUAL_RECORDS.replace(b'"id":4098', b'"id":true'),
        USUAL_RECORDS.replace(b"21.5", b"99999999999999999999999999"),  # a big int
        USUAL_RECORDS.replace(b'"cnt":3', b'"cnt":true'),
        USUAL_RECORDS.replace(b'"cnt":3', b'"cnt":99999999999999999999999999'),
        USUAL_RECORDS.replace(b'"ts":1750000000000', b'"ts":"1750000000000"'),
        USUAL_RECORDS.replace(b'"ts":1750000000000', b'"ts":true'),
        USUAL_RECORDS.replace(b'"values":[', b'"values":[7,'),
        USUAL_RECORDS.replace(b'"values":[', b'"values":[],"x":['),
        USUAL_RECORDS.replace(b'"dev":"bt-trap-1"', b'"dev":7'),
    ],
)
def test_raw_payloads_after_known_records_store_what_the_general_path_stores(payload: bytes) -> None:

    sources = parse_sources({"sources": [{**KNOWN_SOURCES[0], "model": "sensecap_s210x"}], "models": MODELS}, "t")
    sent = [("kep/x", USUAL_RECORDS), ("kep/x", USUAL_RECORDS), ("kep/x", payload)]
    warm, general = _with_and_without_the_usual_decoder(sources, sent)
    assert warm == general


def test_a_device_keeps_each_usual_record_list_once_and_a_changed_model_is_worked_out_again() -> None:
    from ingest.sources.jsonmap import KNOWN_PER_DEVICE, JsonMap

    sources = parse_sources({"sources": [KNOWN_SOURCES[0]], "models": MODELS}, "test sources")
    registry = Registry(REGISTRY.devices[1:2])
    trap = REGISTRY.devices[1].tags()
    router = Router(sources, Decoder(registry, max_payload_bytes=65_536, max_readings=100), registry, lambda e: None)

    def send(ids: list[int]) -> BatchBuilder:
        out = BatchBuilder()
        doc = {"dev": "bt-trap-1", "ts": NOW, "values": [{"id": i, "v": 20 + k} for k, i in enumerate(ids)]}
        router.decode("kep/x", msgspec.json.encode(doc), retained=False, now_ms=NOW, out=out)
        return out

    [decoder] = {d for _, d in router._routes}
    assert isinstance(decoder, JsonMap)
    for _ in range(KNOWN_PER_DEVICE + 1):
        send([4097, 4098])
        send([4098])
    assert [k.names for k in decoder._known[0]] == [[4098], [4097, 4098]], "each list once, newest first"
    registry.apply([trap._replace(kind=Kind.WATER_QUALITY, model="vendor_wq")])
    moved = send([4097, 4098])
    assert (moved.lines, [r for r, _ in _reasons(moved)]) == ([], [Reason.MISSING_FIELD])
    registry.apply([trap])
    assert _stored(send([4097]))[0][1] == {"air_temp_c": 20.0, "seq": 0}
    assert [(k.names, k.device) for k in decoder._known[0]] == [([4097], registry.devices[0])], (
        "the replaced device's lists are dropped as it learns anew"
    )
