"""ThingsBoard's device and gateway MQTT APIs (pure logic): identity, times, values, attributes, refusals."""

from __future__ import annotations

import json
from typing import Any

import msgspec
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
from ingest.sources.router import Router
from ingest.sources.thingsboard import MAX_READINGS

NOW = 1_750_000_000_000
SOURCES = parse_sources(
    {
        "sources": [
            {"format": "ioc_v1"},
            {
                "format": "thingsboard",
                "topics": [
                    "v1/devices/+/telemetry",
                    "v1/devices/+/attributes",
                    "v1/devices/+/rpc/#",
                    "v1/gateway/+",
                    "tb/#",  # a layout that is not ThingsBoard's
                ],
            },
        ],
        "models": {
            "tb_salinity": {
                "fields": {
                    "ec_us_cm": "ec",
                    "salinity_ppt": "salinity",
                    "temp_c": ["temp", "temperature"],
                    "water_level_cm": {"path": "jsonKey.level", "unit": "m"},  # inside a nested JSON value
                    "battery_pct": "battery",
                }
            }
        },
    },
    "t",
)
TOKEN = "A1_TEST_TOKEN"


def _tags(device_id: str, kind: Kind, model: str, name: str, state: str = "active") -> DeviceTags:
    return DeviceTags(device_id, kind, "ben_tre", "ba_tri", "river", "none", state, model, thingsboard=name)


REGISTRY = Registry(
    [
        _tags("bt-sal-1", Kind.SALINITY, "tb_salinity", TOKEN),
        _tags("bt-wq-1", Kind.WATER_QUALITY, "ioc_v1", "WQ-BT-7"),  # no model entry: our names
        _tags("bt-trap-1", Kind.LIGHT_TRAP, "ioc_v1", "trap-7"),
        _tags("bt-cam-1", Kind.CAMERA, "ioc_v1", "cam-7"),
        _tags("bt-gone-1", Kind.SALINITY, "tb_salinity", "gone", state="suspended"),
    ]
)
SAL = "salinity,crop=none,device_id=bt-sal-1,district=ba_tri,province=ben_tre,site=river"
WQ = "water_quality,crop=none,device_id=bt-wq-1,district=ba_tri,province=ben_tre,site=river"
STATUS_SAL = "device_status,crop=none,device_id=bt-sal-1,district=ba_tri,province=ben_tre,site=river"
STATUS_WQ = "device_status,crop=none,device_id=bt-wq-1,district=ba_tri,province=ben_tre,site=river"
TELEMETRY = f"v1/devices/{TOKEN}/telemetry"
ATTRIBUTES = f"v1/devices/{TOKEN}/attributes"


def _decode(topic: str, doc: Any, *, retained: bool = False) -> tuple[BatchBuilder, list[str]]:
    ignored: list[str] = []
    native = Decoder(REGISTRY, max_payload_bytes=65_536, max_readings=100)
    router = Router(SOURCES, native, REGISTRY, ignored.append)
    out = BatchBuilder()
    payload = doc if isinstance(doc, bytes) else msgspec.json.encode(doc)
    router.decode(topic, payload, retained=retained, now_ms=NOW, out=out)
    return out, ignored


def _reasons(out: BatchBuilder) -> list[Reason]:
    return [r.reason for r in out.rejections]


def test_a_device_telemetry_without_ts_is_one_reading_at_the_receive_time() -> None:
    out, _ = _decode(TELEMETRY, {"temperature": 42})
    assert out.rejections == []
    assert out.lines == [f"{SAL} temp_c=42.0,seq=0i {NOW}"]


def test_a_timestamped_set_is_read_as_thingsboard_casts_it() -> None:
    """Numeric strings are numbers, null is no value, unmapped keys (a text, a nested object) are left out."""
    doc = {"ts": 1_700_000_000_512, "values": {"ec": "18350", "salinity": "10.8", "temp": 29.4, "battery": None,
                                                "status": "OK", "jsonKey": {"level": 1.25, "a": [1, 2]}}}  # fmt: skip
    out, _ = _decode(TELEMETRY, doc)
    assert out.rejections == []
    assert out.lines == [
        f"{SAL} ec_us_cm=18350.0,salinity_ppt=10.8,temp_c=29.4,water_level_cm=125.0,seq=0i 1700000000512"
    ]


def test_each_distinct_ts_is_one_reading_and_sets_of_one_time_merge() -> None:
    doc = [
        {"ts": 1_700_000_000_000, "values": {"ec": 18350}},
        {"ts": 1_700_000_600_000, "values": {"ec": 18420, "temp": "29.1"}},
        {"ts": 1_700_000_000_000, "values": {"salinity": 10.8}},
        {"temp": 30.5},  # no ts: the receive time
    ]
    out, _ = _decode(TELEMETRY, doc)
    assert out.rejections == []
    assert out.lines == [
        f"{SAL} ec_us_cm=18350.0,salinity_ppt=10.8,seq=0i 1700000000000",
        f"{SAL} ec_us_cm=18420.0,temp_c=29.1,seq=0i 1700000600000",
        f"{SAL} temp_c=30.5,seq=0i {NOW}",
    ]


def test_without_a_model_entry_keys_that_are_our_field_names_are_taken() -> None:
    out, _ = _decode("v1/devices/WQ-BT-7/telemetry", {"ph": 7.2, "temperature": 30, "do_mg_l": "5.5"})
    assert out.rejections == []
    assert out.lines == [f"{WQ} ph=7.2,do_mg_l=5.5,seq=0i {NOW}"]


def test_me_in_the_topic_means_the_broker_lacks_the_plugin() -> None:
    out, _ = _decode("v1/devices/me/telemetry", {"temperature": 42})
    assert out.lines == []
    [r] = out.rejections
    assert r.reason == Reason.UNKNOWN_DEVICE
    assert "MQTT user name" in r.detail
    assert "deploy/mosquitto-plugin (mosquitto_tb_identity.so)" in r.detail


@pytest.mark.parametrize("user", ["nobody", "gone", "bt-sal-1"])  # unknown, suspended, our id is not a token
def test_an_unknown_or_inactive_device_is_refused(user: str) -> None:
    out, _ = _decode(f"v1/devices/{user}/telemetry", {"temp": 20})
    assert (out.lines, _reasons(out)) == ([], [Reason.UNKNOWN_DEVICE])
    assert user not in out.rejections[0].detail  # the user name may be an access token: not repeated


@pytest.mark.parametrize(
    ("doc", "reasons"),
    [
        (b"{not json", [Reason.BAD_JSON]),
        (b'{"temp": 1e400}', [Reason.BAD_JSON]),
        (42, [Reason.BAD_SHAPE]),
        ("temp", [Reason.BAD_SHAPE]),
        ({"ts": "1700000000000", "values": {"temp": 20}}, [Reason.BAD_TIMESTAMP]),
        ({"ts": 1.7e12 + 0.5, "values": {"temp": 20}}, [Reason.BAD_TIMESTAMP]),
        ({"ts": 1_700_000_000, "values": {"temp": 20}}, [Reason.BAD_TIMESTAMP]),  # seconds: before 2000 as ms
        ({"ts": NOW + 3_600_000, "values": {"temp": 20}}, [Reason.BAD_TIMESTAMP]),
        ({"ts": 1_700_000_000_000, "values": [20]}, [Reason.BAD_SHAPE]),
        ({"key1": "value1"}, [Reason.MISSING_FIELD]),
        ({"temp": "hot"}, [Reason.BAD_TYPE]),
        ({"temp": True}, [Reason.BAD_TYPE]),
        ({"temp": 99}, [Reason.OUT_OF_RANGE]),
        ([{"ts": 1_700_000_000_000, "values": {"temp": 20}}] * (MAX_READINGS + 1), [Reason.TOO_LARGE]),
    ],
)
def test_telemetry_refusals_name_their_reason(doc: Any, reasons: list[Reason]) -> None:
    out, _ = _decode(TELEMETRY, doc)
    assert out.lines == []
    assert _reasons(out) == reasons
    assert all(r.detail for r in out.rejections)


def test_a_bad_set_refuses_itself_and_the_others_are_stored() -> None:
    doc = [{"ts": 1_700_000_000_000, "values": {"temp": 20}}, "noise", {"ts": "x", "values": {}}, {"temp": "21"}]
    out, _ = _decode(TELEMETRY, doc)
    assert out.lines == [f"{SAL} temp_c=20.0,seq=0i 1700000000000", f"{SAL} temp_c=21.0,seq=0i {NOW}"]
    assert [(r.reason, r.detail) for r in out.rejections] == [
        (Reason.BAD_SHAPE, "[1]: str is not an object of values"),
        (Reason.BAD_TIMESTAMP, "[2]: ts 'x' is not epoch milliseconds (an integer)"),
    ]


def test_a_bad_value_refuses_that_field_alone() -> None:
    out, _ = _decode(TELEMETRY, {"temp": 25, "ec": "No Sensor"})
    assert out.lines == [f"{SAL} temp_c=25.0,seq=0i {NOW}"]
    [r] = out.rejections
    assert (r.reason, r.detail) == (
        Reason.BAD_TYPE,
        "ec_us_cm: 'No Sensor' is not a number; the rest of the reading was stored",
    )


def test_booleans_are_0_1_for_our_0_1_fields() -> None:
    out, _ = _decode("v1/devices/trap-7/telemetry", {"lamp_on": True, "bph_count": 12})
    assert out.rejections == []
    assert out.lines[0].endswith(f" bph_count=12i,lamp_on=1i,seq=0i {NOW}")


def test_a_nested_value_under_our_field_name_is_not_a_number() -> None:
    out, _ = _decode("v1/devices/WQ-BT-7/telemetry", {"ph": {"value": 7}, "temp_c": 28})
    assert out.lines == [f"{WQ} temp_c=28.0,seq=0i {NOW}"]
    assert _reasons(out) == [Reason.BAD_TYPE]


def test_status_fields_in_telemetry_go_to_the_device_status() -> None:
    """battery_pct is no kind's reading but the status's; a camera's battery_v too."""
    out, _ = _decode(TELEMETRY, {"ts": 1_700_000_000_000, "values": {"temp": 28, "battery": 87}})
    assert out.rejections == []
    assert out.lines == [
        f"{STATUS_SAL} online=1i,battery_pct=87.0 1700000000000",
        f"{SAL} temp_c=28.0,seq=0i 1700000000000",
    ]
    out, _ = _decode("v1/devices/cam-7/telemetry", {"fps": 12.5, "battery_v": 12.1})
    assert out.rejections == []
    assert [line.split(" ", 1)[1] for line in out.lines] == [
        f"online=1i,battery_v=12.1 {NOW}",
        f"fps=12.5,seq=0i {NOW}",
    ]


def test_attributes_carry_status_fields_only() -> None:
    out, ignored = _decode(ATTRIBUTES, {"battery": 87, "temp": 20, "fw_version": "1.0"})
    assert out.rejections == []
    assert out.lines == [f"{STATUS_SAL} online=1i,battery_pct=87.0 {NOW}"]
    assert ignored == []
    out, ignored = _decode("v1/devices/WQ-BT-7/attributes", {"fw": "2.1.0", "rssi_dbm": -71, "attribute2": True})
    assert out.lines == [f'{STATUS_WQ} online=1i,rssi_dbm=-71.0,fw="2.1.0" {NOW}']
    out, ignored = _decode(ATTRIBUTES, {"attribute1": "value1", "attribute2": True})
    assert (out.lines, out.rejections, ignored) == ([], [], ["attributes"])
    out, _ = _decode(ATTRIBUTES, [1])
    assert _reasons(out) == [Reason.BAD_SHAPE]


def test_a_gateway_message_stores_known_devices_and_refuses_unknown_ones() -> None:
    doc = {
        "WQ-BT-7": [{"ts": 1_700_000_000_000, "values": {"ph": 7.1}}, {"ts": 1_700_000_001_000, "values": {"ph": 7.2}}],
        "Device B": [{"ts": 1_700_000_000_000, "values": {"temperature": 42}}],
        TOKEN: {"temperature": 22},  # one object instead of an array: read as ThingsBoard's device API would
    }
    out, _ = _decode("v1/gateway/telemetry", doc)
    assert out.lines == [
        f"{WQ} ph=7.1,seq=0i 1700000000000",
        f"{WQ} ph=7.2,seq=0i 1700000001000",
        f"{SAL} temp_c=22.0,seq=0i {NOW}",
    ]
    [r] = out.rejections
    assert (r.reason, r.detail) == (
        Reason.UNKNOWN_DEVICE,
        "ThingsBoard device 'Device B' is not an active registered device (external id thingsboard)",
    )


def test_a_gateway_part_that_is_bad_names_its_device() -> None:
    out, _ = _decode("v1/gateway/telemetry", {"WQ-BT-7": 5, TOKEN: [{"temp": 21}]})
    assert out.lines == [f"{SAL} temp_c=21.0,seq=0i {NOW}"]
    [r] = out.rejections
    assert (r.reason, r.detail) == (
        Reason.BAD_SHAPE,
        "'WQ-BT-7': telemetry is a JSON object or an array of them, not int",
    )
    out, _ = _decode("v1/gateway/telemetry", [{"WQ-BT-7": []}])
    assert _reasons(out) == [Reason.BAD_SHAPE]


def test_gateway_connect_and_disconnect_are_the_device_status() -> None:
    out, _ = _decode("v1/gateway/connect", {"device": "WQ-BT-7", "type": "Sensor A"})
    assert out.lines == [f"{STATUS_WQ} online=1i {NOW}"]
    out, _ = _decode("v1/gateway/disconnect", {"device": "WQ-BT-7"})
    assert out.lines == [f"{STATUS_WQ} online=0i {NOW}"]
    out, _ = _decode("v1/gateway/connect", {"device": "Device A"})
    assert _reasons(out) == [Reason.UNKNOWN_DEVICE]
    bad: list[Any] = [{"name": "WQ-BT-7"}, {"device": ""}, {"device": 7}, ["WQ-BT-7"]]
    for doc in bad:
        out, _ = _decode("v1/gateway/connect", doc)
        assert _reasons(out) == [Reason.BAD_SHAPE]


def test_gateway_attributes_read_the_mapped_battery() -> None:
    out, ignored = _decode("v1/gateway/attributes", {TOKEN: {"fw_version": "1.0", "battery": 87}, "WQ-BT-7": {"x": 1}})
    assert out.rejections == []
    assert out.lines == [f"{STATUS_SAL} online=1i,battery_pct=87.0 {NOW}"]
    assert ignored == ["attributes"]


def test_retained_messages_without_their_own_time_are_not_stored_again() -> None:
    doc = [{"ts": 1_700_000_000_000, "values": {"temp": 20}}, {"temp": 21}]
    out, ignored = _decode(TELEMETRY, doc, retained=True)
    assert out.lines == [f"{SAL} temp_c=20.0,seq=0i 1700000000000"]
    assert ignored == ["retained"]
    for topic, other in [(ATTRIBUTES, {"battery": 50}), ("v1/gateway/connect", {"device": "WQ-BT-7"})]:
        out, ignored = _decode(topic, other, retained=True)
        assert (out.lines, out.rejections, ignored) == ([], [], ["retained"])


def test_other_api_messages_are_counted_and_other_layouts_refused() -> None:
    out, ignored = _decode(f"v1/devices/{TOKEN}/rpc/response/1", {"ok": True})
    out2, ignored2 = _decode("v1/gateway/claim", {"WQ-BT-7": {"secretKey": "x"}})
    out3, ignored3 = _decode("v1/gateway/rpc", {"device": "WQ-BT-7", "id": 1, "data": {}})
    for o in (out, out2, out3):
        assert (o.lines, o.rejections) == ([], [])
    assert ignored + ignored2 + ignored3 == ["rpc", "claim", "rpc"]
    out, ignored = _decode("v1/gateway/telemetry", {})
    out2, ignored2 = _decode(TELEMETRY, [])
    for o in (out, out2):
        assert (o.lines, o.rejections) == ([], [])
    assert ignored + ignored2 == ["empty", "empty"]
    out, _ = _decode("tb/x/telemetry", {"temp": 1})
    assert _reasons(out) == [Reason.BAD_TOPIC]


def test_the_corpus_payload_shapes_decode() -> None:
    """The ThingsBoard documentation's own examples (as in ../shared/realworld/thingsboard)."""
    typed = {"stringKey": "value1", "booleanKey": True, "doubleKey": 42.0, "longKey": 73,
             "jsonKey": {"someNumber": 42, "someArray": [1, 2, 3], "someNestedObject": {"key": "value"}}}  # fmt: skip
    for doc in (typed, {"ts": 1451649600512, "values": typed}, [{"key1": "value1"}, {"key2": True}]):
        out, _ = _decode(TELEMETRY, doc)
        assert (out.lines, _reasons(out)) == ([], [Reason.MISSING_FIELD])


JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
KEYS = st.sampled_from(["ec", "temp", "temperature", "battery", "ph", "lamp_on", "fw", "jsonKey", "x"])
VALUES = st.dictionaries(KEYS, JSON | st.sampled_from(["29.5", "7", "nan", ""]), max_size=5)
TS = st.sampled_from([1_700_000_000_000, NOW, NOW + 10**9, 0, 1.5, "1700000000000", None]) | JSON
SET = st.fixed_dictionaries({}, optional={"ts": TS, "values": VALUES | JSON}) | VALUES
TELEMETRY_DOC = SET | st.lists(SET, max_size=4)
NAMES = st.sampled_from([TOKEN, "WQ-BT-7", "trap-7", "cam-7", "gone", "Device A", ""])
GATEWAY_DOC = st.dictionaries(NAMES, TELEMETRY_DOC | JSON, max_size=3) | st.fixed_dictionaries({"device": NAMES | JSON})
TOPICS = st.sampled_from(
    [
        TELEMETRY,
        ATTRIBUTES,
        "v1/devices/me/telemetry",
        "v1/devices/WQ-BT-7/telemetry",
        "v1/devices/trap-7/attributes",
        "v1/gateway/telemetry",
        "v1/gateway/attributes",
        "v1/gateway/connect",
        "v1/gateway/disconnect",
        "v1/gateway/rpc",
        "tb/x",
    ]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    topic=TOPICS,
    doc=TELEMETRY_DOC | GATEWAY_DOC | JSON,
    raw=st.binary(max_size=64),
    use_raw=st.booleans(),
    retained=st.booleans(),
)
def test_fuzz_no_crash_and_every_refusal_has_a_reason(
    topic: str, doc: Any, raw: bytes, use_raw: bool, retained: bool
) -> None:
    out, ignored = _decode(topic, raw if use_raw else json.dumps(doc).encode(), retained=retained)
    for r in out.rejections:
        assert isinstance(r.reason, Reason)
        assert r.detail
    if not out.lines and not ignored:
        assert out.rejections, "a message neither stored, counted nor refused"
