"""The benchmark's per-reading reference evaluator gives the engine's transitions, so the rule
benchmark compares like with like: focused inputs per condition type of the default pack, seeded
random batches (shuffled arrival, late and duplicate readings, ticks, wills) and a simulated
48 h fleet sample."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from bench.rules_bench import run_engine, run_reference, same_transitions, simulate, transition_key
from bench.rules_reference import Buckets, Reading, ReferenceEngine, pairwise_sum, readings_from_columns
from contract.fields import CAMERA_EVENTS
from ingest.batch import Columns
from rules.conditions import BucketStats
from rules.engine import Engine
from rules.model import DeviceInfo, State, Transition
from rules.pack import DEFAULT_PACK, Pack, load_pack

M = 60_000
H = 3_600_000
D = 86_400_000
T0 = 1_774_000_000_000 - (1_774_000_000_000 + 7 * H) % D  # local midnight (UTC+7)
PACK = load_pack(DEFAULT_PACK)

DEVICES = (
    DeviceInfo("sal-durian", "salinity", "ben_tre", "cho_lach", "river", "durian", "Chợ Lách", "Cho Lach"),
    DeviceInfo("sal-rice", "salinity", "soc_trang", "tran_de", "canal", "rice", "Trần Đề", "Tran De"),
    DeviceInfo("wq-river", "water_quality", "tien_giang", "cai_be", "river", "", "Cái Bè", "Cai Be"),
    DeviceInfo("wq-shrimp", "water_quality", "ca_mau", "dam_doi", "pond", "shrimp", "Đầm Dơi", "Dam Doi"),
    DeviceInfo("wq-tra", "water_quality", "dong_thap", "cao_lanh", "pond", "pangasius", "Cao Lãnh", "Cao Lanh"),
    DeviceInfo("trap", "light_trap", "hau_giang", "phung_hiep", "field", "rice", "Phụng Hiệp", "Phung Hiep"),
    DeviceInfo("cam-kitchen", "camera", "long_an", "ben_luc", "kitchen", "", "Bến Lức", "Ben Luc"),
    DeviceInfo("cam-road", "camera", "long_an", "ben_luc", "road", "", "Bến Lức", "Ben Luc"),
)
SAL, RICE, RIVER, SHRIMP, TRA, TRAP, KITCHEN, ROAD = range(8)

Batch = dict[str, Columns]


def cols(dev: Sequence[int], ts: Sequence[int], **fields: Sequence[float]) -> Columns:
    return Columns(
        np.asarray(dev, np.int32),
        np.asarray(ts, np.int64),
        np.zeros(len(dev), np.int64),
        {k: np.asarray(v, np.float64) for k, v in fields.items()},
    )


def both(batches: Sequence[tuple[Batch, int]], pack: Pack = PACK) -> list[Transition]:
    """Run the engine and the reference over the same batches; assert they agree; return the transitions."""
    engine = Engine(pack, DEVICES, event_classes=CAMERA_EVENTS, start_ms=T0)
    ref = ReferenceEngine(pack, DEVICES, event_classes=CAMERA_EVENTS, start_ms=T0)
    got_e: list[Transition] = []
    got_r: list[Transition] = []
    for batch, now in batches:
        got_e += engine.evaluate(batch, now_ms=now)
        got_r += ref.evaluate(readings_from_columns(batch), now_ms=now)
    assert [transition_key(t) for t in got_r] == [transition_key(t) for t in got_e]
    assert same_transitions(got_e, got_r)
    return got_e


def summary(ts: Sequence[Transition], rule: str) -> list[tuple[str, str, int]]:
    return [(t.device_id, t.state.value, t.ts_ms) for t in ts if t.rule_id == rule]


def series(dev: int, values: Sequence[float], *, start: int = T0, step: int = 10 * M, name: str) -> Columns:
    return cols([dev] * len(values), [start + i * step for i in range(len(values))], **{name: values})


# --- focused inputs ------------------------------------------------------------------------------


def test_threshold_with_hysteresis_consecutive_and_min_gap_across_batches() -> None:
    """SAL_FRUIT: ≥ 0.5 twice in a row, clears below 0.45, re-fires only 2 h after a resolve."""
    values = [0.3, 0.52, 0.55, 0.48, 0.46, 0.44, 0.6, 0.7, 0.3, 0.6, 0.6, *[0.6] * 12]
    ts = [T0 + i * 10 * M for i in range(len(values))]
    out = both(
        [
            ({"salinity": cols([SAL] * 5, ts[:5], salinity_ppt=values[:5])}, ts[4]),
            ({"salinity": cols([SAL] * 6, ts[5:11], salinity_ppt=values[5:11])}, ts[10]),
            ({"salinity": cols([SAL] * 7, ts[11:18], salinity_ppt=values[11:18])}, ts[17]),
            ({"salinity": cols([SAL] * 5, ts[18:], salinity_ppt=values[18:])}, ts[-1]),
        ]
    )
    assert summary(out, "SAL_FRUIT") == [
        ("sal-durian", "firing", ts[2]),
        ("sal-durian", "resolved", ts[5]),
        ("sal-durian", "firing", ts[17]),  # held back since ts[7]; due 2 h after the resolve, at a batch's end
    ]


def test_a_redelivered_batch_is_not_counted_twice() -> None:
    """A reading no newer than one an earlier batch evaluated is ignored (ingest redelivers batches)."""
    first = {"salinity": cols([SAL, RICE], [T0, T0], salinity_ppt=[0.6, 2.5])}
    again = {"salinity": cols([SAL, RICE], [T0, T0 - M], salinity_ppt=[0.6, 2.5])}
    out = both([(first, T0), (again, T0 + M)])
    assert [t.rule_id for t in out if t.device_id != "sal-rice" or t.rule_id != "SAL_SILENT"] == []


def test_readings_at_the_same_time_keep_their_arrival_order() -> None:
    """0.4 then 0.6 at the same instant, then 0.6: two in a row over 0.5 (SAL_FRUIT fires)."""
    batch = {
        "salinity": cols([SAL] * 3, [T0, T0, T0 + M], salinity_ppt=[0.4, 0.6, 0.6], ec_us_cm=[np.nan, 1200, np.nan])
    }
    assert summary(both([(batch, T0 + M)]), "SAL_FRUIT") == [("sal-durian", "firing", T0 + M)]


def test_range_and_critical_escalation() -> None:
    """WQ_PH range with a clear band; WQ_NH4 escalates to critical past 0.9."""
    ph = [7.0, 5.9, 5.8, 6.1, 6.3, 6.3, 8.6, 8.7, 8.4, 8.2, 8.1]
    nh4 = [0.1, 0.35, 0.95, 0.2, 0.1, 0.5, 0.6, 0.1, 0.1, 0.1, 0.1]
    ts = [T0 + i * 30 * M for i in range(len(ph))]
    out = both([({"water_quality": cols([RIVER] * len(ph), ts, ph=ph, nh4_mg_l=nh4)}, ts[-1])])
    assert summary(out, "WQ_PH") == [("wq-river", "firing", ts[2]), ("wq-river", "resolved", ts[4]),
                                     ("wq-river", "firing", ts[7]), ("wq-river", "resolved", ts[9])]  # fmt: skip
    nh4_fires = [(t.ts_ms, t.severity.label) for t in out if t.rule_id == "WQ_NH4" and t.state is State.FIRING]
    assert nh4_fires == [(ts[2], "critical"), (ts[6], "warning")]


def test_duration_rule_waits_for_the_falling_tide_gate() -> None:
    """SAL_SAFE: < 0.5 ‰ for 2 h, and the water level below its 1 h mean (falling tide)."""
    n = 30
    ts = [T0 + i * 10 * M for i in range(n)]
    level = [100.0 + 2 * i for i in range(15)] + [130.0 - 3 * i for i in range(15)]  # rising, then falling
    sal = [0.3] * n
    batches = [
        ({"salinity": cols([SAL] * 3, ts[i : i + 3], salinity_ppt=sal[i : i + 3], water_level_cm=level[i : i + 3])},
         ts[i + 2])
        for i in range(0, n, 3)
    ]  # fmt: skip
    out = both(batches)
    # < 0.5 for 2 h at ts[12], but the tide is still rising: held back to the first batch on the ebb
    assert summary(out, "SAL_SAFE") == [("sal-durian", "firing", ts[17])]


def test_rate_rules_day_over_day_and_rolling_windows() -> None:
    """SAL_RISE (today's max − yesterday's), WQ_DO_LOW (1 h mean), SH_PH_SWING (24 h range)."""
    day1 = [T0 + i * H for i in range(24)]
    day2 = [T0 + D + i * H for i in range(24)]
    sal1 = [0.5 + 0.1 * (i % 5) for i in range(24)]
    sal2 = [0.4] * 11 + [2.1] * 13
    do = [5.0] * 10 + [3.5] * 14
    ph = [7.6 + 0.4 * np.sin(2 * np.pi * i / 24) for i in range(24)]
    batches: list[tuple[Batch, int]] = []
    for day, s in ((day1, sal1), (day2, sal2)):
        for i in range(0, 24, 6):
            sl = slice(i, i + 6)
            batches.append(({
                "salinity": cols([SAL] * 6, day[sl], salinity_ppt=s[sl]),
                "water_quality": cols([RIVER] * 6 + [SHRIMP] * 6, day[sl] * 2, do_mg_l=do[sl] + [6.0] * 6,
                                      ph=[7.5] * 6 + ph[sl]),
            }, day[sl][-1]))  # fmt: skip
    out = both(batches)
    assert summary(out, "SAL_RISE")[0][:2] == ("sal-durian", "firing")
    assert summary(out, "WQ_DO_LOW")[0][:2] == ("wq-river", "firing")
    assert summary(out, "SH_PH_SWING")[0][:2] == ("wq-shrimp", "firing")


def test_light_trap_surge_peak_and_empty_nights() -> None:
    """BPH_SURGE (3 × the 7-night median), BPH_HIGH, the sowing window after a peak, TRAP_SILENT."""
    nights = [T0 + i * D - H for i in range(1, 25)]  # 06:00 local
    bph = [40, 50, 60, 45, 55, 50, 48, 400, 1200, 900, 300, 200, 100, 0, 0, 30, 700, 300, 900, 400, 300, 200, 100, 90]
    lf = [5, 6, 5, 7, 6, 5, 6, 80, 10, 5, 5, 5, 5, np.nan, np.nan, 4, 5, 5, 5, 5, 5, 5, 5, 5]  # one species: 0 is 0
    batches = [
        ({"light_trap": cols([TRAP] * 4, nights[i : i + 4], bph_night=bph[i : i + 4], leaffolder_night=lf[i : i + 4])},
         nights[i + 3])
        for i in range(0, 24, 4)
    ]  # fmt: skip
    out = both(batches)
    for rule in ("BPH_SURGE", "BPH_HIGH", "BPH_SOW_WINDOW", "MOTH_SURGE_LEAFFOLDER", "TRAP_SILENT"):
        assert summary(out, rule), rule


def test_no_data_silence_and_will() -> None:
    """SAL_SILENT after 1 h of silence by the ingest clock; a will marks a device offline at once."""
    out = both(
        [
            ({"salinity": series(SAL, [0.2], name="salinity_ppt")}, T0 + M),
            ({}, T0 + 30 * M),
            ({}, T0 + 61 * M),  # sal-durian: exactly 1 h, not more
            ({}, T0 + 62 * M),
            ({"salinity": series(SAL, [0.2], start=T0 + 70 * M, name="salinity_ppt")}, T0 + 80 * M),
            ({"device_status": cols([SAL], [T0 + 90 * M], online=[0.0])}, T0 + 90 * M),
            ({"salinity": series(SAL, [0.2], start=T0 + 95 * M, name="salinity_ppt")}, T0 + 95 * M),
        ]
    )
    assert summary(out, "SAL_SILENT") == [
        ("sal-rice", "firing", T0 + 61 * M),  # silent since the start
        ("sal-durian", "firing", T0 + 62 * M),  # last seen at T0 + 1 min
        ("sal-durian", "resolved", T0 + 80 * M),
        ("sal-durian", "firing", T0 + 90 * M),  # its will, min_gap (10 min) after the resolve
        ("sal-durian", "resolved", T0 + 95 * M),
    ]


def test_camera_events_frames_duration_and_resolve_after() -> None:
    """CAM_FIRE needs 0.8 in 2 frames; CAM_FLOOD needs 10 min; episodes end resolve_after after the last match."""
    fire, flood = CAMERA_EVENTS.index("smoke_fire"), CAMERA_EVENTS.index("flooding")
    ev_ts = [T0, T0 + M, T0 + 2 * M, T0 + 5 * M, T0 + 12 * M, T0 + 12 * M, T0 + 13 * M]
    events = cols([ROAD, ROAD, KITCHEN, KITCHEN, KITCHEN, ROAD, ROAD], ev_ts,
                  event_code=[fire, fire, flood, flood, flood, fire, fire],
                  confidence=[0.7, 0.9, 0.8, 0.8, 0.8, 0.95, 0.99], frames=[5, 3, 1, 1, 1, 2, 1])  # fmt: skip
    beats = cols([ROAD, KITCHEN] * 4, [T0 + i * 10 * M for i in range(2, 6) for _ in range(2)], video_ok=[1] * 8)
    late = cols([ROAD, KITCHEN], [T0 + 2 * H, T0 + 2 * H], video_ok=[1, 1])
    out = both(
        [({"camera_event": events}, T0 + 20 * M), ({"camera": beats}, T0 + 50 * M), ({"camera": late}, T0 + 2 * H)]
    )
    # fire: the match at 12 min carries the episode on (one frame at 13 min does not count)
    assert summary(out, "CAM_FIRE") == [("cam-road", "firing", T0 + M), ("cam-road", "resolved", T0 + 27 * M)]
    assert summary(out, "CAM_FLOOD") == [("cam-kitchen", "firing", T0 + 12 * M),
                                         ("cam-kitchen", "resolved", T0 + 42 * M)]  # fmt: skip


# --- seeded random batches ------------------------------------------------------------------------


def _random_batches(seed: int) -> list[tuple[Batch, int]]:
    """Noisy readings of every device around the pack's levels, arriving shuffled in random batches."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list[tuple[int, int, dict[str, float]]]] = {}

    def add(key: str, dev: int, ts: int, **fields: float) -> None:
        rows.setdefault(key, []).append((dev, ts, fields))

    steps = 400
    for i in range(steps):
        t = T0 + i * 10 * M + int(rng.integers(0, 3)) * M
        for dev in (SAL, RICE):
            if rng.random() < 0.9:
                wave = 2.0 + 2.5 * np.sin(i / 17) if dev == SAL else 0.45 + 0.3 * np.sin(i / 23)  # ladder / safe
                s = float(np.round(abs(wave + rng.normal(0, 0.6 if dev == SAL else 0.05)), 2))
                level = float(np.round(100 * np.sin(i / 3) + rng.normal(0, 30), 1))  # a choppy tide
                add("salinity", dev, t, salinity_ppt=s, water_level_cm=level)
        for dev in (RIVER, SHRIMP, TRA):
            if rng.random() < 0.9:
                add("water_quality", dev, t, do_mg_l=float(np.round(rng.uniform(1.0, 6.0), 1)),
                    ph=float(np.round(rng.uniform(5.2, 9.4), 1)), temp_c=float(np.round(rng.uniform(17, 37), 1)),
                    salinity_ppt=float(np.round(rng.uniform(3, 37), 1)),
                    nh4_mg_l=float(np.round(rng.uniform(0, 1.2), 2)))  # fmt: skip
        if i % 6 == 0:
            add("light_trap", TRAP, t, bph_night=float(rng.choice([0, 50, 300, 1100])),
                stemborer_night=float(rng.choice([0, 10, 90])))  # fmt: skip
        for dev in (KITCHEN, ROAD):
            add("camera", dev, t, video_ok=1.0)
            if rng.random() < 0.3:
                add("camera_event", dev, t + M, event_code=float(rng.integers(0, len(CAMERA_EVENTS))),
                    confidence=float(np.round(rng.uniform(0.5, 1.0), 2)), frames=float(rng.integers(1, 4)))  # fmt: skip
        if rng.random() < 0.02:
            add("device_status", int(rng.integers(0, len(DEVICES))), t, online=float(rng.integers(0, 2)))
    # arrival: per key in time order, with duplicates and some readings delayed by up to 3 batches
    arrivals: list[tuple[float, str, int, int, dict[str, float]]] = []
    for key, items in rows.items():
        for dev, ts, fields in items:
            delay = float(rng.exponential(5 * M)) if rng.random() < 0.9 else float(rng.uniform(0, 4 * H))
            arrivals.append((ts + delay, key, dev, ts, fields))
            if rng.random() < 0.02:
                arrivals.append((ts + delay + M, key, dev, ts, fields))
    arrivals.sort(key=lambda a: a[0])
    batches: list[tuple[Batch, int]] = []
    i = 0
    while i < len(arrivals):
        n = int(rng.integers(1, 120))
        chunk = arrivals[i : i + n]
        i += n
        now = int(chunk[-1][0])
        batch: Batch = {}
        for key in rows:
            mine = [a for a in chunk if a[1] == key]
            if mine:
                names = sorted({k for a in mine for k in a[4]})
                batch[key] = cols([a[2] for a in mine], [a[3] for a in mine],
                                  **{k: [a[4].get(k, np.nan) for a in mine] for k in names})  # fmt: skip
        batches.append((batch, now))
        if rng.random() < 0.2:
            batches.append(({}, now + int(rng.integers(1, 90)) * M))  # a tick
    return batches


@pytest.mark.parametrize("seed", range(6))
def test_random_batches_agree(seed: int) -> None:
    pack = PACK.model_copy(update={"rules": tuple(r.model_copy(update={"min_gap_ms": 20 * M}) for r in PACK.rules)})
    out = both(_random_batches(seed), pack)
    assert len({t.rule_id for t in out}) >= 15


@pytest.mark.parametrize("seed", range(6, 10))
def test_random_batches_agree_on_a_flapping_gated_rule(seed: int) -> None:
    """SAL_SAFE without its 2 h: many fires wait on the falling-tide gate."""
    safe = next(r for r in PACK.rules if r.id == "SAL_SAFE")
    flapping = safe.model_copy(update={"condition": safe.condition.model_copy(update={"for_ms": 0}), "min_gap_ms": 0})
    out = both(_random_batches(seed), PACK.model_copy(update={"rules": (flapping,)}))
    assert len(out) > 20


# --- a simulated fleet ------------------------------------------------------------------------------


def test_simulated_48h_fleet_sample_agrees_batched_and_whole() -> None:
    sample = simulate(12_000, seed=3, batch_readings=1_000)
    assert sample.span_ms > 40 * H
    batched = run_engine(PACK, sample, sample.batches)
    whole = run_engine(PACK, sample, [sample.whole])
    assert same_transitions(batched, run_reference(PACK, sample, sample.reference_batches()))
    assert same_transitions(whole, run_reference(PACK, sample, [sample.reference_whole()]))
    assert len(batched) > 50
    assert len({t.rule_id for t in batched}) >= 8


# --- building blocks ---------------------------------------------------------------------------------


def test_pairwise_sum_matches_numpy_row_sums() -> None:
    """Window means add buckets in numpy's order: bit-identical to the engine's ``sum(axis=1)``."""
    rng = np.random.default_rng(0)
    for n in (3, 8, 9, 25, 49):
        a = rng.random((300, n)) * 1000
        a[rng.random(a.shape) < 0.5] = 0.0
        assert [pairwise_sum(row) for row in a.tolist()] == a.sum(axis=1).tolist()


@pytest.mark.parametrize("window_ms", [H, D])
def test_buckets_match_the_engines_bucket_stats_out_of_order(window_ms: int) -> None:
    rng = np.random.default_rng(window_ms % 97)
    engine, ref = BucketStats(window_ms, 1), Buckets(window_ms)
    dev = np.zeros(1, np.int64)
    t = T0
    for _ in range(600):
        t += int(rng.integers(0, window_ms // 10))
        ts = t - int(rng.integers(0, 2 * window_ms)) if rng.random() < 0.2 else t  # some arrive late
        v = float(np.round(rng.normal(100, 30), 1))
        engine.add(dev, np.array([ts], np.int64), np.array([v]))
        ref.add(ts, v)
        at = t + int(rng.integers(0, window_ms // 4))
        for stat in ("mean", "min", "max", "range"):
            want = float(engine.stat(dev, np.array([at], np.int64), stat)[0])
            got = ref.stat(at, stat)
            assert got == want or (np.isnan(got) and np.isnan(want)), (stat, got, want)


def test_readings_from_columns_drops_missing_fields() -> None:
    got = readings_from_columns({"salinity": cols([1, 0], [5, 6], salinity_ppt=[0.5, np.nan], ec_us_cm=[9.0, 8.0])})
    assert got == [Reading("salinity", 1, 5, {"salinity_ppt": 0.5, "ec_us_cm": 9.0}),
                   Reading("salinity", 0, 6, {"ec_us_cm": 8.0})]  # fmt: skip
