"""Sparkplug DATA by byte layout (pure logic): a layout reads exactly what protobuf reads, or nothing."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.sources.sparkplug_b_pb2 import DataType, Payload
from ingest.sources.sparkplug_layout import BOOLEAN, Fixed, Layout, Layouts, integer, varint, varint_bytes


class Unsigned(Mapping[int, int]):
    """Every alias an unsigned 32-bit integer, as a births' bits say (:attr:`Births.bits`)."""

    def __getitem__(self, alias: int) -> int:
        return 32

    def __iter__(self) -> Iterator[int]:
        return iter(())

    def __len__(self) -> int:
        return 0


UNSIGNED = Unsigned()
ALLOWED = {"alias", "timestamp", "datatype", "int_value", "double_value", "boolean_value"}
T = 1_790_000_000_000


@st.composite
def usual(draw: st.DrawFn, *, wide: bool = False) -> Payload:
    """A DATA of the usual kind: metrics by alias, all at one time, a Double or an int_value each
    (``wide``: any numbers protobuf allows, not only those edge nodes send)."""
    n = draw(st.integers(1, 12))
    aliases = draw(st.lists(st.integers(0, 2**40 if wide else 5_000), min_size=n, max_size=n, unique=True))
    ts = draw(st.integers(0, 2**64 - 1)) if wide else draw(st.integers(T, T + 10**9))
    metrics = []
    for alias in aliases:
        m = Payload.Metric(alias=alias, timestamp=ts)
        if draw(st.booleans()):
            m.datatype = draw(st.integers(0, 2**32 - 1) if wide else st.sampled_from([DataType.Double, DataType.Int16]))
        if draw(st.booleans()):
            m.double_value = draw(st.floats(allow_nan=True) if wide else st.floats(0.5, 1e4))
        else:
            m.int_value = draw(st.integers(0, 2**32 - 1))
        metrics.append(m)
    msg = Payload(metrics=metrics, seq=draw(st.integers(0, 2**64 - 1) if wide else st.integers(0, 255)))
    if draw(st.booleans()):
        msg.timestamp = draw(st.integers(0, 2**64 - 1) if wide else st.integers(T, T + 10**9))
    return msg


def again(msg: Payload, draw: st.DrawFn) -> Payload:
    """``msg`` with other values, time and seq, as the same device's next DATA."""
    other = Payload()
    other.CopyFrom(msg)
    ts = draw(st.integers(T, T + 10**9))
    for m in other.metrics:
        m.timestamp = ts
        if m.WhichOneof("value") == "double_value":
            m.double_value = draw(st.floats(allow_nan=True))
        else:
            m.int_value = draw(st.integers(0, 2**32 - 1))
    other.seq = draw(st.integers(0, 255))
    return other


def protobuf_reads(raw: bytes) -> tuple[tuple[int, ...], tuple[int, tuple[Any, ...], int]] | None:
    """(aliases, (time, values, seq)) as protobuf reads ``raw``, if it is a DATA a layout may read."""
    try:
        msg = Payload.FromString(raw)
    except DecodeError:
        return None
    if {f.name for f, _ in msg.ListFields()} - {"timestamp", "metrics", "seq"} or not msg.HasField("seq"):
        return None
    values = []
    for m in msg.metrics:
        if {f.name for f, _ in m.ListFields()} - ALLOWED or not m.HasField("timestamp") or not m.HasField("alias"):
            return None
        if m.timestamp != msg.metrics[0].timestamp or m.WhichOneof("value") is None:
            return None
        kind = m.WhichOneof("value")
        value = m.double_value if kind == "double_value" else m.int_value if kind == "int_value" else None
        values.append(int(m.boolean_value) if value is None else value)
    if not msg.metrics:
        return None
    return tuple(m.alias for m in msg.metrics), (msg.metrics[0].timestamp, tuple(values), msg.seq)


def learnt(msg: Payload) -> Layout:
    layout = Layouts().of(msg, msg.SerializeToString(), UNSIGNED)
    assert layout is not None
    return layout


@given(n=st.integers(0, 2**63 - 1), pad=st.integers(0, 2))
def test_varints_read_back_also_padded(n: int, pad: int) -> None:
    raw = varint_bytes(n)
    if pad and len(raw) + pad <= 9:  # a varint written longer than it needs (protobuf reads it alike)
        raw = raw[:-1] + bytes([raw[-1] | 0x80]) + b"\x80" * (pad - 1) + b"\x00"
    assert varint(raw) == n


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(msg=usual(), data=st.data())
def test_the_usual_data_has_a_layout_that_reads_the_next_as_protobuf_does(msg: Payload, data: st.DataObject) -> None:
    layout = learnt(msg)
    assert layout.aliases == tuple(m.alias for m in msg.metrics)
    following = again(msg, data.draw)
    read = layout.read(following.SerializeToString())
    seen = protobuf_reads(following.SerializeToString())
    assert seen is not None
    if any(v == 0.0 for v, m in zip(seen[1][1], following.metrics, strict=True) if m.HasField("double_value")):
        assert read is None  # a zero Double is left to protobuf, as the fast path leaves it
    else:
        assert repr(read) == repr(seen[1])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(msg=usual(wide=True))
def test_any_layout_learnt_reads_its_own_payload_as_protobuf_does(msg: Payload) -> None:
    raw = msg.SerializeToString()
    layout = Layouts().of(msg, raw, UNSIGNED)
    if layout is not None:
        seen = protobuf_reads(raw)
        assert seen is not None
        assert seen[0] == layout.aliases
        assert repr(layout.read(raw)) == repr(seen[1])


MUTATIONS = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 3)),
    st.tuples(st.just("cut"), st.integers(0, 10**6), st.just(0)),
)


@settings(max_examples=1_000, suppress_health_check=[HealthCheck.too_slow])
@given(msg=usual(), mutations=st.lists(MUTATIONS, min_size=1, max_size=3))
def test_a_layout_reads_a_damaged_or_different_payload_only_as_protobuf_reads_it(
    msg: Payload, mutations: list[tuple[str, int, int]]
) -> None:
    layout = learnt(msg)
    raw = mutated(msg.SerializeToString(), mutations)
    read = layout.read(raw)
    if read is not None:  # whatever the layout reads, protobuf reads the same, of the same aliases
        seen = protobuf_reads(raw)
        assert seen is not None
        assert seen[0] == layout.aliases
        assert repr(read) == repr(seen[1])


def mutated(raw: bytes, mutations: list[tuple[str, int, int]]) -> bytes:
    """``raw`` with bytes flipped, inserted or deleted, or cut short."""
    out = bytearray(raw)
    for what, at, n in mutations:
        at %= len(out) + 1
        if what == "flip" and at < len(out):
            out[at] ^= n
        elif what == "insert":
            out[at:at] = bytes([n])
        elif what == "delete":
            del out[at : at + n]
        else:
            del out[at:]
    return bytes(out)


def _with(**kw: Any) -> Payload:
    msg = Payload(seq=3, timestamp=T)
    msg.metrics.add(alias=10, timestamp=T, double_value=29.5)
    m = msg.metrics.add(alias=11, timestamp=T, int_value=65524)
    for name, value in kw.items():
        if name == "no_seq":
            msg.ClearField("seq")
        elif name == "later":
            m.timestamp = T + 1
        elif name == "properties":
            m.properties.keys.append("engUnit")
        elif name in ("uuid", "body"):
            setattr(msg, name, value)
        elif name == "unaliased":
            m.ClearField("alias")
            m.name = "Water/Level"
        elif name == "no_time":
            m.ClearField("timestamp")
        else:
            setattr(m, name, value)
    return msg


@pytest.mark.parametrize(
    "kw",
    [
        {"no_seq": True}, {"later": True}, {"properties": True}, {"is_null": True}, {"is_transient": True},
        {"is_historical": True}, {"long_value": 5}, {"float_value": 1.5}, {"boolean_value": True},
        {"uuid": "x"}, {"body": b"x"}, {"unaliased": True}, {"no_time": True}, {"name": "Water/Level"},
    ],
    ids=lambda kw: next(iter(kw)),
)  # fmt: skip
def test_anything_but_the_usual_data_has_no_layout(kw: dict[str, Any]) -> None:
    assert Layouts().of(_with(), _with().SerializeToString(), UNSIGNED) is not None
    msg = _with(**kw)
    assert Layouts().of(msg, msg.SerializeToString(), UNSIGNED) is None


def test_a_payload_written_in_another_field_order_has_no_layout() -> None:
    msg = _with()
    seq_first = b"\x18\x03" + Payload(timestamp=T, metrics=msg.metrics).SerializeToString()
    assert Payload.FromString(seq_first) == msg
    assert Layouts().of(msg, seq_first, UNSIGNED) is None


def test_devices_of_one_make_share_a_shape_and_keep_their_own_aliases() -> None:
    layouts = Layouts()
    a, b = _with(), _with()
    b.metrics[0].alias, b.metrics[1].alias = 20, 21
    first, second = (layouts.of(x, x.SerializeToString(), UNSIGNED) for x in (a, b))
    assert first is not None
    assert second is not None
    assert first.shape is second.shape
    assert first.read(b.SerializeToString()) is None
    assert second.read(a.SerializeToString()) is None
    assert second.read(b.SerializeToString()) == (T, (29.5, 65524), 3)


@pytest.mark.parametrize("last", [0x0F, 0x10, 0x7F])
def test_an_int_value_over_32_bits_is_left_to_protobuf(last: int) -> None:
    msg = _with()
    layout = learnt(msg)
    raw = msg.SerializeToString()
    written = b"\x50" + varint_bytes(65524)
    wide = b"\x50\xff\xff\xff\xff" + bytes([last])  # 32 bits and more: protobuf cuts a uint32's varint
    longer = raw.replace(written, wide).replace(b"\x12\x0d", bytes([0x12, 0x0D + len(wide) - len(written)]))
    seen = protobuf_reads(longer)
    assert seen is not None
    assert seen[0] == layout.aliases
    read = layout.read(longer)
    assert read is None if last > 0x0F else repr(read) == repr(seen[1])


def test_integers_are_read_by_their_bits_and_out_of_range_is_no_reading() -> None:
    msg = _with()  # alias 11: int_value 65524
    raw = msg.SerializeToString()
    for bits, expected in [(-16, -12), (16, 65524), (32, 65524), (-32, 65524)]:
        layout = Layouts().of(msg, raw, {11: bits})
        assert layout is not None
        assert layout.read(raw) == (T, (29.5, expected), 3)
    assert Layouts().of(msg, raw, {11: -8}) is None  # 65524 is no Int8: nothing to learn from
    assert Layouts().of(msg, raw, {}) is None  # an integer no birth gave bits to
    layout = Layouts().of(msg, raw, {11: 16})
    assert layout is not None
    msg.metrics[1].int_value = 65536
    assert layout.read(msg.SerializeToString()) is None


def test_a_boolean_is_read_as_1_or_0_and_anything_else_is_left_to_protobuf() -> None:
    msg = _with()
    msg.metrics.add(alias=12, timestamp=T, boolean_value=True)
    bits = {11: 16, 12: BOOLEAN}
    layout = Layouts().of(msg, msg.SerializeToString(), bits)
    assert layout is not None
    msg.metrics[2].boolean_value = False
    assert layout.read(msg.SerializeToString()) == (T, (29.5, 65524, 0), 3)
    two = msg.SerializeToString().replace(b"\x70\x00", b"\x70\x02")  # true to protobuf, yet no Boolean's 1 or 0
    assert Payload.FromString(two).metrics[2].boolean_value is True
    assert layout.read(two) is None
    assert Layouts().of(msg, msg.SerializeToString(), {11: 16, 12: 32}) is None  # no Boolean bits
    msg.metrics[2].int_value = 1
    assert Layouts().of(msg, msg.SerializeToString(), bits) is None  # a Boolean carrying an int_value


# ---- a layout at one length (Fixed) -------------------------------------------------------------


def fixed_of(msg: Payload) -> tuple[Layout, Fixed]:
    layout = learnt(msg)
    fixed = layout.fixed(msg.SerializeToString())
    assert fixed is not None
    return layout, fixed


def varint_lengths(msg: Payload) -> list[int]:
    """The lengths of ``msg``'s varints but seq's: its time, each metric's and integer's."""
    numbers = [msg.timestamp] if msg.HasField("timestamp") else []
    for m in msg.metrics:
        numbers += [m.timestamp] + ([m.int_value] if m.HasField("int_value") else [])
    return [len(varint_bytes(n)) for n in numbers]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(msg=usual(), data=st.data())
def test_a_fixed_layout_reads_what_its_layout_reads_at_its_length(msg: Payload, data: st.DataObject) -> None:
    layout, fixed = fixed_of(msg)
    raw = msg.SerializeToString()
    assert fixed.read(raw) == layout.read(raw)
    following = again(msg, data.draw)
    read = fixed.read(following.SerializeToString())
    if varint_lengths(following) == varint_lengths(msg):
        assert repr(read) == repr(layout.read(following.SerializeToString()))
    else:
        assert read is None


@settings(max_examples=1_000, suppress_health_check=[HealthCheck.too_slow])
@given(msg=usual(), mutations=st.lists(MUTATIONS, min_size=1, max_size=3))
def test_a_fixed_layout_reads_a_damaged_or_different_payload_only_as_protobuf_reads_it(
    msg: Payload, mutations: list[tuple[str, int, int]]
) -> None:
    layout, fixed = fixed_of(msg)
    raw = mutated(msg.SerializeToString(), mutations)
    read = fixed.read(raw)
    if read is not None:
        seen = protobuf_reads(raw)
        assert seen is not None
        assert seen[0] == layout.aliases
        assert repr(read) == repr(seen[1])
        assert repr(read) == repr(layout.read(raw))


@pytest.mark.parametrize(("learnt_seq", "read_seq"), [(5, 200), (200, 5), (127, 128), (255, 0)])
def test_a_fixed_layout_reads_seq_of_one_byte_or_two(learnt_seq: int, read_seq: int) -> None:
    msg = _with()
    msg.seq = learnt_seq
    _, fixed = fixed_of(msg)
    msg.seq = read_seq
    assert fixed.read(msg.SerializeToString()) == (T, (29.5, 65524), read_seq)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (2**32 - 1, -1),  # an Int16 of -1, sign-extended to 32 bits (five bytes)
        (2**32 - 2**15, -(2**15)),  # the least Int16, sign-extended
        (2**32 - 2**15 - 1, None),  # one less: no Int16's
        (2**31, None),  # the least Int32: no Int16's
        (2**28, None),  # five bytes, far out of an Int16's range
    ],
)
def test_a_fixed_layout_reads_a_sign_extended_int16_and_nothing_else(raw: int, expected: int | None) -> None:
    msg = _with()
    msg.metrics[1].int_value = 2**32 - 12  # learnt from -12 in five bytes
    layout = Layouts().of(msg, msg.SerializeToString(), {11: -16})
    assert layout is not None
    fixed = layout.fixed(msg.SerializeToString())
    assert fixed is not None
    msg.metrics[1].int_value = raw
    read = fixed.read(msg.SerializeToString())
    assert read == (None if expected is None else (T, (29.5, expected), 3))
    assert read == layout.read(msg.SerializeToString())


def test_times_that_differ_are_no_fixed_layout_s() -> None:
    msg = _with()
    _, fixed = fixed_of(msg)
    msg.metrics[1].timestamp = T + 1  # as long a varint, another time
    assert fixed.read(msg.SerializeToString()) is None


def test_every_single_bit_flipped_is_read_as_protobuf_reads_it_or_not_at_all() -> None:
    msg = _with()
    msg.metrics[1].int_value = 2**32 - 97  # an Int32 of -97, in five bytes
    msg.metrics.add(alias=12, timestamp=T, boolean_value=True)
    bits = {11: -32, 12: BOOLEAN}
    layout = Layouts().of(msg, msg.SerializeToString(), bits)
    assert layout is not None
    fixed = layout.fixed(msg.SerializeToString())
    assert fixed is not None
    raw = msg.SerializeToString()
    read_some = 0
    for at in range(len(raw)):
        for bit in range(8):
            flipped = bytearray(raw)
            flipped[at] ^= 1 << bit
            for reader in (layout, fixed):
                read = reader.read(bytes(flipped))
                if read is None:
                    continue
                seen = protobuf_reads(bytes(flipped))
                assert seen is not None, (at, bit)
                assert seen[0] == layout.aliases
                ts, (temp, level, lamp), seq = seen[1]
                assert repr(read) == repr((ts, (temp, integer(level, -32), integer(lamp, BOOLEAN)), seq)), (at, bit)
                read_some += 1
    assert read_some > 100  # the values' bits, the time's, seq's: read


def padded(n: int, extra: int = 0) -> bytes:
    """``n`` as a varint ``extra`` bytes longer than it needs (protobuf reads it alike)."""
    raw = varint_bytes(n)
    return raw if not extra else raw[:-1] + bytes([raw[-1] | 0x80]) + b"\x80" * (extra - 1) + b"\x00"


def written(*, ts: bytes, time: bytes, level: bytes, seq: bytes) -> bytes:
    """``_with()``'s DATA written by hand, each varint as given."""
    temp = b"\x10\x0a\x18" + time + b"\x69" + Payload.Metric(double_value=29.5).SerializeToString()[1:]
    level_metric = b"\x10\x0b\x18" + time + b"\x50" + level
    return (
        b"\x08" + ts + b"\x12" + bytes([len(temp)]) + temp + b"\x12" + bytes([len(level_metric)]) + level_metric
        + b"\x18" + seq
    )  # fmt: skip


@pytest.mark.parametrize(
    "varints",
    [
        {"ts": padded(T, 1)},
        {"time": padded(T, 1)},
        {"level": padded(65524, 1)},
        {"level": padded(65524, 2)},  # five bytes, the fifth 0
        {"level": b"\x9f\xff\xff\xff\xff\xff\xff\xff\xff\x01"},  # -97 sign-extended to 64 bits, as some write it
        {"seq": padded(3, 1)},
        {"seq": padded(3, 2)},
    ],
    ids=["ts+1", "time+1", "level+1", "level+2", "level-sign-extended", "seq+1", "seq+2"],
)
def test_padded_varints_are_read_as_protobuf_reads_them_or_left_to_it(varints: dict[str, bytes]) -> None:
    plain = {"ts": padded(T), "time": padded(T), "level": padded(65524), "seq": padded(3)}
    assert written(**plain) == _with().SerializeToString()
    layout, fixed = fixed_of(_with())
    raw = written(**(plain | varints))
    seen = protobuf_reads(raw)
    assert seen is not None
    assert seen[0] == layout.aliases
    reads = [reader.read(raw) for reader in (layout, fixed)]
    for read in reads:
        assert read is None or repr(read) == repr(seen[1])
    if "time" in varints or ("level" in varints and len(varints["level"]) > 5):
        assert reads == [None, None]  # a time of another length, or an int_value over 5 bytes: protobuf's
    if "seq" in varints and len(varints["seq"]) > 2:
        assert reads == [None, None]
