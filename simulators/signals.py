"""Physical signal shapes of the Mekong Delta as pure functions of time (epoch ms, UTC).

Every function takes numpy arrays (one element per reading) and returns arrays of the same
shape; parameters broadcast. Local time in the Delta is UTC+7. Randomness comes only from
:class:`Keyed`, a counter-based generator whose draws are keyed by (seed, key, stream, slot):
a value depends on *what* and *when* it is drawn for, never on how many draws came before.
Figures follow the domain reference (§1–§6); the tests pin the ones that matter.
"""

from __future__ import annotations

import hashlib
import math
from typing import Final, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from rules.derived import salinity_from_ec

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
U64 = NDArray[np.uint64]
Bool = NDArray[np.bool_]

MS_PER_H: Final = 3_600_000
MS_PER_DAY: Final = 86_400_000
LOCAL_OFFSET_MS: Final = 7 * MS_PER_H
"""Indochina Time, UTC+7, no daylight saving."""


# --- time -------------------------------------------------------------------------------------


def local_hour(t_ms: ArrayLike) -> F64:
    """Local hour of day in [0, 24)."""
    t = np.asarray(t_ms, dtype=np.int64)
    return np.asarray(((t + LOCAL_OFFSET_MS) % MS_PER_DAY) / MS_PER_H, dtype=np.float64)


def local_day(t_ms: ArrayLike) -> I64:
    """Local calendar day as days since 1970-01-01."""
    t = np.asarray(t_ms, dtype=np.int64)
    return np.asarray((t + LOCAL_OFFSET_MS) // MS_PER_DAY, dtype=np.int64)


def day_of_year(t_ms: ArrayLike) -> F64:
    """Local day of year in [0, 366), fractional."""
    local = (np.asarray(t_ms, dtype=np.int64) + LOCAL_OFFSET_MS).astype("datetime64[ms]")
    year = local.astype("datetime64[Y]")
    return np.asarray((local - year).astype(np.int64) / MS_PER_DAY, dtype=np.float64)


def diel_shape(hour: ArrayLike, h_min: float, h_max: float) -> F64:
    """A daily cycle in [-1, 1]: -1 at ``h_min``, +1 at ``h_max``, cosine on both limbs."""
    rise = (h_max - h_min) % 24.0
    d = (np.asarray(hour, dtype=np.float64) - h_min) % 24.0
    up = -np.cos(np.pi * d / rise)
    down = np.cos(np.pi * (d - rise) / (24.0 - rise))
    return np.asarray(np.where(d < rise, up, down), dtype=np.float64)


def _hour_bump(hour: ArrayLike, centre: float, sigma_h: float) -> F64:
    """A Gaussian bump around a local hour, wrapped over midnight."""
    d = (np.asarray(hour, dtype=np.float64) - centre + 12.0) % 24.0 - 12.0
    return np.asarray(np.exp(-0.5 * (d / sigma_h) ** 2), dtype=np.float64)


def _seasonal(doy: ArrayLike, knots: tuple[tuple[float, float], ...]) -> F64:
    """Periodic piecewise-linear curve through (day-of-year, value) knots."""
    x = np.array([k[0] for k in knots])
    y = np.array([k[1] for k in knots])
    return np.asarray(np.interp(np.asarray(doy, dtype=np.float64), x, y, period=365.25))


# --- keyed randomness -------------------------------------------------------------------------

_GOLDEN: Final = np.uint64(0x9E3779B97F4A7C15)
_M1: Final = np.uint64(0xBF58476D1CE4E5B9)
_M2: Final = np.uint64(0x94D049BB133111EB)
_MASK53: Final = float(2**-53)
_MASK32: Final = float(2**-32)


def _mix(x: U64) -> U64:
    """SplitMix64 finaliser (a bijective avalanche on uint64)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return np.asarray(x ^ (x >> np.uint64(31)), dtype=np.uint64)


def key_of(name: str) -> int:
    """A stable 64-bit key for a name (device id, province slug)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")


class Keyed:
    """Counter-based random draws keyed by (seed, key, stream, slot); vectorised."""

    def __init__(self, seed: int) -> None:
        self._seed = int(_mix(np.array([seed & (2**64 - 1)], dtype=np.uint64))[0])

    def bits(self, key: ArrayLike, stream: int, slot: ArrayLike) -> U64:
        """64 random bits per element of the broadcast of ``key`` and ``slot``."""
        with np.errstate(over="ignore"):
            k = np.atleast_1d(np.asarray(key, dtype=np.uint64))
            s = np.atleast_1d(np.asarray(slot, dtype=np.int64)).astype(np.uint64)
            h = _mix(k ^ np.uint64(self._seed))
            h = _mix(h + np.uint64(stream & (2**64 - 1)) * _GOLDEN)
            return _mix(h ^ _mix(s + _GOLDEN))

    def uniform(self, key: ArrayLike, stream: int, slot: ArrayLike) -> F64:
        """Uniform draws in [0, 1)."""
        return np.asarray((self.bits(key, stream, slot) >> np.uint64(11)) * _MASK53)

    def normal(self, key: ArrayLike, stream: int, slot: ArrayLike) -> F64:
        """Standard normal draws (Box–Muller on the two halves of one 64-bit draw)."""
        b = self.bits(key, stream, slot)
        u1 = ((b >> np.uint64(32)).astype(np.float64) + 0.5) * _MASK32
        u2 = (b & np.uint64(0xFFFFFFFF)).astype(np.float64) * _MASK32
        return np.asarray(np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2))


def poisson(u: ArrayLike, z: ArrayLike, lam: ArrayLike) -> I64:
    """Poisson counts from a uniform ``u`` (inverse CDF) or, for large means, a normal ``z``."""
    u_a, z_a, lam_a = np.broadcast_arrays(
        np.asarray(u, dtype=np.float64),
        np.asarray(z, dtype=np.float64),
        np.maximum(np.asarray(lam, dtype=np.float64), 0.0),
    )
    out = np.zeros(u_a.shape, dtype=np.int64)
    small = lam_a <= 40.0
    if small.any():
        lam_s, u_s = lam_a[small], u_a[small]
        k = np.zeros(lam_s.shape, dtype=np.int64)
        p = np.exp(-lam_s)
        cdf = p.copy()
        for i in range(1, 120):
            more = u_s > cdf
            if not more.any():
                break
            k += more
            p = p * lam_s / i
            cdf = cdf + p
        out[small] = k
    big = ~small
    if big.any():
        lam_b = lam_a[big]
        out[big] = np.maximum(np.rint(lam_b + np.sqrt(lam_b) * z_a[big]), 0).astype(np.int64)
    return out


# --- tide -------------------------------------------------------------------------------------

TIDE_PERIODS_H: Final = {"M2": 12.4206012, "S2": 12.0, "K1": 23.9344696, "O1": 25.8193417}
"""Periods of the four main constituents; M2 beating S2 gives the 14.77-day spring–neap cycle."""

_TIDE_AMP_M: Final = {
    "east": np.array([1.10, 0.46, 0.52, 0.40]),  # irregular semi-diurnal, F ≈ 0.6
    "west": np.array([0.07, 0.03, 0.36, 0.26]),  # mostly diurnal, F ≈ 6
}
_TIDE_PHASE: Final = {
    "east": np.array([0.0, 0.0, 0.0, 0.0]),
    "west": np.array([1.9, 1.9, 1.2, 1.2]),
}
_TIDE_REF_MS: Final = 947_182_440_000 + 36 * MS_PER_H
"""New moon of 2000-01-06 18:14 UTC plus a 1.5-day age of tide: a spring tide."""
_TIDE_OMEGA: Final = np.array([2 * math.pi / p for p in TIDE_PERIODS_H.values()])
TIDE_SPEED_KM_H: Final = 20.0
"""Speed at which the tide wave travels up the branches (sets the lag inland)."""
TIDE_DECAY_KM: Final = 150.0
"""e-folding distance of the tidal amplitude up the branches."""


def tide_amplitude_m(west: ArrayLike, km_from_sea: ArrayLike) -> F64:
    """Sum of constituent amplitudes at a station (half the largest possible range)."""
    w = np.asarray(west, dtype=bool)
    total = np.where(w, _TIDE_AMP_M["west"].sum(), _TIDE_AMP_M["east"].sum())
    return np.asarray(total * np.exp(-np.asarray(km_from_sea, dtype=np.float64) / TIDE_DECAY_KM))


def tide_norm(t_ms: ArrayLike, west: ArrayLike, km_from_sea: ArrayLike) -> F64:
    """Tide level in [-1, 1] (over :func:`tide_amplitude_m`), lagged for the distance inland."""
    t, w, km = np.broadcast_arrays(
        np.asarray(t_ms, dtype=np.int64),
        np.asarray(west, dtype=bool),
        np.asarray(km_from_sea, dtype=np.float64),
    )
    hours = (t - _TIDE_REF_MS) / MS_PER_H - km / TIDE_SPEED_KM_H
    level = np.zeros(t.shape, dtype=np.float64)
    for i in range(4):
        amp = np.where(w, _TIDE_AMP_M["west"][i], _TIDE_AMP_M["east"][i])
        phase = np.where(w, _TIDE_PHASE["west"][i], _TIDE_PHASE["east"][i])
        level += amp * np.cos(_TIDE_OMEGA[i] * hours - phase)
    total = np.where(w, _TIDE_AMP_M["west"].sum(), _TIDE_AMP_M["east"].sum())
    return np.asarray(level / total)


def tide_level_m(t_ms: ArrayLike, west: ArrayLike, km_from_sea: ArrayLike = 0.0) -> F64:
    """Tide level (m about mean sea level) at a station ``km_from_sea`` up an estuary."""
    return np.asarray(tide_norm(t_ms, west, km_from_sea) * tide_amplitude_m(west, km_from_sea))


def flood_season(doy: ArrayLike) -> F64:
    """Upstream flood-season envelope in [0, 1]: rises from July, peaks Sep–Oct, gone by Dec."""
    return _seasonal(
        doy,
        (
            (0, 0.0),
            (181, 0.0),
            (212, 0.3),
            (243, 0.8),
            (270, 1.0),
            (300, 0.9),
            (334, 0.2),
            (365.25, 0.0),
        ),
    )


# --- salinity ---------------------------------------------------------------------------------

SALINITY_MOUTH_PPT: Final = 13.0
"""Dry-season peak salinity at the river mouths (10–14 ‰)."""
SALINITY_FRONT_KM: Final = 27.0
"""Where peak-season salinity is half its mouth value on the main branches."""
VAM_CO_FRONT_KM: Final = 55.0
"""The Vàm Cỏ rivers (Long An) let salt reach much further inland."""


def salinity_season(doy: ArrayLike) -> F64:
    """Seasonal envelope in [0.05, 1]: rises from January, peaks Mar–Apr, falls with May rains."""
    return _seasonal(
        doy,
        (
            (0, 0.25),
            (15, 0.35),
            (31, 0.5),
            (59, 0.8),
            (75, 0.95),
            (90, 1.0),
            (115, 1.0),
            (130, 0.85),
            (145, 0.55),
            (160, 0.25),
            (181, 0.08),
            (200, 0.05),
            (334, 0.05),
            (350, 0.12),
            (365.25, 0.25),
        ),
    )


def salinity_profile_ppt(km_from_sea: ArrayLike, season: ArrayLike, front_km: ArrayLike = SALINITY_FRONT_KM) -> F64:
    """High-water salinity along a branch: a logistic front that moves inland with the season."""
    s = np.asarray(season, dtype=np.float64)
    mag = SALINITY_MOUTH_PPT * (0.3 + 0.7 * s)
    front = np.asarray(front_km, dtype=np.float64) * (0.3 + 0.7 * s)
    width = front / 3.0
    x = (np.asarray(km_from_sea, dtype=np.float64) - front) / width
    return np.asarray(mag / (1.0 + np.exp(np.clip(x, -50.0, 50.0))))


def salinity_ppt(
    t_ms: ArrayLike,
    km_from_sea: ArrayLike,
    west: ArrayLike,
    *,
    front_km: ArrayLike = SALINITY_FRONT_KM,
    floor_ppt: ArrayLike = 0.15,
    lag_h: float = 1.0,
) -> F64:
    """Practical salinity (‰): season × distance × logistic of the tide lagged ``lag_h``.

    Near the mouth the tide only modulates it; near the front it is ~0 at low water and
    spikes at high water, most at spring tides. ``floor_ppt`` is the fresh-water background.
    """
    t = np.asarray(t_ms, dtype=np.int64)
    season = salinity_season(day_of_year(t))
    profile = salinity_profile_ppt(km_from_sea, season, front_km)
    ratio = profile / (SALINITY_MOUTH_PPT * (0.3 + 0.7 * season))
    eta = tide_norm(t - int(lag_h * MS_PER_H), west, km_from_sea)
    threshold = -1.2 + 1.8 * (1.0 - ratio)
    tidal = 1.0 / (1.0 + np.exp(-3.0 * (eta - threshold)))
    return np.asarray(np.asarray(floor_ppt, dtype=np.float64) + profile * tidal)


# --- PSS-78 -----------------------------------------------------------------------------------
# One implementation of PSS-78 + Hill (1986): rules.derived.salinity_from_ec, which the rules read
# derived salinity with. The sensors simulated here report salinity_ppt from EC with it too, and
# this module only adds its inverse, to give a station the EC of the salinity it is meant to have.

_SQRT_EC_MAX: Final = math.sqrt(120_000.0)
"""The inverse's table reaches 120 mS/cm (about 90 ‰), past the contract's 50 ‰ and 100 mS/cm."""


@overload
def salinity_from_ec25(ec_us_cm: float) -> float: ...
@overload
def salinity_from_ec25(ec_us_cm: F64) -> F64: ...
def salinity_from_ec25(ec_us_cm: float | F64) -> float | F64:
    """Practical salinity (‰) from conductivity at 25 °C (µS/cm): :func:`rules.derived.salinity_from_ec`."""
    s = salinity_from_ec(ec_us_cm, 25.0)
    return float(s) if s.ndim == 0 else s


def _sqrt_ec_at_2_ppt() -> float:
    """sqrt(EC25) where PSS-78 reaches 2 ‰: the Hill extension takes over below it."""
    lo, hi = 0.0, _SQRT_EC_MAX
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if salinity_from_ec(mid**2, 25.0) < 2.0 else (lo, mid)
    return hi


_SQRT_EC_2: Final = _sqrt_ec_at_2_ppt()
_TABLE_SQRT_EC: Final = np.linspace(0.0, _SQRT_EC_MAX, 16_385)
_TABLE_S: Final = salinity_from_ec(_TABLE_SQRT_EC**2, 25.0)
_FIRST: Final = int(np.flatnonzero(_TABLE_S > 0.0)[0]) - 1
_INV_SQRT_EC: Final = _TABLE_SQRT_EC[_FIRST:]
_INV_S: Final = _TABLE_S[_FIRST:]


@overload
def ec25_from_salinity(salinity_ppt: float) -> float: ...
@overload
def ec25_from_salinity(salinity_ppt: F64) -> F64: ...
def ec25_from_salinity(salinity_ppt: float | F64) -> float | F64:
    """Conductivity at 25 °C (µS/cm) of water with practical salinity ``salinity_ppt``.

    Inverts :func:`salinity_from_ec25` on a dense table of sqrt(EC) and refines with Newton steps
    on the branch the salinity lies on (Hill below 2 ‰, PSS-78 above); the round trip agrees to
    better than 1e-7 ‰. The Hill extension joins PSS-78 with a step of 1.5e-4 ‰ just below 2 ‰:
    a salinity inside that step gets the EC of 2 ‰.
    """
    s = np.clip(np.asarray(salinity_ppt, dtype=np.float64), 0.0, float(_INV_S[-1]))
    above = s >= 2.0

    def on_branch(x: F64) -> F64:
        return np.where(above, np.maximum(x, _SQRT_EC_2), np.minimum(x, _SQRT_EC_2))

    x = on_branch(np.interp(s, _INV_S, _INV_SQRT_EC))
    h = 1e-5
    for _ in range(3):
        f0 = salinity_from_ec(x**2, 25.0) - s
        f1 = salinity_from_ec((x + np.where(above, h, -h)) ** 2, 25.0) - s
        slope = np.where(f1 != f0, (f1 - f0) / np.where(above, h, -h), 1.0)
        x = on_branch(np.maximum(x - f0 / slope, 0.0))
    ec = x**2
    return float(ec) if ec.ndim == 0 else np.asarray(ec)


# --- temperature, oxygen, pH ------------------------------------------------------------------


def water_temp_base_c(doy: ArrayLike) -> F64:
    """Daily-mean water temperature of the Delta (27–31 °C): coolest Dec–Jan, warmest Apr–May."""
    return _seasonal(
        doy,
        (
            (0, 27.4),
            (31, 27.7),
            (59, 28.7),
            (90, 30.2),
            (120, 31.0),
            (151, 30.4),
            (181, 29.7),
            (212, 29.4),
            (243, 29.4),
            (273, 29.2),
            (304, 28.7),
            (334, 27.9),
            (365.25, 27.4),
        ),
    )


def water_temp_c(t_ms: ArrayLike, daily_rise_c: ArrayLike, offset_c: ArrayLike = 0.0) -> F64:
    """Water temperature: minimum ~05 h, maximum ~14 h local, rising ``daily_rise_c`` in between.

    Ponds rise ~3.4 °C a day (1.1–7.9), rivers ~1 °C.
    """
    t = np.asarray(t_ms, dtype=np.int64)
    shape = diel_shape(local_hour(t), 5.0, 14.0)
    return np.asarray(water_temp_base_c(day_of_year(t)) + np.asarray(offset_c) + 0.5 * np.asarray(daily_rise_c) * shape)


def pond_do_mg_l(t_ms: ArrayLike, mean: ArrayLike, day_night_diff: ArrayLike, crash_depth: ArrayLike = 0.0) -> F64:
    """Pond dissolved oxygen: minimum at dawn (~05:30), maximum late afternoon (~16 h).

    ``day_night_diff`` is 1–1.5 mg/L early in a crop and 4–8 in dense blooms; a positive
    ``crash_depth`` pulls that morning's dawn minimum further down (a bloom die-off).
    """
    h = local_hour(t_ms)
    shape = diel_shape(h, 5.5, 16.0)
    dawn = _hour_bump(h, 5.5, 1.3)
    do = np.asarray(mean) + 0.5 * np.asarray(day_night_diff) * shape
    return np.asarray(np.maximum(do - np.asarray(crash_depth) * dawn, 0.05))


def river_do_mg_l(t_ms: ArrayLike, mean: ArrayLike) -> F64:
    """River and canal dissolved oxygen: 2–6 mg/L with a flat daily cycle (±0.15)."""
    return np.asarray(np.maximum(np.asarray(mean) + 0.15 * diel_shape(local_hour(t_ms), 6.0, 15.0), 0.05))


def pond_ph(t_ms: ArrayLike, base: ArrayLike, swing: ArrayLike, bloom: ArrayLike = 0.0) -> F64:
    """Pond pH: tracks oxygen, lowest at dawn, peaks ~14 h; ``swing`` ≤ 0.5 normally.

    ``bloom`` adds to the afternoon peak only (dense blooms push pH above 9).
    """
    shape = diel_shape(local_hour(t_ms), 5.5, 14.0)
    afternoon = np.maximum(shape, 0.0) ** 2
    return np.asarray(np.asarray(base) + 0.5 * np.asarray(swing) * shape + np.asarray(bloom) * afternoon)


def river_ph(t_ms: ArrayLike, base: ArrayLike, acid_drop: ArrayLike = 0.0) -> F64:
    """River and canal pH: nearly flat (±0.05), minus any acid-sulphate flush ``acid_drop``."""
    shape = diel_shape(local_hour(t_ms), 6.0, 14.0)
    return np.asarray(np.asarray(base) + 0.05 * shape - np.asarray(acid_drop))


def acid_flush_drop(hours_since_start: ArrayLike, depth: ArrayLike, duration_h: ArrayLike) -> F64:
    """pH drop of an acid-sulphate flush: falls within ~6 h, recovers over ``duration_h``."""
    h = np.asarray(hours_since_start, dtype=np.float64)
    dur = np.asarray(duration_h, dtype=np.float64)
    onset = np.clip(h / 6.0, 0.0, 1.0)
    recovery = np.clip(1.0 - (h - 6.0) / np.maximum(dur - 6.0, 1.0), 0.0, 1.0)
    inside = (h >= 0.0) & (h < dur)
    return np.asarray(np.where(inside, np.asarray(depth) * onset * recovery, 0.0))


def acid_flush_season(doy: ArrayLike) -> F64:
    """Likelihood weight of acid-sulphate flushes: the first rains of the wet season (May–June)."""
    return _seasonal(doy, ((0, 0.0), (120, 0.0), (135, 1.0), (165, 1.0), (185, 0.0), (365.25, 0.0)))


# --- weather ----------------------------------------------------------------------------------


def wet_day_probability(doy: ArrayLike) -> F64:
    """Chance of a rainy day: dry season Dec–Apr, wet season May–Nov (peaks Sep)."""
    return _seasonal(
        doy,
        (
            (15, 0.05),
            (46, 0.03),
            (74, 0.05),
            (105, 0.15),
            (135, 0.45),
            (166, 0.6),
            (196, 0.65),
            (227, 0.65),
            (258, 0.7),
            (288, 0.65),
            (319, 0.4),
            (349, 0.15),
        ),
    )


def shower_intensity(hour: ArrayLike, amount_mm: ArrayLike, shower_hour: ArrayLike) -> F64:
    """Rain intensity in [0, ~2]: a day's ``amount_mm`` falls as an afternoon shower."""
    d = np.asarray(hour, dtype=np.float64) - np.asarray(shower_hour, dtype=np.float64)
    scale = np.minimum(np.asarray(amount_mm, dtype=np.float64) / 30.0, 2.0)
    return np.asarray(scale * np.exp(-0.5 * (d / 1.5) ** 2))


def solar(hour: ArrayLike) -> F64:
    """Clear-sky sunshine in [0, 1] (06–18 h local)."""
    h = np.asarray(hour, dtype=np.float64)
    return np.asarray(np.clip(np.sin(np.pi * (h - 6.0) / 12.0), 0.0, 1.0))


# --- light traps ------------------------------------------------------------------------------

TRAP_SPECIES: Final = ("bph", "wbph", "glh", "leaffolder", "stemborer")
TRAP_NIGHT_START_H: Final = 18
_HOURLY: Final = np.array([0.10, 0.18, 0.20, 0.16, 0.11, 0.07, 0.05, 0.04, 0.03, 0.025, 0.02, 0.015])
TRAP_HOUR_WEIGHTS: Final = _HOURLY / _HOURLY.sum()
"""Share of a night's catch in each hour 18–19, 19–20, … 05–06 local (peak 19–22 h)."""

TRAP_MEDIAN_PER_NIGHT: Final = {"bph": 15.0, "wbph": 6.0, "glh": 12.0, "leaffolder": 3.0, "stemborer": 3.0}
"""Typical nightly catch without a migration (BPH 2–80, moths 2–4)."""


def trap_night(t_ms: ArrayLike) -> I64:
    """The trap night (18:00–06:00 local) of a time, as the local day on which it starts."""
    t = np.asarray(t_ms, dtype=np.int64)
    return np.asarray((t + LOCAL_OFFSET_MS - TRAP_NIGHT_START_H * MS_PER_H) // MS_PER_DAY)


def migration_surge(
    keyed: Keyed,
    key: ArrayLike,
    stream: int,
    night: ArrayLike,
    *,
    window_nights: int,
    probability: float,
    peak_lo: float,
    peak_hi: float,
) -> F64:
    """Nightly catch added by migration waves: at most one wave per window of nights.

    A wave rises and falls over a few nights (σ 1–1.8 nights) to a log-uniform peak in
    [``peak_lo``, ``peak_hi``]. Draws are keyed by ``key`` (a province) and the window.
    """
    n = np.asarray(night, dtype=np.int64)
    total = np.zeros(n.shape, dtype=np.float64)
    for shift in (-1, 0, 1):
        w = n // window_nights + shift
        exists = keyed.uniform(key, stream, w) < probability
        centre = w * window_nights + 2.0 + keyed.uniform(key, stream + 1, w) * (window_nights - 4)
        log_span = np.log(peak_hi / peak_lo)
        peak = np.exp(np.log(peak_lo) + keyed.uniform(key, stream + 2, w) * log_span)
        sigma = 1.0 + 0.8 * keyed.uniform(key, stream + 3, w)
        total += np.where(exists, peak * np.exp(-0.5 * ((n - centre) / sigma) ** 2), 0.0)
    return total


# --- cameras ----------------------------------------------------------------------------------


def traffic_rate_per_h(hour: ArrayLike) -> F64:
    """Traffic violations an enforcement camera flags per hour: several by day, few at night."""
    h = np.asarray(hour, dtype=np.float64)
    day = (h >= 6.0) & (h < 22.0)
    rush = _hour_bump(h, 7.5, 1.2) + _hour_bump(h, 17.5, 1.5)
    return np.asarray(np.where(day, 4.0 + 3.0 * rush, 0.6))


def hygiene_rate_per_h(hour: ArrayLike) -> F64:
    """Food-hygiene violations per hour in a kitchen: a few a day, in cooking hours."""
    h = np.asarray(hour, dtype=np.float64)
    cooking = ((h >= 5.0) & (h < 13.0)) | ((h >= 15.0) & (h < 19.0))
    return np.asarray(np.where(cooking, 0.25, 0.0))


def intrusion_rate_per_h(hour: ArrayLike) -> F64:
    """Intrusions per hour: rare, at night (one per ~10 days)."""
    h = np.asarray(hour, dtype=np.float64)
    night = (h >= 22.0) | (h < 5.0)
    return np.asarray(np.where(night, 1.0 / 70.0, 0.0))


SMOKE_FIRE_RATE_PER_H: Final = 1.0 / (5 * 24)
"""Smoke/fire detections per camera: about one every five days (kitchens twice that)."""


def flood_depth_cm(
    t_ms: ArrayLike,
    west: ArrayLike,
    km_from_sea: ArrayLike,
    line: ArrayLike,
    rain: ArrayLike,
) -> F64:
    """Water above a camera's marked line (cm, negative = dry): high tide plus rain.

    ``line`` is the normalised tide level (0–1) at which the street floods without rain;
    king tides in the flood season and afternoon showers lift the water over it.
    """
    t = np.asarray(t_ms, dtype=np.int64)
    eta = tide_norm(t, west, km_from_sea)
    season = flood_season(day_of_year(t))
    return np.asarray(80.0 * (eta + 0.2 * season - np.asarray(line)) + 25.0 * np.asarray(rain))
