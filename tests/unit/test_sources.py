"""Other payload formats (pure logic): the sources file, topic matching, units, the LoRaWAN decoders."""

from __future__ import annotations

import json
from pathlib import Path
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
from ingest.errors import ConfigError
from ingest.registry import Registry
from ingest.sources.config import NATIVE_ONLY, load_sources, parse_sources
from ingest.sources.router import Router, matches
from ingest.sources.units import converter

NOW = 1_750_000_000_000
SOURCES = parse_sources(
    {
        "sources": [{"format": "ioc_v1"}, {"format": "chirpstack_v4"}, {"format": "tts_v3"}],
        "models": {
            "lse01": {
                "fields": {
                    "ec_us_cm": {"path": "conduct", "unit": "mS/cm"},
                    "temp_c": ["temp_SOIL", "TEMP_SOIL"],
                    "battery_v": {"path": "Bat", "unit": "mV"},
                }
            }
        },
    },
    "t",
)
EUI = "0101010101010101"
REGISTRY = Registry(
    [
        DeviceTags("bt-soil-1", Kind.WATER_QUALITY, "ben_tre", "ba_tri", "field", "none", "active", "lse01", EUI),
        DeviceTags(
            "bt-gone-1", Kind.SALINITY, "ben_tre", "ba_tri", "field", "none", "suspended", "x", "0202020202020202"
        ),
        DeviceTags("bt-tts-1", Kind.SALINITY, "ben_tre", "ba_tri", "field", "none", "active", "ioc_v1", None, "dev1"),
        DeviceTags("masked", Kind.SALINITY, "ben_tre", "ba_tri", "field", "none", "active", "ioc_v1", "608...d74"),
    ]
)


def _router() -> tuple[Router, list[str]]:
    ignored: list[str] = []
    native = Decoder(REGISTRY, max_payload_bytes=65_536, max_readings=100)
    return Router(SOURCES, native, REGISTRY, ignored.append), ignored


def _decode(topic: str, doc: Any) -> tuple[BatchBuilder, list[str]]:
    router, ignored = _router()
    out = BatchBuilder()
    payload = doc if isinstance(doc, bytes) else msgspec.json.encode(doc)
    router.decode(topic, payload, retained=False, now_ms=NOW, out=out)
    return out, ignored


def _up(**fields: Any) -> dict[str, Any]:
    return {"deviceInfo": {"devEui": EUI}, "time": "2023-11-14T22:13:20.123456789+00:00", **fields}


CS_UP = f"application/app/device/{EUI}/event/up"


def test_a_chirpstack_uplink_maps_converts_and_keeps_the_best_gateway() -> None:
    doc = _up(
        fCnt=7, object={"conduct": "28.2", "TEMP_SOIL": "24.90", "Bat": 3625}, rxInfo=[{"rssi": -90}, {"rssi": -36}]
    )
    out, _ = _decode(CS_UP, doc)
    assert out.rejections == []
    assert out.lines == [
        "water_quality,crop=none,device_id=bt-soil-1,district=ba_tri,province=ben_tre,site=field "
        "temp_c=24.9,ec_us_cm=28200.0,battery_v=3.625,rssi_dbm=-36.0,seq=7i 1700000000123"
    ]


def test_garbage_in_one_field_refuses_that_field_and_keeps_the_rest() -> None:
    out, _ = _decode(CS_UP, _up(object={"conduct": "No Sensor", "temp_SOIL": 24.5}))
    assert len(out.lines) == 1
    assert "temp_c=24.5" in out.lines[0]
    assert "ec_us_cm" not in out.lines[0]
    assert "seq=0i" in out.lines[0]  # fCnt left out when 0: absent means 0
    [r] = out.rejections
    assert (r.reason, r.detail) == (
        Reason.BAD_TYPE,
        "ec_us_cm: 'No Sensor' is not a number; the rest of the reading was stored",
    )


def test_a_refused_field_says_the_rest_was_stored_only_when_it_was() -> None:
    out, _ = _decode(CS_UP, _up(object={"conduct": "No Sensor"}, rxInfo=[{"rssi": -40}]))
    assert out.lines == []
    [r] = out.rejections
    assert (r.reason, r.detail) == (Reason.BAD_TYPE, "ec_us_cm: 'No Sensor' is not a number")


def test_out_of_range_after_conversion_is_refused_with_its_reason() -> None:
    out, _ = _decode(CS_UP, _up(object={"conduct": 500}))  # 500 mS/cm = 500,000 µS/cm: beyond any water
    assert out.lines == []
    assert [r.reason for r in out.rejections] == [Reason.OUT_OF_RANGE]


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (_up(), Reason.MISSING_FIELD),  # no codec: nothing to store
        (_up(object={"Hum": 50}), Reason.MISSING_FIELD),  # nothing the model maps
        ({"deviceInfo": {"devEui": "0202020202020202"}, "object": {"conduct": 1}}, Reason.UNKNOWN_DEVICE),  # suspended
        ({"deviceInfo": {"devEui": "ffffffffffffffff"}, "object": {"conduct": 1}}, Reason.UNKNOWN_DEVICE),
        (_up(object={"temp_SOIL": 20}, time="2031-01-01T00:00:00Z"), Reason.BAD_TIMESTAMP),
        (b"{not json", Reason.BAD_JSON),
        ({"deviceInfo": "x"}, Reason.BAD_SHAPE),
    ],
)
def test_chirpstack_refusals_name_their_reason(doc: Any, reason: Reason) -> None:
    out, _ = _decode(CS_UP, doc)
    assert out.lines == []
    assert [r.reason for r in out.rejections] == [reason]


def test_a_status_battery_is_a_percentage_and_never_a_made_up_zero() -> None:
    topic = f"application/app/device/{EUI}/event/status"
    out, _ = _decode(topic, _up(batteryLevel=88.3, margin=10))
    assert out.lines == ["device_status,crop=none,device_id=bt-soil-1,district=ba_tri,province=ben_tre,site=field "
                         "online=1i,battery_pct=88.3 1700000000123"]  # fmt: skip
    for flag in ("externalPowerSource", "batteryLevelUnavailable"):
        out, _ = _decode(topic, _up(batteryLevel=0.0, **{flag: True}))
        assert out.lines[0].endswith(" online=1i 1700000000123")


def test_an_up_with_other_events_fields_leaked_in_is_read_not_refused() -> None:
    """ChirpStack 4.6.0 put null/0 fields of other events into ``up`` (chirpstack#349)."""
    doc = {"deviceInfo": {"devEui": "608...d74"}, "time": "2024-01-06T11:34:06+00:00", "fCnt": 4,
           "object": {"salinity_ppt": 1.5}, "batteryLevel": 0.0, "level": None,
           "rxInfo": [{"rssi": -80, "time": None}]}  # fmt: skip
    out, _ = _decode("application/a/device/608/event/up", doc)
    assert out.rejections == []
    assert "salinity_ppt=1.5" in out.lines[0]
    assert "battery" not in out.lines[0]


def test_events_without_readings_are_counted_not_refused() -> None:
    out, ignored = _decode(f"application/app/device/{EUI}/event/join", _up())
    out2, ignored2 = _decode(f"application/app/device/{EUI}/event/log", _up(level="ERROR"))
    assert out.lines == out.rejections == out2.lines == out2.rejections == []
    assert ignored + ignored2 == ["join", "log"]


def test_a_tts_uplink_by_device_id_with_its_server_time() -> None:
    doc = {"end_device_ids": {"device_id": "dev1", "dev_eui": "0004A30B001C0530"},
           "uplink_message": {"decoded_payload": {"salinity_ppt": "2.5"}, "rx_metadata": [{"rssi": -35}],
                              "received_at": "2023-11-14T22:13:20.5Z"}}  # fmt: skip
    out, _ = _decode("v3/app1@ttn/devices/dev1/up", doc)
    assert out.rejections == []
    assert out.lines[0].endswith("salinity_ppt=2.5,rssi_dbm=-35.0,seq=0i 1700000000500")


def test_a_topic_no_source_takes_is_a_bad_topic_and_the_native_contract_still_works() -> None:
    out, _ = _decode("somewhere/else", b"{}")
    assert [r.reason for r in out.rejections] == [Reason.BAD_TOPIC]
    out, _ = _decode("ioc/v1/ben_tre/salinity/bt-tts-1/telemetry", {"ts": NOW, "seq": 1, "salinity_ppt": 0.5})
    assert out.rejections == []
    assert len(out.lines) == 1


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("ioc/v1/#", "ioc/v1/a/b", True),
        ("ioc/v1/#", "ioc/v1", True),
        ("application/+/device/+/event/+", "application/x/device/y/event/up", True),
        ("application/+/device/+/event/+", "application/x/device/y/event", False),
        ("v3/+/devices/+/up", "v3/a@t/devices/d/join", False),
        ("#", "$SYS/broker", False),
        ("a/+", "a/b/c", False),
    ],
)
def test_topic_filters_match_as_mqtt_does(topic_filter: str, topic: str, expected: bool) -> None:
    assert matches(topic_filter, topic) is expected


def test_units_convert_or_are_refused() -> None:
    assert converter("µS/cm", "S/m")(0.5) == pytest.approx(5_000.0)  # type: ignore[misc]
    assert converter("°C", "Cel")(21.5) == 21.5  # type: ignore[misc]
    assert converter("°C", "K")(300.0) == pytest.approx(26.85)  # type: ignore[misc]
    assert converter("V", "mV")(3_650) == pytest.approx(3.65)  # type: ignore[misc]
    assert converter("µS/cm", "K") is None
    assert converter("‰", "%EL") is None
    assert converter("%", "/")(0.5) == 50.0  # type: ignore[misc]  # SenML ratio


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"sources": [{"format": "mqtt_json"}]}, "sources.0.format: Input should be 'ioc_v1', 'chirpstack_v4'"),
        ({"sources": [{"format": "senml"}]}, "sources.0: topics: senml has no standard topic; name the topics"),
        ({"sources": [{"format": "influx_lp", "device": {"topic_level": 1}}]}, "sources.0: precision: line protocol"),
        (
            {"sources": [{"format": "json_map", "topics": ["v/#"], "device": {"topic_level": 1, "path": "id"}}]},
            "sources.0.device: give exactly one of topic_level and path",
        ),
        ({"sources": [{"format": "json_map", "topics": ["v/#"]}]}, "sources.0: device: say where a json_map message"),
        ({"sources": [{"format": "senml", "topics": ["s/#"], "precision": "s"}]}, "sources.0: precision: only for"),
        ({"sources": [{"format": "tts_v3", "model": "nope"}]}, "sources.0.model: no model 'nope' under models:"),
        ({"sources": [{"format": "ioc_v1", "model": "m"}]}, "sources.0: model: only for chirpstack_v4, tts_v3"),
        ({"sources": [{"format": "tts_v3", "topics": ["a/#/b"]}]}, "sources.0.topics.0: 'a/#/b' is not an MQTT"),
        (
            {"sources": [{"format": "ioc_v1"}], "models": {"m": {"fields": {"ec": "x"}}}},
            "models.m: fields.ec: no numeric",
        ),
        (
            {"sources": [{"format": "ioc_v1"}], "models": {"m": {"fields": {"ph": {"path": "x", "unit": "K"}}}}},
            "models.m: fields.ph: cannot convert 'K' to 'pH'",
        ),
        (
            {"sources": [{"format": "ioc_v1", "topics": ["x/#"]}, {"format": "tts_v3", "topics": ["x/#"]}]},
            "topic filter 'x/#' is given to both ioc_v1 and tts_v3",
        ),
        ({"sources": [{"format": "ioc_v1", "topic": "x"}]}, "sources.0.topic: Extra inputs are not permitted"),
    ],
)
def test_a_bad_sources_file_is_refused_naming_entry_and_field(raw: Any, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_sources(raw, "s.yaml")
    assert str(caught.value).startswith(f"s.yaml: {message}")


def test_a_missing_or_broken_sources_file_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read the sources file .* \(--sources, IOC_SOURCES\)"):
        load_sources(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("sources: [", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML"):
        load_sources(tmp_path / "bad.yaml")
    assert NATIVE_ONLY.sources[0].filters == ("ioc/v1/#",)


JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
ENVELOPE = st.fixed_dictionaries(
    {},
    optional={
        "deviceInfo": st.fixed_dictionaries({"devEui": st.sampled_from([EUI, "608...d74", "x", ""])}) | JSON,
        "time": st.sampled_from(["2023-11-14T22:13:20Z", "nonsense", "1999-01-01T00:00:00Z"]) | JSON,
        "fCnt": st.integers() | JSON,
        "object": st.dictionaries(st.sampled_from(["conduct", "temp_SOIL", "Bat", "x"]), JSON, max_size=4) | JSON,
        "rxInfo": st.lists(st.fixed_dictionaries({"rssi": JSON}), max_size=3) | JSON,
        "batteryLevel": JSON,
        "end_device_ids": st.fixed_dictionaries({"device_id": st.sampled_from(["dev1", "x"])}) | JSON,
        "uplink_message": st.fixed_dictionaries({"decoded_payload": JSON, "f_cnt": JSON}) | JSON,
    },
)
TOPICS = st.sampled_from(
    [CS_UP, f"application/a/device/{EUI}/event/status", "application/a/device/b/event/join", "v3/a/devices/dev1/up"]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=TOPICS, doc=ENVELOPE | JSON, raw=st.binary(max_size=64), use_raw=st.booleans())
def test_fuzz_no_crash_and_every_refusal_has_a_reason(topic: str, doc: Any, raw: bytes, use_raw: bool) -> None:
    out, ignored = _decode(topic, raw if use_raw else json.dumps(doc).encode())
    for r in out.rejections:
        assert isinstance(r.reason, Reason)
        assert r.detail
    assert len(out.lines) <= 1
    if not out.lines and not ignored:
        assert out.rejections, "a message neither stored, counted nor refused"


def test_the_mapper_takes_the_first_path_present_whichever_way_it_walks() -> None:
    """A small payload against a big model walks the payload's keys; a dotted path walks the model:
    either way the first of a field's paths that is present wins, and units convert."""
    from ingest.sources.config import Model
    from ingest.sources.mapping import FieldMapper

    fields: dict[str, Any] = {"air_temp_c": ["T2", "T1"], "humidity_pct": "H"}
    fields["battery_v"] = {"path": "mV", "unit": "mV"}
    fields |= {name: f"unused_{name}" for name in ("salinity_ppt", "ec_us_cm", "ph", "do_mg_l", "turbidity_ntu")}
    flat = FieldMapper({"m": Model.model_validate({"fields": fields})})
    nested = FieldMapper({"m": Model.model_validate({"fields": {**fields, "temp_c": ["probe.t", "T1"]}})})
    payload = {"T1": 20.5, "T2": "21.5", "H": None, "mV": 3_600, "probe": {"t": 27.0}}
    assert flat.values("m", payload) == ({"air_temp_c": "21.5", "battery_v": 3.6}, [])
    assert nested.values("m", payload) == ({"air_temp_c": "21.5", "battery_v": 3.6, "temp_c": 27.0}, [])
    assert flat.values("m", {"T1": 20.5}) == ({"air_temp_c": 20.5}, [])
    assert nested.values("m", {"T1": 20.5}) == ({"air_temp_c": 20.5, "temp_c": 20.5}, [])  # one key, two fields
    values, [refused] = flat.values("m", {"mV": "low"})
    assert (values, refused.reason, str(refused)) == ({}, Reason.BAD_TYPE, "battery_v: 'low' is not a number")


@pytest.mark.parametrize(
    ("raw", "stored", "refusal"),
    [
        (24.5, "air_temp_c=24.5", None),
        (" 24.5 ", "air_temp_c=24.5", None),  # a codec's numeric text, padded
        (25, "air_temp_c=25.0", None),
        ("nan", None, (Reason.OUT_OF_RANGE, "air_temp_c: nan is not a finite number")),
        ("1e999", None, (Reason.OUT_OF_RANGE, "air_temp_c: inf is not a finite number")),
        (float("-inf"), None, (Reason.OUT_OF_RANGE, "air_temp_c: -inf is not a finite number")),
        ("99", None, (Reason.OUT_OF_RANGE, "air_temp_c: 99.0 is outside -10..60 °C")),
        ("warm", None, (Reason.BAD_TYPE, "air_temp_c: 'warm' is not a number")),
        (True, None, (Reason.BAD_TYPE, "air_temp_c: bool 'True' is not a number")),
    ],
)
def test_the_sink_checks_every_value_as_the_native_schema_does(
    raw: Any, stored: str | None, refusal: tuple[Reason, str] | None
) -> None:
    from ingest.registry import RegisteredDevice
    from ingest.sources.sink import ReadingSink

    trap = Registry([DeviceTags("t", Kind.LIGHT_TRAP, "ben_tre", "ba_tri", "field", "none", "active")]).by_id["t"]
    assert isinstance(trap, RegisteredDevice)
    out = BatchBuilder()
    values = {"air_temp_c": raw, "bph_count": 7}
    assert ReadingSink().reading("t/x", b"{}", trap, NOW, 1, values, now_ms=NOW, out=out)
    fields = out.lines[0].split(" ")[1]
    assert "bph_count=7i" in fields
    assert (stored in fields) if stored else ("air_temp_c" not in fields)
    got = [(r.reason, r.detail) for r in out.rejections]
    assert got == ([] if refusal is None else [(refusal[0], refusal[1] + "; the rest of the reading was stored")])


@pytest.mark.parametrize(("raw", "ok"), [(7, True), (7.0, True), ("7", True), (7.5, False), (-1, False), (True, False)])
def test_a_whole_number_field_takes_whole_numbers_only(raw: Any, ok: bool) -> None:
    from ingest.sources.sink import ReadingSink

    trap = Registry([DeviceTags("t", Kind.LIGHT_TRAP, "ben_tre", "ba_tri", "field", "none", "active")]).by_id["t"]
    out = BatchBuilder()
    ReadingSink().reading("t/x", b"{}", trap, NOW, 1, {"bph_count": raw, "air_temp_c": 20.0}, now_ms=NOW, out=out)
    assert ("bph_count=7i" in out.lines[0]) is ok
    assert (out.rejections == []) is ok


@pytest.mark.parametrize(
    ("time", "reason", "detail"),
    [
        ("2023-11-14T22:13:20", Reason.BAD_SHAPE, "Expected `datetime` with a timezone component"),  # never local time
        ("0001-01-01T00:00:00Z", Reason.BAD_TIMESTAMP, "is before 2000"),
        ("9999-12-31T23:59:59Z", Reason.BAD_TIMESTAMP, "more than 5 minutes ahead"),
    ],
)
def test_a_network_servers_time_without_zone_or_out_of_range_is_refused(time: str, reason: Reason, detail: str) -> None:
    out, _ = _decode(CS_UP, {**_up(object={"temp_SOIL": 24.5}), "time": time})
    assert out.lines == []
    [r] = out.rejections
    assert r.reason is reason
    assert detail in r.detail


def test_a_number_of_hundreds_of_digits_is_refused_not_a_crash() -> None:
    huge = b"1" + b"0" * 400
    payload = b'{"deviceInfo": {"devEui": "%s"}, "object": {"temp_SOIL": %s, "Bat": 3600}}' % (EUI.encode(), huge)
    out, _ = _decode(CS_UP, payload)
    [line] = out.lines
    assert "battery_v=3.6" in line
    [r] = out.rejections
    assert (r.reason, r.detail) == (
        Reason.OUT_OF_RANGE,
        "temp_c: a number of hundreds of digits is outside its range; the rest of the reading was stored",
    )


def test_a_payload_over_the_limit_or_a_decoder_defect_is_refused_and_ingest_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ingest.sources.lorawan import ChirpStackV4

    router, _ = _router()
    out = BatchBuilder()
    router.decode(CS_UP, b" " * 65_537, retained=False, now_ms=NOW, out=out)
    assert [(r.reason, r.detail) for r in out.rejections] == [
        (Reason.TOO_LARGE, "payload of 65537 bytes is over the limit of 65536")
    ]

    def broken(*_: Any, **__: Any) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(ChirpStackV4, "decode", broken)
    out = BatchBuilder()
    router.decode(CS_UP, b"{}", retained=False, now_ms=NOW, out=out)
    [r] = out.rejections
    assert r.reason is Reason.BAD_SHAPE
    assert r.detail.startswith("ingest could not decode it (KeyError: 'boom')")


def test_a_status_field_in_a_models_mapping_is_a_status_point_not_a_refusal() -> None:
    sources = parse_sources(
        {"sources": [{"format": "chirpstack_v4", "model": "m"}],
         "models": {"m": {"fields": {"temp_c": "t", "battery_pct": "bat"}}}},
        "t",
    )  # fmt: skip
    router = Router(sources, Decoder(REGISTRY, max_payload_bytes=65_536, max_readings=100), REGISTRY, lambda e: None)
    out = BatchBuilder()
    router.decode(CS_UP, msgspec.json.encode(_up(object={"t": 25.5, "bat": 91})), retained=False, now_ms=NOW, out=out)
    assert out.rejections == []
    assert out.lines == [
        "device_status,crop=none,device_id=bt-soil-1,district=ba_tri,province=ben_tre,site=field "
        "online=1i,battery_pct=91.0 1700000000123",
        "water_quality,crop=none,device_id=bt-soil-1,district=ba_tri,province=ben_tre,site=field "
        "temp_c=25.5,seq=0i 1700000000123",
    ]


def test_ignored_event_labels_are_bounded() -> None:
    """Event names come from topics (ChirpStack's last level): past 64 distinct ones they count as other."""
    from ingest.config import IngestSettings
    from ingest.service import MAX_IGNORED_EVENTS, IngestService
    from simulators.fleetgen import generate_fleet

    svc = IngestService(IngestSettings(_env_file=None), generate_fleet(4, 1))  # type: ignore[call-arg]
    for i in range(MAX_IGNORED_EVENTS + 10):
        svc._ignored(f"event{i}")
    svc._ignored("event0")
    [family] = svc.metrics.ignored.collect()
    samples = {s.labels["event"]: s.value for s in family.samples if s.name.endswith("_total")}
    assert len(samples) == MAX_IGNORED_EVENTS + 1
    assert (samples["other"], samples["event0"]) == (10, 2)
