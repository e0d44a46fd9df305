"""The flat fast path (:mod:`ingest.sources.shapes`) stores exactly what the general path stores —
the same row and line — and stays out of everything else (the general path refuses it)."""

from __future__ import annotations

import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from contract.fields import Kind
from contract.fleet import Device, Fleet
from ingest.batch import BatchBuilder
from ingest.registry import Registry
from ingest.sources.config import Model
from ingest.sources.mapping import FieldMapper
from ingest.sources.shapes import EXTRA, FlatShapes
from ingest.sources.sink import ReadingSink

NOW = int(time.time() * 1000)
MODELS = {
    "probe": Model.model_validate({"fields": {
        "salinity_ppt": {"path": ["sal", "salinity"]},  # two keys, ranked
        "ec_us_cm": {"path": "ec", "unit": "mS/cm"},  # converted
        "temp_c": {"path": ["temp", "data.temp"], "unit": "Cel"},  # a dotted path after a flat one
        "battery_v": "bat",
        "battery_pct": "bat_pct",  # a status field
        "ph": "ph",  # not a salinity field
    }}),
    "nested": Model.model_validate({"fields": {"salinity_ppt": "data.sal", "temp_c": "t"}}),
    "scaled": Model.model_validate({"fields": {  # each conversion an operator in the take's text
        "salinity_ppt": {"path": "sal", "unit": "%"},  # *
        "water_level_cm": {"path": "ec", "unit": "mm"},  # /
        "temp_c": {"path": "temp", "unit": "K"},  # -
        "battery_v": {"path": "bat", "unit": "mV"},  # /
        "rssi_dbm": {"path": "other", "unit": "dBm"},  # a unit of ours
        "air_temp_c": {"path": "data", "unit": "degF"},  # a call (not this kind's field)
    }}),
}  # fmt: skip
FLEET = Fleet(devices=(Device(id="s-1", kind=Kind.SALINITY, province="ben_tre", district="ba_tri", site="river",
                              lat=10.0, lon=106.0),))  # fmt: skip
KEYS = ["sal", "salinity", "ec", "temp", "data", "bat", "bat_pct", "ph", "other"]
VALUES = st.one_of(
    st.floats(-100, 100_000),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e300]),
    st.integers(-10, 100_000),
    st.just(10**400),
    st.sampled_from(["24.59", " 3.5 ", "No Sensor", "nan", "1e400", "", "7"]),
    st.none(),
    st.booleans(),
    st.fixed_dictionaries({"temp": st.floats(0, 40)}),
)


def _rows(out: BatchBuilder) -> dict[str, list[tuple[Any, ...]]]:
    """The rows the rule engine gets, by kind, with their types (1 and 1.0 differ here)."""
    return {k: [(type(v), v) for v in r.records] for k, r in out._rows.items() if r.records}


def _alike(took: bool, fast: BatchBuilder, general: BatchBuilder) -> None:
    """The fast path stored what the general path stored, and nothing was refused; or it did nothing."""
    if not took:
        assert (fast.lines, fast.readings, fast.rejections) == ([], 0, [])
        return
    assert fast.lines == general.lines
    assert general.rejections == []
    assert _rows(fast) == _rows(general)


def _general(mapper: FieldMapper, model: str, obj: dict[str, Any], extra: float | None, ts: int) -> BatchBuilder:
    device = Registry.from_fleet(FLEET).devices[0]
    out = BatchBuilder()
    values, refused = mapper.values(model, obj)
    if values and extra is not None:
        values.setdefault(EXTRA, extra)
    ReadingSink().mapped("t", b"p", device, ts, 7, values, refused, now_ms=NOW, out=out)
    return out


@settings(max_examples=600, deadline=None)
@given(
    model=st.sampled_from(["probe", "nested", "scaled", "unknown"]),
    obj=st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6),
    extra=st.one_of(st.none(), st.floats(-140, 0)),
    ts=st.sampled_from([NOW - 60_000, 0, NOW + 3_600_000]),
)
def test_the_fast_path_stores_what_the_general_path_stores(
    model: str, obj: dict[str, Any], extra: float | None, ts: int
) -> None:
    mapper = FieldMapper(MODELS)
    device = Registry.from_fleet(FLEET).devices[0]
    fast = BatchBuilder()
    took = FlatShapes(mapper).reading(device, model, obj, ts, 7, extra=extra, now_ms=NOW, out=fast)
    _alike(took, fast, _general(mapper, model, obj, extra, ts))


def test_the_usual_payloads_take_the_fast_path() -> None:
    mapper = FieldMapper(MODELS)
    device = Registry.from_fleet(FLEET).devices[0]
    shapes = FlatShapes(mapper)
    out = BatchBuilder()
    assert shapes.reading(device, "probe", {"sal": "0.61", "ec": 1.2, "temp": 29.5}, NOW, 3, extra=-97.0, now_ms=NOW,
                          out=out)  # fmt: skip
    assert out.lines == [f"{device.series} ec_us_cm=1200.0,salinity_ppt=0.61,temp_c=29.5,rssi_dbm=-97.0,seq=3i {NOW}"]
    # what the general path must say something about, it keeps
    for obj in ({"sal": "No Sensor"}, {"sal": 0.5, "bat_pct": 80}, {"ph": 7.0}, {"other": 1.0}, {"sal": None}):
        assert not shapes.reading(device, "probe", obj, NOW, 3, now_ms=NOW, out=out), obj
    assert not shapes.reading(device, "nested", {"t": 20.0, "data": {"sal": 1.0}}, NOW, 3, now_ms=NOW, out=out)
    assert not shapes.reading(device, "unknown", {"salinity_ppt": 1.0}, NOW, 3, now_ms=NOW, out=out)


OURS = ["salinity_ppt", "ec_us_cm", "temp_c", "water_level_cm", "battery_v", "rssi_dbm", "battery_pct", "ph",
        "bph_count", "other"]  # fmt: skip
EDGES = st.sampled_from([-1000.5, -1000, -150.0, -150.5, -5, -5.5, -0.5, -0.0, 0, 0.0, 1.0, 2.5, 14.5, 50, 50.5, 60,
                         60.5, 1000, 1000.5, 100_000.0, 100_000.5, "-0.5", "50.5"])  # fmt: skip
"""Values at and just past the fields' ranges."""


@settings(max_examples=600, deadline=None)
@given(
    values=st.dictionaries(st.sampled_from(OURS), st.one_of(VALUES, EDGES), max_size=6),
    ts=st.sampled_from([NOW - 60_000, 0, NOW + 3_600_000]),
    seq=st.sampled_from([0, 7, -1, 2**40]),
)
def test_values_by_our_names_are_stored_as_the_sink_stores_them(values: dict[str, Any], ts: int, seq: int) -> None:
    device = Registry.from_fleet(FLEET).devices[0]
    fast = BatchBuilder()
    took = FlatShapes(FieldMapper(MODELS)).ours(device, values, ts, seq, now_ms=NOW, out=fast)
    general = BatchBuilder()
    ReadingSink().reading("t", b"p", device, ts, seq, values, now_ms=NOW, out=general)
    _alike(took, fast, general)


class _Item:
    """An item of a positional take: its value an attribute (as a SenML record's ``v``)."""

    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v


@settings(max_examples=600, deadline=None)
@given(
    model=st.sampled_from(["probe", "nested", "scaled", "unknown"]),
    obj=st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6),
    units=st.lists(st.sampled_from([None, "Cel", "K", "mS/cm", "S/m", "%", "mV", "furlong"]), min_size=6, max_size=6),
    ts=st.sampled_from([NOW - 60_000, 0, NOW + 3_600_000]),
)
def test_a_positional_take_stores_what_the_take_of_the_mapping_stores(
    model: str, obj: dict[str, Any], units: list[str | None], ts: int
) -> None:
    """:meth:`FlatShapes.positional`, reading items in the keys' order, stores what :meth:`FlatShapes.reading`
    stores of the mapping, and does nothing where it does nothing."""
    mapper = FieldMapper(MODELS)
    device = Registry.from_fleet(FLEET).devices[0]
    keys = tuple(obj)
    given_units = dict(zip(keys, units, strict=False))
    by_key, by_position = BatchBuilder(), BatchBuilder()
    took = FlatShapes(mapper).reading(device, model, obj, ts, 0, units=given_units, now_ms=NOW, out=by_key)
    take = FlatShapes(mapper).positional(model, device.device_kind, keys, tuple(map(given_units.get, keys)), "v")
    taken = take is not None and FlatShapes.take(
        take, device, [_Item(obj[k]) for k in keys], ts, 0, now_ms=NOW, out=by_position
    )
    assert taken == took
    assert (by_position.lines, _rows(by_position)) == (by_key.lines, _rows(by_key))


def test_positional_takes_of_one_model_and_keys_are_made_once() -> None:
    shapes = FlatShapes(FieldMapper(MODELS))
    kind = Kind.SALINITY
    take = shapes.positional("probe", kind, ("sal", "temp"), (None, "K"), "v")
    assert take is not None
    assert shapes.positional("probe", kind, ("sal", "temp"), (None, "K"), "v") is take
    assert shapes.positional("probe", kind, ("sal", "temp"), (None, None), "v") is not take
    assert shapes.positional("probe", kind, ("temp", "sal"), (None, "K"), "v") is not take
