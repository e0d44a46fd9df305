"""Topic + payload → accepted lines or rejections (ingest.decode), table-driven."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from typing import Any, Final

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from contract.fields import (
    CAMERA_EVENTS,
    EVENT_FIELDS,
    STATUS_FIELDS,
    TELEMETRY_FIELDS,
    FieldSpec,
    Kind,
)
from contract.fleet import Device, Fleet
from contract.reasons import Reason
from contract.topics import Channel, parse_device_topic
from ingest import decode as decode_module
from ingest.batch import Batch, BatchBuilder, FieldEncoder
from ingest.decode import Decoder, classify
from ingest.devices import device_infos
from ingest.registry import Registry, registry_tags, series_key
from rules.model import DeviceInfo
from simulators.fleetgen import generate_fleet

NOW: Final = 1_767_240_000_000  # 2026-01-01T04:00:00Z
TS: Final = NOW - 60_000
MAX_PAYLOAD: Final = 2048
MAX_READINGS: Final = 3

FLEET: Final = Fleet(
    devices=(
        Device(
            id="wq-1",
            kind=Kind.WATER_QUALITY,
            province="ben_tre",
            district="ba_tri",
            site="pond",
            crop="shrimp",
            lat=10.04,
            lon=106.6,
        ),
        Device(
            id="wq-2",
            kind=Kind.WATER_QUALITY,
            province="ben_tre",
            district="binh_dai",
            site="canal",
            crop="fruit",
            lat=10.19,
            lon=106.69,
        ),
        Device(
            id="sal-1",
            kind=Kind.SALINITY,
            province="soc_trang",
            district="tran_de",
            site="sluice",
            crop="rice",
            lat=9.52,
            lon=106.2,
        ),
        Device(
            id="trap-1",
            kind=Kind.LIGHT_TRAP,
            province="long_an",
            district="tan_tru",
            site="field",
            crop="rice",
            lat=10.52,
            lon=106.51,
        ),
        Device(id="cam-1", kind=Kind.CAMERA, province="ca_mau", district="nam_can", site="road", lat=8.76, lon=104.99),
    )
)
REGISTRY: Final = Registry.from_fleet(FLEET)
DECODER: Final = Decoder(REGISTRY, max_payload_bytes=MAX_PAYLOAD, max_readings=MAX_READINGS)

WQ: Final = "ioc/v1/ben_tre/water_quality/wq-1/telemetry"
WQ_STATUS: Final = "ioc/v1/ben_tre/water_quality/wq-1/status"
SAL: Final = "ioc/v1/soc_trang/salinity/sal-1/telemetry"
TRAP: Final = "ioc/v1/long_an/light_trap/trap-1/telemetry"
CAM: Final = "ioc/v1/ca_mau/camera/cam-1/telemetry"
CAM_EVENT: Final = "ioc/v1/ca_mau/camera/cam-1/event"
CAM_STATUS: Final = "ioc/v1/ca_mau/camera/cam-1/status"

WQ_SERIES: Final = "water_quality,crop=shrimp,device_id=wq-1,district=ba_tri,province=ben_tre,site=pond"
WQ_STATUS_SERIES: Final = "device_status,crop=shrimp,device_id=wq-1,district=ba_tri,province=ben_tre,site=pond"
CAM_SERIES: Final = "camera,crop=none,device_id=cam-1,district=nam_can,province=ca_mau,site=road"


def decode(topic: str, payload: bytes | str | dict[str, Any], *, retained: bool = False, now_ms: int = NOW) -> Batch:
    if isinstance(payload, dict):
        payload = json.dumps(payload)
    if isinstance(payload, str):
        payload = payload.encode()
    out = BatchBuilder()
    DECODER.decode(topic, payload, retained=retained, now_ms=now_ms, out=out)
    return out.seal()


def lines_of(batch: Batch) -> list[str]:
    """The batch's lines one by one (a gateway message's lines come as one block)."""
    return "\n".join(batch.lines).split("\n") if batch.lines else []


def r(**fields: Any) -> dict[str, Any]:
    """A reading with ``ts`` and ``seq`` (overridable) and ``fields``."""
    return {"ts": TS, "seq": 7, **fields}


def padded(reading: dict[str, Any], size: int) -> str:
    """``reading`` as JSON, padded with whitespace to exactly ``size`` bytes."""
    text = json.dumps(reading)
    return text + " " * (size - len(text))


ACCEPTED: Final = "accepted"

# (id, topic, payload, expected reason or ACCEPTED)
CASES: Final[list[tuple[str, str, bytes | str | dict[str, Any], Reason | str]]] = [
    # --- accepted, one of each channel ---
    ("wq ok", WQ, r(ph=7.5, temp_c=29.4), ACCEPTED),
    ("salinity ok", SAL, r(ec_us_cm=5200.0, salinity_ppt=2.8, water_level_cm=-35.0), ACCEPTED),
    ("trap ok", TRAP, r(bph_count=12, lamp_on=1, air_temp_c=27.5), ACCEPTED),
    ("camera telemetry ok", CAM, r(video_ok=1, fps=12.5, uptime_s=3600), ACCEPTED),
    ("camera event ok", CAM_EVENT, r(event="intrusion", confidence=0.9, frames=4), ACCEPTED),
    ("camera event at lower bounds", CAM_EVENT, r(event="intrusion", confidence=0.0, frames=1), ACCEPTED),
    ("status online ok", WQ_STATUS, r(state="online", battery_v=12.7, fw="2.4.1"), ACCEPTED),
    ("int in float field", WQ, r(ph=7), ACCEPTED),
    ("at lower bound", WQ, r(ph=0.0, temp_c=-5.0), ACCEPTED),
    ("at upper bound", WQ, r(ph=14.0, temp_c=60.0), ACCEPTED),
    ("tiny float", WQ, r(do_mg_l=1e-300), ACCEPTED),
    ("ts exactly 2000", WQ, r(ts=946_684_800_000, ph=7.0), ACCEPTED),
    ("ts exactly now+5min", WQ, r(ts=NOW + 300_000, ph=7.0), ACCEPTED),
    ("seq 0", WQ, r(seq=0, ph=7.0), ACCEPTED),
    ("seq 2**53-1", WQ, r(seq=2**53 - 1, ph=7.0), ACCEPTED),
    ("payload at size limit", WQ, padded(r(ph=7), MAX_PAYLOAD), ACCEPTED),
    (
        "utf-8 in string field",
        CAM_EVENT,
        r(event="flooding", confidence=0.7, frames=3, image_url="https://x.vn/ảnh.jpg"),
        ACCEPTED,
    ),
    ("gateway batch at max", WQ, {"readings": [r(seq=i, ph=7.0) for i in range(MAX_READINGS)]}, ACCEPTED),
    # --- bad_topic ---
    ("topic too short", "ioc/v1/ben_tre/water_quality/wq-1", r(ph=7), Reason.BAD_TOPIC),
    ("topic bad prefix", "iot/v1/ben_tre/water_quality/wq-1/telemetry", r(ph=7), Reason.BAD_TOPIC),
    ("topic unknown kind", "ioc/v1/ben_tre/water/wq-1/telemetry", r(ph=7), Reason.BAD_TOPIC),
    ("topic unknown channel", "ioc/v1/ben_tre/water_quality/wq-1/data", r(ph=7), Reason.BAD_TOPIC),
    ("topic id with space", "ioc/v1/ben_tre/water_quality/wq 1/telemetry", r(ph=7), Reason.BAD_TOPIC),
    ("topic id with comma", "ioc/v1/ben_tre/water_quality/wq,1/telemetry", r(ph=7), Reason.BAD_TOPIC),
    ("topic uppercase province", "ioc/v1/Ben_Tre/water_quality/wq-1/telemetry", r(ph=7), Reason.BAD_TOPIC),
    # --- unknown_device ---
    ("unregistered id", "ioc/v1/ben_tre/water_quality/wq-99/telemetry", r(ph=7), Reason.UNKNOWN_DEVICE),
    ("id case matters", "ioc/v1/ben_tre/water_quality/WQ-1/telemetry", r(ph=7), Reason.UNKNOWN_DEVICE),
    # --- topic_mismatch ---
    ("wrong province", "ioc/v1/long_an/water_quality/wq-1/telemetry", r(ph=7), Reason.TOPIC_MISMATCH),
    ("wrong kind", "ioc/v1/ben_tre/salinity/wq-1/telemetry", r(ph=7), Reason.TOPIC_MISMATCH),
    (
        "event on water quality",
        "ioc/v1/ben_tre/water_quality/wq-1/event",
        r(event="intrusion", confidence=0.5, frames=3),
        Reason.TOPIC_MISMATCH,
    ),
    (
        "event on light trap",
        "ioc/v1/long_an/light_trap/trap-1/event",
        r(event="intrusion", confidence=0.5, frames=3),
        Reason.TOPIC_MISMATCH,
    ),
    # --- too_large ---
    ("payload over limit", WQ, padded(r(ph=7), MAX_PAYLOAD + 1), Reason.TOO_LARGE),
    ("payload garbage over limit", WQ, b"\xff" * (MAX_PAYLOAD + 1), Reason.TOO_LARGE),
    # --- bad_utf8 ---
    ("invalid byte", WQ, b'{"ts":1,"seq":1,"ph":7, "x":"\xff"}', Reason.BAD_UTF8),
    ("lone continuation byte", WQ, b"\x80", Reason.BAD_UTF8),
    ("truncated sequence", WQ, b'{"a":"\xe1\xba"}', Reason.BAD_UTF8),
    ("surrogate encoded", WQ, b'{"a":"\xed\xa0\x80"}', Reason.BAD_UTF8),
    ("utf-16", WQ, '{"ph":7}'.encode("utf-16"), Reason.BAD_UTF8),
    # --- bad_json ---
    ("empty payload", WQ, b"", Reason.BAD_JSON),
    ("broken json", WQ, json.dumps(r(ph=7))[:20], Reason.BAD_JSON),
    ("single quotes", WQ, "{'ts': 1}", Reason.BAD_JSON),
    ("NaN literal", WQ, r(ph=math.nan), Reason.BAD_JSON),  # json.dumps writes NaN
    ("Infinity literal", WQ, r(ph=math.inf), Reason.BAD_JSON),
    ("-Infinity literal", WQ, r(ph=-math.inf), Reason.BAD_JSON),
    ("trailing garbage", WQ, json.dumps(r(ph=7)) + " x", Reason.BAD_JSON),
    ("two objects", WQ, json.dumps(r(ph=7)) + "{}", Reason.BAD_JSON),
    ("trailing comma", WQ, json.dumps(r(ph=7))[:-1] + ",}", Reason.BAD_JSON),
    ("NaN in batch", WQ, {"readings": [r(ph=7), r(ph=math.nan)]}, Reason.BAD_JSON),
    ("broken status", WQ_STATUS, '{"state":', Reason.BAD_JSON),
    # --- bad_shape ---
    ("array", WQ, "[1, 2]", Reason.BAD_SHAPE),
    ("array of readings", WQ, json.dumps([r(ph=7)]), Reason.BAD_SHAPE),
    ("string", WQ, '"hello"', Reason.BAD_SHAPE),
    ("number", WQ, "42", Reason.BAD_SHAPE),
    ("null", WQ, "null", Reason.BAD_SHAPE),
    ("true", WQ, "true", Reason.BAD_SHAPE),
    ("nested arrays", WQ, "[[1], [2]]", Reason.BAD_SHAPE),
    ("readings items arrays", WQ, '{"readings": [[1, 2]]}', Reason.BAD_SHAPE),
    ("readings items numbers", WQ, '{"readings": [1]}', Reason.BAD_SHAPE),
    ("status is array", WQ_STATUS, "[]", Reason.BAD_SHAPE),
    ("event is string", CAM_EVENT, '"intrusion"', Reason.BAD_SHAPE),
    # --- missing_field ---
    ("no ts", WQ, {"seq": 1, "ph": 7}, Reason.MISSING_FIELD),
    ("no seq", WQ, {"ts": TS, "ph": 7}, Reason.MISSING_FIELD),
    ("only ts and seq", WQ, {"ts": TS, "seq": 1}, Reason.MISSING_FIELD),
    ("empty object", WQ, {}, Reason.MISSING_FIELD),
    ("event without event", CAM_EVENT, r(confidence=0.5, frames=3), Reason.MISSING_FIELD),
    ("event only ts seq event", CAM_EVENT, r(event="intrusion"), Reason.MISSING_FIELD),
    ("event without confidence", CAM_EVENT, r(event="intrusion", frames=3), Reason.MISSING_FIELD),
    ("event without frames", CAM_EVENT, r(event="intrusion", confidence=0.5), Reason.MISSING_FIELD),
    (
        "event with optional fields but no confidence",
        CAM_EVENT,
        r(event="flooding", frames=3, water_above_line_cm=12.0),
        Reason.MISSING_FIELD,
    ),
    (
        "event batch reading without frames",
        CAM_EVENT,
        {"readings": [r(event="intrusion", confidence=0.5)]},
        Reason.MISSING_FIELD,
    ),
    ("status without state", WQ_STATUS, r(battery_v=12.0), Reason.MISSING_FIELD),
    ("online status without ts", WQ_STATUS, {"state": "online"}, Reason.MISSING_FIELD),
    ("online status with seq, no ts", WQ_STATUS, {"state": "online", "seq": 3}, Reason.MISSING_FIELD),
    # --- unknown_field ---
    ("unknown field", WQ, r(ph=7, colour=1), Reason.UNKNOWN_FIELD),
    ("field of another kind", WQ, r(ph=7, bph_count=1), Reason.UNKNOWN_FIELD),
    ("device_id in payload", WQ, r(ph=7, device_id="wq-2"), Reason.UNKNOWN_FIELD),
    ("province in payload", WQ, r(ph=7, province="ca_mau"), Reason.UNKNOWN_FIELD),
    ("wrong case field", WQ, r(pH=7), Reason.UNKNOWN_FIELD),
    ("event field in camera telemetry", CAM, r(confidence=0.5), Reason.UNKNOWN_FIELD),
    (
        "telemetry field in event",
        CAM_EVENT,
        r(event="intrusion", confidence=0.5, frames=3, fps=3.0),
        Reason.UNKNOWN_FIELD,
    ),
    ("unknown field in status", WQ_STATUS, r(state="online", ph=7), Reason.UNKNOWN_FIELD),
    ("extra key beside readings", WQ, {"readings": [r(ph=7)], "gateway": "g1"}, Reason.UNKNOWN_FIELD),
    # --- bad_type ---
    ("string in number field", WQ, r(ph="7.0"), Reason.BAD_TYPE),
    ("bool in number field", WQ, r(ph=True), Reason.BAD_TYPE),
    ("null in number field", WQ, r(ph=None), Reason.BAD_TYPE),
    ("object in number field", WQ, r(ph={"v": 7}), Reason.BAD_TYPE),
    ("float in int field", TRAP, r(bph_count=12.0), Reason.BAD_TYPE),
    ("exponent in int field", TRAP, r(bph_count=1e2), Reason.BAD_TYPE),
    ("bool in int field", TRAP, r(lamp_on=True), Reason.BAD_TYPE),
    ("string ts", WQ, r(ts=str(TS), ph=7), Reason.BAD_TYPE),
    ("float ts", WQ, r(ts=float(TS), ph=7), Reason.BAD_TYPE),
    ("float seq", WQ, r(seq=1.5, ph=7), Reason.BAD_TYPE),
    ("null seq", WQ, r(seq=None, ph=7), Reason.BAD_TYPE),
    ("number in string field", WQ_STATUS, r(state="online", fw=2.4), Reason.BAD_TYPE),
    ("NUL in string field", WQ_STATUS, r(state="online", fw="2.4\u0000"), Reason.BAD_TYPE),
    ("newline in string field", WQ_STATUS, r(state="online", fw="2.4\n1"), Reason.BAD_TYPE),
    ("trailing newline in string field", WQ_STATUS, r(state="online", fw="2.4.1\n"), Reason.BAD_TYPE),
    ("CR in string field", WQ_STATUS, r(state="online", fw="2.4\r"), Reason.BAD_TYPE),
    (
        "DEL in string field",
        CAM_EVENT,
        r(event="intrusion", confidence=0.5, frames=3, image_url="https://x/\x7f"),
        Reason.BAD_TYPE,
    ),
    (
        "tab in string field",
        CAM_EVENT,
        r(event="intrusion", confidence=0.5, frames=3, image_url="a\tb"),
        Reason.BAD_TYPE,
    ),
    ("number as event class", CAM_EVENT, r(event=3, confidence=0.5, frames=3), Reason.BAD_TYPE),
    ("string confidence", CAM_EVENT, r(event="intrusion", confidence="0.5", frames=3), Reason.BAD_TYPE),
    ("float frames", CAM_EVENT, r(event="intrusion", confidence=0.5, frames=3.0), Reason.BAD_TYPE),
    # --- out_of_range ---
    ("ph below", WQ, r(ph=-0.01), Reason.OUT_OF_RANGE),
    ("ph above", WQ, r(ph=14.01), Reason.OUT_OF_RANGE),
    ("temp below", WQ, r(temp_c=-5.1), Reason.OUT_OF_RANGE),
    ("temp above", WQ, r(temp_c=60.5), Reason.OUT_OF_RANGE),
    ("1e300", WQ, r(ec_us_cm=1e300), Reason.OUT_OF_RANGE),
    ("-1e300", WQ, r(ec_us_cm=-1e300), Reason.OUT_OF_RANGE),
    ("huge int in float field", WQ, r(ph=10**30), Reason.OUT_OF_RANGE),
    ("water level below", SAL, r(water_level_cm=-1000.5), Reason.OUT_OF_RANGE),
    ("salinity above", SAL, r(salinity_ppt=50.1), Reason.OUT_OF_RANGE),
    ("rssi above 0", SAL, r(rssi_dbm=1.0), Reason.OUT_OF_RANGE),
    ("count below", TRAP, r(bph_count=-1), Reason.OUT_OF_RANGE),
    ("count above", TRAP, r(glh_count=1_000_001), Reason.OUT_OF_RANGE),
    ("huge int in int field", TRAP, r(bph_count=10**30), Reason.OUT_OF_RANGE),
    ("lamp_on 2", TRAP, r(lamp_on=2), Reason.OUT_OF_RANGE),
    ("confidence above 1", CAM_EVENT, r(event="intrusion", confidence=1.01, frames=3), Reason.OUT_OF_RANGE),
    ("confidence below 0", CAM_EVENT, r(event="intrusion", confidence=-0.01, frames=3), Reason.OUT_OF_RANGE),
    ("frames 0", CAM_EVENT, r(event="intrusion", confidence=0.5, frames=0), Reason.OUT_OF_RANGE),
    ("unknown event class", CAM_EVENT, r(event="alien", confidence=0.5, frames=3), Reason.OUT_OF_RANGE),
    (
        "image url too long",
        CAM_EVENT,
        r(event="intrusion", confidence=0.5, frames=3, image_url="h" * 513),
        Reason.OUT_OF_RANGE,
    ),
    ("unknown state", WQ_STATUS, r(state="sleeping"), Reason.OUT_OF_RANGE),
    ("fw too long", WQ_STATUS, r(state="online", fw="1" * 33), Reason.OUT_OF_RANGE),
    ("battery above", WQ_STATUS, r(state="online", battery_v=61), Reason.OUT_OF_RANGE),
    ("negative seq", WQ, r(seq=-1, ph=7), Reason.OUT_OF_RANGE),
    ("seq 2**53", WQ, r(seq=2**53, ph=7), Reason.OUT_OF_RANGE),
    ("huge seq", WQ, r(seq=10**30, ph=7), Reason.OUT_OF_RANGE),
    # --- bad_timestamp ---
    ("ts 0", WQ, r(ts=0, ph=7), Reason.BAD_TIMESTAMP),
    ("ts negative", WQ, r(ts=-1, ph=7), Reason.BAD_TIMESTAMP),
    ("ts just before 2000", WQ, r(ts=946_684_799_999, ph=7), Reason.BAD_TIMESTAMP),
    ("ts in seconds", WQ, r(ts=NOW // 1000, ph=7), Reason.BAD_TIMESTAMP),
    ("ts 5 min + 1 ms ahead", WQ, r(ts=NOW + 300_001, ph=7), Reason.BAD_TIMESTAMP),
    ("ts a day ahead", WQ, r(ts=NOW + 86_400_000, ph=7), Reason.BAD_TIMESTAMP),
    ("ts year 2262+", WQ, r(ts=9_300_000_000_000, ph=7), Reason.BAD_TIMESTAMP),
    ("ts in microseconds", WQ, r(ts=NOW * 1000, ph=7), Reason.BAD_TIMESTAMP),
    ("ts huge int", WQ, r(ts=10**30, ph=7), Reason.BAD_TIMESTAMP),
    ("ts huge negative int", WQ, r(ts=-(10**30), ph=7), Reason.BAD_TIMESTAMP),
    (
        "event ts ahead",
        CAM_EVENT,
        r(ts=NOW + 400_000, event="intrusion", confidence=0.5, frames=3),
        Reason.BAD_TIMESTAMP,
    ),
    ("status ts ahead", WQ_STATUS, r(ts=NOW + 400_000, state="online"), Reason.BAD_TIMESTAMP),
    ("status ts before 2000", WQ_STATUS, r(ts=1000, state="online"), Reason.BAD_TIMESTAMP),
]


@pytest.mark.parametrize(("topic", "payload", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decode_table(topic: str, payload: bytes | str | dict[str, Any], expected: Reason | str) -> None:
    batch = decode(topic, payload)
    if expected == ACCEPTED:
        assert batch.rejections == []
        assert len(lines_of(batch)) == (
            len(payload["readings"]) if isinstance(payload, dict) and "readings" in payload else 1
        )
        return
    assert lines_of(batch) == []
    assert [(rej.reason, rej.topic) for rej in batch.rejections] == [(expected, topic)]
    assert batch.rejections[0].detail  # always says why
    if expected in (
        Reason.BAD_TOPIC,
        Reason.UNKNOWN_DEVICE,
        Reason.TOPIC_MISMATCH,
        Reason.TOO_LARGE,
        Reason.BAD_UTF8,
        Reason.BAD_JSON,
    ):
        raw = (
            payload
            if isinstance(payload, bytes)
            else (payload.encode() if isinstance(payload, str) else json.dumps(payload).encode())
        )
        assert batch.rejections[0].payload == raw  # the original payload, untouched


def test_every_decoder_reason_is_covered() -> None:
    covered = {c[3] for c in CASES}
    # the writer's; other formats' units and Sparkplug sessions (tests/unit/test_sources*.py)
    assert set(Reason) - covered == {Reason.DB_REJECTED, Reason.BAD_UNIT, Reason.SPARKPLUG_REBIRTH}


# --- batch envelope, control characters, status ts/seq (documented in contract.reasons) -------


def test_too_many_readings_is_too_large() -> None:
    batch = decode(WQ, {"readings": [r(seq=i, ph=7.0) for i in range(MAX_READINGS + 1)]})
    assert [rej.reason for rej in batch.rejections] == [Reason.TOO_LARGE]


def test_empty_readings_is_bad_shape() -> None:
    batch = decode(WQ, {"readings": []})
    assert [rej.reason for rej in batch.rejections] == [Reason.BAD_SHAPE]


@pytest.mark.parametrize("value", [5, "x", {"ts": TS}, None])
def test_readings_not_a_list_is_bad_shape(value: object) -> None:
    batch = decode(WQ, {"readings": value})
    assert [rej.reason for rej in batch.rejections] == [Reason.BAD_SHAPE]


@pytest.mark.parametrize(
    "url",
    ['https://cam.vn/"readings', 'https://cam.vn/{"readings": [1]}', '{"readings":'],
)
def test_readings_inside_a_string_is_not_a_batch(url: str) -> None:
    payload = r(event="intrusion", confidence=0.5, frames=3, image_url=url)
    batch = decode(CAM_EVENT, payload)
    assert batch.rejections == []
    escaped = url.replace("\\", "\\\\").replace('"', '\\"')
    assert lines_of(batch) == [
        "camera,crop=none,device_id=cam-1,district=nam_can,event=intrusion,province=ca_mau,"
        f'site=road confidence=0.5,frames=3i,image_url="{escaped}",seq=7i {TS}'
    ]


def test_readings_key_not_first_is_a_single_reading() -> None:
    # only a payload that opens with "readings" is a batch; elsewhere it is an unknown field
    batch = decode(WQ, f'{{"ts": {TS}, "seq": 1, "readings": []}}')
    assert lines_of(batch) == []
    assert [rej.reason for rej in batch.rejections] == [Reason.UNKNOWN_FIELD]
    assert not batch.rejections[0].detail.startswith("readings[")


@pytest.mark.parametrize("lead", ["", " ", "\n\t ", "{ \n"])
def test_batch_detected_with_leading_whitespace(lead: str) -> None:
    body = f'"readings" : [{{"ts": {TS}, "seq": 1, "ph": 7.0}}, {{"ts": {TS}, "seq": 2, "ph": 99.0}}]}}'
    payload = lead + body if lead.startswith("{") else lead + "{" + body
    batch = decode(WQ, payload)
    assert lines_of(batch) == [f"{WQ_SERIES} ph=7.0,seq=1i {TS}"]
    assert [rej.reason for rej in batch.rejections] == [Reason.OUT_OF_RANGE]
    assert batch.rejections[0].detail.startswith("readings[1]: ")


def test_control_character_detail_is_readable() -> None:
    batch = decode(WQ_STATUS, r(state="online", fw="2.4\u0001"))
    assert "without control characters" in batch.rejections[0].detail


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        (WQ_STATUS, r(state="online", fw="2.4.1\n")),
        (CAM_EVENT, r(event="intrusion", confidence=0.5, frames=3, image_url="https://cam.vn/x.jpg\n")),
        (CAM_EVENT, {"readings": [r(event="intrusion", confidence=0.5, frames=3, image_url="\n")]}),
    ],
    ids=["status fw", "event image_url", "event batch"],
)
def test_trailing_newline_in_string_field_is_rejected(topic: str, payload: dict[str, Any]) -> None:
    batch = decode(topic, payload)
    assert lines_of(batch) == []
    assert [rej.reason for rej in batch.rejections] == [Reason.BAD_TYPE]


@pytest.mark.parametrize("retained", [False, True])
@pytest.mark.parametrize("state", ["online", "offline"])
def test_status_with_ts_but_no_seq_is_refused(state: str, retained: bool) -> None:
    batch = decode(WQ_STATUS, {"state": state, "ts": TS}, retained=retained)
    assert lines_of(batch) == []
    assert [rej.reason for rej in batch.rejections] == [Reason.MISSING_FIELD]


@pytest.mark.parametrize("retained", [False, True])
@pytest.mark.parametrize(
    "payload",
    [
        {"state": "offline", "seq": 5},
        {"state": "online", "seq": 5},
        {"state": "offline", "battery_v": 3.1},
        {"state": "offline", "fw": "2.4.1"},
        {"state": "online", "battery_v": 3.1},
    ],
)
def test_only_the_exact_will_may_omit_ts(payload: dict[str, Any], retained: bool) -> None:
    batch = decode(WQ_STATUS, payload, retained=retained)
    assert lines_of(batch) == []
    assert [rej.reason for rej in batch.rejections] == [Reason.MISSING_FIELD]
    assert batch.statuses == 0


def test_status_with_ts_and_seq_and_fields() -> None:
    batch = decode(WQ_STATUS, r(state="offline", battery_v=3.1))
    assert batch.rejections == []
    assert lines_of(batch) == [f"{WQ_STATUS_SERIES} online=0i,battery_v=3.1 {TS}"]


# --- a field set the encoder refuses becomes a bad_type rejection, never an exception ---------


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        (WQ, r(ph=7.0)),
        (CAM_EVENT, r(event="intrusion", confidence=0.5, frames=3)),
        (WQ_STATUS, r(state="online", fw="2.4.1")),
    ],
    ids=["telemetry", "event", "status"],
)
def test_unencodable_fields_are_bad_type(monkeypatch: pytest.MonkeyPatch, topic: str, payload: dict[str, Any]) -> None:
    monkeypatch.setattr(FieldEncoder, "encode", lambda self, values: None)
    batch = decode(topic, payload)
    assert lines_of(batch) == []
    assert (batch.readings, batch.statuses) == (0, 0)
    assert [(rej.reason, rej.topic) for rej in batch.rejections] == [(Reason.BAD_TYPE, topic)]
    assert json.loads(batch.rejections[0].payload) == payload


def test_unencodable_reading_in_a_batch_is_rejected_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading by reading (a batch of numeric fields is formatted whole; only strings can be unencodable)."""
    real = FieldEncoder.encode
    monkeypatch.setattr(decode_module, "_add_whole_batch", lambda *args: False)
    monkeypatch.setattr(FieldEncoder, "encode", lambda self, values: None if 99.0 in values else real(self, values))
    batch = decode(SAL, {"readings": [r(seq=1, ec_us_cm=1.0), r(seq=2, ec_us_cm=99.0), r(seq=3, ec_us_cm=3.0)]})
    assert [line.split(" ")[1] for line in lines_of(batch)] == ["ec_us_cm=1.0,seq=1i", "ec_us_cm=3.0,seq=3i"]
    assert [rej.reason for rej in batch.rejections] == [Reason.BAD_TYPE]
    assert json.loads(batch.rejections[0].payload) == r(seq=2, ec_us_cm=99.0)


# --- accepted lines, exactly ------------------------------------------------------------------


def test_single_reading_line() -> None:
    batch = decode(WQ, r(ph=7.5, temp_c=29.4, seq=18342))
    # fields in contract order (temp_c before ph), floats as repr, seq as int, ms timestamp
    assert lines_of(batch) == [f"{WQ_SERIES} temp_c=29.4,ph=7.5,seq=18342i {TS}"]
    assert (batch.readings, batch.statuses) == (1, 0)


def test_int_fields_and_float_coercion() -> None:
    batch = decode(TRAP, r(bph_count=12, lamp_on=1, air_temp_c=28, interval_s=900))
    assert lines_of(batch) == [
        "light_trap,crop=rice,device_id=trap-1,district=tan_tru,province=long_an,site=field "
        f"bph_count=12i,interval_s=900i,lamp_on=1i,air_temp_c=28.0,seq=7i {TS}"
    ]


def test_gateway_batch_keeps_good_and_rejects_bad_individually() -> None:
    payload = {
        "readings": [
            r(seq=1, ph=7.1),
            r(seq=2, ph=99.0),  # out of range
            r(seq=3, ts=NOW + 3_600_000, ph=7.3),  # ahead of the clock
        ]
    }
    batch = decode(WQ, payload)
    assert lines_of(batch) == [f"{WQ_SERIES} ph=7.1,seq=1i {TS}"]
    assert [(rej.reason, rej.topic) for rej in batch.rejections] == [
        (Reason.OUT_OF_RANGE, WQ),
        (Reason.BAD_TIMESTAMP, WQ),
    ]
    bad_range, bad_ts = batch.rejections
    assert bad_range.detail.startswith("readings[1]: ")
    assert "ph" in bad_range.detail
    assert json.loads(bad_range.payload) == payload["readings"][1]  # only its own reading
    assert json.loads(bad_ts.payload)["seq"] == 3


def test_gateway_batch_every_reason_per_reading() -> None:
    payload = json.dumps(
        {
            "readings": [
                r(seq=1, ph=7.0),
                {"seq": 2, "ph": 7},
                r(seq=3, x=1),
                r(seq=4, ph="7"),
                [1],
                r(seq=6, ts=1, ph=7),
                r(seq=7),
            ]
        }
    )
    # more readings than MAX_READINGS would be refused as a whole: use a roomier decoder
    decoder = Decoder(REGISTRY, max_payload_bytes=MAX_PAYLOAD, max_readings=10)
    out = BatchBuilder()
    decoder.decode(WQ, payload.encode(), retained=False, now_ms=NOW, out=out)
    batch = out.seal()
    assert lines_of(batch) == [f"{WQ_SERIES} ph=7.0,seq=1i {TS}"]
    assert [rej.reason for rej in batch.rejections] == [
        Reason.MISSING_FIELD,
        Reason.UNKNOWN_FIELD,
        Reason.BAD_TYPE,
        Reason.BAD_SHAPE,
        Reason.BAD_TIMESTAMP,
        Reason.MISSING_FIELD,
    ]
    assert [rej.detail.split(":")[0] for rej in batch.rejections[:5]] == [
        "readings[1]",
        "readings[2]",
        "readings[3]",
        "readings[4]",
        "readings[5]",
    ]


def test_gateway_batch_all_good_in_order() -> None:
    batch = decode(WQ, {"readings": [r(seq=i, ts=TS + i, do_mg_l=4.0 + i) for i in range(3)]})
    assert batch.rejections == []
    assert lines_of(batch) == [f"{WQ_SERIES} do_mg_l={4.0 + i!r},seq={i}i {TS + i}" for i in range(3)]
    assert batch.readings == 3


def test_camera_event_line_carries_event_tag() -> None:
    batch = decode(
        CAM_EVENT, r(event="smoke_fire", confidence=0.87, frames=12, image_url='https://cam.vn/a b,c="d"\\e.jpg')
    )
    assert lines_of(batch) == [
        "camera,crop=none,device_id=cam-1,district=nam_can,event=smoke_fire,province=ca_mau,"
        'site=road confidence=0.87,frames=12i,image_url="https://cam.vn/a b,c=\\"d\\"\\\\e.jpg",'
        f"seq=7i {TS}"
    ]
    assert set(batch.columns()) == {"camera_event"}


@pytest.mark.parametrize("event", CAMERA_EVENTS)
def test_every_camera_event_class(event: str) -> None:
    batch = decode(CAM_EVENT, r(event=event, confidence=0.5, frames=1))
    assert lines_of(batch) == [
        f"camera,crop=none,device_id=cam-1,district=nam_can,event={event},province=ca_mau,"
        f"site=road confidence=0.5,frames=1i,seq=7i {TS}"
    ]


def test_camera_telemetry_has_no_event_tag() -> None:
    batch = decode(CAM, r(video_ok=0, fps=0.0))
    assert lines_of(batch) == [f"{CAM_SERIES} video_ok=0i,fps=0.0,seq=7i {TS}"]


def test_status_online_line() -> None:
    batch = decode(WQ_STATUS, r(state="online", battery_v=12.7, rssi_dbm=-83.0, fw="2.4.1"), retained=True)
    assert lines_of(batch) == [f'{WQ_STATUS_SERIES} online=1i,battery_v=12.7,rssi_dbm=-83.0,fw="2.4.1" {TS}']
    assert (batch.readings, batch.statuses) == (0, 1)
    status = batch.columns()["device_status"]  # statuses are columns of their own, not readings
    assert (status.fields["online"].tolist(), status.ts_ms.tolist()) == ([1.0], [TS])


def test_status_offline_with_ts() -> None:
    batch = decode(WQ_STATUS, r(state="offline"))
    assert lines_of(batch) == [f"{WQ_STATUS_SERIES} online=0i {TS}"]


def test_will_without_ts_is_stamped_with_receive_time() -> None:
    batch = decode(WQ_STATUS, b'{"state":"offline"}', retained=False, now_ms=NOW + 123)
    assert lines_of(batch) == [f"{WQ_STATUS_SERIES} online=0i {NOW + 123}"]
    assert batch.rejections == []
    assert batch.statuses == 1


def test_retained_will_without_ts_is_ignored() -> None:
    batch = decode(WQ_STATUS, b'{"state":"offline"}', retained=True)
    assert lines_of(batch) == []
    assert batch.rejections == []
    assert (batch.readings, batch.statuses) == (0, 0)


def test_retained_online_without_ts_is_still_refused() -> None:
    batch = decode(WQ_STATUS, b'{"state":"online"}', retained=True)
    assert lines_of(batch) == []
    assert [rej.reason for rej in batch.rejections] == [Reason.MISSING_FIELD]


def test_tags_come_from_the_registry_not_the_payload() -> None:
    other = decode("ioc/v1/ben_tre/water_quality/wq-2/telemetry", r(ph=7.0))
    assert lines_of(other) == [
        f"water_quality,crop=fruit,device_id=wq-2,district=binh_dai,province=ben_tre,site=canal ph=7.0,seq=7i {TS}"
    ]


def test_float_text_round_trips() -> None:
    values = [0.1, 1 / 3, 2.9999999999999996, 1e-300, 99999.99999999999]
    batch = decode(WQ, {"readings": [r(seq=i, ec_us_cm=v) for i, v in enumerate(values[:3])]})
    batch2 = decode(WQ, {"readings": [r(seq=i, ec_us_cm=v) for i, v in enumerate(values[3:])]})
    texts = [line.split(" ")[1].split(",")[0].removeprefix("ec_us_cm=") for line in lines_of(batch) + lines_of(batch2)]
    assert [float(t) for t in texts] == values


def test_decode_appends_to_the_builder() -> None:
    out = BatchBuilder()
    DECODER.decode(WQ, json.dumps(r(ph=7.0)).encode(), retained=False, now_ms=NOW, out=out)
    DECODER.decode(WQ, b"nope", retained=False, now_ms=NOW, out=out)
    DECODER.decode(SAL, json.dumps(r(ec_us_cm=100.0)).encode(), retained=False, now_ms=NOW, out=out)
    batch = out.seal()
    assert len(lines_of(batch)) == 2
    assert [rej.reason for rej in batch.rejections] == [Reason.BAD_JSON]
    assert set(batch.columns()) == {"water_quality", "salinity"}


def test_series_key_sorts_and_escapes() -> None:
    assert series_key("m m", {"b": "x y", "a": "1,2", "c": "k=v", "empty": ""}) == (r"m\ m,a=1\,2,b=x\ y,c=k\=v")
    assert REGISTRY.by_id["wq-1"].series == WQ_SERIES
    assert REGISTRY.by_id["wq-1"].status_series == WQ_STATUS_SERIES
    assert [d.index for d in REGISTRY.devices] == [0, 1, 2, 3, 4]


def test_registry_keys_are_the_series_keys_of_every_device_and_event() -> None:
    """The registry builds keys from escaped parts; they equal :func:`series_key` of its tags."""
    fleet = generate_fleet(300, 7)
    registry = Registry(fleet.devices)
    assert {d.kind for d in fleet.devices} == set(Kind)
    for rd in registry.devices:
        tags = registry_tags(rd.tags())
        assert rd.series == series_key(rd.kind, tags)
        assert rd.status_series == series_key("device_status", tags)
        for camera_event in CAMERA_EVENTS:
            assert rd.event_series(camera_event) == series_key(rd.kind, {**tags, "event": camera_event})


def test_registered_devices_are_the_rule_engines_device_infos() -> None:
    """Ingest hands its own device objects to the engine: they must say what ``device_infos`` says."""
    fleet = generate_fleet(300, 7)
    registry = Registry(fleet.devices)
    names = [f.name for f in dataclasses.fields(DeviceInfo)]
    infos = device_infos(fleet)
    assert [tuple(getattr(rd, n) for n in names) for rd in registry.devices] == [
        tuple(getattr(i, n) for n in names) for i in infos
    ]
    assert all(type(rd.kind) is str for rd in registry.devices)  # text, as the alert store keeps it
    assert [rd.tags() for rd in registry.devices] == [d.tags() for d in fleet.devices]


# --- classify: msgspec error text → reason -----------------------------------------------------


def _v(text: str) -> msgspec.ValidationError:
    return msgspec.ValidationError(text)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (msgspec.DecodeError("JSON is malformed: invalid character (byte 33)"), Reason.BAD_JSON),
        (msgspec.DecodeError("Input data was truncated"), Reason.BAD_JSON),
        (_v("Object missing required field `ts`"), Reason.MISSING_FIELD),
        (_v("Object missing required field `seq` - at `$.readings[2]`"), Reason.MISSING_FIELD),
        (_v("Object contains unknown field `foo`"), Reason.UNKNOWN_FIELD),
        (_v("Object contains unknown field `x` - at `$.readings[0]`"), Reason.UNKNOWN_FIELD),
        (_v("Expected `object`, got `array`"), Reason.BAD_SHAPE),
        (_v("Expected `object`, got `int` - at `$.readings[4]`"), Reason.BAD_SHAPE),
        (_v("Expected `array`, got `str`"), Reason.BAD_SHAPE),
        (_v("Expected `array` of length <= 3"), Reason.TOO_LARGE),
        (_v("Expected `array` of length >= 1"), Reason.BAD_SHAPE),
        (_v("Expected `int` >= 946684800000 - at `$.ts`"), Reason.BAD_TIMESTAMP),
        (_v("Expected `int` >= 946684800000 - at `$.readings[7].ts`"), Reason.BAD_TIMESTAMP),
        (_v("Number out of range - at `$.ts`"), Reason.BAD_TIMESTAMP),
        (_v("Expected `int`, got `float` - at `$.ts`"), Reason.BAD_TYPE),
        (_v("Expected `float` <= 14.0 - at `$.ph`"), Reason.OUT_OF_RANGE),
        (_v("Expected `float` >= -5.0 - at `$.readings[1].temp_c`"), Reason.OUT_OF_RANGE),
        (_v("Expected `int` < 9007199254740992 - at `$.seq`"), Reason.OUT_OF_RANGE),
        (_v("Expected `str` of length <= 32 - at `$.fw`"), Reason.OUT_OF_RANGE),
        (_v("Number out of range - at `$.bph_count`"), Reason.OUT_OF_RANGE),
        (_v("Invalid enum value 'alien' - at `$.event`"), Reason.OUT_OF_RANGE),
        (_v("Expected `float`, got `str` - at `$.ph`"), Reason.BAD_TYPE),
        (_v("Expected `float`, got `null` - at `$.readings[0].ph`"), Reason.BAD_TYPE),
        (_v("Expected `int`, got `bool` - at `$.lamp_on`"), Reason.BAD_TYPE),
        (_v("Expected `str` matching regex '^[^\\\\x00-\\\\x1f\\\\x7f]*$' - at `$.fw`"), Reason.BAD_TYPE),
        pytest.param(_v("Expected `array` of length <= 3 - at `$.readings`"), Reason.TOO_LARGE),
        pytest.param(_v("Expected `array` of length >= 1 - at `$.readings`"), Reason.BAD_SHAPE),
        pytest.param(_v("Expected `array`, got `int` - at `$.readings`"), Reason.BAD_SHAPE),
    ],
)
def test_classify(error: msgspec.MsgspecError, expected: Reason) -> None:
    reason, detail = classify(error)
    assert reason is expected
    assert detail


def test_classify_real_msgspec_errors() -> None:
    """The table above is written by hand: check the same texts come out of msgspec itself."""

    class R(msgspec.Struct, forbid_unknown_fields=True):
        ts: int
        ph: float = 0.0

    def err(payload: bytes) -> msgspec.MsgspecError:
        with pytest.raises(msgspec.MsgspecError) as info:
            msgspec.json.decode(payload, type=R)
        return info.value

    assert classify(err(b"{"))[0] is Reason.BAD_JSON
    assert classify(err(b"{}"))[0] is Reason.MISSING_FIELD
    assert classify(err(b'{"ts":1,"x":1}'))[0] is Reason.UNKNOWN_FIELD
    assert classify(err(b"[]"))[0] is Reason.BAD_SHAPE
    assert classify(err(b'{"ts":1,"ph":"x"}'))[0] is Reason.BAD_TYPE


# --- fuzz: nothing raises, every message ends in exactly one place ------------------------------

_LINE: Final = re.compile(
    r"^(?:[^ ,\\]|\\.)+"  # measurement
    r"(?:,(?:[^ ,=\\]|\\.)+=(?:[^ ,=\\]|\\.)+)+"  # tags
    r" (?:[a-z0-9_]+=(?:-?\d+i|-?(?:\d+\.\d*|\d+)(?:e[-+]?\d+)?|\"(?:[^\"\\\n]|\\.)*\"),?)+"
    r" (\d+)$"
)

_TOPICS: Final = [WQ, SAL, TRAP, CAM, CAM_EVENT, WQ_STATUS, CAM_STATUS]
_KEYS: Final = sorted(
    {"ts", "seq", "readings", "state", "event"}
    | {f.name for specs in TELEMETRY_FIELDS.values() for f in specs}
    | {f.name for f in (*EVENT_FIELDS, *STATUS_FIELDS)}
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=TS - 10**9, max_value=NOW + 10**9),
    st.floats(),  # NaN and infinities become non-JSON literals: bad_json
    st.floats(min_value=-100, max_value=100),
    st.text(max_size=12),
    st.sampled_from(["online", "offline", *CAMERA_EVENTS]),
)
_json = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(_KEYS), st.text(max_size=6)), inner, max_size=6),
    ),
    max_leaves=20,
)


def _mostly(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` nine times in ten, any JSON scalar otherwise."""
    return st.integers(min_value=0, max_value=9).flatmap(lambda i: _scalars if i == 0 else good)


def _value(spec: FieldSpec) -> st.SearchStrategy[Any]:
    if spec.type == "float":
        good: st.SearchStrategy[Any] = st.floats(min_value=spec.lo, max_value=spec.hi)
    elif spec.type == "int":
        good = st.integers(min_value=int(spec.lo), max_value=int(spec.hi))
    else:
        good = st.text(max_size=spec.max_length + 2)
    return _mostly(good)


def _reading(topic: str) -> st.SearchStrategy[dict[str, Any]]:
    """Readings shaped for ``topic``: mostly in range, some fields junk."""
    parsed = parse_device_topic(topic)
    if parsed.channel is Channel.STATUS:
        specs, head = STATUS_FIELDS, {"state": st.sampled_from(["online", "offline", "idle"])}
    elif parsed.channel is Channel.EVENT:
        specs, head = EVENT_FIELDS, {"event": st.sampled_from([*CAMERA_EVENTS, "alien"])}
    else:
        specs, head = TELEMETRY_FIELDS[parsed.kind], {}
    stamp = {
        "ts": _mostly(st.one_of(st.just(TS), st.integers(min_value=TS - 10**9, max_value=NOW + 400_000))),
        "seq": _mostly(st.integers(min_value=0, max_value=1000)),
    }
    required = {s.name: _value(s) for s in specs if s.required}
    return st.fixed_dictionaries(
        {**head, **stamp, **required}, optional={s.name: _value(s) for s in specs if not s.required}
    )


def _document(topic: str) -> st.SearchStrategy[Any]:
    reading = _reading(topic)
    return st.one_of(
        _json,
        reading,
        st.fixed_dictionaries({"readings": st.lists(st.one_of(reading, reading, _json), max_size=MAX_READINGS + 1)}),
    )


def _check_outcome(topic: str, payload: bytes, retained: bool) -> None:
    out = BatchBuilder()
    DECODER.decode(topic, payload, retained=retained, now_ms=NOW, out=out)  # must never raise
    batch = out.seal()
    outcomes = len(lines_of(batch)) + len(batch.rejections)
    event(f"lines={min(len(lines_of(batch)), 2)} rejections={min(len(batch.rejections), 2)}")
    for line in lines_of(batch):
        match = _LINE.match(line)
        assert match, line
        assert 946_684_800_000 <= int(match.group(1)) <= NOW + 300_000
        if "/status" not in topic:
            assert re.search(r"[ ,]seq=\d+i ", line), line
    for rej in batch.rejections:
        assert isinstance(rej.reason, Reason)
        assert rej.topic == topic
    assert batch.readings + batch.statuses == len(lines_of(batch))
    if topic.endswith("/status"):
        assert outcomes in (0, 1)
        if outcomes == 0:  # only a retained will, exactly {"state": "offline"}, is ignored
            assert retained
            assert json.loads(payload) == {"state": "offline"}
        return
    if outcomes == 1:
        return
    # several outcomes: only a gateway batch, one per reading
    assert re.match(rb'\s*\{\s*"readings"\s*:', payload), payload  # opens as a batch
    doc = json.loads(payload)
    assert isinstance(doc, dict)
    assert list(doc) == ["readings"]
    assert outcomes == len(doc["readings"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=st.sampled_from(_TOPICS), payload=st.binary(max_size=200), retained=st.booleans())
def test_fuzz_random_bytes(topic: str, payload: bytes, retained: bool) -> None:
    _check_outcome(topic, payload, retained)


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), topic=st.sampled_from(_TOPICS), retained=st.booleans(), ascii_only=st.booleans())
def test_fuzz_json_documents(data: st.DataObject, topic: str, retained: bool, ascii_only: bool) -> None:
    doc = data.draw(_document(topic))
    payload = json.dumps(doc, ensure_ascii=ascii_only, allow_nan=True).encode("utf-8", "surrogatepass")
    _check_outcome(topic, payload, retained)


def test_fuzz_check_accepts_good_lines() -> None:
    """The fuzz oracle is not vacuous: it matches real accepted lines of every kind."""
    for topic, payload in [
        (WQ, r(ph=7.5)),
        (TRAP, r(bph_count=3)),
        (CAM_STATUS, r(state="online", fw='a "b" \\c')),
        (CAM_EVENT, r(event="flooding", confidence=0.5, frames=3)),
    ]:
        batch = decode(topic, payload)
        assert len(lines_of(batch)) == 1
        assert _LINE.match(lines_of(batch)[0]), lines_of(batch)[0]
    assert not _LINE.match(f"{WQ_SERIES} ph=nan,seq=1i {TS}")
    assert not _LINE.match(f"{WQ_SERIES} ph=1.0,seq=1i")
    assert not _LINE.match(f"{WQ_SERIES.replace('province=', 'pro vince=')} ph=1.0,seq=1i {TS}")


GATEWAY_DECODER: Final = Decoder(REGISTRY, max_payload_bytes=1 << 20, max_readings=64)
KIND_TOPICS: Final = {Kind.WATER_QUALITY: WQ, Kind.SALINITY: SAL, Kind.LIGHT_TRAP: TRAP, Kind.CAMERA: CAM}
EDGE_FLOATS: Final = (0.0, -0.0, 2.5e-7, 1e-5, 0.0001, 0.1 + 0.2, 1 / 3, 9999.999999999998, 1e-300, 5e-324)


def _line_values(line: str) -> tuple[str, dict[str, tuple[str, float | int, float]], int]:
    """A line's series, its fields as (type, value, sign), and its timestamp: the meaning, not the text."""
    series, fields, ts = line.split(" ")
    parsed: dict[str, tuple[str, float | int, float]] = {}
    for item in fields.split(","):
        name, text = item.split("=")
        assert re.fullmatch(r"-?\d+i|-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", text), item  # line protocol's numbers
        value = int(text[:-1]) if text.endswith("i") else float(text)
        parsed[name] = ("int" if text.endswith("i") else "float", value, math.copysign(1.0, value))  # -0.0 too
    return series, parsed, int(ts)


@st.composite
def gateway_batches(draw: st.DrawFn) -> tuple[Kind, list[dict[str, Any]]]:
    """A kind and readings of it, values anywhere in bounds: every field, some fields, or any subset
    (none too); now and then one reading ahead of the clock."""
    kind = draw(st.sampled_from(list(KIND_TOPICS)))
    specs = TELEMETRY_FIELDS[kind]
    shape = draw(st.sampled_from(["every", "some", "any"]))
    count = draw(st.integers(1, 40))
    ahead = draw(st.none() | st.integers(0, count - 1))
    readings = []
    for i in range(count):
        reading: dict[str, Any] = {"ts": NOW + 301_000 if i == ahead else TS + i, "seq": i}
        subset = st.lists(st.sampled_from(specs), unique=True, min_size=int(shape == "some"))
        present = specs if shape == "every" else draw(subset)
        for spec in present:
            if spec.type == "int":
                reading[spec.name] = draw(st.integers(int(spec.lo), int(spec.hi)))
            else:
                edges = [x for x in EDGE_FLOATS if spec.lo <= x <= spec.hi]
                reading[spec.name] = draw(
                    st.floats(spec.lo, spec.hi, allow_nan=False) | st.sampled_from(edges or [spec.lo])
                )
        readings.append(reading)
    return kind, readings


@settings(max_examples=300, deadline=None)
@given(gateway_batches())
def test_a_gateway_batch_stores_what_its_readings_store_one_message_each(
    batch: tuple[Kind, list[dict[str, Any]]],
) -> None:
    """A gateway batch is formatted whole (one JSON encode, one %-format): its lines must mean what
    the readings' lines mean when each comes alone, floats exactly, ints as ints; the same readings
    refused for the same reasons; the same columns for the rules."""
    kind, readings = batch
    topic = KIND_TOPICS[kind]
    whole, alone = BatchBuilder(), BatchBuilder()
    GATEWAY_DECODER.decode(topic, msgspec.json.encode({"readings": readings}), retained=False, now_ms=NOW, out=whole)
    for reading in readings:
        GATEWAY_DECODER.decode(topic, msgspec.json.encode(reading), retained=False, now_ms=NOW, out=alone)
    a, b = whole.seal(), alone.seal()
    event(f"formatted whole: {len(a.lines) == 1 and a.readings > 1}")
    assert [_line_values(line) for line in lines_of(a)] == [_line_values(line) for line in b.lines]
    assert a.readings == b.readings == len(lines_of(a))
    assert [(r.reason, msgspec.json.decode(r.payload)) for r in a.rejections] == [
        (r.reason, msgspec.json.decode(r.payload)) for r in b.rejections
    ]
    for key, cols in b.columns().items():
        got = a.columns()[key]
        assert got.device.tolist() == cols.device.tolist()
        assert got.ts_ms.tolist() == cols.ts_ms.tolist()
        assert got.seq.tolist() == cols.seq.tolist()
        assert {k: v.tobytes() for k, v in got.fields.items()} == {k: v.tobytes() for k, v in cols.fields.items()}
    assert a.columns().keys() == b.columns().keys()


def test_a_gateway_batch_of_full_readings_is_one_block_of_lines() -> None:
    """The usual gateway batch goes the whole-batch way: one item of lines, not one per reading."""
    rest = {"temp_c": 29.0, "water_level_cm": -12.5, "battery_v": 3.9, "rssi_dbm": -90.0}
    readings = [r(seq=i, ts=TS + i, ec_us_cm=250.5 + i, salinity_ppt=2.5e-7, **rest) for i in range(3)]
    batch = decode(SAL, {"readings": readings})
    assert len(batch.lines) == 1
    assert batch.readings == 3
    assert lines_of(batch)[2].endswith(
        " ec_us_cm=252.5,salinity_ppt=2.5e-7,temp_c=29.0,water_level_cm=-12.5,battery_v=3.9,rssi_dbm=-90.0,"
        f"seq=2i {TS + 2}"
    )
