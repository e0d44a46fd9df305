"""SenML (RFC 8428) packs, JSON and CBOR: resolution against the RFC's own resolved examples, and the
decoder's rules with a real registry and batch (identity, times, fields, units, refusals), fuzzed."""

from __future__ import annotations

import json
import math
from typing import Any

import cbor2
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.fields import Kind
from contract.fleet import DeviceTags
from contract.reasons import Reason
from ingest.batch import BatchBuilder
from ingest.registry import Registry
from ingest.sources.base import SourceContext
from ingest.sources.config import Source, parse_sources
from ingest.sources.mapping import FieldMapper
from ingest.sources.senml import CBOR_LABELS, MAX_RECORDS, PackError, SenML, parse, resolve
from tests import corpus

CORPUS = corpus.CORPUS / "senml"
"""The RFC's examples in the real-payload corpus (``../shared/realworld/senml``), read in place."""
needs_corpus = corpus.needs_corpus("senml/README.md")

NOW = 1_750_000_000_000
OW = "urn:dev:ow:10e2073a01080063"
SOURCES = parse_sources(
    {
        "sources": [{"format": "senml", "topics": ["senml/#"]}],
        "models": {
            "senml_ow": {
                "fields": {
                    "air_temp_c": ["temp", "Cel"],
                    "humidity_pct": ["humidity", "%RH"],
                    "battery_v": "voltage",
                    "battery_pct": ["battery", "%EL"],
                    "lamp_on": "open",
                }
            },
            "senml_wq": {"fields": {"temp_c": "temperature", "ec_us_cm": "ec", "ph": "ph"}},
        },
    },
    "t",
)
REGISTRY = Registry(
    [
        DeviceTags("bt-trap-ow", Kind.LIGHT_TRAP, "ben_tre", "ba_tri", "field", "none", "active", "senml_ow",
                   senml=OW),
        DeviceTags("bt-wq-2", Kind.WATER_QUALITY, "ben_tre", "ba_tri", "pond", "shrimp", "active", "senml_wq",
                   senml="2001:db8::2"),
        DeviceTags("bt-sal-1", Kind.SALINITY, "ben_tre", "ba_tri", "sluice", "none", "active", "ioc_v1",
                   senml="urn:dev:mac:0024befffe804ff1"),
        DeviceTags("bt-gone-1", Kind.SALINITY, "ben_tre", "ba_tri", "sluice", "none", "suspended", "ioc_v1",
                   senml="urn:dev:mac:0000000000000001"),
    ]
)  # fmt: skip
TRAP = "light_trap,crop=none,device_id=bt-trap-ow,district=ba_tri,province=ben_tre,site=field"
WQ = "water_quality,crop=shrimp,device_id=bt-wq-2,district=ba_tri,province=ben_tre,site=pond"
SAL = "salinity,crop=none,device_id=bt-sal-1,district=ba_tri,province=ben_tre,site=sluice"


def _decode(doc: Any, now_ms: int = NOW) -> BatchBuilder:
    decoder = SenML(SOURCES.sources[0], SourceContext(REGISTRY, FieldMapper(SOURCES.models), _no_ignore))
    out = BatchBuilder()
    payload = doc if isinstance(doc, bytes) else msgspec.json.encode(doc)
    decoder.decode("senml/x", payload, retained=False, now_ms=now_ms, out=out)
    return out


def _no_ignore(event: str) -> None:
    raise AssertionError(f"SenML counted {event!r} as carrying no reading")


def _cbor(pack: list[dict[str, Any]]) -> bytes:
    """A JSON-labelled pack in CBOR with the RFC's integer labels."""
    labels = {name: number for number, name in CBOR_LABELS.items()}
    return cbor2.dumps([{labels.get(k, k): v for k, v in record.items()} for record in pack])


def _reasons(out: BatchBuilder) -> list[Reason]:
    return [r.reason for r in out.rejections]


# --- resolution: the RFC's own examples --------------------------------------------------------------

_GENERATED_AT = {"rfc8428_ex7": 1_499_109_309_000}
""""Now" as the RFC's authors generated each resolved file (README); the others: 1498780179."""


@needs_corpus
@pytest.mark.parametrize("name", sorted(p.name.removesuffix(".resolved.json") for p in CORPUS.glob("*.resolved.json")))
def test_every_corpus_pack_resolves_to_the_rfcs_resolved_form(name: str) -> None:
    now_ms = _GENERATED_AT.get(name, 1_498_780_179_000)
    expected = json.loads((CORPUS / f"{name}.resolved.json").read_text(encoding="utf-8"))
    ours = [r.rfc() for r in resolve(parse((CORPUS / f"{name}.json").read_bytes()), now_ms)]
    if name == "rfc8428_ex7":  # the upstream resolved file drops the data value; the RFC does not
        assert ours[-1] == {"n": f"{OW}:nfv-reader", "t": 1_499_109_309.0, "vd": "aGkgCg"}
        ours = ours[:-1]
    # resolved records are in chronological order (RFC 8428 §4.6); upstream's ex3 lists the voltage
    # (the latest) first, so theirs is sorted the same, stably, before comparing
    assert ours == sorted(expected, key=lambda r: r["t"])
    assert [r["t"] for r in ours] == sorted(r["t"] for r in ours)


@needs_corpus
def test_the_cbor_example_resolves_exactly_as_its_json_form() -> None:
    raw = (CORPUS / "rfc8428_ex3.cbor").read_bytes()
    assert raw[0] == 0x87  # a CBOR array of 7 records
    from_cbor = [r.rfc() for r in resolve(parse(raw), NOW)]
    from_json = [r.rfc() for r in resolve(parse((CORPUS / "rfc8428_ex3.json").read_bytes()), NOW)]
    assert from_cbor == from_json
    assert from_cbor[0] == {"n": "urn:dev:ow:10e2073a0108006:current", "u": "A", "t": 1_276_020_071.001, "v": 1.2}


def test_base_values_and_sums_add_and_relative_times_count_from_arrival() -> None:
    pack = [
        {"bn": "d:", "bv": 100.0, "bs": 5.0, "bu": "Cel", "n": "a", "v": 1.5, "t": -5},
        {"n": "b"},  # no value of its own: the base value (and base sum)
        {"n": "c", "vs": "x", "s": 2.0, "u": ""},  # an empty unit is no unit
        {"bt": 1_700_000_000.5, "n": "d", "v": -1, "t": 0.25},
    ]
    assert [r.rfc() for r in resolve(pack, NOW)] == [  # in chronological order
        {"n": "d:d", "u": "Cel", "t": 1_700_000_000.75, "v": 99.0, "s": 5.0},
        {"n": "d:a", "u": "Cel", "t": 1_749_999_995.0, "v": 101.5, "s": 5.0},
        {"n": "d:b", "u": "Cel", "t": 1_750_000_000.0, "v": 100.0, "s": 5.0},
        {"n": "d:c", "t": 1_750_000_000.0, "vs": "x", "s": 7.0},
    ]


def test_a_record_without_value_or_sum_only_sets_base_fields() -> None:
    pack = [{"bn": "dev1/", "bt": 1_700_000_000, "bu": "Cel"}, {"n": "t1", "v": 20}]
    assert [r.rfc() for r in resolve(pack, NOW)] == [{"n": "dev1/t1", "u": "Cel", "t": 1_700_000_000.0, "v": 20.0}]


@pytest.mark.parametrize(
    ("pack", "reason", "detail"),
    [
        ({"bn": "x"}, Reason.BAD_SHAPE, "not a SenML pack: expected an array of records, not dict"),
        ([1], Reason.BAD_SHAPE, "record 0: expected an object, not int"),
        ([{"n": 5, "v": 1}], Reason.BAD_SHAPE, "record 0: n must be text, not int"),
        ([{"n": "a", "v": "1"}], Reason.BAD_SHAPE, "record 0: v must be a number, not str"),
        ([{"n": "a", "v": True}], Reason.BAD_SHAPE, "record 0: v must be a number, not bool"),
        ([{"n": "a", "vb": 1}], Reason.BAD_SHAPE, "record 0: vb must be true or false, not int"),
        ([{"n": "a", "v": 1, "vs": "1"}], Reason.BAD_SHAPE, "record 0: more than one value (v, vs)"),
        ([{"n": "a", "v": 1, "crit_": 1}], Reason.BAD_SHAPE, "record 0: label 'crit_' must be understood"),
        ([{"bver": 11, "n": "a", "v": 1}], Reason.BAD_SHAPE, "record 0: SenML version 11 is not one ingest reads"),
        ([{"bver": 10, "n": "a", "v": 1}, {"bver": 5, "n": "b", "v": 1}], Reason.BAD_SHAPE, "record 1: bver 5 differs"),
        ([{"v": 1}], Reason.BAD_SHAPE, "record 0: no name (neither bn nor n)"),
        ([{"n": "-a", "v": 1}], Reason.BAD_SHAPE, "record 0: name '-a' is not a SenML name"),
        ([{"bn": "dev 1:", "n": "a", "v": 1}], Reason.BAD_SHAPE, "record 0: name 'dev 1:a' is not a SenML name"),
        ([{"n": "a", "v": 1, "t": 1e308, "bt": 1e308}], Reason.BAD_TIMESTAMP, "record 0: time inf is not a time"),
        ([{"n": "a", "v": 1}] * (MAX_RECORDS + 1), Reason.TOO_LARGE, f"{MAX_RECORDS + 1} records in one pack"),
    ],
)
def test_a_pack_that_breaks_the_rfc_is_refused_whole_naming_record_and_label(
    pack: Any, reason: Reason, detail: str
) -> None:
    with pytest.raises(PackError) as caught:
        resolve(pack, NOW)
    assert caught.value.reason == reason
    assert caught.value.detail.startswith(detail)
    out = _decode(pack)
    assert out.lines == []
    assert [(r.reason, r.detail) for r in out.rejections] == [(reason, caught.value.detail)]


def test_unknown_labels_are_ignored_and_version_26_reads_secondary_units() -> None:
    pack = [{"bver": 26, "bn": f"{OW}:", "n": "temp", "v": 2315, "u": "K", "ut": 60, "l": "x", "ext": {"a": 1}}]
    [r] = resolve(pack, NOW)
    assert (r.name, r.unit, r.value) == ("temp", "K", 2315.0)


# --- encodings --------------------------------------------------------------------------------------


def test_json_and_cbor_are_told_apart_by_the_first_byte() -> None:
    pack = [{"bn": f"{OW}:", "n": "temp", "u": "Cel", "v": 23.5, "t": 1_700_000_000}]
    line = f"{TRAP} air_temp_c=23.5,seq=0i 1700000000000"
    assert _decode(b" \n\t" + msgspec.json.encode(pack)).lines == [line]
    assert _decode(_cbor(pack)).lines == [line]
    assert _decode(b"\xd9\xd9\xf7" + _cbor(pack)).lines == [line]  # self-described CBOR (RFC 8949 §3.4.6)
    indefinite = b"\x9f" + _cbor(pack)[1:] + b"\xff"  # a streaming (SensML) array
    assert _decode(indefinite).lines == [line]


def test_cbor_decimal_fractions_and_half_floats_are_numbers() -> None:
    decimal = cbor2.CBORTag(4, [-1, 235])  # 235 × 10^-1 (RFC 8428 §6 allows decimal fractions)
    pack = cbor2.dumps([{-2: f"{OW}:", 0: "temp", 2: decimal, 6: 1_700_000_000.0}])
    assert _decode(pack).lines == [f"{TRAP} air_temp_c=23.5,seq=0i 1700000000000"]
    half = (
        b"\x81\xa3" + cbor2.dumps(-2) + cbor2.dumps(f"{OW}:") + b"\x00" + cbor2.dumps("humidity") + b"\x02\xf9\x3e\x00"
    )
    assert _decode(half).lines == [f"{TRAP} humidity_pct=1.5,seq=0i {NOW}"]  # f9 3e00: a half float, 1.5


@pytest.mark.parametrize(
    ("payload", "reason", "detail"),
    [
        (b"[{", Reason.BAD_JSON, "neither SenML JSON nor a CBOR array: "),
        (b"\xa1\x00\x01", Reason.BAD_JSON, "neither SenML JSON nor a CBOR array: "),  # a CBOR map, not a pack
        (b"", Reason.BAD_JSON, "neither SenML JSON nor a CBOR array: "),
        (b'{"n": "a"}', Reason.BAD_SHAPE, "not a SenML pack: expected an array of records, not dict"),
        (b'["a"]', Reason.BAD_SHAPE, "record 0: expected an object, not str"),
        (b'[{"n": "a", "v": 1e999}]', Reason.BAD_SHAPE, "not a SenML pack: Number out of range"),
        (b"\x81\xa1\x00", Reason.BAD_SHAPE, "not a SenML CBOR pack: "),  # cut short
        (b"\x80\x00", Reason.BAD_SHAPE, "not a SenML CBOR pack: 1 bytes after the array"),
        (b"\x81\xa1\x02\x01", Reason.BAD_SHAPE, "record 0: no name (neither bn nor n)"),
        (b"\x81\xa3\x00\x61a\x02\x01\x06\xfb\x7f\xf8\x00\x00\x00\x00\x00\x00", Reason.BAD_TIMESTAMP, "record 0: time"),
        (b"\x81\xa2\x00\x61a\x02" + cbor2.dumps(2**1100), Reason.BAD_SHAPE, "record 0: v 13582985290493858492"),
    ],
)
def test_malformed_payloads_are_refused_with_their_reason(payload: bytes, reason: Reason, detail: str) -> None:
    out = _decode(payload)
    assert out.lines == []
    [r] = out.rejections
    assert (r.reason, r.detail[: len(detail)]) == (reason, detail)


# --- identity ---------------------------------------------------------------------------------------


def test_the_base_name_is_the_device_with_or_without_its_trailing_separator() -> None:
    for bn in (OW, f"{OW}:", f"{OW}/"):
        out = _decode([{"bn": bn, "bu": "%RH", "v": 61.5, "t": 1_700_000_000}])  # no n: keyed by its unit
        assert out.rejections == []
        assert out.lines == [f"{TRAP} humidity_pct=61.5,seq=0i 1700000000000"]


def test_without_a_base_name_the_whole_name_or_its_prefix_is_the_device() -> None:
    out = _decode([{"n": OW, "v": 23.1, "u": "Cel"}])  # RFC example 1: the name is the device
    assert out.lines == [f"{TRAP} air_temp_c=23.1,seq=0i {NOW}"]
    out = _decode([{"n": f"{OW}:humidity", "v": 70, "u": "%RH"}, {"n": "2001:db8::2/temperature", "v": 28.5}])
    assert out.lines == [f"{TRAP} humidity_pct=70.0,seq=0i {NOW}", f"{WQ} temp_c=28.5,seq=0i {NOW}"]
    out = _decode([{"n": "2001:db8::3", "v": 0.5, "u": "/"}])  # RFC example 13: neither is registered
    [r] = out.rejections
    assert (r.reason, r.detail) == (
        Reason.UNKNOWN_DEVICE,
        "SenML device '2001:db8::3' is not an active registered device (external id senml)",
    )


def test_an_unknown_or_suspended_device_is_refused_and_the_others_of_the_pack_are_stored() -> None:
    pack = [
        {"bn": "2001:db8::2/", "bt": 1_700_000_000, "n": "temperature", "v": 25.2, "u": "Cel"},
        {"n": "ec", "v": 0.5, "u": "S/m"},
        {"bn": "2001:db8::1/", "n": "temperature", "v": 12.3, "u": "Cel"},
        {"n": "humidity", "v": 67, "u": "%RH"},
        {"bn": "urn:dev:mac:0000000000000001", "n": "temperature", "v": 12.3, "u": "Cel"},
    ]
    out = _decode(pack)
    assert out.lines == [f"{WQ} temp_c=25.2,ec_us_cm=5000.0,seq=0i 1700000000000"]
    assert [(r.reason, r.detail) for r in out.rejections] == [
        (Reason.UNKNOWN_DEVICE, "SenML device '2001:db8::1' is not an active registered device (external id senml)"),
        (Reason.UNKNOWN_DEVICE, "SenML device 'urn:dev:mac:0000000000000001' is not an active registered device "
                                "(external id senml)"),
    ]  # fmt: skip


# --- fields, times, units ---------------------------------------------------------------------------


def test_records_at_one_time_are_one_reading_and_times_are_separate_readings_in_order() -> None:
    pack = [
        {"bn": OW, "bt": 1_320_067_464, "bu": "%RH", "v": 20.0, "t": 60},
        {"v": 24.30621, "u": "lon", "t": 60},
        {"n": "temp", "v": 30.5, "u": "Cel", "t": 60},
        {"v": 21.2, "t": 0},
        {"v": 21.3, "t": 10},
    ]
    out = _decode(pack)
    assert out.rejections == []  # lon is not a field of ours: left out
    assert out.lines == [
        f"{TRAP} humidity_pct=21.2,seq=0i 1320067464000",
        f"{TRAP} humidity_pct=21.3,seq=0i 1320067474000",
        f"{TRAP} air_temp_c=30.5,humidity_pct=20.0,seq=0i 1320067524000",
    ]


def test_relative_times_count_back_from_arrival() -> None:
    pack = [{"bn": f"{OW}:", "n": "temp", "u": "Cel", "v": v, "t": -t} for t, v in ((5, 20.0), (0, 21.0))]
    assert _decode(pack).lines == [
        f"{TRAP} air_temp_c=20.0,seq=0i {NOW - 5000}",
        f"{TRAP} air_temp_c=21.0,seq=0i {NOW}",
    ]


def test_a_later_record_of_the_same_key_and_time_wins() -> None:
    pack = [{"bn": f"{OW}:", "n": "temp", "u": "K", "v": 300.15}, {"n": "temp", "v": 26.5}]
    assert _decode(pack).lines == [f"{TRAP} air_temp_c=26.5,seq=0i {NOW}"]  # and its unit: none, ours


def test_payload_units_are_converted_and_one_we_cannot_convert_refuses_that_field_alone() -> None:
    pack = [
        {"bn": "2001:db8::2/", "bt": 1_700_000_000, "n": "temperature", "v": 299.15, "u": "K"},
        {"n": "ec", "v": 2.5, "u": "mS/cm"},
        {"n": "ph", "v": 7.1, "u": "A"},
    ]
    out = _decode(pack)
    assert out.lines == [f"{WQ} temp_c=26.0,ec_us_cm=2500.0,seq=0i 1700000000000"]
    assert [(r.reason, r.detail) for r in out.rejections] == [
        (Reason.BAD_UNIT, "ph: cannot convert 'A' to 'pH'; the rest of the reading was stored")
    ]


def test_battery_energy_percent_el_is_the_battery_percentage() -> None:
    """RFC example 5's ``%EL`` (remaining battery energy, %) is ``battery_pct``: a status point."""
    out = _decode([{"bn": OW, "bt": 1_320_067_614, "u": "%EL", "v": 98.0}])
    assert out.rejections == []
    assert out.lines == [
        "device_status,crop=none,device_id=bt-trap-ow,district=ba_tri,province=ben_tre,site=field "
        "online=1i,battery_pct=98.0 1320067614000"
    ]


def test_a_senml_ratio_is_a_percentage() -> None:
    """SenML's ``/`` is a ratio: 0.5 is 50 %, never 0.5 %."""
    out = _decode([{"bn": f"{OW}:", "bt": 1_700_000_000, "n": "humidity", "v": 0.615, "u": "/"}])
    assert out.rejections == []
    assert out.lines == [f"{TRAP} humidity_pct=61.5,seq=0i 1700000000000"]


def test_a_status_only_field_is_a_device_status_point_at_the_records_time() -> None:
    pack = [{"bn": f"{OW}:", "bt": 1_700_000_000, "n": "battery", "v": 88.5, "u": "%"}, {"n": "temp", "v": 31.0}]
    out = _decode(pack)
    assert out.rejections == []
    assert out.lines == [
        f"{TRAP} air_temp_c=31.0,seq=0i 1700000000000",
        "device_status,crop=none,device_id=bt-trap-ow,district=ba_tri,province=ben_tre,site=field "
        "online=1i,battery_pct=88.5 1700000000000",
    ]


def test_without_a_model_entry_names_that_are_our_fields_are_taken() -> None:
    pack = [{"bn": "urn:dev:mac:0024befffe804ff1:", "n": "salinity_ppt", "v": 4.2}, {"n": "temp_c", "v": 300, "u": "K"}]
    out = _decode(pack)
    assert out.rejections == []
    assert out.lines == [f"{SAL} salinity_ppt=4.2,temp_c=26.850000000000023,seq=0i {NOW}"]


def test_string_bool_and_data_values_are_left_out_unless_mapped_then_refused() -> None:
    pack = [
        {"bn": f"{OW}:", "n": "temp", "v": 23.1, "u": "Cel"},
        {"n": "label", "vs": "Machine Room"},
        {"n": "nfv-reader", "vd": "aGkgCg"},
        {"n": "open", "vb": False},  # mapped to lamp_on: a boolean is not a number
        {"n": "humidity", "vs": "71.5"},  # a numeric string is a number, as everywhere in ingest
    ]
    out = _decode(pack)
    assert out.lines == [f"{TRAP} air_temp_c=23.1,humidity_pct=71.5,seq=0i {NOW}"]
    assert [r.reason for r in out.rejections] == [Reason.BAD_TYPE]
    assert out.rejections[0].detail.startswith("lamp_on: ")
    cbor = _decode(cbor2.dumps([{-2: f"{OW}:", 0: "temp", 8: b"\x01\x02"}, {0: "humidity", 2: 50}]))
    assert [r.reason for r in cbor.rejections] == [Reason.BAD_TYPE]  # data is never a number
    assert cbor.lines == [f"{TRAP} humidity_pct=50.0,seq=0i {NOW}"]


def test_nothing_mapped_is_a_missing_field_naming_the_device() -> None:
    out = _decode([{"bn": "2001:db8::2/", "n": "current", "v": 1.2, "u": "A"}, {"n": "energy", "s": 3600.0}])
    assert [(r.reason, r.detail) for r in out.rejections] == [
        (Reason.MISSING_FIELD, "no record of SenML device '2001:db8::2' maps to our fields")
    ]
    out = _decode([])
    assert [(r.reason, r.detail) for r in out.rejections] == [
        (Reason.MISSING_FIELD, "the pack has no record with a value")
    ]


def test_value_and_time_rules_are_the_native_contracts() -> None:
    out = _decode([{"bn": f"{OW}:", "n": "temp", "u": "Cel", "v": 95.0}, {"n": "humidity", "v": 50}])
    assert [r.reason for r in out.rejections] == [Reason.OUT_OF_RANGE]
    assert out.lines == [f"{TRAP} humidity_pct=50.0,seq=0i {NOW}"]
    out = _decode([{"bn": f"{OW}:", "n": "temp", "v": 25, "t": 1_950_000_000}])  # 2031
    assert [r.reason for r in out.rejections] == [Reason.BAD_TIMESTAMP]


# --- fuzz -------------------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=5),
    max_leaves=20,
)
SCALAR = (
    st.none() | st.booleans() | st.floats() | st.integers(-(2**70), 2**70) | st.text(max_size=8) | st.binary(max_size=4)
)
LABEL = st.sampled_from(["bn", "bt", "bu", "bv", "bs", "bver", "n", "u", "v", "vs", "vb", "vd", "s", "t", "ut", "x_"])
RECORD = st.dictionaries(
    LABEL,
    SCALAR
    | st.sampled_from([OW, f"{OW}:", "2001:db8::2/", "temp", "humidity", "ec", "Cel", "%RH", "S/m", "%EL", ""])
    | st.sampled_from([0, -5, 10, 1_700_000_000, 1_749_999_999.5, 2**28, 26]),
    max_size=6,
)


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if not isinstance(v, bytes) and not (isinstance(v, float) and not
            math.isfinite(v)) and not (isinstance(v, int) and abs(v) > 2**63)}  # fmt: skip


def _check(out: BatchBuilder) -> None:
    for r in out.rejections:
        assert isinstance(r.reason, Reason)
        assert r.detail
    assert out.lines or out.rejections, "a message neither stored nor refused"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pack=st.lists(RECORD, max_size=6), as_cbor=st.booleans())
def test_fuzz_senml_shaped_packs_no_crash_and_every_refusal_has_a_reason(
    pack: list[dict[str, Any]], as_cbor: bool
) -> None:
    _check(_decode(_cbor(pack) if as_cbor else msgspec.json.encode([_jsonable(r) for r in pack])))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=JSON, raw=st.binary(max_size=64), cbor_head=st.integers(0x80, 0x9F), pick=st.integers(0, 2))
def test_fuzz_random_json_and_bytes_no_crash_and_every_refusal_has_a_reason(
    doc: Any, raw: bytes, cbor_head: int, pick: int
) -> None:
    payload = (json.dumps(doc).encode(), raw, bytes([cbor_head]) + raw)[pick]
    _check(_decode(payload))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.integers(-8, 10) | st.text(max_size=3), inner, max_size=5), max_leaves=20))  # fmt: skip
def test_fuzz_random_cbor_no_crash_and_every_refusal_has_a_reason(doc: Any) -> None:
    _check(_decode(cbor2.dumps([doc])))


def test_with_the_device_option_a_pack_speaks_only_for_its_topics_device() -> None:
    """``device: {topic_level: N}``: a device's own topic, and its packs may name no other device."""
    source = parse_sources(
        {"sources": [{"format": "senml", "topics": ["senml/#"], "device": {"topic_level": 1}}],
         "models": SOURCES.models},
        "t",
    ).sources[0]  # fmt: skip
    decoder = SenML(source, SourceContext(REGISTRY, FieldMapper(SOURCES.models), _no_ignore))
    pack = [{"bn": f"{OW}:", "bt": 1_700_000_000, "n": "temp", "v": 25.0, "u": "Cel"}]
    own, other, nobody = BatchBuilder(), BatchBuilder(), BatchBuilder()
    decoder.decode("senml/bt-trap-ow", msgspec.json.encode(pack), retained=False, now_ms=NOW, out=own)
    decoder.decode("senml/bt-wq-2", msgspec.json.encode(pack), retained=False, now_ms=NOW, out=other)
    decoder.decode("senml/bt-nobody", msgspec.json.encode(pack), retained=False, now_ms=NOW, out=nobody)
    assert (own.lines, own.rejections) == ([f"{TRAP} air_temp_c=25.0,seq=0i 1700000000000"], [])
    for out, topic in ((other, "senml/bt-wq-2"), (nobody, "senml/bt-nobody")):
        assert out.lines == []
        [r] = out.rejections
        assert (r.reason, r.detail) == (
            Reason.UNKNOWN_DEVICE,
            f"SenML device '{OW}' is not the device of its topic ('{topic}')",
        )


def test_a_base_name_registered_with_its_trailing_separator_is_the_one_ingest_looks_up() -> None:
    from contract.fleet import ExternalIds

    assert ExternalIds(senml=f"{OW}:").senml == OW  # as the RFC writes it, as ingest reads it
    assert ExternalIds(senml="urn:dev:mac:0024befffe804ff1").senml == "urn:dev:mac:0024befffe804ff1"


PLAIN_NAMES = [
    *(["temp", "humidity", "voltage", "temperature", "ec", "ph"] * 3),
    "battery",
    "open",
    "",
    "x",
    "bad name",
    "-x",
    "é",
]
PLAIN_UNITS = [None] * 6 + ["Cel", "%RH", "%EL", "V", "mV", "K", "S/m", "", "furlong", "lon"]
PLAIN_VALUES = st.sampled_from(
    [3.6, 7.2, 12, 5] * 6 + [25.0, 21.5, 61.5, 1, 0, 300.15, 1e300, -1e300, -40.5, 2**53, 0.5, 1_700_000_000]
)
PLAIN_BASES = [OW, f"{OW}:", "2001:db8::2/", "2001:db8::2", "urn:dev:mac:0024befffe804ff1"] * 3 + [
    "urn:dev:mac:0000000000000001", "urn:dev:ow:nobody", "", ":bad", "bad name", 7]  # fmt: skip
PLAIN_TIMES = [None, None, 1_700_000_000, 1_700_000_000.25, 0, -5, 2**28, 1e300, -1e300, 1.5e306, 1, "x"]
EXTRA_LABELS = st.sampled_from([{}] * 30 + [
    {"t": 10}, {"bt": 1_700_000_100}, {"bt": 1_700_000_000}, {"bn": OW}, {"bn": f"{OW}:"}, {"bn": "2001:db8::2/"},
] * 3 + [
    {"t": 0}, {"vs": "x"}, {"s": 1.0}, {"bu": "Cel"}, {"bv": 1.0}, {"bver": 10}, {"x_": 1}, {"ut": 5}, {"vb": True},
    {"u": None}, {"v": "1"}, {"n": 5}, {"bs": 1.0}, {"x": 1},
])  # fmt: skip


@st.composite
def _plain_pack(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A pack of the usual shape (:meth:`SenML._plain`), or one label away from it."""
    pack: list[dict[str, Any]] = []
    for i in range(draw(st.integers(1, 5))):
        record: dict[str, Any] = {}
        if i == 0:
            record["bn"] = draw(st.sampled_from(PLAIN_BASES))
            bt = draw(st.sampled_from(PLAIN_TIMES))
            if bt is not None:
                record["bt"] = bt
        name = draw(st.sampled_from(PLAIN_NAMES))
        if name or draw(st.booleans()):
            record["n"] = name
        record["v"] = draw(PLAIN_VALUES)
        unit = draw(st.sampled_from(PLAIN_UNITS))
        if unit is not None:
            record["u"] = unit
        pack.append(record)
    pack[draw(st.integers(0, len(pack) - 1))].update(draw(EXTRA_LABELS))  # one label away, or none
    return pack


BY_TOPIC = parse_sources(
    {"sources": [{"format": "senml", "topics": ["senml/#"], "device": {"topic_level": 1}}], "models": SOURCES.models},
    "t",
).sources[0]


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pack=_plain_pack(), by_topic=st.booleans(), spaced=st.booleans())
def test_the_usual_packs_fast_path_stores_what_the_general_path_stores(
    pack: list[dict[str, Any]], by_topic: bool, spaced: bool
) -> None:
    """The usual pack read straight into its shape's take (:meth:`SenML._plain`) stores and refuses
    exactly what the general path (:func:`resolve`, the grouping, :meth:`SenML._readings`) does."""
    payload = json.dumps(pack).encode() if spaced else msgspec.json.encode(pack)

    def decode() -> BatchBuilder:
        source = BY_TOPIC if by_topic else SOURCES.sources[0]
        decoder = SenML(source, SourceContext(REGISTRY, FieldMapper(SOURCES.models), _no_ignore))
        out = BatchBuilder()
        decoder.decode("senml/bt-trap-ow", payload, retained=False, now_ms=NOW, out=out)
        return out

    fast = decode()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SenML, "_plain", lambda self, *args, **kwargs: False)
        general = decode()
    assert fast.lines == general.lines
    assert {k: [(type(v), v) for v in r.records] for k, r in fast._rows.items()} == {
        k: [(type(v), v) for v in r.records] for k, r in general._rows.items()
    }
    assert [(r.reason, r.detail) for r in fast.rejections] == [(r.reason, r.detail) for r in general.rejections]


def test_the_usual_pack_takes_the_fast_path() -> None:
    taken: list[bool] = []
    original = SenML._plain

    def spy(self: SenML, *args: Any, **kwargs: Any) -> bool:
        taken.append(original(self, *args, **kwargs))
        return taken[-1]

    pack = [{"bn": f"{OW}:", "bt": 1_700_000_000, "n": "temp", "v": 25.0, "u": "Cel"}, {"n": "humidity", "v": 61.5}]
    relative = [{"bn": OW, "bt": -5, "n": "temp", "v": 25.0}, {"bn": OW, "n": "voltage", "v": 3.6}]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SenML, "_plain", spy)
        out, now = _decode(pack), _decode(relative)
    assert taken == [True, True]
    assert out.lines == [f"{TRAP} air_temp_c=25.0,humidity_pct=61.5,seq=0i 1700000000000"]
    assert now.lines == [f"{TRAP} air_temp_c=25.0,battery_v=3.6,seq=0i {NOW - 5000}"]


def _outcome(out: BatchBuilder) -> tuple[Any, ...]:
    rows = {k: [(type(v), v) for v in r.records] for k, r in out._rows.items()}
    return out.lines, rows, [(r.reason, r.detail) for r in out.rejections]


@st.composite
def _pack_stream(draw: st.DrawFn) -> list[tuple[str, list[dict[str, Any]]]]:
    """Packs one after another on one decoder: a few usual packs, each sent again with other values and
    base times (its labels known by then), or one label away, or on another device's topic."""
    bases = [draw(_plain_pack()) for _ in range(draw(st.integers(1, 3)))]
    first, *later = bases[0]
    if later:  # the same device and first record, later records other: reversed, one fewer, one relabelled
        relabelled = [dict(r) for r in later]
        relabelled[-1]["u" if draw(st.booleans()) else "n"] = draw(st.sampled_from(["Cel", "V", "ec", "temp"]))
        bases += [[first, *later[::-1]], [first, *later[:-1]], [first, *relabelled]]
    stream: list[tuple[str, list[dict[str, Any]]]] = []
    for _ in range(draw(st.integers(1, 10))):
        pack = [dict(r) for r in draw(st.sampled_from(bases))]
        for record in pack:
            record["v"] = draw(PLAIN_VALUES)
        bt = draw(st.sampled_from(PLAIN_TIMES))
        if bt is None:
            pack[0].pop("bt", None)
        else:
            pack[0]["bt"] = bt
        if draw(st.integers(0, 4)) == 0:
            pack[draw(st.integers(0, len(pack) - 1))].update(draw(EXTRA_LABELS))
        stream.append((draw(st.sampled_from(["senml/bt-trap-ow", "senml/bt-trap-ow", "senml/bt-wq-2"])), pack))
    return stream


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=_pack_stream(), by_topic=st.booleans())
def test_a_known_pack_stores_what_the_general_path_stores_pack_after_pack(
    stream: list[tuple[str, list[dict[str, Any]]]], by_topic: bool
) -> None:
    """Packs whose labels one decoder has worked out (:class:`~ingest.sources.senml._Known`) store and
    refuse, message by message, exactly what the general path does."""
    source = BY_TOPIC if by_topic else SOURCES.sources[0]
    warm, general = _with_and_without_the_fast_path(source, [(t, msgspec.json.encode(p)) for t, p in stream])
    assert warm == general


def _with_and_without_the_fast_path(
    source: Source, payloads: list[tuple[str, bytes]]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Each pack's outcome on one decoder, pack after pack: with the usual pack's fast path (and its known
    packs), and with the general path alone."""

    def run() -> list[tuple[Any, ...]]:
        decoder = SenML(source, SourceContext(REGISTRY, FieldMapper(SOURCES.models), _no_ignore))
        outcomes = []
        for topic, payload in payloads:
            out = BatchBuilder()
            decoder.decode(topic, payload, retained=False, now_ms=NOW, out=out)
            outcomes.append(_outcome(out))
        return outcomes

    warm = run()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SenML, "_plain", lambda self, *args, **kwargs: False)
        return warm, run()


def _spied(decoder: SenML, taken: list[str]) -> None:
    """Note on ``taken`` each pack ``decoder`` reads as a known one."""
    original = decoder._take_known

    def spy(*args: Any) -> bool:
        taken.append("known")
        return original(*args)

    decoder._take_known = spy  # type: ignore[method-assign]


def test_a_pack_seen_before_is_read_by_its_known_labels_while_its_device_stays_the_registrys() -> None:
    registry = Registry(REGISTRY.devices[:1])
    trap = REGISTRY.devices[0].tags()
    decoder = SenML(SOURCES.sources[0], SourceContext(registry, FieldMapper(SOURCES.models), _no_ignore))
    taken: list[str] = []
    _spied(decoder, taken)

    def send(temp: float, humidity: float) -> BatchBuilder:
        out = BatchBuilder()
        pack = [{"bn": f"{OW}:", "bt": 1_700_000_000, "n": "temp", "v": temp, "u": "Cel"},
                {"n": "humidity", "v": humidity}]  # fmt: skip
        decoder.decode("senml/x", msgspec.json.encode(pack), retained=False, now_ms=NOW, out=out)
        return out

    assert send(25.0, 61.5).lines == [f"{TRAP} air_temp_c=25.0,humidity_pct=61.5,seq=0i 1700000000000"]
    assert taken == []
    assert send(26.5, 60).lines == [f"{TRAP} air_temp_c=26.5,humidity_pct=60.0,seq=0i 1700000000000"]
    assert taken == ["known"]
    out_of_range = send(26.5, 160)  # the general path stores the rest and refuses humidity
    assert out_of_range.lines == [f"{TRAP} air_temp_c=26.5,seq=0i 1700000000000"]
    assert taken == ["known", "known"]
    assert [r.detail.split(":")[0] for r in out_of_range.rejections] == ["humidity_pct"]
    registry.apply([trap._replace(state="suspended")])
    suspended = send(25.0, 61.5)
    assert (suspended.lines, [r.reason for r in suspended.rejections]) == ([], [Reason.UNKNOWN_DEVICE])
    registry.apply([trap._replace(kind=Kind.WATER_QUALITY, model="senml_wq")])
    moved = send(25.0, 61.5)
    assert moved.lines == [], "humidity is no water-quality field of senml_wq"
    assert [r.reason for r in moved.rejections] == [Reason.MISSING_FIELD]
    registry.apply([trap])
    assert send(24.0, 50).lines == [f"{TRAP} air_temp_c=24.0,humidity_pct=50.0,seq=0i 1700000000000"]
    assert taken == ["known", "known"], "after each change of the registry, the pack was worked out again"


def test_known_packs_are_bounded_per_device_and_per_source(monkeypatch: pytest.MonkeyPatch) -> None:
    from ingest.sources import senml

    monkeypatch.setattr(senml, "KNOWN_MAX", 2)
    decoder = SenML(SOURCES.sources[0], SourceContext(REGISTRY, FieldMapper(SOURCES.models), _no_ignore))
    names = ["temp", "humidity", "voltage", "battery", "open"]
    for round_ in range(3):
        for bn in (OW, "2001:db8::2", "urn:dev:mac:0024befffe804ff1"):
            for k in range(1, 6):  # five shapes of each device
                out = BatchBuilder()
                pack = [{"bn": bn, "bt": 1_700_000_000 + round_, "n": name, "v": 1.0 + k} for name in names[:k]]
                decoder.decode("senml/x", msgspec.json.encode(pack), retained=False, now_ms=NOW, out=out)
                assert len(decoder._known) <= senml.KNOWN_MAX
                assert all(len(known) <= senml.KNOWN_PER_NAME for known in decoder._known.values())
                assert len(decoder._labels) <= senml.KNOWN_MAX + k
    assert decoder._known, "packs were learnt"


USUAL = (
    b'[{"bn":"urn:dev:ow:10e2073a01080063:","bt":1700000000,"n":"temp","v":25.0,"u":"Cel"},{"n":"humidity","v":61.5}]'
)


@pytest.mark.parametrize(
    "payload",
    [
        USUAL,
        USUAL.replace(b'"v":25.0', b'"v":25.0,"v":26.5'),  # a key twice: the last one
        USUAL.replace(b'"n":"humidity"', b'"n":"humidity","n":"temp"'),
        USUAL.replace(b'"n":"temp"', b'"\\u006e":"temp"'),  # an escaped label
        USUAL.replace(b'"n":"humidity"', b'"n":"h\\u0075midity"'),  # an escaped name
        USUAL.replace(b"25.0", b"99999999999999999999999999"),  # a big int
        USUAL.replace(b"25.0", b"true"),
        USUAL.replace(b'"bt":1700000000', b'"bt":1700000000,"bt":-5'),
        USUAL.replace(b'{"n":"humidity"', b'{"bt":1,"n":"humidity"'),  # a base time past the first record
        USUAL.replace(b'{"n":"humidity"', b'{"bn":"urn:dev:ow:10e2073a01080063:","n":"humidity"'),
        USUAL.replace(b'{"n":"humidity"', b'{"bn":"2001:db8::2","n":"humidity"'),
        USUAL.replace(b'"bt":1700000000', b'"bt":1e306'),
        USUAL.replace(b"[{", b"[ {"),
    ],
)
def test_raw_packs_after_a_known_one_store_what_the_general_path_stores(payload: bytes) -> None:
    sent = [("senml/x", USUAL), ("senml/x", USUAL), ("senml/x", payload)]
    warm, general = _with_and_without_the_fast_path(SOURCES.sources[0], sent)
    assert warm == general


def test_large_packs_and_base_names_with_more_separators_are_not_worked_out() -> None:
    from ingest.sources.senml import KNOWN_RECORDS_MAX

    decoder = SenML(SOURCES.sources[0], SourceContext(REGISTRY, FieldMapper(SOURCES.models), _no_ignore))

    def send(pack: list[dict[str, Any]]) -> list[str]:
        out = BatchBuilder()
        decoder.decode("senml/x", msgspec.json.encode(pack), retained=False, now_ms=NOW, out=out)
        return out.lines

    line = f"{TRAP} air_temp_c=25.0,seq=0i 1700000000000"
    large = [{"bn": OW, "bt": 1_700_000_000, "n": "temp", "v": 25.0, "u": "Cel"}]
    large += [{"n": f"x{i}", "v": 1.0} for i in range(KNOWN_RECORDS_MAX)]
    assert send(large) == [line]
    assert decoder._known == {}, "more records than KNOWN_RECORDS_MAX"
    for bn in (f"{OW}::", f"{OW}:/", f"{OW}:::"):
        assert send([{"bn": bn, "bt": 1_700_000_000, "n": "temp", "v": 25.0, "u": "Cel"}]) == [line]
    assert decoder._known == {}, "one device, many base names: none worked out past one separator"
    for bn in (OW, f"{OW}:"):
        assert send([{"bn": bn, "bt": 1_700_000_000, "n": "temp", "v": 25.0, "u": "Cel"}]) == [line]
    assert sorted(decoder._known) == [OW, f"{OW}:"]
