"""Signal shapes against the domain reference: tides, salinity, PSS-78, diel cycles, randomness."""

from __future__ import annotations

import numpy as np
import pytest

from simulators import signals as sg

JAN_2024 = 1_704_067_200_000  # 2024-01-01T00:00Z
MIN = 60_000
DAY = sg.MS_PER_DAY


def utc_ms(year: int, month: int, day: int, hour: int = 0) -> int:
    return int(np.datetime64(f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}", "ms").astype(np.int64))


def minutes(start_ms: int, days: float) -> np.ndarray:
    return start_ms + np.arange(int(days * 1440), dtype=np.int64) * MIN


def local_day_start(y: int, m: int, d: int) -> int:
    """00:00 local (UTC+7) of a date, in epoch ms."""
    return utc_ms(y, m, d) - sg.LOCAL_OFFSET_MS


# --- PSS-78 -------------------------------------------------------------------------------------

CHECK_TABLE = [
    (0.25, 0.52),
    (0.5, 1.02),
    (1, 1.97),
    (2, 3.80),
    (3, 5.56),
    (4, 7.28),
    (5, 8.96),
    (10, 17.0),
    (20, 32.1),
    (35, 53.1),
]


@pytest.mark.parametrize(("ppt", "ms_cm"), CHECK_TABLE)
def test_pss78_reproduces_the_check_table(ppt: float, ms_cm: float) -> None:
    assert sg.ec25_from_salinity(ppt) / 1000 == pytest.approx(ms_cm, rel=0.02)
    assert sg.salinity_from_ec25(ms_cm * 1000) == pytest.approx(ppt, rel=0.02)


def test_standard_seawater_is_53_ms_per_cm_at_25_c() -> None:
    assert sg.ec25_from_salinity(35.0) == pytest.approx(53_070, rel=0.002)


def test_ec_salinity_round_trip_over_the_whole_range() -> None:
    s = np.concatenate([np.linspace(0.0, 2.0, 401), np.linspace(2.0, 45.0, 431)])
    assert np.allclose(sg.salinity_from_ec25(sg.ec25_from_salinity(s)), s, atol=1e-7)
    ec = np.linspace(0.0, 70_000.0, 1000)
    s_of_ec = sg.salinity_from_ec25(ec)
    assert np.all(np.diff(s_of_ec) > 0), "salinity must rise with conductivity"
    assert s_of_ec[0] == 0.0


def test_hill_extension_joins_pss78_at_2() -> None:
    below = sg.salinity_from_ec25(sg.ec25_from_salinity(2.0) * (1 - 1e-9))
    above = sg.salinity_from_ec25(sg.ec25_from_salinity(2.0) * (1 + 1e-9))
    assert 0.0 < above - below < 2e-4  # the published extension leaves a 1.5e-4 step at 25 °C


@pytest.mark.parametrize("ppt", [1.9999, 1.99995, 2.0])
def test_a_salinity_in_the_hill_step_gets_the_ec_of_2(ppt: float) -> None:
    ec = sg.ec25_from_salinity(ppt)
    assert ec == pytest.approx(sg.ec25_from_salinity(2.0), rel=1e-6)
    assert sg.salinity_from_ec25(ec) == pytest.approx(ppt, abs=2e-4)


def test_the_simulated_sensors_use_the_rules_pss78() -> None:
    # One PSS-78: what a simulated sensor reports as salinity_ppt is what a rule derives from EC.
    from rules.derived import salinity_from_ec

    ec = np.geomspace(1.0, 100_000.0, 500)
    np.testing.assert_array_equal(sg.salinity_from_ec25(ec), salinity_from_ec(ec, 25.0))
    assert sg.salinity_from_ec25(53_070.0) == float(salinity_from_ec(53_070.0))


def test_fresh_water_ec_maps_to_the_fresh_floor() -> None:
    assert 0.04 < sg.salinity_from_ec25(100.0) < 0.06
    assert 0.2 < sg.salinity_from_ec25(500.0) < 0.3


# --- tides --------------------------------------------------------------------------------------


def daily_ranges(west: bool, days: int = 360, km: float = 0.0) -> np.ndarray:
    level = sg.tide_level_m(minutes(JAN_2024, days), west, km).reshape(days, 1440)
    return np.asarray(level.max(axis=1) - level.min(axis=1))


def highs_per_day(west: bool, days: int = 60) -> float:
    level = sg.tide_level_m(minutes(JAN_2024, days), west, 0.0)
    d = np.diff(level)
    return float(np.count_nonzero((d[:-1] > 0) & (d[1:] <= 0)) / days)


def test_east_coast_spring_range_is_3_5_to_4_2_m() -> None:
    ranges = daily_ranges(west=False)
    assert 3.5 <= ranges.max() <= 4.2
    for start in range(0, 360, 30):
        assert 3.5 <= ranges[start : start + 30].max() <= 4.2, f"month from day {start}"
    for start in range(0, 345, 15):
        window = ranges[start : start + 15]
        assert window.max() >= 3.3, "every spring–neap cycle has a spring tide"
        assert window.min() < 0.75 * window.max(), "neaps are clearly smaller than springs"


def test_east_coast_is_semi_diurnal_with_unequal_highs() -> None:
    assert 1.85 <= highs_per_day(west=False) <= 2.0
    level = sg.tide_level_m(minutes(JAN_2024, 2), False, 0.0)
    d = np.diff(level)
    highs = level[1:-1][(d[:-1] > 0) & (d[1:] <= 0)]
    assert abs(highs[0] - highs[1]) > 0.1, "two unequal highs a day"


def test_west_coast_is_about_1_m_and_mostly_diurnal() -> None:
    ranges = daily_ranges(west=True)
    assert 0.8 <= ranges.max() <= 1.4
    assert highs_per_day(west=True) < 1.3


def test_spring_neap_cycle_is_14_8_days() -> None:
    ranges = daily_ranges(west=False, days=360)
    spectrum = np.abs(np.fft.rfft(ranges - ranges.mean()))
    freqs = np.fft.rfftfreq(len(ranges), d=1.0)
    band = (freqs > 1 / 20) & (freqs < 1 / 10)
    period = 1 / freqs[band][np.argmax(spectrum[band])]
    assert period == pytest.approx(14.8, abs=0.8)


def test_tide_shrinks_and_lags_inland() -> None:
    t = minutes(JAN_2024, 15)
    mouth = sg.tide_level_m(t, False, 0.0)
    inland = sg.tide_level_m(t, False, 60.0)
    assert np.ptp(inland) < 0.8 * np.ptp(mouth)
    lag = np.argmax([np.corrcoef(mouth[: -k or None], inland[k:])[0, 1] for k in range(0, 360, 10)])
    assert 120 <= lag * 10 <= 240, "the tide reaches 60 km up about 3 h later"


# --- salinity -----------------------------------------------------------------------------------


def peak_salinity(km: float, start_ms: int, days: float = 15, **kw: float) -> float:
    return float(sg.salinity_ppt(minutes(start_ms, days), km, False, **kw).max())


@pytest.mark.parametrize(
    ("km", "lo", "hi"),
    [(5, 10.0, 14.0), (25, 3.0, 9.0), (35, 3.0, 9.0), (45, 0.2, 1.5), (55, 0.2, 1.5), (100, 0.0, 0.3)],
)
def test_dry_season_salinity_by_distance(km: float, lo: float, hi: float) -> None:
    assert lo <= peak_salinity(km, utc_ms(2024, 3, 10)) <= hi


def test_fresh_floor_far_upstream() -> None:
    s = sg.salinity_ppt(minutes(utc_ms(2024, 3, 10), 3), 120.0, False, floor_ppt=0.15)
    assert np.all((s >= 0.15) & (s < 0.16))


def test_salinity_season_rises_from_january_peaks_march_april_falls_in_may() -> None:
    def month_mean(m: int) -> float:
        return float(sg.salinity_ppt(minutes(utc_ms(2024, m, 1), 28), 30.0, False).mean())

    means = {m: month_mean(m) for m in range(1, 13)}
    assert means[1] < means[2] < means[3]
    assert max(means, key=lambda m: means[m]) in (3, 4)
    assert means[6] < 0.5 * means[4]
    assert all(means[m] < 0.6 for m in range(7, 12))


def test_near_the_front_salt_comes_with_high_water_an_hour_late() -> None:
    t = minutes(utc_ms(2024, 3, 10), 15)
    km = 45.0
    s = sg.salinity_ppt(t, km, False, floor_ppt=0.15)
    assert s.min() < 0.25, "near fresh at low water"
    assert s.max() > 0.8, "salt spikes at high water"
    level = sg.tide_level_m(t, False, km)
    day = slice(int(np.argmax(s)) - 600, int(np.argmax(s)) + 600)
    lag_min = int(np.argmax(s[day])) - int(np.argmax(level[day]))
    assert 30 <= lag_min <= 90


def test_vam_co_salt_reaches_further_inland() -> None:
    start = utc_ms(2024, 3, 10)
    main = peak_salinity(80, start)
    vam_co = peak_salinity(80, start, front_km=sg.VAM_CO_FRONT_KM)
    assert main < 0.3 < 1.0 < vam_co


# --- temperature, oxygen, pH --------------------------------------------------------------------


def one_local_day() -> np.ndarray:
    return minutes(local_day_start(2024, 4, 10), 1)


def hour_of(values: np.ndarray, fn: str) -> float:
    return float(getattr(np, fn)(values)) / 60.0


def test_water_temperature_minimum_at_dawn_maximum_early_afternoon() -> None:
    t = one_local_day()
    pond = sg.water_temp_c(t, 3.4)
    assert 4.5 <= hour_of(pond, "argmin") <= 5.5
    assert 13.0 <= hour_of(pond, "argmax") <= 15.0
    assert np.ptp(pond) == pytest.approx(3.4, abs=0.05)
    assert 27.0 <= pond.mean() <= 32.0
    assert np.ptp(sg.water_temp_c(t, 1.0)) < np.ptp(pond)


def test_pond_oxygen_minimum_at_dawn_maximum_late_afternoon() -> None:
    t = one_local_day()
    early = sg.pond_do_mg_l(t, 7.0, 1.25)
    bloom = sg.pond_do_mg_l(t, 7.0, 6.5)
    assert 5.0 <= hour_of(bloom, "argmin") <= 6.0
    assert 15.0 <= hour_of(bloom, "argmax") <= 17.5
    assert 1.0 <= np.ptp(early) <= 1.5
    assert 4.0 <= np.ptp(bloom) <= 8.0
    crash = sg.pond_do_mg_l(t, 7.0, 6.5, crash_depth=2.0)
    assert crash.min() < 3.0 <= bloom.min()
    assert 5.0 <= hour_of(crash, "argmin") <= 6.0


def test_river_oxygen_cycle_is_flat() -> None:
    assert np.ptp(sg.river_do_mg_l(one_local_day(), 4.0)) <= 0.4


def test_pond_ph_tracks_oxygen_and_peaks_around_14h() -> None:
    t = one_local_day()
    ph = sg.pond_ph(t, 7.9, 0.4)
    assert 13.0 <= hour_of(ph, "argmax") <= 15.0
    assert np.ptp(ph) <= 0.5
    assert sg.pond_ph(t, 7.9, 1.2, bloom=0.6).max() > 9.0


def test_acid_flush_falls_fast_and_recovers() -> None:
    h = np.arange(0, 100, 1.0)
    drop = sg.acid_flush_drop(h, 2.0, 72.0)
    assert drop[6] == pytest.approx(2.0)
    assert drop[0] == 0.0
    assert drop[80] == 0.0
    assert np.all(np.diff(drop[6:72]) <= 0)
    assert sg.acid_flush_season(140) == 1.0
    assert sg.acid_flush_season(30) == 0.0


# --- randomness, counts, rates ------------------------------------------------------------------


def test_keyed_draws_depend_on_key_stream_and_slot_only() -> None:
    k = sg.Keyed(42)
    slots = np.arange(10_000)
    u = k.uniform(7, 3, slots)
    assert np.array_equal(u[:50], k.uniform(7, 3, slots[:50]))
    assert np.array_equal(u[123:124], k.uniform(7, 3, 123))
    assert not np.array_equal(u, k.uniform(7, 4, slots))
    assert not np.array_equal(u, k.uniform(8, 3, slots))
    assert not np.array_equal(u, sg.Keyed(43).uniform(7, 3, slots))
    assert np.all((u >= 0) & (u < 1))
    assert abs(u.mean() - 0.5) < 0.01
    z = k.normal(7, 5, slots)
    assert abs(z.mean()) < 0.05
    assert abs(z.std() - 1) < 0.05


def test_poisson_counts_have_the_right_mean() -> None:
    k = sg.Keyed(1)
    slots = np.arange(20_000)
    for lam in (0.3, 3.0, 30.0, 300.0):
        n = sg.poisson(k.uniform(1, 1, slots), k.normal(1, 2, slots), lam)
        assert n.dtype == np.int64
        assert n.min() >= 0
        assert n.mean() == pytest.approx(lam, rel=0.05)
        assert n.var() == pytest.approx(lam, rel=0.1)


def test_trap_catch_peaks_19_to_22h() -> None:
    w = sg.TRAP_HOUR_WEIGHTS
    assert w.sum() == pytest.approx(1.0)
    assert int(np.argmax(w)) in (1, 2, 3)  # hours 19–20, 20–21, 21–22
    assert w[1:4].sum() > 0.5


def test_bph_migration_surges_every_few_weeks_up_to_about_1300() -> None:
    nights = np.arange(19_700, 19_700 + 365)
    surge = sg.migration_surge(
        sg.Keyed(5), 99, 10, nights, window_nights=21, probability=0.85, peak_lo=200.0, peak_hi=1200.0
    )
    peaks = [surge[i : i + 21].max() for i in range(0, 357, 21)]
    assert sum(p > 150 for p in peaks) >= 10
    assert surge.max() <= 1300
    assert np.median(surge) < 20, "most nights are not surge nights"


def test_traffic_violations_several_per_hour_by_day() -> None:
    assert 3 <= sg.traffic_rate_per_h(10.0) <= 10
    assert sg.traffic_rate_per_h(2.0) < 1
    cooking = sg.hygiene_rate_per_h(np.arange(24.0))
    assert 1 <= cooking.sum() <= 6, "a few hygiene violations a day"
