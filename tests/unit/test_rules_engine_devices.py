"""A live registry: ``Engine.set_devices`` appends devices and re-tags existing ones while state carries on.

Each test compares the engine that followed the registry with engines built fresh on the same input.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from contract.fields import CAMERA_EVENTS
from rules.engine import Engine
from rules.errors import RulesError
from rules.model import DeviceInfo, Readings, Transition
from rules.pack import Pack, Rule, parse_pack
from tests.unit.test_rules_engine import EVENTS, T0, Cols, M, cols, device, engine, summary
from tests.unit.test_rules_reference import DEVICES, PACK, _random_batches

Batch = Mapping[str, Readings]

THRESHOLD_15M = {"type": "threshold", "field": "do_mg_l", "op": "<", "value": 3, "for": "15m"}


def key(t: Transition) -> tuple[object, ...]:
    """Everything a transition says, NaN values comparing equal."""
    value = "nan" if math.isnan(t.value) else t.value
    return (t.rule_id, t.device, t.device_id, t.state, t.ts_ms, value, t.severity, t.message_vi, t.message_en)


def keys(ts: Sequence[Transition]) -> list[tuple[object, ...]]:
    return [key(t) for t in ts]


def run(e: Engine, batches: Sequence[tuple[Batch, int]]) -> list[Transition]:
    return [t for batch, now in batches for t in e.evaluate(batch, now_ms=now)]


def only(batch: Batch, devices: range) -> dict[str, Readings]:
    """The rows of ``batch`` from ``devices``."""
    out: dict[str, Readings] = {}
    for k, c in batch.items():
        keep = (c.device >= devices.start) & (c.device < devices.stop)
        if keep.any():
            out[k] = Cols(c.device[keep], c.ts_ms[keep], {f: v[keep] for f, v in c.fields.items()})
    return out


def holders(e: Engine) -> Iterator[tuple[str, object]]:
    """Every compiled rule and the evaluators, gates and bucket rings it holds, by path."""

    def walk(obj: object, path: str) -> Iterator[tuple[str, object]]:
        yield path, obj
        for name, v in vars(obj).items():
            for i, item in enumerate(v if isinstance(v, list) else [v]):
                if type(item).__module__ == "rules.conditions":
                    yield from walk(item, f"{path}.{name}[{i}]")

    for c in e._rules:
        yield from walk(c, c.rule.id)


def state(e: Engine) -> Iterator[tuple[str, np.ndarray]]:
    """Every numpy array the engine keeps per rule, by path."""
    for path, obj in holders(e):
        for name, v in vars(obj).items():
            if isinstance(v, np.ndarray):
                yield f"{path}.{name}", v


def pack_engine(devices: Sequence[DeviceInfo], start_ms: int = T0) -> Engine:
    return Engine(PACK, devices, event_classes=CAMERA_EVENTS, start_ms=start_ms)


def rule_pack(condition: dict[str, Any], select: dict[str, list[str]], kind: str = "salinity") -> Pack:
    return parse_pack({"name": "t", "rules": [{
        "id": "RULE", "kind": kind, "select": select, "severity": "warning", "source": "t", "min_gap": "0s",
        "condition": condition, "message": {"vi": "{value} {place}", "en": "{value} {place}"}}]}, "t")  # fmt: skip


# --- 1. appended devices, ongoing state ----------------------------------------------------------


def test_an_appended_device_fires_as_in_a_fresh_engine_and_old_state_carries_on() -> None:
    """A is half-way through its 15 min when B is added, and has an active alert when C is."""
    a, b, c = (device(i, "water_quality") for i in range(3))
    batches: list[tuple[Batch, int]] = [
        ({"water_quality": cols([0, 0], [T0, T0 + 5 * M], do_mg_l=[2.5, 2.5])}, T0 + 5 * M),  # A half-way
        ({"water_quality": cols([1, 0, 1], [T0 + 10 * M] * 2 + [T0 + 20 * M], do_mg_l=[2, 2, 2])}, T0 + 20 * M),
        ({"water_quality": cols([0, 1], [T0 + 15 * M, T0 + 25 * M], do_mg_l=[2.5, 2.5])}, T0 + 25 * M),
        ({"water_quality": cols([0, 2, 0], [T0 + 30 * M, T0 + 30 * M, T0 + 35 * M], do_mg_l=[2, 1, 4])}, T0 + 35 * M),
    ]
    live = engine(THRESHOLD_15M, kind="water_quality", n=1)
    got = live.evaluate(batches[0][0], now_ms=batches[0][1])
    live.set_devices([a, b], now_ms=T0 + 6 * M)
    got += run(live, batches[1:3])
    live.set_devices([a, b, c], now_ms=T0 + 26 * M)
    got += run(live, batches[3:])

    fresh = run(engine(THRESHOLD_15M, kind="water_quality", n=3), batches)
    assert keys(got) == keys(fresh)
    assert summary(got) == [
        (0, "firing", T0 + 15 * M),  # the run begun before B was added
        (1, "firing", T0 + 25 * M),
        (0, "resolved", T0 + 35 * M),  # the alert active while C was added, not fired again at 30 min
    ]
    assert live.devices == (a, b, c)


def test_growing_by_nothing_changes_nothing() -> None:
    e = engine(THRESHOLD_15M, kind="water_quality", n=2)
    e.evaluate({"water_quality": cols([0], [T0], do_mg_l=[2.0])}, now_ms=T0)
    before = {p: a.copy() for p, a in state(e)}
    e.set_devices(list(e.devices), now_ms=T0 + M)
    after = dict(state(e))
    assert before.keys() == after.keys()
    assert all(np.array_equal(before[p], after[p], equal_nan=True) for p in before)


# --- 2. no data -----------------------------------------------------------------------------------


def test_a_device_added_later_is_silent_only_after_its_window_from_then() -> None:
    e = engine({"type": "no_data", "after": "10m"}, n=1)
    added = T0 + 30 * M

    def heard_from_a(now: int) -> list[tuple[int, str, int]]:
        return summary(e.evaluate({"salinity": cols([0], [now], salinity_ppt=[0.2])}, now_ms=now))

    assert heard_from_a(added - M) == []
    e.set_devices([device(0), device(1)], now_ms=added)
    assert heard_from_a(added + 5 * M) == []
    assert heard_from_a(added + 10 * M) == []  # exactly the window: not yet
    assert heard_from_a(added + 11 * M) == [(1, "firing", added + 11 * M)]
    back = e.evaluate({"salinity": cols([1], [added + 12 * M], salinity_ppt=[0.2])}, now_ms=added + 12 * M)
    assert summary(back) == [(1, "resolved", added + 12 * M)]


# --- 3. changed tags ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "inside", "outside"), [("crop", "rice", "durian"), ("province", "soc_trang", "ben_tre")]
)
def test_a_retagged_device_is_selected_by_its_new_tags(tag: str, inside: str, outside: str) -> None:
    """d0 moves into the rule's selector, d1 out of it while its alert is active (left alone)."""
    pack = rule_pack({"type": "threshold", "field": "salinity_ppt", "op": ">=", "value": 2}, {tag: [inside]})
    d0, d1 = (dataclasses.replace(device(0), **{tag: outside}), dataclasses.replace(device(1), **{tag: inside}))
    e = Engine(pack, [d0, d1], start_ms=T0)
    first = e.evaluate({"salinity": cols([0, 1], [T0, T0], salinity_ppt=[3, 3])}, now_ms=T0)
    assert summary(first) == [(1, "firing", T0)]

    moved = dataclasses.replace(d0, **{tag: inside}, place_en="Tran De, Soc Trang")
    e.set_devices([moved, dataclasses.replace(d1, **{tag: outside})], now_ms=T0 + M)
    out = e.evaluate({"salinity": cols([0, 1, 1], [T0 + 2 * M, T0 + 2 * M, T0 + 3 * M],
                                       salinity_ppt=[3, 0.1, 3])}, now_ms=T0 + 3 * M)  # fmt: skip
    assert summary(out) == [(0, "firing", T0 + 2 * M)]  # d1: neither resolved nor fired again
    assert out[0].message_en == "3 Tran De, Soc Trang"  # named with its new place

    fresh = Engine(pack, e.devices, start_ms=T0)  # what the new tags select, from scratch
    again = {"salinity": cols([0, 1], [T0 + 4 * M, T0 + 4 * M], salinity_ppt=[3, 3])}
    assert summary(fresh.evaluate(again, now_ms=T0 + 4 * M)) == [(0, "firing", T0 + 4 * M)]
    assert e.evaluate(again, now_ms=T0 + 4 * M) == []  # d0 already firing, d1 not watched


def test_a_device_moved_into_a_no_data_rule_starts_its_clock_then() -> None:
    """Not reported silent since the engine started, only ``after`` past the move."""
    pack = rule_pack({"type": "no_data", "after": "10m"}, {"province": ["soc_trang"]})
    e = Engine(pack, [device(0)], start_ms=T0)
    assert e.tick(T0 + 30 * M) == []  # not selected: not watched
    e.set_devices([dataclasses.replace(device(0), province="soc_trang")], now_ms=T0 + 40 * M)
    assert e.tick(T0 + 50 * M) == []
    assert summary(e.tick(T0 + 51 * M)) == [(0, "firing", T0 + 51 * M)]


# --- 4. the list may only grow --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "match"),
    [
        ([0], "never removed"),
        ([1, 0, 2], "device 0 was 'd0', now 'd1'"),
        ([0, 2, 1, 3], "device 1 was 'd1', now 'd2'"),
        ([0, 1, 2, 1], "duplicate"),
        ([0, 3, 2], "device 1 was 'd1', now 'd3'"),  # an id replaced in place
    ],
)
def test_shrinking_reordering_or_duplicating_raises(order: list[int], match: str) -> None:
    e = engine(THRESHOLD_15M, kind="water_quality", n=3)
    before = e.devices
    with pytest.raises(RulesError, match=match):
        e.set_devices([device(i, "water_quality") for i in order], now_ms=T0)
    assert e.devices == before
    assert {len(a) for _, a in state(e)} == {3}  # nothing grown half-way


# --- 5. the default pack: every evaluator -----------------------------------------------------------


@pytest.mark.parametrize("k", [0, 3, 7])
def test_grown_state_is_a_fresh_engines_state(k: int) -> None:
    """Every per-device array of every rule, evaluator, gate and bucket ring, as built new."""
    grown = pack_engine(DEVICES[:k])
    grown.set_devices(DEVICES, now_ms=T0)
    fresh = pack_engine(DEVICES)
    slots = {c.rule.id: len(c.members) for c in fresh._rules}
    got, want = dict(state(grown)), dict(state(fresh))
    assert got.keys() == want.keys()
    for path, a in want.items():
        assert got[path].dtype == a.dtype, path
        assert np.array_equal(got[path], a, equal_nan=True), path
        assert len(a) == slots[path.split(".")[0]], path  # one slot per device the rule selects
    assert {type(obj).__name__ for _, obj in holders(grown)} == {
        "_CompiledRule", "ThresholdEval", "WindowEval", "BucketStats", "TrendGate", "ChangeEval", "SurgeEval",
        "AfterPeakEval", "NoDataEval", "EventEval",
    }  # fmt: skip


@pytest.mark.parametrize(("k", "seed"), [(0, 0), (2, 1), (5, 2)])
def test_grown_at_start_gives_a_fresh_engines_transitions(k: int, seed: int) -> None:
    batches = _random_batches(seed)
    grown = pack_engine(DEVICES[:k])
    grown.set_devices(DEVICES, now_ms=T0)
    want = run(pack_engine(DEVICES), batches)
    assert len({t.rule_id for t in want}) >= 15
    assert keys(run(grown, batches)) == keys(want)


@pytest.mark.parametrize(("k", "seed"), [(3, 3), (5, 4), (6, 5)])
def test_grown_mid_stream_old_and_new_devices_match_their_fresh_engines(k: int, seed: int) -> None:
    """Old devices as if nothing happened; new ones as an engine started when they were added."""
    batches = _random_batches(seed)
    half = len(batches) // 2
    old, new = range(k), range(k, len(DEVICES))
    added = batches[half - 1][1]
    prefix = [(only(b, old), now) for b, now in batches[:half]]

    live = pack_engine(DEVICES[:k])
    got = run(live, prefix)
    live.set_devices(DEVICES, now_ms=added)
    got += run(live, batches[half:])

    old_fresh = run(pack_engine(DEVICES[:k]), prefix + [(only(b, old), now) for b, now in batches[half:]])
    new_fresh = run(pack_engine(DEVICES, start_ms=added), batches[half:])
    assert keys([t for t in got if t.device in old]) == keys(old_fresh)
    assert keys([t for t in got if t.device in new]) == keys([t for t in new_fresh if t.device in new])
    assert len({t.rule_id for t in got if t.device in new}) >= 3
    assert len(old_fresh) > 10


def test_event_rules_grow_with_the_engines_event_classes() -> None:
    e = engine({"type": "event", "event": "smoke_fire", "resolve_after": "30m"}, kind="camera", n=1)
    e.set_devices([device(0, "camera"), device(1, "camera")], now_ms=T0)
    smoke = EVENTS.index("smoke_fire")
    ev = cols([1], [T0 + M], event_code=[smoke], confidence=[0.9], frames=[3])
    assert summary(e.evaluate({"camera_event": ev}, now_ms=T0 + M)) == [(1, "firing", T0 + M)]


# --- 6. state sized by the devices a rule selects ---------------------------------------------------


def selects(rule: Rule, d: DeviceInfo) -> bool:
    """The selector's meaning, device by device (what the engine computes with numpy)."""
    s = rule.select
    tags = all(not getattr(s, t) or getattr(d, t) in getattr(s, t) for t in ("province", "district", "site", "crop"))
    return d.kind == rule.kind and tags and (not s.devices or d.id in s.devices)


def test_a_rules_state_has_one_slot_per_device_it_selects() -> None:
    """10 salinity stations among 100 devices: a salinity rule keeps 10-long arrays, not 100."""
    rng = random.Random(6)
    others = [device(i, rng.choice(["water_quality", "light_trap", "camera"]), crop=rng.choice(["rice", "shrimp"]),
                     site=rng.choice(["river", "pond", "kitchen"])) for i in range(90)]  # fmt: skip
    salinity = [device(90 + i, crop="rice" if i < 4 else "durian") for i in range(10)]
    devices = others[:45] + salinity + others[45:]
    e = pack_engine(devices)
    sizes = {c.rule.id: len(c.members) for c in e._rules}
    assert (sizes["SAL_1PPT"], sizes["SAL_RICE_2"], sizes["SAL_FRUIT"]) == (10, 4, 6)
    for c in e._rules:
        want = [i for i, d in enumerate(devices) if selects(c.rule, d)]
        assert c.members.tolist() == want, c.rule.id
        assert c.local[want].tolist() == list(range(len(want))), c.rule.id
    for path, a in state(e):
        assert a.shape[0] == sizes[path.split(".")[0]], path  # rule, evaluator, gates, bucket rings
    assert {a.shape for p, a in state(e) if p.startswith("SAL_SAFE.")} >= {(10,), (10, 25)}  # the 1 h trend gate


def test_a_device_retagged_out_and_back_keeps_its_slot_and_fires_as_in_a_fresh_engine() -> None:
    """d0 leaves the rice rule (readings then ignored, slot kept), d1 joins (a new slot), d0 comes back."""
    pack = rule_pack({"type": "threshold", "field": "salinity_ppt", "op": ">=", "value": 2, "consecutive": 2},
                     {"crop": ["rice"]})  # fmt: skip
    rice, durian = (dataclasses.replace(device(i), crop="rice") for i in (0, 2)), device(1)
    d0, d2 = rice
    e = Engine(pack, [d0, durian, d2], start_ms=T0)
    c = e._rules[0]
    before = e.evaluate({"salinity": cols([0, 0, 0, 2], [T0, T0 + M, T0 + 2 * M, T0], salinity_ppt=[3, 3, 1, 1])},
                        now_ms=T0 + 2 * M)  # fmt: skip
    assert summary(before) == [(0, "firing", T0 + M), (0, "resolved", T0 + 2 * M)]
    assert c.members.tolist() == [0, 2]

    e.set_devices([dataclasses.replace(d0, crop="durian"), durian, d2], now_ms=T0 + 3 * M)
    kept = {p: a.copy() for p, a in state(e)}
    out = {"salinity": cols([0, 0], [T0 + 4 * M, T0 + 5 * M], salinity_ppt=[3, 3])}
    assert e.evaluate(out, now_ms=T0 + 5 * M) == []  # not selected: its readings are not seen
    assert all(np.array_equal(kept[p], a) for p, a in state(e))  # its slot is left as it was

    e.set_devices([dataclasses.replace(d0, crop="durian"), dataclasses.replace(durian, crop="rice"), d2],
                  now_ms=T0 + 6 * M)  # fmt: skip
    assert c.members.tolist() == [0, 2, 1]  # d1 appended
    e.set_devices([d0, dataclasses.replace(durian, crop="rice"), d2], now_ms=T0 + 7 * M)
    assert c.members.tolist() == [0, 2, 1]  # d0 back in its old slot
    assert c.local.tolist() == [0, 2, 1]
    assert {len(a) for _, a in state(e)} == {3}

    after: list[tuple[Batch, int]] = [
        ({"salinity": cols([0, 1, 2, 1], [T0 + 8 * M] * 3 + [T0 + 9 * M], salinity_ppt=[3, 3, 3, 3])}, T0 + 9 * M),
        ({"salinity": cols([0, 1, 0], [T0 + 10 * M, T0 + 10 * M, T0 + 11 * M], salinity_ppt=[3, 1, 1])}, T0 + 11 * M),
    ]
    got = run(e, after)
    assert keys(got) == keys(run(Engine(pack, e.devices, start_ms=T0), after))
    assert summary(got) == [(1, "firing", T0 + 9 * M), (0, "firing", T0 + 10 * M), (1, "resolved", T0 + 10 * M),
                            (0, "resolved", T0 + 11 * M)]  # fmt: skip


def test_selection_follows_retagging_and_slots_are_never_reused() -> None:
    """A random fleet re-tagged and grown three times: each rule selects what its selector says,
    devices keep their slots, and new slots go only to devices without one."""
    rng = random.Random(11)
    values = {
        "kind": ["salinity", "water_quality", "light_trap", "camera"],
        "province": ["ben_tre", "soc_trang"],
        "district": ["ba_tri", "tran_de"],
        "site": ["river", "canal", "pond", "kitchen", "road"],
        "crop": ["rice", "durian", "shrimp", "pangasius", ""],
    }

    def tagged(d: DeviceInfo) -> DeviceInfo:
        return dataclasses.replace(d, **{t: rng.choice(v) for t, v in values.items()})

    named = parse_pack({"name": "n", "rules": [{
        "id": "NAMED", "kind": "salinity", "select": {"devices": ["d3", "d7", "d250"], "crop": ["rice"]},
        "severity": "warning", "source": "t", "condition": {"type": "no_data", "after": "1h"},
        "message": {"vi": "x", "en": "x"}}]}, "n")  # fmt: skip
    pack = Pack(name="p", rules=(*PACK.rules, *named.rules))
    devices = [tagged(device(i)) for i in range(200)]
    for i in (3, 7):  # named by NAMED, and selected by it at first
        devices[i] = dataclasses.replace(devices[i], kind="salinity", crop="rice")
    e = Engine(pack, devices, event_classes=CAMERA_EVENTS, start_ms=T0)
    slots_before: dict[str, list[int]] = {}
    for step in range(4):
        if step:
            devices = [tagged(d) if rng.random() < 0.3 else d for d in devices] + [
                tagged(device(i)) for i in range(len(devices), len(devices) + 30)
            ]
            e.set_devices(devices, now_ms=T0 + step * M)
        for c in e._rules:
            want = [i for i, d in enumerate(devices) if selects(c.rule, d)]
            members = c.members.tolist()
            assert np.flatnonzero(c.sel.mask).tolist() == want, (step, c.rule.id)
            before = slots_before.get(c.rule.id, [])
            assert members[: len(before)] == before  # a slot, once given, stays its device's
            assert members[len(before) :] == sorted(set(want) - set(before))  # new slots: newly selected only
            assert [c.local[g] for g in members] == list(range(len(members)))
            assert (c.local >= 0).sum() == len(members)
            assert {a.shape[0] for p, a in state(e) if p.split(".")[0] == c.rule.id} == {len(members)}
            slots_before[c.rule.id] = members
    assert len(e.devices) == 290
    assert slots_before["NAMED"][:2] == [3, 7]
    assert all(len(c.members) < 200 for c in e._rules)


def test_a_restored_alert_of_a_device_the_rule_does_not_select_waits_in_its_slot() -> None:
    """As before slots: counted as restored, left alone while unselected, resolved once back and clear."""
    pack = rule_pack({"type": "threshold", "field": "salinity_ppt", "op": ">=", "value": 2}, {"crop": ["rice"]})
    d0, d1 = device(0), dataclasses.replace(device(1), crop="rice")
    e = Engine(pack, [d0, d1], start_ms=T0)
    c = e._rules[0]
    assert e.restore_active([("RULE", "d0"), ("RULE", "d1")]) == 2
    assert (c.members.tolist(), c.alert_on.tolist()) == ([1, 0], [True, True])
    assert e.evaluate({"salinity": cols([0], [T0], salinity_ppt=[0.1])}, now_ms=T0) == []  # not selected
    e.set_devices([dataclasses.replace(d0, crop="rice"), d1], now_ms=T0 + M)
    assert c.members.tolist() == [1, 0]
    out = e.evaluate({"salinity": cols([0, 1], [T0 + 2 * M] * 2, salinity_ppt=[0.1, 3])}, now_ms=T0 + 2 * M)
    assert summary(out) == [(0, "resolved", T0 + 2 * M)]  # d1 still firing: not fired again
