"""Table tests of the engine: every condition kind, hysteresis, durations, aggregates, no-data,
flapping suppression, late readings, and state carried across batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from rules.engine import Engine
from rules.model import DeviceInfo, Severity, State, Transition
from rules.pack import parse_pack

M = 60_000
H = 3_600_000
D = 86_400_000
T0 = 1_774_000_000_000 - (1_774_000_000_000 + 7 * H) % D  # local midnight (UTC+7)
EVENTS = ("smoke_fire", "flooding", "traffic_violation", "hygiene_violation", "intrusion", "video_loss")


@dataclass
class Cols:
    device: npt.NDArray[np.int32]
    ts_ms: npt.NDArray[np.int64]
    fields: dict[str, npt.NDArray[np.float64]]


def cols(dev: list[int], ts: list[int], **fields: list[float]) -> Cols:
    return Cols(
        np.array(dev, np.int32), np.array(ts, np.int64), {k: np.array(v, np.float64) for k, v in fields.items()}
    )


def device(i: int, kind: str = "salinity", crop: str = "durian", site: str = "river") -> DeviceInfo:
    return DeviceInfo(f"d{i}", kind, "ben_tre", "ba_tri", site, crop, "Ba Tri, Bến Tre", "Ba Tri, Ben Tre")


def engine(condition: dict[str, Any], *, kind: str = "salinity", n: int = 3, **rule: Any) -> Engine:
    spec = {
        "id": "RULE",
        "kind": kind,
        "condition": condition,
        "severity": "warning",
        "min_gap": "0s",
        "unit": "‰",
        "message": {"vi": "Giá trị {value:.2f}{unit} tại {place}", "en": "Value {value:.2f}{unit} at {place}"},
        "source": "test",
        **rule,
    }
    return Engine(
        parse_pack({"name": "t", "rules": [spec]}, "t.yaml"),
        [device(i, kind) for i in range(n)],
        event_classes=EVENTS,
        start_ms=T0,
    )


def summary(ts: list[Transition]) -> list[tuple[int, str, int]]:
    return [(t.device, t.state.value, t.ts_ms) for t in ts]


# --- threshold ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "values", "expected"),
    [
        # plain threshold: fires at the first reading at/over the level, resolves below it
        ({"op": ">=", "value": 0.5}, [0.4, 0.5, 0.6, 0.49], [("firing", 1), ("resolved", 3)]),
        ({"op": ">", "value": 0.5}, [0.5, 0.51, 0.5], [("firing", 1), ("resolved", 2)]),
        ({"op": "<", "value": 3.0}, [3.5, 2.9, 3.0], [("firing", 1), ("resolved", 2)]),
        ({"op": "<=", "value": 3.0}, [3.0, 3.1], [("firing", 0), ("resolved", 1)]),
        # hysteresis: stays on between clear and value, resolves only past clear
        ({"op": ">=", "value": 0.5, "clear": 0.45}, [0.6, 0.48, 0.46, 0.44, 0.49], [("firing", 0), ("resolved", 3)]),
        ({"op": "<", "value": 3.0, "clear": 3.3}, [2.8, 3.1, 3.2, 3.4], [("firing", 0), ("resolved", 3)]),
        # N consecutive readings
        ({"op": ">=", "value": 0.5, "consecutive": 2}, [0.6, 0.4, 0.6, 0.7, 0.2], [("firing", 3), ("resolved", 4)]),
        ({"op": ">=", "value": 0.5, "consecutive": 3}, [0.6, 0.6, 0.4, 0.6, 0.6], []),
    ],
)
def test_threshold_table(condition: dict[str, Any], values: list[float], expected: list[tuple[str, int]]) -> None:
    e = engine({"type": "threshold", "field": "salinity_ppt", **condition})
    ts = [T0 + i * M for i in range(len(values))]
    out = e.evaluate({"salinity": cols([0] * len(values), ts, salinity_ppt=values)}, now_ms=T0 + H)
    assert summary(out) == [(0, s, ts[i]) for s, i in expected]


def test_sustained_for_a_duration() -> None:
    """DO < 3 mg/L for 15 min: fires at the first reading 15 min into the run, not before."""
    e = engine({"type": "threshold", "field": "do_mg_l", "op": "<", "value": 3, "for": "15m"}, kind="water_quality")
    ts = [T0 + i * 5 * M for i in range(6)]  # every 5 minutes
    out = e.evaluate({"water_quality": cols([0] * 6, ts, do_mg_l=[2.5, 2.4, 2.6, 2.2, 2.1, 3.5])}, now_ms=T0 + H)
    assert summary(out) == [(0, "firing", ts[3]), (0, "resolved", ts[5])]


def test_runs_and_hysteresis_carry_across_batches() -> None:
    e = engine({"type": "threshold", "field": "salinity_ppt", "op": ">=", "value": 1, "clear": 0.8, "consecutive": 3})
    a = e.evaluate({"salinity": cols([0, 0], [T0, T0 + M], salinity_ppt=[1.2, 1.3])}, now_ms=T0)
    b = e.evaluate({"salinity": cols([0], [T0 + 2 * M], salinity_ppt=[1.1])}, now_ms=T0)
    c = e.evaluate({"salinity": cols([0], [T0 + 3 * M], salinity_ppt=[0.9])}, now_ms=T0)
    d = e.evaluate({"salinity": cols([0], [T0 + 4 * M], salinity_ppt=[0.7])}, now_ms=T0)
    assert (summary(a), summary(b), summary(c), summary(d)) == (
        [], [(0, "firing", T0 + 2 * M)], [], [(0, "resolved", T0 + 4 * M)]
    )  # fmt: skip


def test_devices_are_independent_and_unsorted_input_is_sorted() -> None:
    e = engine({"type": "threshold", "field": "salinity_ppt", "op": ">=", "value": 1, "consecutive": 2})
    batch = cols([1, 0, 1, 0, 2], [T0 + M, T0 + M, T0, T0, T0], salinity_ppt=[2, 0.5, 2, 2, 2])
    out = e.evaluate({"salinity": batch}, now_ms=T0)
    assert summary(out) == [(1, "firing", T0 + M)]


def test_late_readings_are_ignored_by_the_rule() -> None:
    e = engine({"type": "threshold", "field": "salinity_ppt", "op": ">=", "value": 1})
    e.evaluate({"salinity": cols([0], [T0 + 10 * M], salinity_ppt=[0.2])}, now_ms=T0)
    late = e.evaluate({"salinity": cols([0], [T0 + 5 * M], salinity_ppt=[3.0])}, now_ms=T0)
    assert late == []


def test_readings_without_the_field_are_skipped() -> None:
    e = engine({"type": "threshold", "field": "salinity_ppt", "op": ">=", "value": 1, "consecutive": 2})
    out = e.evaluate({"salinity": cols([0, 0, 0], [T0, T0 + M, T0 + 2 * M], salinity_ppt=[2, np.nan, 2])}, now_ms=T0)
    assert summary(out) == [(0, "firing", T0 + 2 * M)]


def test_selector_limits_the_devices() -> None:
    pack = parse_pack({"name": "t", "rules": [{
        "id": "RULE", "kind": "salinity", "select": {"crop": ["rice"]}, "severity": "warning", "source": "t",
        "condition": {"type": "threshold", "field": "salinity_ppt", "op": ">=", "value": 2},
        "message": {"vi": "x", "en": "x"}}]}, "t")  # fmt: skip
    e = Engine(pack, [device(0, crop="durian"), device(1, crop="rice")], start_ms=T0)
    out = e.evaluate({"salinity": cols([0, 1], [T0, T0], salinity_ppt=[3, 3])}, now_ms=T0)
    assert summary(out) == [(1, "firing", T0)]


# --- range ----------------------------------------------------------------------------------


def test_range_with_clear_band() -> None:
    e = engine(
        {"type": "range", "field": "ph", "low": 6.0, "high": 8.5, "clear_low": 6.2, "clear_high": 8.3},
        kind="water_quality",
    )
    values = [7.0, 5.9, 6.1, 6.3, 8.6, 8.4, 8.2]
    ts = [T0 + i * M for i in range(len(values))]
    out = e.evaluate({"water_quality": cols([0] * 7, ts, ph=values)}, now_ms=T0)
    assert summary(out) == [
        (0, "firing", ts[1]), (0, "resolved", ts[3]), (0, "firing", ts[4]), (0, "resolved", ts[6])
    ]  # fmt: skip


# --- window aggregates ----------------------------------------------------------------------


def test_window_mean_one_hour() -> None:
    """River DO < 4 as a 1 h mean: a single low reading does not fire; a low hour does."""
    e = engine(
        {"type": "window", "field": "do_mg_l", "stat": "mean", "window": "1h", "op": "<", "value": 4},
        kind="water_quality",
    )
    ts = [T0 + i * 10 * M for i in range(6)]
    first = e.evaluate({"water_quality": cols([0] * 6, ts, do_mg_l=[5, 5, 5, 5, 5, 1.5])}, now_ms=T0)
    assert first == []  # mean 4.58
    ts2 = [T0 + 60 * M + i * 10 * M for i in range(6)]
    second = e.evaluate({"water_quality": cols([0] * 6, ts2, do_mg_l=[3, 3, 3.5, 3, 3, 3])}, now_ms=T0)
    assert summary(second) == [(0, "firing", ts2[-1])]
    assert second[0].value == pytest.approx(3.08, abs=0.15)


def test_window_range_24h_ph_swing() -> None:
    e = engine(
        {"type": "window", "field": "ph", "stat": "range", "window": "24h", "op": ">", "value": 0.5},
        kind="water_quality",
    )
    ts = [T0 + i * H for i in range(24)]
    ph = [7.6 + 0.3 * np.sin(2 * np.pi * (i - 8) / 24) for i in range(24)]  # swing 0.6
    out = e.evaluate({"water_quality": cols([0] * 24, ts, ph=ph)}, now_ms=T0)
    assert summary(out) == [(0, "firing", ts[-1])]
    calm = [T0 + 24 * H + i * H for i in range(25)]
    out2 = e.evaluate({"water_quality": cols([0] * 25, calm, ph=[7.6] * 25)}, now_ms=T0)
    assert summary(out2) == [(0, "resolved", calm[-1])]  # the old swing has left the window


# --- change: day over day -------------------------------------------------------------------


def test_daily_maximum_rise_on_yesterday() -> None:
    e = engine({"type": "change", "field": "salinity_ppt", "stat": "max", "op": ">=", "value": 1.0})
    day1 = [T0 + i * H for i in range(24)]
    e.evaluate({"salinity": cols([0] * 24, day1, salinity_ppt=[0.5 + 0.1 * (i % 5) for i in range(24)])}, now_ms=T0)
    day2 = [T0 + D + i * H for i in range(12)]
    out = e.evaluate({"salinity": cols([0] * 12, day2, salinity_ppt=[0.4] * 11 + [2.1])}, now_ms=T0)
    assert summary(out) == [(0, "firing", day2[-1])]
    assert out[0].value == pytest.approx(2.1 - 0.9)
    day3 = [T0 + 2 * D + i * H for i in range(3)]
    out3 = e.evaluate({"salinity": cols([0] * 3, day3, salinity_ppt=[2.0, 2.2, 2.3])}, now_ms=T0)
    assert summary(out3) == [(0, "resolved", day3[-1])]  # 2.3 vs 2.1: +0.2


# --- surge ------------------------------------------------------------------------------------


def test_surge_against_seven_night_median() -> None:
    e = engine({"type": "surge", "field": "bph_night", "baseline": 7, "factor": 3, "min": 200}, kind="light_trap")
    nights = [T0 + i * D for i in range(10)]
    counts = [40, 50, 60, 45, 55, 50, 48, 400, 120, 60]
    out = e.evaluate({"light_trap": cols([0] * 10, nights, bph_night=counts)}, now_ms=T0)
    assert summary(out) == [(0, "firing", nights[7]), (0, "resolved", nights[8])]


def test_surge_needs_the_minimum_and_history_across_batches() -> None:
    e = engine({"type": "surge", "field": "bph_night", "baseline": 7, "factor": 3, "min": 200}, kind="light_trap")
    for i, c in enumerate([10, 12, 9, 11, 10, 10, 12]):
        assert e.evaluate({"light_trap": cols([0], [T0 + i * D], bph_night=[c])}, now_ms=T0) == []
    small = e.evaluate({"light_trap": cols([0], [T0 + 7 * D], bph_night=[150])}, now_ms=T0)
    assert small == []  # 15 × the median, but under 200
    big = e.evaluate({"light_trap": cols([0], [T0 + 8 * D], bph_night=[600])}, now_ms=T0)
    assert summary(big) == [(0, "firing", T0 + 8 * D)]


# --- after a peak -------------------------------------------------------------------------------


def test_escape_sowing_window_after_peak() -> None:
    e = engine(
        {"type": "after_peak", "field": "bph_night", "peak": 500, "count": 3, "fraction": 0.5}, kind="light_trap"
    )
    nights = [T0 + i * D for i in range(8)]
    counts = [100, 700, 900, 300, 200, 100, 90, 80]  # peak 900, then three nights under 450
    out = e.evaluate({"light_trap": cols([0] * 8, nights, bph_night=counts)}, now_ms=T0)
    assert summary(out) == [(0, "firing", nights[5]), (0, "resolved", nights[6])]


# --- no data ------------------------------------------------------------------------------------


def test_silent_device_and_will_offline() -> None:
    e = engine({"type": "no_data", "after": "10m"}, n=2)
    assert e.tick(T0 + 5 * M) == []
    e.evaluate({"salinity": cols([0], [T0], salinity_ppt=[0.2])}, now_ms=T0 + 6 * M)
    out = e.tick(T0 + 11 * M)
    assert summary(out) == [(1, "firing", T0 + 11 * M)]  # device 1 never spoke; device 0 did at 6 min
    out = e.tick(T0 + 17 * M)
    assert summary(out) == [(0, "firing", T0 + 17 * M)]
    back = e.evaluate({"salinity": cols([0], [T0 + 17 * M], salinity_ppt=[0.2])}, now_ms=T0 + 18 * M)
    assert summary(back) == [(0, "resolved", T0 + 18 * M)]
    will = e.evaluate({"device_status": cols([0], [T0 + 19 * M], online=[0.0])}, now_ms=T0 + 19 * M)
    assert summary(will) == [(0, "firing", T0 + 19 * M)]


# --- camera events ----------------------------------------------------------------------------


def test_smoke_fire_needs_confidence_and_frames_then_resolves() -> None:
    e = engine({"type": "event", "event": "smoke_fire", "min_confidence": 0.8, "min_frames": 2,
                "resolve_after": "30m"}, kind="camera")  # fmt: skip
    smoke = EVENTS.index("smoke_fire")
    ev = cols([0, 0, 0], [T0, T0 + M, T0 + 2 * M], event_code=[smoke, smoke, EVENTS.index("intrusion")],
              confidence=[0.7, 0.9, 0.99], frames=[5, 3, 3])  # fmt: skip
    out = e.evaluate({"camera_event": ev}, now_ms=T0)
    assert summary(out) == [(0, "firing", T0 + M)]
    heartbeat = cols([0, 0], [T0 + 20 * M, T0 + 40 * M], video_ok=[1, 1])
    out = e.evaluate({"camera": heartbeat}, now_ms=T0)
    assert summary(out) == [(0, "resolved", T0 + 31 * M)]


def test_restored_smoke_alert_resolves_after_the_restart_not_at_the_epoch() -> None:
    e = engine({"type": "event", "event": "smoke_fire", "resolve_after": "15m"}, kind="camera")
    assert e.restore_active([("RULE", "d0")]) == 1  # the engine started at T0
    assert e.evaluate({"camera": cols([0], [T0 + 5 * M], video_ok=[1])}, now_ms=T0) == []
    out = e.evaluate({"camera": cols([0], [T0 + 20 * M], video_ok=[1])}, now_ms=T0)
    assert summary(out) == [(0, "resolved", T0 + 15 * M)]


def test_flooding_sustained_ten_minutes() -> None:
    e = engine({"type": "event", "event": "flooding", "for": "10m", "resolve_after": "30m"}, kind="camera")
    flood = EVENTS.index("flooding")
    ts = [T0 + i * 5 * M for i in range(4)]
    ev = cols([0] * 4, ts, event_code=[flood] * 4, confidence=[0.9] * 4, frames=[1] * 4)
    assert summary(e.evaluate({"camera_event": ev}, now_ms=T0)) == [(0, "firing", ts[2])]


# --- flapping, severity, messages, derived ------------------------------------------------------


def test_flapping_suppressed_for_min_gap() -> None:
    e = engine({"type": "threshold", "field": "salinity_ppt", "op": ">=", "value": 1}, min_gap="10m")
    ts = [T0 + i * M for i in range(14)]
    values = [2, 0, 2, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2]
    out = e.evaluate({"salinity": cols([0] * 14, ts, salinity_ppt=values)}, now_ms=T0)
    # fires, resolves, then the re-fires at 2 and 4 min are held back until 10 min after the resolve
    assert summary(out) == [(0, "firing", ts[0]), (0, "resolved", ts[1]), (0, "firing", ts[13])]


def test_critical_above_escalates_and_messages_render() -> None:
    e = engine(
        {"type": "threshold", "field": "nh4_mg_l", "op": ">", "value": 0.3}, kind="water_quality", critical_above=0.9
    )
    out = e.evaluate({"water_quality": cols([0, 1], [T0, T0], nh4_mg_l=[0.5, 1.2])}, now_ms=T0)
    assert [t.severity for t in out] == [Severity.WARNING, Severity.CRITICAL]
    assert out[0].message_vi == "Giá trị 0,50‰ tại Ba Tri, Bến Tre"  # a decimal comma in Vietnamese
    assert out[0].message_en == "Value 0.50‰ at Ba Tri, Ben Tre"
    assert out[1].state is State.FIRING


def test_derived_nh3_from_nh4_ph_temperature() -> None:
    e = engine({"type": "threshold", "field": "nh3_mg_l", "op": ">", "value": 0.05}, kind="water_quality")
    batch = cols([0, 1], [T0, T0], nh4_mg_l=[0.5, 0.5], ph=[7.5, 9.0], temp_c=[30, 30])
    out = e.evaluate({"water_quality": batch}, now_ms=T0)
    assert summary(out) == [(1, "firing", T0)]  # 0.5 × 0.45 = 0.22 > 0.05; 0.5 × 0.025 = 0.013 is not
    assert out[0].value == pytest.approx(0.5 * 0.45, rel=0.05)


def test_restored_alert_resolves_when_the_condition_clears() -> None:
    e = engine({"type": "threshold", "field": "salinity_ppt", "op": ">=", "value": 1, "clear": 0.8})
    assert e.restore_active([("RULE", "d1"), ("NOPE", "d1"), ("RULE", "nobody")]) == 1
    still = e.evaluate({"salinity": cols([1], [T0], salinity_ppt=[0.9])}, now_ms=T0)
    clear = e.evaluate({"salinity": cols([1], [T0 + M], salinity_ppt=[0.5])}, now_ms=T0)
    assert (summary(still), summary(clear)) == ([], [(1, "resolved", T0 + M)])


def test_message_numbers_missing_values_and_counts() -> None:
    from rules.messages import render

    d = device(0)
    text = "{n} con, {value:.1f}{unit}, mainten{place}"
    assert (
        render(text, device=d, value=1272.4, unit="‰", ts_ms=T0, vietnamese=True)
        == "1.272 con, 1272,4‰, maintenBa Tri, Bến Tre"
    )
    assert (
        render(text, device=d, value=float("nan"), unit="", ts_ms=T0, vietnamese=False)
        == "? con, ?, maintenBa Tri, Ben Tre"
    )
    assert render("{time}", device=d, value=1, unit="", ts_ms=T0 + 5 * H + 30 * M, vietnamese=True).startswith("05:30 ")


def test_a_derived_field_gives_the_same_values_read_by_one_selection_or_several() -> None:
    """Computed on the rows of the one selection that reads it, or once on every row: the same alerts."""
    rng = np.random.default_rng(7)
    devices = [device(i, "water_quality", site=("pond", "river")[i % 2]) for i in range(6)]

    def rule(rule_id: str, site: str) -> dict[str, Any]:
        return {"id": rule_id, "kind": "water_quality", "select": {"site": [site]}, "severity": "warning",
                "condition": {"type": "threshold", "field": "nh3_mg_l", "op": ">", "value": 0.05, "clear": 0.04},
                "min_gap": "0s", "unit": "mg/L", "source": "test",
                "message": {"vi": "NH3 {value:.3f}{unit}", "en": "NH3 {value:.3f}{unit}"}}  # fmt: skip

    alone, shared = (
        Engine(parse_pack({"name": "t", "rules": rules}, "t.yaml"), devices, event_classes=EVENTS, start_ms=T0)
        for rules in ([rule("POND", "pond")], [rule("POND", "pond"), rule("RIVER", "river")])
    )
    assert (alone._shared, shared._shared) == ({}, {"water_quality": {"nh3_mg_l"}})  # the two ways, both taken
    n = 600
    inputs = {"nh4_mg_l": rng.uniform(0.1, 1.0, n), "ph": rng.uniform(7.0, 8.6, n), "temp_c": rng.uniform(25, 33, n)}
    rows = rng.integers(0, 6, n).tolist(), (T0 + np.sort(rng.integers(0, D, n))).tolist()
    batch = cols(*rows, **{k: v.tolist() for k, v in inputs.items()})
    got = alone.evaluate({"water_quality": batch}, now_ms=T0 + D)
    want = [t for t in shared.evaluate({"water_quality": batch}, now_ms=T0 + D) if t.rule_id == "POND"]
    assert len(got) > 10
    assert [(t.device, t.state, t.ts_ms, t.value) for t in got] == [(t.device, t.state, t.ts_ms, t.value) for t in want]
    for name in ("all", *inputs):  # an input missing from the batch: NaN on both ways, so no transition on either
        lacking = cols(*rows, **{k: v.tolist() for k, v in inputs.items() if name not in ("all", k)})
        assert alone.evaluate({"water_quality": lacking}, now_ms=T0 + 2 * D) == [], name
        assert shared.evaluate({"water_quality": lacking}, now_ms=T0 + 2 * D) == [], name
