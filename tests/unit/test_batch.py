"""The columnar batch (ingest.batch): builder, sealing, columns, field encoding."""

from __future__ import annotations

import json
import math
import time
from typing import Any, Final

import numpy as np
import pytest
from msgspec import UNSET

from contract.fields import CAMERA_EVENTS, EVENT_FIELDS, STATUS_FIELDS, TELEMETRY_FIELDS, FieldSpec, Kind
from contract.fleet import Device, Fleet
from contract.reasons import Reason
from ingest.batch import EVENTS, Batch, BatchBuilder, FieldEncoder, Rejection
from ingest.decode import Decoder
from ingest.registry import Registry

NOW: Final = 1_767_240_000_000
TS: Final = NOW - 10_000

FLEET: Final = Fleet(
    devices=(
        Device(
            id="wq-1",
            kind=Kind.WATER_QUALITY,
            province="ben_tre",
            district="ba_tri",
            site="pond",
            crop="shrimp",
            lat=10.0,
            lon=106.6,
        ),
        Device(
            id="sal-1", kind=Kind.SALINITY, province="soc_trang", district="tran_de", site="sluice", lat=9.5, lon=106.2
        ),
        Device(
            id="wq-2",
            kind=Kind.WATER_QUALITY,
            province="ben_tre",
            district="binh_dai",
            site="canal",
            lat=10.2,
            lon=106.7,
        ),
        Device(id="cam-1", kind=Kind.CAMERA, province="ca_mau", district="nam_can", site="road", lat=8.8, lon=105.0),
        Device(
            id="trap-1",
            kind=Kind.LIGHT_TRAP,
            province="long_an",
            district="tan_tru",
            site="field",
            crop="rice",
            lat=10.5,
            lon=106.5,
        ),
    )
)
REGISTRY: Final = Registry.from_fleet(FLEET)
DECODER: Final = Decoder(REGISTRY, max_payload_bytes=65_536, max_readings=100)


def feed(out: BatchBuilder, topic: str, payload: dict[str, Any], **kw: Any) -> None:
    DECODER.decode(topic, json.dumps(payload).encode(), retained=kw.get("retained", False), now_ms=NOW, out=out)


WQ1: Final = "ioc/v1/ben_tre/water_quality/wq-1/telemetry"
WQ2: Final = "ioc/v1/ben_tre/water_quality/wq-2/telemetry"
SAL: Final = "ioc/v1/soc_trang/salinity/sal-1/telemetry"
CAM_EVENT: Final = "ioc/v1/ca_mau/camera/cam-1/event"
TRAP: Final = "ioc/v1/long_an/light_trap/trap-1/telemetry"


def _mixed_batch() -> Batch:
    out = BatchBuilder()
    feed(out, WQ1, {"ts": TS, "seq": 1, "ph": 7.5})
    feed(out, WQ2, {"ts": TS + 1, "seq": 9, "temp_c": 28.0, "do_mg_l": 5.5})
    feed(out, WQ1, {"readings": [{"ts": TS + 2, "seq": 2, "ph": 7.4, "temp_c": 29.0}]})
    feed(out, SAL, {"ts": TS + 3, "seq": 100, "ec_us_cm": 5200.0})
    feed(
        out,
        CAM_EVENT,
        {
            "ts": TS + 4,
            "seq": 3,
            "event": "flooding",
            "confidence": 0.8,
            "frames": 2,
            "water_above_line_cm": 12.0,
            "image_url": "https://x/y.jpg",
        },
    )
    feed(out, TRAP, {"ts": TS + 5, "seq": 4, "bph_count": 250, "lamp_on": 1})
    feed(out, WQ1, {"ts": TS, "seq": 1, "ph": 99.0})  # rejected: no row
    return out.seal()


def test_columns_per_kind() -> None:
    batch = _mixed_batch()
    cols = batch.columns()
    assert set(cols) == {"water_quality", "salinity", EVENTS, "light_trap"}  # no camera telemetry

    wq = cols["water_quality"]
    assert wq.device.dtype == np.int32
    assert wq.ts_ms.dtype == np.int64
    assert wq.seq.dtype == np.int64
    assert wq.device.tolist() == [0, 2, 0]  # registry indexes, in arrival order
    assert wq.ts_ms.tolist() == [TS, TS + 1, TS + 2]
    assert wq.seq.tolist() == [1, 9, 2]
    assert set(wq.fields) == {s.name for s in TELEMETRY_FIELDS[Kind.WATER_QUALITY]}
    assert all(a.dtype == np.float64 and a.shape == (3,) for a in wq.fields.values())
    np.testing.assert_array_equal(wq.fields["ph"], [7.5, np.nan, 7.4])
    np.testing.assert_array_equal(wq.fields["temp_c"], [np.nan, 28.0, 29.0])
    np.testing.assert_array_equal(wq.fields["do_mg_l"], [np.nan, 5.5, np.nan])
    assert np.isnan(wq.fields["nh4_mg_l"]).all()

    sal = cols["salinity"]
    assert sal.device.tolist() == [1]
    assert sal.seq.tolist() == [100]
    assert sal.fields["ec_us_cm"].tolist() == [5200.0]
    assert math.isnan(sal.fields["salinity_ppt"][0])

    trap = cols["light_trap"]
    assert trap.device.tolist() == [4]
    assert trap.fields["bph_count"].tolist() == [250.0]  # ints become float columns
    assert trap.fields["lamp_on"].tolist() == [1.0]

    events = cols[EVENTS]
    assert events.device.tolist() == [3]
    assert events.ts_ms.tolist() == [TS + 4]
    # numeric event fields only, with the event class as a code: the image URL is not a column
    assert set(events.fields) == {"event_code"} | {s.name for s in EVENT_FIELDS if s.numeric}
    assert events.fields["event_code"].tolist() == [float(CAMERA_EVENTS.index("flooding"))]
    assert "image_url" not in events.fields
    assert events.fields["confidence"].tolist() == [0.8]
    assert events.fields["frames"].tolist() == [2.0]
    assert events.fields["water_above_line_cm"].tolist() == [12.0]
    assert math.isnan(events.fields["speed_kmh"][0])


def test_batch_counts_and_lines() -> None:
    batch = _mixed_batch()
    assert batch.readings == 6
    assert batch.statuses == 0
    assert len(batch.lines) == 6
    assert [r.reason for r in batch.rejections] == [Reason.OUT_OF_RANGE]
    assert batch.messages == 0  # no broker handles noted


def test_empty_batch_columns() -> None:
    batch = BatchBuilder().seal()
    assert batch.columns() == {}
    assert batch.lines == []
    assert batch.readings == 0


def test_builder_lifecycle(monkeypatch: pytest.MonkeyPatch) -> None:
    out = BatchBuilder()
    assert out.empty
    assert len(out) == 0
    clock = iter([100.0, 300.0])  # read once per batch, at its first message
    monkeypatch.setattr(time, "monotonic", lambda: next(clock))
    out.note_message("ack-1")
    assert not out.empty  # a message is held even before it produced anything
    out.note_message("ack-2")  # opened_at stays the first message's time
    out.add_reading("salinity", 1, TS, 5, (UNSET,) * 6, "salinity,x=y a=1.0,seq=5i 1")
    out.add_status(4, TS, True, "device_status,x=y online=1i 2")
    out.reject(Rejection("t", Reason.BAD_JSON, "d", b"p"))
    assert len(out) == 3
    batch = out.seal()
    assert batch.acks == ["ack-1", "ack-2"]
    assert batch.messages == 2
    assert batch.opened_at == 100.0
    assert (batch.readings, batch.statuses, len(batch.rejections)) == (1, 1, 1)
    assert batch.lines == ["salinity,x=y a=1.0,seq=5i 1", "device_status,x=y online=1i 2"]
    # the builder starts anew; the sealed batch is not affected by later use
    assert out.empty
    assert len(out) == 0
    assert out.opened_at == 0.0
    out.note_message("ack-3")
    assert out.opened_at == 300.0
    out.add_reading("salinity", 2, TS, 6, (UNSET,) * 6, "other")
    assert batch.lines == ["salinity,x=y a=1.0,seq=5i 1", "device_status,x=y online=1i 2"]
    assert batch.columns()["salinity"].device.tolist() == [1]
    status = batch.columns()["device_status"]
    assert (status.device.tolist(), status.ts_ms.tolist(), status.fields["online"].tolist()) == ([4], [TS], [1.0])


def test_builder_unknown_key_refused() -> None:
    with pytest.raises(KeyError):
        BatchBuilder().add_reading("humidity", 0, TS, 1, (), "x")


# --- FieldEncoder ------------------------------------------------------------------------------

_SPECS: Final = (
    FieldSpec("a_c", "", "", -10.0, 10.0),
    FieldSpec("n", "", "", 0, 10, "int"),
    FieldSpec("s", "", "", type="string", max_length=20),
    FieldSpec("b_c", "", "", -10.0, 10.0),
)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ((1.5, 3, "x", 2.0), 'a_c=1.5,n=3i,s="x",b_c=2.0'),
        ((UNSET, UNSET, UNSET, UNSET), ""),
        ((UNSET, 0, UNSET, UNSET), "n=0i"),
        ((0.1, UNSET, UNSET, -0.0), "a_c=0.1,b_c=-0.0"),
        ((UNSET, UNSET, 'say "hi" \\', UNSET), 's="say \\"hi\\" \\\\"'),
        ((UNSET, UNSET, "a b,c=d", UNSET), 's="a b,c=d"'),
        ((1e-300, UNSET, UNSET, 1e300), "a_c=1e-300,b_c=1e+300"),
        ((UNSET, UNSET, "", UNSET), 's=""'),
    ],
)
def test_field_encoder(values: tuple[Any, ...], expected: str) -> None:
    assert FieldEncoder(_SPECS).encode(values) == expected


@pytest.mark.parametrize(
    "values",
    [
        (UNSET, UNSET, "a\nb", UNSET),
        (UNSET, UNSET, "trailing\n", UNSET),
        (UNSET, UNSET, "cr\r", UNSET),
        (1.5, 3, "\n", 2.0),  # one bad value refuses the whole field set
    ],
)
def test_field_encoder_refuses_what_line_protocol_cannot_carry(values: tuple[Any, ...]) -> None:
    assert FieldEncoder(_SPECS).encode(values) is None  # a result, not an exception


def test_field_encoder_backslashes_in_strings_still_escaped() -> None:
    assert FieldEncoder(_SPECS).encode((UNSET, UNSET, "ends\\", UNSET)) == 's="ends\\\\"'


def test_field_encoder_numeric_indexes() -> None:
    assert FieldEncoder(_SPECS).numeric == (0, 1, 3)
    assert FieldEncoder(STATUS_FIELDS).numeric == (0, 1, 2)  # fw is a string


def test_field_encoder_float_round_trip() -> None:
    values = [0.1, 1 / 3, 5e-324, 1.7976931348623157e308, -2.5]
    enc = FieldEncoder((FieldSpec("v", "", "", -1e309, 1e309),))
    assert [float(enc.encode((v,)).removeprefix("v=")) for v in values] == values


@pytest.mark.parametrize("kind", list(Kind))
def test_field_encoder_fast_path_equals_field_by_field(kind: Kind) -> None:
    """All fields present takes one %-format; it must write what the field-by-field path writes."""
    import random

    rng = random.Random(7)
    specs = TELEMETRY_FIELDS[kind]
    enc = FieldEncoder(specs)
    for _ in range(200):
        values = tuple(rng.uniform(-1e6, 1e6) if s.type == "float" else rng.randint(-(10**9), 10**9) for s in specs)
        one_gap = tuple(UNSET if i == 0 else v for i, v in enumerate(values))
        assert enc.encode(values) == ",".join(
            f"{s.name}={v!r}" if s.type == "float" else f"{s.name}={v}i" for s, v in zip(specs, values, strict=True)
        )
        full = enc.encode(values)
        assert full is not None
        assert enc.encode(one_gap) == (full.split(",", 1)[1] if len(specs) > 1 else "")


def test_columns_fast_and_slow_paths_agree() -> None:
    """Rows with every field become one float table; a gap falls back to NaN-filled columns."""
    specs = TELEMETRY_FIELDS[Kind.SALINITY]
    full = BatchBuilder()
    gappy = BatchBuilder()
    for i in range(5):
        row = tuple(float(i + j) for j in range(len(specs)))
        full.add_reading(Kind.SALINITY.value, 0, 1000 + i, i, row, f"l{i}")
        gappy.add_reading(Kind.SALINITY.value, 0, 1000 + i, i, (UNSET, *row[1:]) if i == 2 else row, f"l{i}")
    a = full.seal().columns()[Kind.SALINITY.value]
    b = gappy.seal().columns()[Kind.SALINITY.value]
    for j, s in enumerate(specs):
        assert a.fields[s.name].tolist() == [float(i + j) for i in range(5)]
        assert a.fields[s.name].flags["C_CONTIGUOUS"]
    assert math.isnan(b.fields[specs[0].name][2])
    assert b.fields[specs[1].name].tolist() == a.fields[specs[1].name].tolist()


def test_columns_refuse_a_row_of_the_wrong_width() -> None:
    """Values are kept one reading after another: a row short of a field would shift every later
    reading's values into the wrong columns, so the batch refuses to make columns at all."""
    specs = TELEMETRY_FIELDS[Kind.SALINITY]
    builder = BatchBuilder()
    builder.add_reading(Kind.SALINITY.value, 0, 1000, 0, tuple(1.0 for _ in specs), "l0")
    builder.add_reading(Kind.SALINITY.value, 0, 1001, 1, tuple(1.0 for _ in specs[1:]), "l1")
    with pytest.raises(ValueError, match="record items for 2 readings"):
        builder.seal().columns()
