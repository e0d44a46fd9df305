"""The fleet model: contract-valid readings, schedules, faults, determinism and speed."""

from __future__ import annotations

import itertools
import json
import math
import time
from collections import defaultdict
from typing import Any

import numpy as np
import pytest

from contract.fields import CAMERA_EVENTS, EVENT_FIELDS, TELEMETRY_FIELDS, FieldSpec, Kind
from contract.fleet import Device, Fleet
from contract.topics import Channel
from simulators.fleetgen import generate_fleet
from simulators.model import FleetModel, SimMessage
from simulators.signals import LOCAL_OFFSET_MS, MS_PER_DAY, MS_PER_H, TRAP_SPECIES

MAR_2024 = 1_710_000_000_000  # 2024-03-09T16:00Z, dry season
JUL_2024 = 1_720_000_000_000  # 2024-07-03T09:46Z, wet season
MIN = 60_000


def device(
    id: str,
    kind: Kind = Kind.SALINITY,
    *,
    site: str = "river",
    crop: str = "rice",
    faults: tuple[str, ...] = (),
    province: str = "ben_tre",
    km: float = 30.0,
) -> Device:
    return Device.model_validate(
        {
            "id": id,
            "kind": kind,
            "province": province,
            "district": "ba_tri",
            "site": site,
            "crop": crop,
            "lat": 10.04,
            "lon": 106.6,
            "km_from_sea": km,
            "faults": faults,
        }
    )


def run(fleet: Fleet, t0: int, t1: int, *, seed: int = 1, interval_s: float = 600.0, **kw: Any) -> list[SimMessage]:
    return FleetModel(fleet, seed=seed, interval_s=interval_s, **kw).between(t0, t1)


def of(msgs: list[SimMessage], device_id: str) -> list[SimMessage]:
    return [m for m in msgs if m.device.id == device_id]


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return generate_fleet(200, seed=11)


@pytest.fixture(scope="module")
def three_days(fleet: Fleet) -> list[SimMessage]:
    return run(fleet, MAR_2024, MAR_2024 + 3 * MS_PER_DAY, seed=11)


# --- the contract -------------------------------------------------------------------------------


def check_value(spec: FieldSpec, value: Any) -> None:
    if spec.type == "string":
        assert isinstance(value, str)
        assert len(value) <= spec.max_length
        return
    if spec.type == "int":
        assert type(value) is int, (spec.name, value)
    else:
        assert type(value) is float, (spec.name, value)
        assert math.isfinite(value)
    assert spec.lo <= value <= spec.hi, (spec.name, value)


def check_message(m: SimMessage, t0: int, t1: int) -> None:
    r = m.reading
    if m.channel is Channel.STATUS:
        assert r == {"state": "offline"}
        assert t0 <= m.ts_ms < t1
        return
    assert type(r["ts"]) is int
    assert t0 <= r["ts"] < t1
    assert r["ts"] == m.ts_ms
    assert type(r["seq"]) is int
    assert r["seq"] >= 0
    if m.channel is Channel.TELEMETRY:
        specs = {s.name: s for s in TELEMETRY_FIELDS[m.device.kind]}
        rest = set(r) - {"ts", "seq"}
    else:
        assert m.device.kind is Kind.CAMERA
        assert m.channel is Channel.EVENT
        assert r["event"] in CAMERA_EVENTS
        specs = {s.name: s for s in EVENT_FIELDS}
        rest = set(r) - {"ts", "seq", "event"}
    assert rest, "a reading carries at least one measurement"
    assert rest <= set(specs), rest - set(specs)
    for name in rest:
        check_value(specs[name], r[name])
    json.dumps(r, allow_nan=False)


def test_every_reading_uses_contract_fields_types_and_ranges(three_days: list[SimMessage]) -> None:
    assert len(three_days) > 50_000
    for m in three_days:
        check_message(m, MAR_2024, MAR_2024 + 3 * MS_PER_DAY)


def test_wet_season_readings_also_stay_in_the_contract() -> None:
    fleet = generate_fleet(120, seed=5)
    t0 = JUL_2024 + 90 * MS_PER_DAY  # October: king tides, rain, flood season
    msgs = run(fleet, t0, t0 + 2 * MS_PER_DAY, seed=5, interval_s=900)
    for m in msgs:
        check_message(m, t0, t0 + 2 * MS_PER_DAY)
    assert any(m.reading.get("event") == "flooding" for m in msgs)


def test_every_kind_channel_and_event_class_appears(three_days: list[SimMessage]) -> None:
    kinds = {(m.device.kind, m.channel) for m in three_days}
    assert {(k, Channel.TELEMETRY) for k in Kind} <= kinds
    assert (Kind.CAMERA, Channel.EVENT) in kinds
    events = {m.reading["event"] for m in three_days if m.channel is Channel.EVENT}
    assert {"traffic_violation", "smoke_fire", "hygiene_violation"} <= events


def test_messages_sorted_and_seq_counts_up_per_device(three_days: list[SimMessage]) -> None:
    ts = [m.ts_ms for m in three_days]
    assert ts == sorted(ts)
    seqs: dict[str, list[int]] = defaultdict(list)
    for m in three_days:
        if "seq" in m.reading:
            seqs[m.device.id].append(int(m.reading["seq"]))
    for s in seqs.values():
        assert s == list(range(len(s)))


# --- schedules and shapes -----------------------------------------------------------------------


def test_continuous_sensors_report_every_interval() -> None:
    fleet = Fleet(
        devices=(
            device("a"),
            device("b", Kind.WATER_QUALITY, site="canal"),
            device("c", Kind.CAMERA, site="market", crop="none"),
        )
    )
    msgs = run(fleet, MAR_2024, MAR_2024 + MS_PER_DAY, interval_s=300)
    for d in ("a", "b", "c"):
        ts = [m.ts_ms for m in of(msgs, d) if m.channel is Channel.TELEMETRY]
        assert len(ts) == 288
        assert set(np.diff(ts).tolist()) == {300_000}


def test_light_trap_reports_hourly_at_night_and_totals_at_six() -> None:
    fleet = Fleet(devices=(device("trap", Kind.LIGHT_TRAP, site="field"),))
    start = MAR_2024 - (MAR_2024 + LOCAL_OFFSET_MS) % MS_PER_DAY + 12 * MS_PER_H  # local noon
    msgs = run(fleet, start, start + 4 * MS_PER_DAY)
    night: list[dict[str, Any]] = []
    totals_seen = 0
    for m in msgs:
        r = m.reading
        hour = ((m.ts_ms + LOCAL_OFFSET_MS) % MS_PER_DAY) // MS_PER_H
        assert (m.ts_ms % MS_PER_H) < 20_000, "at the top of the hour"
        if hour in (9, 12, 15, 18):
            assert set(r) == {"ts", "seq", "lamp_on", "battery_v", "rssi_dbm"}
            assert r["lamp_on"] == 0
            continue
        assert hour in (19, 20, 21, 22, 23, 0, 1, 2, 3, 4, 5, 6), hour
        assert r["interval_s"] == 3600
        assert r["lamp_on"] == 1
        assert {f"{s}_count" for s in TRAP_SPECIES} <= set(r)
        assert {"air_temp_c", "humidity_pct", "battery_v", "rssi_dbm"} <= set(r)
        night.append(r)
        if hour == 6:
            assert len(night) == 12
            for s in TRAP_SPECIES:
                assert r[f"{s}_night"] == sum(int(x[f"{s}_count"]) for x in night)
            totals_seen += 1
            night = []
        else:
            assert not any(k.endswith("_night") for k in r)
    assert totals_seen == 4


def test_light_trap_counts_are_realistic_over_a_season() -> None:
    traps = tuple(
        device(f"t{i}", Kind.LIGHT_TRAP, site="field", province=p)
        for i, p in enumerate(("ben_tre", "ca_mau", "dong_thap", "long_an"))
    )
    model = FleetModel(Fleet(devices=traps), seed=2)
    nights = [m.reading for m in model.between(MAR_2024, MAR_2024 + 120 * MS_PER_DAY) if "bph_night" in m.reading]
    bph = np.array([r["bph_night"] for r in nights])
    moths = np.array([max(r["leaffolder_night"], r["stemborer_night"]) for r in nights])
    assert 2 <= np.median(bph) <= 80
    assert 300 <= bph.max() <= 1600, "migration surges reach the hundreds to ~1,300"
    assert np.median(moths) <= 6
    assert moths.max() >= 50, "occasional moth surges"


def test_pond_oxygen_is_lowest_around_dawn(three_days: list[SimMessage]) -> None:
    by_day: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    for m in three_days:
        d = m.device
        if d.kind is Kind.WATER_QUALITY and d.site == "pond" and not d.faults:
            local = m.ts_ms + LOCAL_OFFSET_MS
            by_day[(d.id, local // MS_PER_DAY)].append((float(m.reading["do_mg_l"]), (local % MS_PER_DAY) / MS_PER_H))
    dawn_minima = [min(v)[1] for v in by_day.values() if len(v) == 144]
    assert len(dawn_minima) >= 10
    assert sum(3.5 <= h <= 7.5 for h in dawn_minima) >= 0.8 * len(dawn_minima)


def test_camera_events_carry_their_class_fields(three_days: list[SimMessage]) -> None:
    events = [m for m in three_days if m.channel is Channel.EVENT]
    assert events
    for m in events:
        r = m.reading
        assert {"confidence", "frames"} <= set(r)
        if r["event"] == "video_loss":
            assert "image_url" not in r
            continue
        assert r["image_url"] == f"https://cam.example.invalid/{m.device.id}/{r['ts']}.jpg"
        if r["event"] == "traffic_violation":
            assert m.device.site == "road"
            assert "speed_kmh" in r
        if r["event"] == "flooding":
            assert "water_above_line_cm" in r
    fires = [m for m in events if m.reading["event"] == "smoke_fire"]
    cameras = {d.id for d in generate_fleet(200, seed=11).devices if d.kind is Kind.CAMERA}
    assert len(fires) <= len(cameras), "about one fire alarm per camera every few days"


# --- faults -------------------------------------------------------------------------------------


def twins(fault: str, kind: Kind = Kind.SALINITY, **kw: Any) -> tuple[Fleet, Fleet]:
    """The same device with and without ``fault`` (draws are keyed by id, so all else is equal)."""
    return (Fleet(devices=(device("twin", kind, faults=(fault,), **kw),)), Fleet(devices=(device("twin", kind, **kw),)))


def values(msgs: list[SimMessage], *names: str) -> list[tuple[Any, ...]]:
    return [tuple(m.reading[n] for n in names) for m in msgs]


def test_drift_slides_and_steps_back_after_cleaning() -> None:
    faulty, clean = twins("drift")
    t1 = MAR_2024 + 40 * MS_PER_DAY
    a = values(run(faulty, MAR_2024, t1, interval_s=3600), "ec_us_cm", "temp_c")
    b = values(run(clean, MAR_2024, t1, interval_s=3600), "ec_us_cm", "temp_c")
    ratio = np.array([x[0] / y[0] for x, y in zip(a, b, strict=True)])
    assert ratio.max() > 0.99
    assert ratio.min() < 0.87
    assert np.diff(ratio).max() > 0.1, "a cleaning steps the reading back"
    assert [x[1] for x in a] == [y[1] for y in b], "temperature does not drift"


def test_stuck_sensor_repeats_one_value_for_hours() -> None:
    faulty, clean = twins("stuck")
    t1 = MAR_2024 + 16 * MS_PER_DAY
    fields = ("ec_us_cm", "salinity_ppt", "temp_c", "water_level_cm")

    def longest_run(rows: list[tuple[Any, ...]]) -> int:
        best = cur = 1
        for x, y in itertools.pairwise(rows):
            cur = cur + 1 if x == y else 1
            best = max(best, cur)
        return best

    a = run(faulty, MAR_2024, t1, interval_s=900)
    b = run(clean, MAR_2024, t1, interval_s=900)
    assert longest_run(values(a, *fields)) >= 8  # ≥ 2 h of identical readings
    assert longest_run(values(b, *fields)) == 1
    assert values(a, "battery_v") == values(b, "battery_v"), "only the sensor is stuck"


def test_spikes_are_rare_plausible_and_wrong() -> None:
    faulty, clean = twins("spikes", Kind.WATER_QUALITY, site="canal")
    t1 = MAR_2024 + 20 * MS_PER_DAY
    a = run(faulty, MAR_2024, t1, interval_s=600)
    b = run(clean, MAR_2024, t1, interval_s=600)
    fields = ("do_mg_l", "ph", "turbidity_ntu", "temp_c", "ec_us_cm")
    differ = sum(x != y for x, y in zip(values(a, *fields), values(b, *fields), strict=True))
    assert 3 <= differ <= 0.02 * len(a)
    for m in a:
        check_message(m, MAR_2024, t1)


def test_gaps_drop_whole_windows() -> None:
    faulty, clean = twins("gaps")
    t1 = MAR_2024 + 10 * MS_PER_DAY
    a = run(faulty, MAR_2024, t1, interval_s=300)
    b = run(clean, MAR_2024, t1, interval_s=300)
    ts_a, ts_b = [m.ts_ms for m in a], [m.ts_ms for m in b]
    assert set(ts_a) < set(ts_b)
    assert max(np.diff(ts_a)) >= 20 * MIN
    same = {m.ts_ms: m.reading for m in b}
    for m in a:
        assert {k: v for k, v in m.reading.items() if k != "seq"} == {
            k: v for k, v in same[m.ts_ms].items() if k != "seq"
        }


def test_battery_sag_drops_out_in_rainy_spells_and_comes_back() -> None:
    provinces = ("ben_tre", "ca_mau", "dong_thap", "long_an", "soc_trang", "tien_giang", "hau_giang")
    sag = Fleet(devices=tuple(device(f"s{i}", faults=("battery_sag",), province=p) for i, p in enumerate(provinces)))
    t1 = JUL_2024 + 20 * MS_PER_DAY
    msgs = run(sag, JUL_2024, t1, interval_s=1800)
    assert all(float(m.reading["battery_v"]) >= 3.3 for m in msgs)
    expected = 20 * 48
    dropped = [d.id for d in sag.devices if len(of(msgs, d.id)) < expected]
    assert dropped, "some device browns out in a rainy spell"
    for d in dropped:
        ts = np.array([m.ts_ms for m in of(msgs, d)])
        gap_at = int(np.argmax(np.diff(ts)))
        assert ts[gap_at + 1] - ts[gap_at] > 1800_000
        assert gap_at + 1 < len(ts), "it comes back after the battery recovers"
    dry = run(sag, MAR_2024, MAR_2024 + 5 * MS_PER_DAY, interval_s=1800)
    assert len(dry) == 7 * 5 * 48, "no sag in the dry season"


def test_offline_device_says_offline_once_then_falls_silent() -> None:
    fleet = Fleet(devices=(device("gone", faults=("offline",)), device("stays")))
    model = FleetModel(fleet, seed=4, interval_s=60, offline_within_s=1800)
    msgs: list[SimMessage] = []
    t = MAR_2024
    for step in (7 * MIN + 13, 45 * MIN, 1 * MS_PER_H, 2 * MS_PER_H):
        msgs += model.between(t, t + step)
        t += step
    gone = of(msgs, "gone")
    status = [m for m in gone if m.channel is Channel.STATUS]
    assert len(status) == 1
    assert status[0].reading == {"state": "offline"} == FleetModel.will_payload()
    at = status[0].ts_ms
    assert MAR_2024 + MIN <= at <= MAR_2024 + MIN + 1800_000
    assert gone[-1] is status[0]
    assert all(m.ts_ms < at for m in gone[:-1])
    assert len(gone) > 1
    assert of(msgs, "stays")[-1].ts_ms > at
    assert not of(model.between(t, t + MS_PER_DAY), "gone")


# --- determinism --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small() -> Fleet:
    return generate_fleet(70, seed=21)


def test_same_seed_same_messages_other_seed_other_messages(small: Fleet) -> None:
    t1 = MAR_2024 + MS_PER_DAY
    a = run(small, MAR_2024, t1, seed=5, interval_s=300)
    assert a == run(small, MAR_2024, t1, seed=5, interval_s=300)
    assert a != run(small, MAR_2024, t1, seed=6, interval_s=300)


def test_split_windows_give_the_same_messages(small: Fleet) -> None:
    t1 = MAR_2024 + 26 * MS_PER_H
    whole = run(small, MAR_2024, t1, seed=5, interval_s=300)
    model = FleetModel(small, seed=5, interval_s=300)
    cuts = [
        MAR_2024,
        MAR_2024 + 1,
        MAR_2024 + 299_999,
        MAR_2024 + 7 * MS_PER_H + 12_345,
        MAR_2024 + 7 * MS_PER_H + 12_345,
        MAR_2024 + 19 * MS_PER_H,
        t1,
    ]
    parts: list[SimMessage] = []
    for a, b in itertools.pairwise(cuts):
        parts += model.between(a, b)
    assert parts == whole


def test_online_status_and_will(small: Fleet) -> None:
    model = FleetModel(small, seed=1)
    d = small.devices[0]
    status = model.online_status(d, MAR_2024)
    assert set(status) == {"state", "ts", "seq", "battery_v", "rssi_dbm", "fw"}
    assert status["state"] == "online"
    assert status["ts"] == MAR_2024
    assert status["seq"] == 0
    assert isinstance(status["battery_v"], float)
    assert 0 < status["battery_v"] < 60
    assert isinstance(status["fw"], str)
    assert len(status["fw"]) <= 32
    first = next(m for m in model.between(MAR_2024, MAR_2024 + MS_PER_H) if m.device == d)
    assert first.reading["seq"] == 1, "status and readings share the device's counter"
    assert FleetModel.will_payload() == {"state": "offline"}


def test_windows_must_move_forward(small: Fleet) -> None:
    model = FleetModel(small, seed=1)
    model.between(MAR_2024, MAR_2024 + MIN)
    with pytest.raises(ValueError, match="forward"):
        model.between(MAR_2024, MAR_2024 + MIN)
    with pytest.raises(ValueError, match="ends before"):
        model.between(MAR_2024 + 2 * MIN, MAR_2024 + MIN)
    assert model.between(MAR_2024 + MIN, MAR_2024 + MIN) == []


def test_interval_can_change_between_windows(small: Fleet) -> None:
    model = FleetModel(small, seed=1, interval_s=600)
    assert model.interval_s == 600
    model.interval_s = 10
    msgs = model.between(MAR_2024, MAR_2024 + MIN)
    sal = [m for m in msgs if m.device.kind is Kind.SALINITY and not m.device.faults]
    assert len(sal) == 6 * len({m.device.id for m in sal})
    with pytest.raises(ValueError, match="interval_s"):
        model.interval_s = 0


# --- speed --------------------------------------------------------------------------------------


def test_three_days_of_200_devices_is_fast(fleet: Fleet) -> None:
    start = time.perf_counter()
    run(fleet, JUL_2024, JUL_2024 + 3 * MS_PER_DAY, seed=3)
    assert time.perf_counter() - start < 2.0


def test_100k_readings_in_a_few_seconds() -> None:
    big = generate_fleet(2000, seed=8)
    model = FleetModel(big, seed=8, interval_s=60)
    start = time.perf_counter()
    msgs = model.between(JUL_2024, JUL_2024 + MS_PER_H)
    assert len(msgs) >= 95_000
    assert time.perf_counter() - start < 4.0
