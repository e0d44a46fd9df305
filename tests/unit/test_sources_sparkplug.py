"""Sparkplug B decoding (pure logic): sessions, seq, aliases, datatypes, rebirth requests, and a fuzz."""

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
from ingest.sources import sparkplug
from ingest.sources.base import SourceContext
from ingest.sources.config import Source, parse_sources
from ingest.sources.mapping import FieldMapper
from ingest.sources.router import Router
from ingest.sources.sparkplug import REBIRTH_INTERVAL_MS, REBIRTH_REASON, SparkplugB, Unreadable, value_of
from ingest.sources.sparkplug_b_pb2 import DataType, Payload
from ingest.sources.sparkplug_layout import Layouts
from tests import corpus

NOW = 1_790_000_000_000
T = NOW - 600_000  # the messages' own time, 10 minutes before ingest's clock
SOURCES = parse_sources(
    {
        "sources": [{"format": "ioc_v1"}, {"format": "sparkplug_b"}],
        "models": {
            "wq_spb": {
                "fields": {
                    "ec_us_cm": "Water/Conductivity",
                    "salinity_ppt": "Water/Salinity",
                    "temp_c": ["Water/Temperature", "Temperature"],
                    "water_level_cm": "Water/Level",
                    "rssi_dbm": "Radio/RSSI",
                }
            },
            "gw_spb": {"fields": {"battery_v": "Battery", "temp_c": "Temperature"}},
            "trap_spb": {"fields": {"lamp_on": "Trap/Lamp", "bph_count": "Trap/BPH/Count", "air_temp_c": "Air/Temp"}},
        },
    },
    "t",
)
SPB = SOURCES.sources[1]
G, E, D = "ca_mau", "cm-gw-07", "cm-sal-0031"
TRAP = "cm-trap-0002"
NODE_TOPIC = f"spBv1.0/{G}/{{}}/{E}"
DEV_TOPIC = f"spBv1.0/{G}/{{}}/{E}/{D}"
REGISTRY = Registry(
    [
        DeviceTags(D, Kind.SALINITY, "ca_mau", "dam_doi", "field", "none", "active", "wq_spb",
                   sparkplug=f"{G}/{E}/{D}"),
        DeviceTags(E, Kind.SALINITY, "ca_mau", "dam_doi", "field", "none", "active", "gw_spb",
                   sparkplug=f"{G}/{E}"),
        DeviceTags("cm-sal-0032", Kind.SALINITY, "ca_mau", "dam_doi", "field", "none", "active", "wq_spb",
                   sparkplug=f"{G}/{E}/cm-sal-0032"),
        DeviceTags(TRAP, Kind.LIGHT_TRAP, "ca_mau", "dam_doi", "field", "rice", "active", "trap_spb",
                   sparkplug=f"{G}/{E}/{TRAP}"),
        DeviceTags("gone", Kind.SALINITY, "ca_mau", "dam_doi", "field", "none", "suspended", "wq_spb",
                   sparkplug=f"{G}/{E}/gone"),
    ]
)  # fmt: skip
SPB_CORPUS = corpus.CORPUS / "sparkplug_b"
needs_corpus = corpus.needs_corpus("sparkplug_b")


class Run:
    """One decoder (its session state carries over), decoding message after message."""

    def __init__(
        self, source: Source = SPB, registry: Registry = REGISTRY, decoder: type[SparkplugB] = SparkplugB
    ) -> None:
        self.ignored: list[str] = []
        self.decoder = decoder(source, SourceContext(registry, FieldMapper(SOURCES.models), self.ignored.append))

    def __call__(self, topic: str, payload: Payload | bytes, now_ms: int = NOW) -> BatchBuilder:
        out = BatchBuilder()
        raw = payload if isinstance(payload, bytes) else payload.SerializeToString()
        self.decoder.decode(topic, raw, retained=False, now_ms=now_ms, out=out)
        return out


def metric(name: str | None = None, alias: int | None = None, dt: int | None = None, **kw: Any) -> Payload.Metric:
    m = Payload.Metric(**kw)
    if name is not None:
        m.name = name
    if alias is not None:
        m.alias = alias
    if dt is not None:
        m.datatype = dt
    return m


def eng(m: Payload.Metric, unit: str) -> Payload.Metric:
    m.properties.keys.append("engUnit")
    m.properties.values.add(type=DataType.String, string_value=unit)
    return m


def payload(*metrics: Payload.Metric, seq: int | None = None, ts: int | None = T) -> Payload:
    p = Payload(metrics=metrics)
    if seq is not None:
        p.seq = seq
    if ts is not None:
        p.timestamp = ts
    return p


def nbirth(seq: int = 0, bd_seq: int = 3) -> Payload:
    return payload(
        metric("bdSeq", dt=DataType.Int64, long_value=bd_seq),
        metric("Node Control/Rebirth", dt=DataType.Boolean, boolean_value=False),
        eng(metric("Battery", 2, DataType.Float, float_value=12.6), "V"),
        metric("Temperature", 3, DataType.Double, double_value=31.0),
        seq=seq,
    )


def dbirth(seq: int = 1) -> Payload:
    return payload(
        eng(metric("Water/Conductivity", 10, DataType.Float, float_value=18350.0), "uS/cm"),
        eng(metric("Water/Salinity", 11, DataType.Float, float_value=10.8), "ppt"),
        eng(metric("Water/Temperature", 12, DataType.Double, double_value=29.4), "degC"),
        eng(metric("Water/Level", 13, DataType.Int16, int_value=65524), "cm"),
        eng(metric("Radio/RSSI", 14, DataType.Int32, int_value=2**32 - 97), "dBm"),
        seq=seq,
    )


def ddata(seq: int, *metrics: Payload.Metric, ts: int | None = T + 1_000) -> Payload:
    return payload(*(metrics or (metric(alias=10, float_value=18420.0),)), seq=seq, ts=ts)


def born(run: Run | None = None) -> Run:
    """A run in which the node and its device were born (seq 0, 1)."""
    run = run or Run()
    assert not run(NODE_TOPIC.format("NBIRTH"), nbirth()).rejections
    assert not run(DEV_TOPIC.format("DBIRTH"), dbirth()).rejections
    return run


def fields(line: str) -> dict[str, str]:
    """The field set of a line-protocol line."""
    return dict(kv.split("=", 1) for kv in line.split(" ")[1].split(","))


def reasons(out: BatchBuilder) -> list[Reason]:
    return [r.reason for r in out.rejections]


def decoded(command: tuple[str, bytes]) -> tuple[str, Payload]:
    return command[0], Payload.FromString(command[1])


# ---- births, data, deaths -------------------------------------------------------------------------


def test_births_are_online_statuses_and_readings_with_units_signs_and_float32_read_right() -> None:
    run = Run()
    out = run(NODE_TOPIC.format("NBIRTH"), nbirth())
    assert out.rejections == []
    assert out.lines == [
        f"device_status,crop=none,device_id={E},district=dam_doi,province=ca_mau,site=field online=1i {T}",
        f"salinity,crop=none,device_id={E},district=dam_doi,province=ca_mau,site=field "
        f"temp_c=31.0,battery_v=12.6,seq=0i {T}",
    ]
    out = run(DEV_TOPIC.format("DBIRTH"), dbirth())
    assert out.rejections == []
    assert out.lines[0].startswith(f"device_status,crop=none,device_id={D},")
    assert f" online=1i {T}" in out.lines[0]
    assert fields(out.lines[1]) == {
        "ec_us_cm": "18350.0",
        "salinity_ppt": "10.8",  # float32 10.8 is 10.800000190734863: stored as what was sent
        "temp_c": "29.4",
        "water_level_cm": "-12.0",  # Int16 -12 arrives as 65524
        "rssi_dbm": "-97.0",  # Int32 -97 as 4294967199
        "seq": "1i",
    }


def test_alias_only_data_without_datatype_is_read_through_the_birth() -> None:
    run = born()
    out = run(
        DEV_TOPIC.format("DDATA"), ddata(2, metric(alias=10, float_value=18420.0), metric(alias=13, int_value=65521))
    )
    assert out.rejections == []
    [line] = out.lines
    assert fields(line) == {"ec_us_cm": "18420.0", "water_level_cm": "-15.0", "seq": "2i"}
    assert line.endswith(f" {T + 1_000}")


def test_node_data_is_the_node_devices_reading() -> None:
    run = born()
    out = run(NODE_TOPIC.format("NDATA"), payload(metric(alias=2, float_value=12.4), seq=2))
    assert out.rejections == []
    assert out.lines[0].startswith(f"salinity,crop=none,device_id={E},")
    assert fields(out.lines[0]) == {"battery_v": "12.4", "seq": "2i"}


def test_seq_wraps_255_to_0_without_a_gap_and_history_is_stored_at_its_own_time() -> None:
    run = born()
    for seq in range(2, 256):
        assert run(DEV_TOPIC.format("DDATA"), ddata(seq)).rejections == [], seq
    hist = metric(alias=12, double_value=29.1, timestamp=T - 3_600_000, is_historical=True)
    out = run(DEV_TOPIC.format("DDATA"), ddata(0, metric(alias=10, float_value=18510.0), hist))
    assert out.rejections == []
    assert [(fields(x), x.rsplit(" ", 1)[1]) for x in out.lines] == [
        ({"ec_us_cm": "18510.0", "seq": "0i"}, str(T + 1_000)),
        ({"temp_c": "29.1", "seq": "0i"}, str(T - 3_600_000)),  # a separate reading at its own time
    ]


def test_time_is_the_metrics_else_the_payloads_else_arrival() -> None:
    run = born()
    out = run(DEV_TOPIC.format("DDATA"), ddata(2, metric(alias=10, float_value=1.0, timestamp=T + 5), ts=T + 9))
    assert out.lines[0].endswith(f" {T + 5}")
    out = run(DEV_TOPIC.format("DDATA"), ddata(3, metric(alias=10, float_value=1.0), ts=T + 9))
    assert out.lines[0].endswith(f" {T + 9}")
    out = run(DEV_TOPIC.format("DDATA"), ddata(4, metric(alias=10, float_value=1.0), ts=None))
    assert out.lines[0].endswith(f" {NOW}")


def test_ddeath_sets_its_device_offline_at_its_time() -> None:
    run = born()
    out = run(DEV_TOPIC.format("DDEATH"), payload(seq=2, ts=T + 50))
    assert out.rejections == []
    assert out.lines == [
        f"device_status,crop=none,device_id={D},district=dam_doi,province=ca_mau,site=field online=0i {T + 50}"
    ]
    out = run(DEV_TOPIC.format("DDATA"), ddata(3))  # the device died: no DBIRTH in this session
    assert reasons(out) == [REBIRTH_REASON]


def test_a_matching_ndeath_sets_the_node_and_every_device_born_under_it_offline_at_arrival() -> None:
    run = born()
    will = payload(metric("bdSeq", dt=DataType.Int64, long_value=3), ts=T - 99_999)  # written at CONNECT
    out = run(NODE_TOPIC.format("NDEATH"), will)
    assert out.rejections == []
    assert sorted(line.split(",")[2] + " " + line.split(" ", 1)[1] for line in out.lines) == [
        f"device_id={E} online=0i {NOW}",
        f"device_id={D} online=0i {NOW}",
    ]
    out = run(DEV_TOPIC.format("DDATA"), ddata(2))
    assert reasons(out) == [REBIRTH_REASON]
    assert "it died (NDEATH)" in out.rejections[0].detail


def test_a_stale_ndeath_of_an_older_session_does_not_kill_a_reborn_node() -> None:
    run = born()
    out = run(NODE_TOPIC.format("NDEATH"), payload(metric("bdSeq", dt=DataType.UInt64, long_value=2), ts=None))
    assert (out.lines, out.rejections) == ([], [])
    assert run.ignored == ["NDEATH_stale"]
    assert run(DEV_TOPIC.format("DDATA"), ddata(2)).lines  # still alive, still read


def test_an_ndeath_without_a_known_session_is_counted_not_guessed() -> None:
    run = Run()
    out = run(NODE_TOPIC.format("NDEATH"), payload(metric("bdSeq", dt=DataType.Int64, long_value=3)))
    assert (out.lines, out.rejections, out.commands) == ([], [], [])
    assert run.ignored == ["NDEATH_unborn"]


# ---- what cannot be read: dead letter and rebirth --------------------------------------------------


def test_data_before_any_birth_is_refused_and_a_rebirth_requested() -> None:
    run = Run()
    out = run(DEV_TOPIC.format("DDATA"), ddata(7), now_ms=NOW)
    assert reasons(out) == [REBIRTH_REASON]
    assert out.rejections[0].detail == (
        f"Sparkplug edge node {G}/{E}: no NBIRTH seen since ingest started; its DATA cannot be read until its "
        "NBIRTH (rebirth requested)"
    )
    [command] = out.commands
    topic, request = decoded(command)
    assert topic == f"spBv1.0/{G}/NCMD/{E}"
    assert request.timestamp == NOW
    [m] = request.metrics
    assert (m.name, m.datatype, m.WhichOneof("value"), m.boolean_value) == (
        "Node Control/Rebirth",
        DataType.Boolean,
        "boolean_value",
        True,
    )


def test_rebirth_requests_are_at_most_one_per_node_per_interval() -> None:
    run = Run()
    assert len(run(DEV_TOPIC.format("DDATA"), ddata(1), now_ms=NOW).commands) == 1
    assert run(NODE_TOPIC.format("NDATA"), ddata(2), now_ms=NOW + REBIRTH_INTERVAL_MS - 1).commands == []
    assert len(run(DEV_TOPIC.format("DDATA"), ddata(3), now_ms=NOW + REBIRTH_INTERVAL_MS).commands) == 1
    other = f"spBv1.0/{G}/DDATA/other-node/{D}"  # not registered: refused, no request
    assert reasons(run(other, ddata(1))) == [Reason.UNKNOWN_DEVICE]


def test_without_rebirth_the_data_is_refused_and_nothing_is_asked() -> None:
    run = Run(Source(format="sparkplug_b", rebirth=False))
    out = run(DEV_TOPIC.format("DDATA"), ddata(1))
    assert reasons(out) == [REBIRTH_REASON]
    assert "rebirth requested" not in out.rejections[0].detail
    assert out.commands == []


def test_a_seq_gap_refuses_the_node_s_data_until_its_next_nbirth() -> None:
    run = born()
    assert run(DEV_TOPIC.format("DDATA"), ddata(2)).lines
    out = run(DEV_TOPIC.format("DDATA"), ddata(5))  # 3 and 4 were lost
    assert reasons(out) == [REBIRTH_REASON]
    assert "seq 5 came where 3 was due" in out.rejections[0].detail
    assert [c[0] for c in out.commands] == [f"spBv1.0/{G}/NCMD/{E}"]
    assert reasons(run(DEV_TOPIC.format("DDATA"), ddata(6))) == [REBIRTH_REASON]  # never guessed
    assert reasons(run(NODE_TOPIC.format("NDATA"), ddata(7, metric(alias=2, float_value=1.0)))) == [REBIRTH_REASON]
    born(run)  # the node answers with its births
    assert run(DEV_TOPIC.format("DDATA"), ddata(2)).lines


def test_a_repeated_seq_is_a_gap_too() -> None:
    run = born()
    assert reasons(run(DEV_TOPIC.format("DDATA"), ddata(1))) == [REBIRTH_REASON]


def test_a_gap_on_a_birth_or_death_asks_a_rebirth_and_the_message_is_still_read() -> None:
    run = born()
    out = run(f"spBv1.0/{G}/DBIRTH/{E}/cm-sal-0032", dbirth(seq=9))
    assert out.rejections == []
    assert len(out.lines) == 2
    assert len(out.commands) == 1


def test_an_alias_no_birth_declared_refuses_the_data_and_asks_a_rebirth() -> None:
    run = born()
    out = run(DEV_TOPIC.format("DDATA"), ddata(2, metric(alias=10, float_value=1.0), metric(alias=99, int_value=1)))
    assert reasons(out) == [REBIRTH_REASON]
    assert "alias 99 was not declared by a birth" in out.rejections[0].detail
    assert out.lines == []
    assert len(out.commands) == 1
    out = run(DEV_TOPIC.format("DDATA"), ddata(3, metric("Water/Unknown", dt=DataType.Float, float_value=1.0)))
    assert "metric 'Water/Unknown' was not declared" in out.rejections[0].detail


def test_a_device_without_a_dbirth_in_this_session_cannot_be_read() -> None:
    run = Run()
    run(NODE_TOPIC.format("NBIRTH"), nbirth())
    out = run(DEV_TOPIC.format("DDATA"), ddata(1))
    assert reasons(out) == [REBIRTH_REASON]
    assert f"no DBIRTH of device {D!r} in this session" in out.rejections[0].detail


def test_data_by_name_is_read_too() -> None:
    run = born()
    out = run(DEV_TOPIC.format("DDATA"), ddata(2, metric("Water/Salinity", float_value=5.5)))
    assert fields(out.lines[0]) == {"salinity_ppt": "5.5", "seq": "2i"}


def test_metrics_with_neither_name_nor_alias_are_refused_and_the_rest_is_read() -> None:
    run = born()
    out = run(
        DEV_TOPIC.format("DDATA"),
        ddata(2, metric(dt=DataType.String, string_value="x"), metric(alias=11, float_value=2.0)),
    )
    assert reasons(out) == [Reason.BAD_SHAPE]
    assert out.rejections[0].detail == "1 metric(s) with neither name nor alias cannot be attributed"
    assert fields(out.lines[0]) == {"salinity_ppt": "2.0", "seq": "2i"}


# ---- identity, topics, payloads --------------------------------------------------------------------


def test_unregistered_devices_and_nodes() -> None:
    run = Run()
    stranger = "spBv1.0/g/{}/n"
    out = run(stranger.format("NBIRTH"), nbirth())  # a gateway node, not a device of ours: its session is kept
    assert (out.lines, out.rejections) == ([], [])
    assert run.ignored == ["NBIRTH"]
    out = run(stranger.format("DBIRTH") + "/d", dbirth())
    assert reasons(out) == [Reason.UNKNOWN_DEVICE]
    assert out.rejections[0].detail == "Sparkplug device 'g/n/d' is not an active registered device"
    assert reasons(run(stranger.format("NDATA"), ddata(2))) == [Reason.UNKNOWN_DEVICE]
    assert reasons(run(f"spBv1.0/{G}/DDATA/{E}/gone", ddata(1))) == [Reason.UNKNOWN_DEVICE]  # suspended
    assert run(stranger.format("DDEATH") + "/d", payload(seq=3)).rejections == []
    assert run.ignored == ["NBIRTH", "DDEATH"]


def test_an_unregistered_device_s_messages_still_count_in_its_node_s_seq() -> None:
    run = born()
    assert reasons(run(f"spBv1.0/{G}/DDATA/{E}/stranger", ddata(2))) == [Reason.UNKNOWN_DEVICE]
    assert run(DEV_TOPIC.format("DDATA"), ddata(3)).lines


@pytest.mark.parametrize("kind", ["NCMD", "DCMD", "STATE"])
def test_commands_and_host_state_carry_no_readings(kind: str) -> None:
    run = Run()
    topic = {"NCMD": f"spBv1.0/{G}/NCMD/{E}", "DCMD": f"spBv1.0/{G}/DCMD/{E}/{D}", "STATE": "spBv1.0/STATE/ioc"}
    out = run(topic[kind], b'{"online": true}' if kind == "STATE" else sparkplug.rebirth_request(NOW))
    assert (out.lines, out.rejections, out.commands) == ([], [], [])
    assert run.ignored == [kind]


@pytest.mark.parametrize(
    "topic", ["spBv1.0/g/NDATA/e/d", "spBv1.0/g/DDATA/e", "spBv1.0/g/XDATA/e", "spBv2.0/g/NDATA/e", "spBv1.0"]
)
def test_a_topic_outside_the_namespace_is_a_bad_topic(topic: str) -> None:
    assert reasons(Run()(topic, nbirth())) == [Reason.BAD_TOPIC]


@pytest.mark.parametrize("raw", [b'{"temp": 1}', b"\xff\xff\xff", b"\x12\x05\x0a"])
def test_a_payload_that_is_not_sparkplug_protobuf_is_a_bad_shape(raw: bytes) -> None:
    out = Run()(DEV_TOPIC.format("DDATA"), raw)
    assert reasons(out) == [Reason.BAD_SHAPE]
    assert out.rejections[0].detail.startswith("not a Sparkplug B payload (org.eclipse.tahu.protobuf.Payload)")


def test_a_name_that_is_not_utf8_is_nameless_not_a_crash() -> None:
    bad = b"\x12\x06\x0a\x02\xff\xfe\x50\x01"  # metric {name: b"\xff\xfe", alias: 1}
    out = born()(DEV_TOPIC.format("DBIRTH"), bad + b"\x18\x02")
    assert reasons(out) == [Reason.BAD_SHAPE]
    assert out.lines[0].startswith("device_status,")


def test_the_router_takes_the_namespace_to_this_decoder() -> None:
    native = Decoder(REGISTRY, max_payload_bytes=65_536, max_readings=100)
    ignored: list[str] = []
    router = Router(SOURCES, native, REGISTRY, ignored.append)
    assert "spBv1.0/#" in router.filters
    out = BatchBuilder()
    router.decode(NODE_TOPIC.format("NBIRTH"), nbirth().SerializeToString(), retained=False, now_ms=NOW, out=out)
    assert len(out.lines) == 2


def test_state_is_bounded_by_max_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sparkplug, "MAX_NODES", 3)
    run = born()
    for n in range(3):
        run(f"spBv1.0/g/NBIRTH/n{n}", nbirth())
    assert len(run.decoder._nodes) == 3
    out = run(DEV_TOPIC.format("DDATA"), ddata(2))  # the oldest was forgotten: ask again, never guess
    assert reasons(out) == [REBIRTH_REASON]


# ---- values -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("datatype", "value", "expected"),
    [
        (DataType.Int8, {"int_value": 0xFF}, -1),  # two's complement in 8 bits (Tahu Python)
        (DataType.Int8, {"int_value": 2**32 - 1}, -1),  # sign-extended to the uint32 (Tahu Java)
        (DataType.Int8, {"int_value": 127}, 127),
        (DataType.Int16, {"int_value": 65524}, -12),
        (DataType.Int32, {"int_value": 2**32 - 97}, -97),
        (DataType.Int64, {"long_value": 2**64 - 5}, -5),
        (DataType.Int64, {"long_value": 7}, 7),
        (DataType.UInt8, {"int_value": 255}, 255),
        (DataType.UInt16, {"int_value": 65535}, 65535),
        (DataType.UInt32, {"int_value": 2**32 - 1}, 2**32 - 1),
        (DataType.UInt32, {"long_value": 2**32 - 1}, 2**32 - 1),  # Tahu Java puts UInt32 in long_value
        (DataType.UInt64, {"long_value": 2**64 - 1}, 2**64 - 1),
        (DataType.Float, {"float_value": 10.9}, 10.9),
        (DataType.Float, {"float_value": 18420.0}, 18420.0),
        (DataType.Float, {"float_value": 3.4028234663852886e38}, 3.4028235e38),
        (DataType.Double, {"double_value": 29.4}, 29.4),
        (DataType.Boolean, {"boolean_value": True}, 1),
        (DataType.Boolean, {"boolean_value": False}, 0),
        (DataType.String, {"string_value": "ok"}, "ok"),
        (DataType.DateTime, {"long_value": T}, T),
        (DataType.Double, {"is_null": True}, None),
        (DataType.Double, {}, None),
    ],
)
def test_values_are_read_by_their_datatype(datatype: int, value: dict[str, Any], expected: Any) -> None:
    assert value_of(Payload.Metric(**value), datatype) == expected


@pytest.mark.parametrize(
    ("datatype", "value", "what"),
    [
        (DataType.Int8, {"int_value": 300}, "Int8 300 out of its range"),
        (DataType.UInt8, {"int_value": 256}, "UInt8 256 out of its range"),
        (DataType.Int16, {"double_value": 1.5}, "Int16 carrying double_value"),
        (DataType.Float, {"string_value": "1"}, "Float carrying string_value"),
        (DataType.Boolean, {"int_value": 1}, "Boolean carrying int_value"),
        (DataType.Unknown, {"int_value": 1}, "a value without a datatype (its birth must declare one)"),
    ],
)
def test_a_value_that_contradicts_its_datatype_is_unreadable(datatype: int, value: dict[str, Any], what: str) -> None:
    got = value_of(Payload.Metric(**value), datatype)
    assert isinstance(got, Unreadable)
    assert str(got) == what


@pytest.mark.parametrize(
    "m",
    [
        Payload.Metric(datatype=DataType.DataSet, dataset_value=Payload.DataSet(num_of_columns=1)),
        Payload.Metric(datatype=DataType.Template, template_value=Payload.Template(template_ref="x")),
        Payload.Metric(datatype=DataType.Bytes, bytes_value=b"\x00"),
        Payload.Metric(datatype=DataType.FloatArray, bytes_value=b"\x00\x00\x80\x3f"),
        Payload.Metric(datatype=DataType.Double, double_value=1.0, is_transient=True),
    ],
)
def test_datasets_templates_bytes_arrays_and_transients_are_not_readings(m: Payload.Metric) -> None:
    assert value_of(m, m.datatype) is sparkplug._SKIP


def test_a_value_contradicting_its_datatype_is_refused_only_where_a_field_maps_it() -> None:
    run = born()
    out = run(
        DEV_TOPIC.format("DDATA"), ddata(2, metric(alias=13, double_value=1.5), metric(alias=11, float_value=3.0))
    )
    assert [(r.reason, r.detail) for r in out.rejections] == [
        (
            Reason.BAD_TYPE,
            "water_level_cm: 'Int16 carrying double_value' is not a number; the rest of the reading was stored",
        )
    ]
    assert fields(out.lines[0]) == {"salinity_ppt": "3.0", "seq": "2i"}


def test_units_are_converted_and_an_unknown_unit_is_refused_for_that_field() -> None:
    run = Run()
    birth = payload(
        eng(metric("Water/Conductivity", 1, DataType.Double, double_value=18.35), "mS/cm"),
        eng(metric("Water/Temperature", 2, DataType.Double, double_value=300.0), "furlongs"),
        seq=0,
    )
    run(NODE_TOPIC.format("NBIRTH"), nbirth())
    out = run(DEV_TOPIC.format("DBIRTH"), payload(*birth.metrics, seq=1))
    assert [(r.reason, r.detail) for r in out.rejections] == [
        (Reason.BAD_UNIT, "temp_c: cannot convert 'furlongs' to '°C'; the rest of the reading was stored")
    ]
    assert fields(out.lines[1]) == {"ec_us_cm": "18350.0", "seq": "1i"}
    data = metric(alias=2, double_value=302.15)  # DATA may give its own unit
    out = run(DEV_TOPIC.format("DDATA"), ddata(2, eng(data, "K")))
    assert float(fields(out.lines[0])["temp_c"]) == pytest.approx(29.0)


def test_data_that_maps_to_none_of_our_fields_is_a_missing_field() -> None:
    run = Run()
    run(NODE_TOPIC.format("NBIRTH"), nbirth())
    run(DEV_TOPIC.format("DBIRTH"), payload(metric("Pump/Running", 1, DataType.Boolean, boolean_value=True), seq=1))
    out = run(DEV_TOPIC.format("DDATA"), ddata(2, metric(alias=1, boolean_value=False)))
    assert reasons(out) == [Reason.MISSING_FIELD]
    assert out.rejections[0].detail == "no metric maps to a field of ours"


def test_a_reading_in_the_future_is_refused_by_time() -> None:
    run = born()
    out = run(DEV_TOPIC.format("DDATA"), ddata(2, ts=NOW + 3_600_000))
    assert reasons(out) == [Reason.BAD_TIMESTAMP]


# ---- the real payloads ----------------------------------------------------------------------------

TAHU = "spBv1.0/Sparkplug B Devices/{}/Python Edge Node 1"
TAHU_REGISTRY = Registry(
    [
        DeviceTags("tahu-node", Kind.SALINITY, "ca_mau", "dam_doi", "field", "none", "active", "tahu_node",
                   sparkplug="Sparkplug B Devices/Python Edge Node 1"),
        DeviceTags("tahu-dev", Kind.LIGHT_TRAP, "ca_mau", "dam_doi", "field", "none", "active", "tahu_dev",
                   sparkplug="Sparkplug B Devices/Python Edge Node 1/Emulated Device"),
    ]
)  # fmt: skip


@needs_corpus
def test_the_tahu_example_payloads() -> None:
    models = parse_sources(
        {
            "sources": [{"format": "sparkplug_b"}],
            "models": {
                "tahu_node": {"fields": {"water_level_cm": "Node Metric2"}},
                "tahu_dev": {"fields": {"lamp_on": "input/Device Metric1", "air_temp_c": "output/Device Metric2"}},
            },
        },
        "t",
    )
    ignored: list[str] = []
    decoder = SparkplugB(models.sources[0], SourceContext(TAHU_REGISTRY, FieldMapper(models.models), ignored.append))

    def run(name: str, topic: str) -> BatchBuilder:
        out = BatchBuilder()
        decoder.decode(topic, (SPB_CORPUS / f"{name}.bin").read_bytes(), retained=False, now_ms=NOW, out=out)
        return out

    out = run("tahu_NBIRTH", TAHU.format("NBIRTH"))  # DataSet, Template, null: no readings; a unit we do not know
    assert [(r.reason, r.detail) for r in out.rejections] == [
        (Reason.BAD_UNIT, "water_level_cm: cannot convert 'MyCustomUnits' to 'cm'")
    ]
    assert [line.split(" ", 1)[1] for line in out.lines] == ["online=1i 1700000000000"]
    out = run("tahu_DBIRTH", TAHU.format("DBIRTH") + "/Emulated Device")  # the UDT instance is skipped
    assert out.rejections == []
    assert [line.split(" ", 1)[1] for line in out.lines] == [
        "online=1i 1700000000010",
        "lamp_on=1i,air_temp_c=16.0,seq=1i 1699999998766",  # Tahu's stale import-time metric timestamps
    ]
    out = run("tahu_DDATA_alias_only", TAHU.format("DDATA") + "/Emulated Device")
    assert out.rejections == []
    assert [line.split(" ", 1)[1] for line in out.lines] == ["lamp_on=0i,seq=2i 1699999998766"]
    out = run("tahu_simple_DDATA_no_name_no_alias", TAHU.format("DDATA") + "/Emulated Device")
    assert [r.reason for r in out.rejections] == [REBIRTH_REASON]  # seq 2 again: a gap first
    run("tahu_NBIRTH", TAHU.format("NBIRTH"))
    run("tahu_DBIRTH", TAHU.format("DBIRTH") + "/Emulated Device")
    out = run("tahu_simple_DDATA_no_name_no_alias", TAHU.format("DDATA") + "/Emulated Device")
    assert [(r.reason, r.detail) for r in out.rejections] == [
        (Reason.BAD_SHAPE, "2 metric(s) with neither name nor alias cannot be attributed")
    ]
    out = run("tahu_NDEATH", TAHU.format("NDEATH"))  # bdSeq 0 = the NBIRTH's: both offline
    assert sorted(line.split(" ", 1)[1] for line in out.lines) == [f"online=0i {NOW}"] * 2


@needs_corpus
def test_the_benthos_umh_vectors() -> None:
    run = Run()
    umh = "spBv1.0/" + G + "/{}/" + E

    def read(name: str) -> bytes:
        return (SPB_CORPUS / f"umh_{name}.bin").read_bytes()

    assert reasons(run(umh.format("NDATA"), read("NDATA_BEFORE_BIRTH"))) == [REBIRTH_REASON]
    out = run(umh.format("NBIRTH"), read("NBIRTH_V1"))
    assert [line.split(" ", 1)[1] for line in out.lines] == [
        "online=1i 1750855643474",
        "temp_c=21.5,seq=0i 1750855643474",
    ]
    assert run(umh.format("NDATA"), read("NDATA_V1")).lines[0].split(" ", 1)[1] == "temp_c=22.5,seq=1i 1750855643474"
    assert reasons(run(umh.format("NDATA"), read("NDATA_GAP"))) == [REBIRTH_REASON]
    assert run(umh.format("NDEATH"), read("NDEATH_V1")).lines == []  # bdSeq 0, the birth said 88
    assert run.ignored[-1] == "NDEATH_stale"
    run(umh.format("NBIRTH"), read("NBIRTH_V1"))
    for seq in range(1, 256):
        assert not run(umh.format("NDATA"), payload(metric(alias=100, double_value=20.0), seq=seq)).rejections
    assert run(umh.format("NDATA"), read("NDATA_WRAPAROUND")).lines[0].split(" ", 1)[1] == (
        "temp_c=30.0,seq=0i 1750855643474"
    )


# ---- fuzz -----------------------------------------------------------------------------------------

KINDS = st.sampled_from(["NBIRTH", "NDATA", "NDEATH", "DBIRTH", "DDATA", "DDEATH", "NCMD", "DCMD"])
DEVICES = st.sampled_from([D, "cm-sal-0032", "gone", "x"])
NODES = st.sampled_from([(G, E), ("g", "n")])
NAMES = st.sampled_from(["Water/Conductivity", "Water/Level", "Temperature", "Battery", "bdSeq", "x", "Radio/RSSI"])
VALUES = st.one_of(
    st.fixed_dictionaries({"int_value": st.integers(0, 2**32 - 1)}),
    st.fixed_dictionaries({"long_value": st.integers(0, 2**64 - 1)}),
    st.fixed_dictionaries({"float_value": st.floats(width=32)}),
    st.fixed_dictionaries({"double_value": st.floats()}),
    st.fixed_dictionaries({"boolean_value": st.booleans()}),
    st.fixed_dictionaries({"string_value": st.text(max_size=8)}),
    st.fixed_dictionaries({"bytes_value": st.binary(max_size=8)}),
    st.fixed_dictionaries({"is_null": st.booleans()}),
    st.just({}),
)


@st.composite
def metrics(draw: st.DrawFn) -> Payload.Metric:
    m = Payload.Metric(**draw(VALUES))
    if draw(st.booleans()):
        m.name = draw(NAMES)
    if draw(st.booleans()):
        m.alias = draw(st.integers(0, 20) | st.integers(0, 2**64 - 1))
    if draw(st.booleans()):
        m.datatype = draw(st.integers(0, 40))
    if draw(st.booleans()):
        m.timestamp = draw(st.sampled_from([T, T + 1, NOW + 10**9, 0, 2**64 - 1]))
    if draw(st.booleans()):
        eng(m, draw(st.sampled_from(["V", "cm", "uS/cm", "K", "?"])))
    m.is_historical = draw(st.booleans())
    m.is_transient = draw(st.booleans()) and draw(st.booleans())
    return m


@st.composite
def messages(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(KINDS)
    group, edge = draw(NODES)
    topic = f"spBv1.0/{group}/{kind}/{edge}" + (f"/{draw(DEVICES)}" if kind[0] == "D" else "")
    if draw(st.integers(0, 9)) == 0:
        return topic, draw(st.binary(max_size=48))
    p = Payload(metrics=draw(st.lists(metrics(), max_size=5)))
    if draw(st.booleans()):
        p.seq = draw(st.integers(0, 255) | st.integers(0, 2**64 - 1))
    if draw(st.booleans()):
        p.timestamp = draw(st.sampled_from([T, NOW, 0, 2**64 - 1]))
    return topic, p.SerializeToString()


FUZZ_RUN = Run()  # one decoder for every example: sessions build up and break down as they will


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(messages(), min_size=1, max_size=12), now=st.integers(NOW, NOW + 60_000))
def test_fuzz_no_crash_and_every_refusal_has_a_reason(batch: list[tuple[str, bytes]], now: int) -> None:
    for topic, raw in batch:
        before = len(FUZZ_RUN.ignored)
        out = FUZZ_RUN(topic, raw, now_ms=now)
        for r in out.rejections:
            assert isinstance(r.reason, Reason)
            assert r.detail
            assert r.topic == topic
        for command_topic, request in out.commands:
            assert command_topic.split("/")[::2] == ["spBv1.0", "NCMD"]
            assert Payload.FromString(request).metrics[0].name == "Node Control/Rebirth"
        if not out.lines and len(FUZZ_RUN.ignored) == before:
            assert out.rejections, f"{topic}: neither stored, counted nor refused"


# ---- the usual DATA's fast path is the general path's ---------------------------------------------


class GeneralOnly(SparkplugB):
    """The decoder without :meth:`SparkplugB._fast` nor layouts: every DATA by :meth:`SparkplugB._picks`."""

    def _fast(self, *args: Any, **kwargs: Any) -> bool:
        return False

    def _by_layout(self, *args: Any, **kwargs: Any) -> bool:
        return False


class Counted(SparkplugB):
    """The decoder, counting the DATA its layouts read (:meth:`SparkplugB._by_layout`)."""

    by_layout = 0

    def _by_layout(self, *args: Any, **kwargs: Any) -> bool:
        taken = super()._by_layout(*args, **kwargs)
        self.by_layout += taken
        return taken


FAST_NAMES = ["Water/Conductivity", "Water/Salinity", "Water/Temperature", "Temperature", "Water/Level", "Radio/RSSI"]
FAST_NAMES += ["X"]
FAST_CANON = dict(zip(FAST_NAMES, ["uS/cm", "ppt", "degC", "degC", "cm", "dBm", "V"], strict=True))
FAST_UNITS = [None, "uS/cm", "mS/cm", "ppt", "degC", "K", "degF", "cm", "m", "mm", "dBm", "?"]
FAST_TYPES = [DataType.Double] * 3 + [DataType.Int8, DataType.Int16, DataType.Int32, DataType.Int64]
FAST_TYPES += [DataType.UInt8, DataType.UInt16, DataType.UInt32, DataType.Float]
FAST_BITS = {DataType.Int8: 8, DataType.Int16: 16, DataType.UInt8: 8, DataType.UInt16: 16}
FAST_INTS = st.sampled_from([0, 1, 5, 97, 255, 256, 999, 1001, 32767, 32768, 65524, 65535, 65536, 2**31, 2**32 - 97])
FAST_VALUES = st.one_of(
    st.fixed_dictionaries({"double_value": st.floats(-2000, 2000) | st.sampled_from([0.0, -0.0, 1e300, float("nan")])}),
    st.fixed_dictionaries({"int_value": FAST_INTS | st.integers(0, 2**32 - 1)}),
    st.fixed_dictionaries({"long_value": st.sampled_from([5, 2**64 - 3])}),
    st.fixed_dictionaries({"is_null": st.just(True)}),
    st.just({}),
)


@st.composite
def fast_case(draw: st.DrawFn) -> tuple[Payload, list[list[Payload.Metric]]]:
    """A DBIRTH of aliases 10–15 and DATA of them as the fast path takes them (each value as its
    birth's datatype, in range, one time, no flags), with now and then one thing otherwise."""
    born: dict[int, int] = {}
    ms = []
    odd_alias = draw(st.sampled_from([None, None, *range(10, 16)]))
    for alias in range(10, 16):
        name, datatype, unit = FAST_NAMES[alias - 10], draw(st.sampled_from(FAST_TYPES[:-1])), None
        if alias == odd_alias:
            name, datatype = draw(st.sampled_from(FAST_NAMES)), draw(st.sampled_from(FAST_TYPES))
            unit = draw(st.sampled_from(FAST_UNITS))
        born[alias] = datatype
        ms.append(eng(metric(name, alias, datatype, double_value=1.0), unit or FAST_CANON[name]))
    data = []
    for _ in range(draw(st.integers(1, 4))):
        metrics = []
        for alias in draw(st.lists(st.sampled_from(range(10, 16)), unique=True, min_size=1, max_size=6)):
            if born[alias] == DataType.Double:
                m = Payload.Metric(alias=alias, timestamp=T + 1_000, double_value=draw(st.floats(0.5, 40)))
            else:
                m = Payload.Metric(alias=alias, timestamp=T + 1_000, int_value=draw(st.integers(0, 40)))
            metrics.append(m)
        twist = draw(st.sampled_from(["none", *FAST_TWISTS]))
        m = metrics[draw(st.integers(0, len(metrics) - 1))]
        if twist == "value":
            m.MergeFrom(Payload.Metric(**draw(FAST_VALUES)))
        elif twist == "int":  # of an integer, where there is one: about its bounds
            m = draw(st.sampled_from([x for x in metrics if born[x.alias] != DataType.Double] or [m]))
            bits = FAST_BITS.get(born[m.alias], 32)
            edges = [2 ** (bits - 1) - 1, 2 ** (bits - 1), 2 ** (bits - 1) + 100, 2**bits - 12, 2**bits, 2**32 - 12]
            m.int_value = draw(st.sampled_from([n for n in edges if n < 2**32]) | FAST_INTS)
        elif twist == "double":
            m.double_value = draw(st.sampled_from([0.0, -0.0, -1.5, 1e300, float("inf"), float("nan")]))
        elif twist == "time":
            ts = draw(st.sampled_from([None, T + 2_000, NOW + 10**9]))
            if ts is None:
                m.ClearField("timestamp")
            else:
                m.timestamp = ts
        elif twist == "null":
            m.is_null = True
        elif twist == "transient":
            m.is_transient = True
        elif twist == "unit":
            eng(m, draw(st.sampled_from(FAST_UNITS[1:])))
        elif twist == "alias":
            alias = draw(st.sampled_from([0, 16, None]))
            if alias is None:
                m.ClearField("alias")
                m.name = draw(st.sampled_from(FAST_NAMES))
            else:
                m.alias = alias
        elif twist == "twice":
            metrics.append(Payload.Metric(**{**{f.name: v for f, v in m.ListFields()}, "double_value": 2.5}))
        data.append(metrics)
    return payload(*ms, seq=1), data


FAST_TWISTS = ["value", "int", "int", "double", "time", "null", "transient", "unit", "alias", "twice"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=fast_case())
def test_the_fast_path_stores_and_refuses_what_the_general_path_does(
    case: tuple[Payload, list[list[Payload.Metric]]],
) -> None:
    birth, data = case
    runs = Run(), Run(decoder=GeneralOnly)
    messages = [(NODE_TOPIC.format("NBIRTH"), nbirth()), (DEV_TOPIC.format("DBIRTH"), birth)]
    twice = [ms for ms in data if ms] * 2  # the second time, by the layouts the first taught
    messages += [(DEV_TOPIC.format("DDATA"), ddata(2 + n, *ms)) for n, ms in enumerate(twice)]
    for topic, p in messages:
        fast, general = (run(topic, p) for run in runs)
        assert fast.lines == general.lines
        assert [(r.reason, r.detail) for r in fast.rejections] == [(r.reason, r.detail) for r in general.rejections]
        assert fast.commands == general.commands
        assert rows(fast) == rows(general)


def rows(out: BatchBuilder) -> str:
    """The builder's readings as columns, as text (NaN, where a field is unset, equals itself)."""
    return repr(
        {
            k: (c.device.tolist(), c.ts_ms.tolist(), c.seq.tolist(), {f: v.tolist() for f, v in c.fields.items()})
            for k, c in out.seal().columns().items()
        }
    )


# ---- the usual DATA by its byte layout (ingest.sources.sparkplug_layout) ----------------------------


def usual(seq: int, level: int = 65524, temp: float = 29.5) -> Payload:
    """A DATA as edge nodes send it again and again: aliases, one time, a Double and an integer."""
    return payload(
        Payload.Metric(alias=12, timestamp=T + seq, double_value=temp),
        Payload.Metric(alias=13, timestamp=T + seq, int_value=level),
        seq=seq,
    )


def test_a_data_laid_out_as_one_read_before_is_read_by_its_layout_alike() -> None:
    run, general = born(Run(decoder=Counted)), born(Run(decoder=GeneralOnly))
    decoder = run.decoder
    assert isinstance(decoder, Counted)
    for seq, level, temp in [(2, 65524, 29.5), (3, 12, 30.25), (4, 65535, 1e300), (5, 0, -0.0), (6, 7, 31.0)]:
        topic, data = DEV_TOPIC.format("DDATA"), usual(seq, level, temp)
        out, expected = run(topic, data), general(topic, data)
        lines = list(out.lines)
        assert (lines, reasons(out), rows(out)) == (expected.lines, reasons(expected), rows(expected))
    assert decoder.by_layout == 2  # seq 3 and 6; 2 taught it, 1e300 is out of range, a zero Double is protobuf's
    assert fields(lines[0]) == {"temp_c": "31.0", "water_level_cm": "7.0", "seq": "6i"}


def test_a_layout_never_reads_past_a_seq_gap_a_rebirth_or_a_device_gone() -> None:
    run = born(Run(decoder=Counted))
    decoder = run.decoder
    assert isinstance(decoder, Counted)
    run(DEV_TOPIC.format("DDATA"), usual(2))
    assert run(DEV_TOPIC.format("DDATA"), usual(3)).lines
    assert decoder.by_layout == 1
    gap = run(DEV_TOPIC.format("DDATA"), usual(5))
    assert reasons(gap) == [REBIRTH_REASON]
    assert not gap.lines
    born(run)  # NBIRTH seq 0, DBIRTH 1: new births, no layout yet
    assert run(DEV_TOPIC.format("DDATA"), usual(2)).lines
    assert decoder.by_layout == 1
    assert run(DEV_TOPIC.format("DDATA"), usual(3)).lines
    assert decoder.by_layout == 2
    run(DEV_TOPIC.format("DDEATH"), payload(seq=4))
    assert reasons(run(DEV_TOPIC.format("DDATA"), usual(5))) == [REBIRTH_REASON]
    born(run)
    run(DEV_TOPIC.format("DDATA"), usual(2))
    run(NODE_TOPIC.format("NDEATH"), payload(metric("bdSeq", dt=DataType.Int64, long_value=3), ts=None))
    assert reasons(run(DEV_TOPIC.format("DDATA"), usual(3))) == [REBIRTH_REASON]
    assert decoder.by_layout == 2


def test_a_layout_follows_the_registry_state_kind_and_model_of_its_device() -> None:
    registry = Registry(REGISTRY.devices[i].tags() for i in range(len(REGISTRY.devices)))
    counted, general = born(Run(registry=registry, decoder=Counted)), born(Run(registry=registry, decoder=GeneralOnly))
    decoder = counted.decoder
    assert isinstance(decoder, Counted)

    def alike(seq: int) -> tuple[list[str], list[Reason]]:
        temp, rssi = Payload.Metric(alias=12, double_value=29.5), Payload.Metric(alias=14, int_value=2**32 - 97)
        topic, data = DEV_TOPIC.format("DDATA"), ddata(seq, temp, rssi)  # fields of both kinds
        for m in data.metrics:
            m.timestamp = T + seq
        out, expected = counted(topic, data), general(topic, data)
        lines, refused = list(out.lines), reasons(out)
        assert (lines, refused, rows(out)) == (expected.lines, reasons(expected), rows(expected))
        return lines, refused

    alike(2)
    alike(3)
    assert decoder.by_layout == 1
    tags = registry.by_id[D].tags()
    registry.apply([tags._replace(state="suspended")])
    assert alike(4)[1] == [Reason.UNKNOWN_DEVICE]
    registry.apply([tags._replace(kind=Kind.WATER_QUALITY)])
    assert alike(5)[0][0].startswith("water_quality,")  # its take was compiled for salinity: not by it
    alike(6)
    assert decoder.by_layout == 2  # the layout, its take renewed
    registry.apply([tags._replace(kind=Kind.WATER_QUALITY, model="gw_spb")])  # no metric maps to a field of it
    assert alike(7)[1] == [Reason.MISSING_FIELD]
    assert alike(8)[1] == [Reason.MISSING_FIELD]  # nor by the layouts of the model before
    registry.apply([tags])
    alike(9)
    alike(10)
    assert decoder.by_layout == 3


def test_layouts_are_bounded_per_device_and_so_is_what_they_learn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sparkplug, "MAX_LAYOUTS_TRIED", 2)
    monkeypatch.setattr(sparkplug, "MAX_TOPICS", 2)
    run, general = born(Run(decoder=Counted)), born(Run(decoder=GeneralOnly))
    decoder = run.decoder
    assert isinstance(decoder, Counted)
    temp, level = metric(alias=12, timestamp=T, double_value=29.5), metric(alias=13, timestamp=T, int_value=7)
    orders = [(temp, level), (level, temp), (temp, level, metric(alias=14, timestamp=T, int_value=3))]
    seq = 2
    for ms in [orders[0], orders[0], orders[1], orders[1], orders[2], orders[2], orders[0], orders[1]]:
        topic, data = DEV_TOPIC.format("DDATA"), ddata(seq, *ms)
        out, expected = run(topic, data), general(topic, data)
        assert (out.lines, reasons(out)) == (expected.lines, reasons(expected))
        seq += 1
    assert decoder.by_layout == 4  # the first two orders, twice each after learning; the third: never learnt
    births = decoder._nodes[(G, E)].devices[D]
    assert [type(layout).__name__ for layout, _ in births.layouts] == ["Fixed", "Fixed", "Layout", "Layout"]
    assert births.tried == 2


def test_remembered_layouts_keep_the_newest_of_each_kind() -> None:
    births = sparkplug.Births()
    found = (Kind.SALINITY, None, ())
    learnt = []
    for alias in range(1, 7):
        msg = Payload(seq=1, metrics=[Payload.Metric(alias=alias, timestamp=T, double_value=1.5)])
        layout = Layouts().of(msg, msg.SerializeToString(), {})
        assert layout is not None
        learnt.append(alias)
        sparkplug._remember(births, layout, found)
        sparkplug._remember(births, layout.fixed(msg.SerializeToString()), found)
    kinds = [type(layout).__name__ for layout, _ in births.layouts]
    assert kinds == ["Fixed"] * sparkplug.MAX_FIXED + ["Layout"] * sparkplug.MAX_PATTERNS
    newest = [(alias,) for alias in learnt[-4:]]
    assert [layout.aliases for layout, _ in births.layouts] == newest + newest


TRAP_TOPIC = f"spBv1.0/{G}/{{}}/{E}/{TRAP}"
LAMP = st.one_of(
    st.fixed_dictionaries({"boolean_value": st.booleans()}),
    st.fixed_dictionaries({"int_value": st.sampled_from([0, 1, 5])}),  # a Boolean that carries an integer
    st.just({}),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lamps=st.lists(LAMP, min_size=1, max_size=6), counts=st.lists(st.integers(0, 1_000_000), min_size=6, max_size=6))
def test_a_trap_s_boolean_lamp_is_read_alike_by_the_fast_path_its_layout_and_the_general_path(
    lamps: list[dict[str, Any]], counts: list[int]
) -> None:
    birth = payload(
        metric("Trap/Lamp", 20, DataType.Boolean, boolean_value=True),
        eng(metric("Trap/BPH/Count", 21, DataType.UInt32, int_value=0), "count"),
        eng(metric("Air/Temp", 22, DataType.Double, double_value=27.0), "degC"),
        seq=1,
    )
    runs = Run(decoder=Counted), Run(decoder=GeneralOnly)
    messages = [(NODE_TOPIC.format("NBIRTH"), nbirth()), (TRAP_TOPIC.format("DBIRTH"), birth)]
    for n, (lamp, count) in enumerate(zip([{"boolean_value": True}, *lamps], counts, strict=False)):
        ms = [
            Payload.Metric(alias=20, timestamp=T + n, **lamp),
            Payload.Metric(alias=21, timestamp=T + n, int_value=count),
            Payload.Metric(alias=22, timestamp=T + n, double_value=26.5 + n),
        ]
        messages.append((TRAP_TOPIC.format("DDATA"), payload(*ms, seq=2 + n)))
    for topic, p in messages:
        fast, general = (run(topic, p) for run in runs)
        assert fast.lines == general.lines
        assert [(r.reason, r.detail) for r in fast.rejections] == [(r.reason, r.detail) for r in general.rejections]
        assert rows(fast) == rows(general)
    decoder = runs[0].decoder
    assert isinstance(decoder, Counted)
    usual = [lamp for lamp in lamps[: len(counts) - 1] if "boolean_value" in lamp]
    assert decoder.by_layout == len(usual)  # the first DATA taught the layout: every Boolean lamp after is read by it


def test_a_lamp_is_stored_as_1_or_0() -> None:
    run = Run()
    run(NODE_TOPIC.format("NBIRTH"), nbirth())
    run(TRAP_TOPIC.format("DBIRTH"), payload(metric("Trap/Lamp", 20, DataType.Boolean, boolean_value=True), seq=1))
    lamps = [(2, True), (3, False), (4, True)]
    topic = TRAP_TOPIC.format("DDATA")
    lines = [run(topic, payload(metric(alias=20, boolean_value=on), seq=s)).lines[0] for s, on in lamps]
    assert [fields(line)["lamp_on"] for line in lines] == ["1i", "0i", "1i"]
