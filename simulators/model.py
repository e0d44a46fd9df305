"""The simulated fleet: every message each device publishes in a window of time.

:class:`FleetModel` turns a :class:`contract.fleet.Fleet` into :class:`SimMessage` objects
that the publisher sends as they fall due. Values are pure functions of (seed, device, time)
drawn through :class:`simulators.signals.Keyed`, so splitting a window into two calls gives the
same messages as one call; only the per-device ``seq`` counters carry state between calls.
All work is columnar: one numpy pass per device kind and window, Python only to build the
final reading dicts.

Faults (``device.faults``) shape the output: ``drift`` (fouling slide, reset by a cleaning
every ~2 weeks), ``stuck`` (one value repeated for hours), ``spikes`` (plausible but wrong
values), ``gaps`` (silent windows), ``battery_sag`` (silent while the battery is below 3.3 V
in rainy spells) and ``offline`` (gone for good at a seeded time: one ``{"state": "offline"}``
status message, then nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final

import numpy as np

from contract.fields import EVENT_FIELDS, TELEMETRY_FIELDS, FieldSpec, Kind
from contract.fleet import Device, Fleet
from contract.topics import Channel
from simulators import signals as sg
from simulators.signals import F64, I64, MS_PER_DAY, MS_PER_H, U64, Bool

Reading = dict[str, float | int | str]

BATTERY_CUTOFF_V: Final = 3.3
"""Below this a battery-powered device browns out and stays silent until it recovers."""
IMAGE_URL: Final = "https://cam.example.invalid/{device}/{ts}.jpg"
FIRMWARE: Final = {
    Kind.SALINITY: "sal-2.4.1",
    Kind.WATER_QUALITY: "wq-3.1.0",
    Kind.LIGHT_TRAP: "trap-1.8.2",
    Kind.CAMERA: "cam-5.7.3",
}
TRAP_INTERVAL_S: Final = 3600
TRAP_COUNT_HOURS: Final = frozenset((19, 20, 21, 22, 23, 0, 1, 2, 3, 4, 5, 6))
"""Local hours at which a light trap reports the hour just ended (06:00 adds night totals)."""
TRAP_HEARTBEAT_HOURS: Final = frozenset((9, 12, 15, 18))
"""Local hours of the daytime heartbeat (lamp off, no counts)."""

_NEVER: Final = np.iinfo(np.int64).max
_DECIMALS: Final = {
    "ec_us_cm": 1,
    "salinity_ppt": 3,
    "temp_c": 2,
    "ph": 2,
    "do_mg_l": 2,
    "turbidity_ntu": 1,
    "tss_mg_l": 1,
    "nh4_mg_l": 3,
    "battery_v": 3,
    "rssi_dbm": 1,
    "water_level_cm": 1,
    "air_temp_c": 2,
    "humidity_pct": 1,
    "fps": 2,
    "confidence": 3,
    "water_above_line_cm": 1,
    "speed_kmh": 1,
}


class _S(IntEnum):
    """Random streams; surges use four consecutive ids, species five."""

    PHASE = 1
    TRAP_OFFSET = 2
    GAP = 10
    STUCK = 20
    DRIFT = 30
    SPIKE = 40
    OFFLINE = 50
    BATTERY = 60
    RSSI = 70
    RAIN = 80
    SAL_MOD = 90
    SAL_FLOOR = 95
    LEVEL = 100
    TEMP = 110
    EC = 120
    DO = 130
    CRASH = 140
    PH = 150
    BLOOM = 160
    ACID = 170
    TURB = 180
    NH4 = 190
    POND = 200
    TRAP_BASE = 300
    TRAP_NIGHT = 310
    TRAP_COUNT = 320
    TRAP_COUNT_Z = 330
    TRAP_RAIN = 340
    TRAP_AIR = 350
    BPH_WAVE = 360
    LF_WAVE = 370
    SB_WAVE = 380
    CAM = 400
    VLOSS = 410
    BOOT = 420
    EVENT = 500


@dataclass(frozen=True, slots=True)
class SimMessage:
    """One message a device publishes: ``reading`` is the JSON object of the payload.

    ``ts_ms`` is when it falls due; it equals ``reading["ts"]`` except for the offline status,
    which carries no timestamp.
    """

    device: Device
    channel: Channel
    reading: Reading
    ts_ms: int = 0


@dataclass(slots=True)
class _Block:
    """Messages of one shape: same channel and fields, one row per message."""

    channel: Channel
    dev: I64
    ts: I64
    columns: list[tuple[str, list[Any]]]
    with_seq: bool = True


def _column(spec: FieldSpec, values: Any) -> list[Any]:
    """Values clipped into the field's range, typed and rounded for JSON."""
    v = np.asarray(values, dtype=np.float64)
    v = np.clip(np.nan_to_num(v, nan=spec.lo, posinf=spec.hi, neginf=spec.lo), spec.lo, spec.hi)
    if spec.type == "int":
        return list(np.rint(v).astype(np.int64).tolist())
    return list(np.round(v, _DECIMALS.get(spec.name, 3)).tolist())


def _columns(specs: Sequence[FieldSpec], values: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    """Columns for the fields present in ``values``, in contract order."""
    return [(s.name, _column(s, values[s.name])) for s in specs if s.name in values]


def _grid(idx: I64, period_ms: int, offsets: I64, t0: int, t1: int) -> tuple[I64, I64]:
    """(device, ts) of every ``k * period + offset`` in [t0, t1), for each device in ``idx``."""
    k0 = -((offsets - t0) // period_ms)
    k1 = -((offsets - t1) // period_ms)
    n = np.maximum(k1 - k0, 0)
    dev = np.repeat(idx, n)
    within = np.arange(int(n.sum()), dtype=np.int64) - np.repeat(np.cumsum(n) - n, n)
    ts = (np.repeat(k0, n) + within) * period_ms + np.repeat(offsets, n)
    return dev.astype(np.int64), ts.astype(np.int64)


def _smoothstep(a: F64, b: F64, frac: F64) -> F64:
    s = frac * frac * (3.0 - 2.0 * frac)
    return np.asarray(a + (b - a) * s)


class FleetModel:
    """Every message a fleet emits, window by window; seeded and deterministic.

    ``interval_s`` is the reporting period of continuous sensors and camera heartbeats;
    light traps keep their hourly night schedule. Devices with the ``offline`` fault go away
    for good at a seeded time within ``offline_within_s`` of the first window.
    """

    def __init__(
        self,
        fleet: Fleet,
        *,
        seed: int,
        interval_s: float = 60.0,
        offline_within_s: float = 3600.0,
    ) -> None:
        if not offline_within_s > 0:
            raise ValueError(f"offline_within_s must be positive, got {offline_within_s}")
        self._devices = fleet.devices
        self._index = {d.id: i for i, d in enumerate(self._devices)}
        self._keyed = sg.Keyed(seed)
        self._offline_within_ms = round(offline_within_s * 1000)
        n = len(self._devices)
        self._key: U64 = np.array([sg.key_of(d.id) for d in self._devices], dtype=np.uint64)
        self._prov: U64 = np.array([sg.key_of(d.province) for d in self._devices], dtype=np.uint64)
        self._west: Bool = np.array([d.coast == "west" for d in self._devices], dtype=bool)
        self._km: F64 = np.array([d.km_from_sea for d in self._devices], dtype=np.float64)
        self._front: F64 = np.array(
            [sg.VAM_CO_FRONT_KM if d.province == "long_an" else sg.SALINITY_FRONT_KM for d in self._devices],
            dtype=np.float64,
        )
        self._site = np.array([d.site for d in self._devices], dtype=object)
        self._crop = np.array([d.crop for d in self._devices], dtype=object)
        self._faults = {
            f: np.array([f in d.faults for d in self._devices], dtype=bool)
            for f in ("drift", "stuck", "spikes", "gaps", "battery_sag", "offline")
        }
        self._by_kind = {
            k: np.array([i for i, d in enumerate(self._devices) if d.kind is k], dtype=np.int64) for k in Kind
        }
        self._cache: dict[tuple[str, int], F64] = {}
        self._interval_ms = 0
        self._phase: I64 = np.zeros(n, dtype=np.int64)
        self.interval_s = interval_s
        self._trap_offset: I64 = np.floor(self._du(_S.TRAP_OFFSET) * 20_000).astype(np.int64)
        self._seq: I64 = np.zeros(n, dtype=np.int64)
        self._offline_at: I64 = np.full(n, _NEVER, dtype=np.int64)
        self._last_t1: int | None = None

    # --- public API ---------------------------------------------------------------------------

    @property
    def interval_s(self) -> float:
        """Reporting period of continuous sensors and camera heartbeats (s)."""
        return self._interval_ms / 1000

    @interval_s.setter
    def interval_s(self, value: float) -> None:
        """Change the period; later windows use the new grid (each device keeps its phase)."""
        interval_ms = round(value * 1000)
        if not value > 0 or interval_ms < 1:
            raise ValueError(f"interval_s must be at least 0.001 s, got {value}")
        self._interval_ms = interval_ms
        self._phase = np.floor(self._du(_S.PHASE) * interval_ms).astype(np.int64)

    def between(self, t0_ms: int, t1_ms: int) -> list[SimMessage]:
        """Every message the fleet emits in [t0_ms, t1_ms), sorted by ts.

        Stateful: calls must move forward in time (t0 of a call == t1 of the previous); seq
        numbers per device keep counting up across calls (start at 0).
        """
        t0, t1 = int(t0_ms), int(t1_ms)
        if t1 < t0:
            raise ValueError(f"the window ends before it starts: [{t0}, {t1})")
        if self._last_t1 is None:
            self._start(t0)
        elif t0 < self._last_t1:
            raise ValueError(f"windows must move forward: t0={t0} < previous t1={self._last_t1}")
        self._last_t1 = t1
        if t1 == t0 or not self._devices:
            return []
        blocks: list[_Block] = []
        for kind in (Kind.SALINITY, Kind.WATER_QUALITY):
            blocks.extend(self._continuous(kind, t0, t1))
        blocks.extend(self._traps(t0, t1))
        blocks.extend(self._cameras(t0, t1))
        blocks.extend(self._offline_status(t0, t1))
        return self._assemble([b for b in blocks if len(b.ts)])

    def online_status(self, device: Device, t_ms: int) -> dict[str, float | int | str]:
        """The retained status a device publishes on connect (consumes one ``seq``)."""
        i = self._index[device.id]
        dev = np.array([i], dtype=np.int64)
        ts = np.array([int(t_ms)], dtype=np.int64)
        if device.kind is Kind.CAMERA:
            battery = 12.0 + 0.4 * self._du(_S.BATTERY)[dev]
        else:
            battery = self._battery_v(dev, ts)
        seq = int(self._seq[i])
        self._seq[i] += 1
        specs = {s.name: s for s in TELEMETRY_FIELDS[Kind.SALINITY]}
        return {
            "state": "online",
            "ts": int(t_ms),
            "seq": seq,
            "battery_v": _column(specs["battery_v"], battery)[0],
            "rssi_dbm": _column(specs["rssi_dbm"], self._rssi(dev, ts))[0],
            "fw": FIRMWARE[device.kind],
        }

    @staticmethod
    def will_payload() -> dict[str, str]:
        """The MQTT will a device registers: the broker publishes it when the device vanishes."""
        return {"state": "offline"}

    # --- keyed draws --------------------------------------------------------------------------

    def _du(self, stream: int) -> F64:
        """One uniform per device for ``stream`` (cached)."""
        got = self._cache.get(("u", stream))
        if got is None:
            got = self._keyed.uniform(self._key, stream, 0) if len(self._key) else np.zeros(0)
            self._cache[("u", stream)] = got
        return got

    def _dz(self, stream: int) -> F64:
        """One standard normal per device for ``stream`` (cached)."""
        got = self._cache.get(("z", stream))
        if got is None:
            got = self._keyed.normal(self._key, stream, 0) if len(self._key) else np.zeros(0)
            self._cache[("z", stream)] = got
        return got

    def _u(self, dev: I64, stream: int, slot: Any) -> F64:
        return self._keyed.uniform(self._key[dev], stream, slot)

    def _z(self, dev: I64, stream: int, slot: Any) -> F64:
        return self._keyed.normal(self._key[dev], stream, slot)

    def _smooth(self, dev: I64, stream: int, ts: I64, knot_ms: int) -> F64:
        """Smooth value noise in [0, 1) with knots every ``knot_ms``."""
        k = ts // knot_ms
        frac = (ts - k * knot_ms) / knot_ms
        return _smoothstep(self._u(dev, stream, k), self._u(dev, stream, k + 1), frac)

    def _window(
        self,
        dev: I64,
        ts: I64,
        stream: int,
        block_ms: int,
        prob: Any,
        dur_lo_ms: float,
        dur_hi_ms: float,
    ) -> tuple[Bool, I64]:
        """Whether ``ts`` falls in the (at most one) seeded window of its block, and its start."""
        b = ts // block_ms
        exists = self._u(dev, stream, b) < prob
        dur = dur_lo_ms + self._u(dev, stream + 1, b) * (dur_hi_ms - dur_lo_ms)
        start = (b * block_ms + self._u(dev, stream + 2, b) * (block_ms - dur)).astype(np.int64)
        inside = exists & (ts >= start) & (ts < start + dur)
        return np.asarray(inside), start

    # --- weather, power, radio ----------------------------------------------------------------

    def _rain_mm(self, prov: U64, day: I64) -> F64:
        """Rain (mm) of a province on a local day: seasonal wet-day chance, lognormal amount."""
        doy = sg.day_of_year(day * MS_PER_DAY + 5 * MS_PER_H)
        wet = self._keyed.uniform(prov, _S.RAIN, day) < sg.wet_day_probability(doy)
        amount = np.exp(np.log(12.0) + 0.8 * self._keyed.normal(prov, _S.RAIN + 1, day))
        return np.asarray(np.where(wet, amount, 0.0))

    def _rain_intensity(self, prov: U64, ts: I64) -> F64:
        day = sg.local_day(ts)
        shower_hour = 13.0 + 6.0 * self._keyed.uniform(prov, _S.RAIN + 2, day)
        return sg.shower_intensity(sg.local_hour(ts), self._rain_mm(prov, day), shower_hour)

    def _battery_v(self, dev: I64, ts: I64) -> F64:
        """Solar-charged Li-ion cell: charges by day; a sagging one drains in rainy spells."""
        prov = self._prov[dev]
        day = sg.local_day(ts)
        wet_today = self._rain_mm(prov, day) > 0
        sun = sg.solar(sg.local_hour(ts)) * np.where(wet_today, 0.5, 1.0)
        healthy = 3.82 + 0.15 * self._du(_S.BATTERY)[dev] + 0.22 * sun
        spell = np.zeros(len(dev))
        for back in range(5):
            spell += (self._rain_mm(prov, day - back) > 0) * 0.8**back
        sagging = 3.62 + 0.1 * self._du(_S.BATTERY)[dev] + 0.22 * sun - 0.16 * spell
        v = np.where(self._faults["battery_sag"][dev], sagging, healthy)
        return np.asarray(v + 0.004 * self._z(dev, _S.BATTERY + 1, ts))

    def _rssi(self, dev: I64, ts: I64) -> F64:
        return np.asarray(-60.0 - 45.0 * self._du(_S.RSSI)[dev] + 2.5 * self._z(dev, _S.RSSI, ts))

    # --- faults -------------------------------------------------------------------------------

    def _start(self, t0: int) -> None:
        """Fix the seeded offline times relative to the first window."""
        off = self._faults["offline"]
        delay = 60_000 + np.floor(self._du(_S.OFFLINE) * self._offline_within_ms)
        self._offline_at = np.where(off, t0 + delay.astype(np.int64), _NEVER).astype(np.int64)

    def _alive(self, dev: I64, ts: I64) -> Bool:
        """Not in a gap and not yet gone offline."""
        gap, _ = self._window(dev, ts, _S.GAP, MS_PER_DAY, 0.35, 20 * 60_000, 6 * MS_PER_H)
        return np.asarray(~(gap & self._faults["gaps"][dev]) & (ts < self._offline_at[dev]))

    def _stuck_time(self, dev: I64, ts: I64, period_ms: int, phase: I64) -> I64:
        """The time a stuck sensor's value comes from: the first reading of its stuck window."""
        inside, start = self._window(dev, ts, _S.STUCK, 2 * MS_PER_DAY, 0.5, 2 * MS_PER_H, 10 * MS_PER_H)
        inside &= self._faults["stuck"][dev]
        first = phase - ((phase - start) // period_ms) * period_ms
        return np.asarray(np.where(inside, first, ts), dtype=np.int64)

    def _drift_days(self, dev: I64, ts: I64) -> F64:
        """Days since the last cleaning for drifting devices (0 for the others)."""
        period = (12.0 + 4.0 * self._du(_S.DRIFT)[dev]) * MS_PER_DAY
        age = np.mod(ts + self._du(_S.DRIFT + 1)[dev] * period, period) / MS_PER_DAY
        return np.asarray(np.where(self._faults["drift"][dev], age, 0.0))

    def _spiking(self, dev: I64, ts: I64, rate: float) -> tuple[Bool, F64, F64]:
        """Which readings spike (for ``spikes`` devices), a selector and a magnitude draw."""
        hit = (self._u(dev, _S.SPIKE, ts) < rate) & self._faults["spikes"][dev]
        return np.asarray(hit), self._u(dev, _S.SPIKE + 1, ts), self._u(dev, _S.SPIKE + 2, ts)

    # --- continuous sensors -------------------------------------------------------------------

    def _continuous(self, kind: Kind, t0: int, t1: int) -> list[_Block]:
        idx = self._by_kind[kind]
        if not len(idx):
            return []
        period, phase = self._interval_ms, self._phase[idx]
        dev, ts = _grid(idx, period, phase, t0, t1)
        battery = self._battery_v(dev, ts)
        keep = self._alive(dev, ts) & (battery >= BATTERY_CUTOFF_V)
        dev, ts, battery = dev[keep], ts[keep], battery[keep]
        eff = self._stuck_time(dev, ts, period, self._phase[dev])
        if kind is Kind.SALINITY:
            values = self._salinity_values(dev, eff)
        else:
            values = self._water_quality_values(dev, eff)
        values["battery_v"] = battery
        values["rssi_dbm"] = self._rssi(dev, ts)
        return [_Block(Channel.TELEMETRY, dev, ts, _columns(TELEMETRY_FIELDS[kind], values))]

    def _salinity_here(self, dev: I64, t: I64) -> F64:
        """True salinity (‰) of the water at a river, canal or sluice station."""
        floor = 0.1 + 0.1 * self._du(_S.SAL_FLOOR)[dev]
        raw = sg.salinity_ppt(t, self._km[dev], self._west[dev], front_km=self._front[dev], floor_ppt=floor)
        prov = self._prov[dev]
        k = t // MS_PER_DAY
        frac = (t - k * MS_PER_DAY) / MS_PER_DAY
        mod = _smoothstep(self._keyed.uniform(prov, _S.SAL_MOD, k), self._keyed.uniform(prov, _S.SAL_MOD, k + 1), frac)
        return np.asarray(floor + (raw - floor) * (0.8 + 0.4 * mod))

    def _measured_ec(self, dev: I64, t: I64, salinity: F64, drift_per_day: float) -> F64:
        ec = sg.ec25_from_salinity(salinity)
        fouling = 1.0 - drift_per_day * self._drift_days(dev, t)
        return np.asarray(ec * fouling * (1.0 + 0.01 * self._z(dev, _S.EC, t)))

    def _salinity_values(self, dev: I64, t: I64) -> dict[str, Any]:
        ec = self._measured_ec(dev, t, self._salinity_here(dev, t), 0.012)
        rise = 0.8 + 0.8 * self._du(_S.TEMP)[dev]
        temp = sg.water_temp_c(t, rise, self._du(_S.TEMP + 1)[dev] - 0.5)
        temp = temp + 0.05 * self._z(dev, _S.TEMP, t)
        season = sg.flood_season(sg.day_of_year(t))
        level = (
            100.0 * sg.tide_level_m(t, self._west[dev], self._km[dev])
            + season * np.minimum(self._km[dev], 150.0)
            + 60.0 * (self._du(_S.LEVEL)[dev] - 0.5)
            + 0.5 * self._z(dev, _S.LEVEL, t)
        )
        hit, pick, mag = self._spiking(dev, t, 0.005)
        ec = np.where(hit & (pick < 0.5), ec * (3.0 + 5.0 * mag), ec)
        temp = np.where(hit & (pick >= 0.5) & (pick < 0.75), temp + 6.0 + 4.0 * mag, temp)
        level = np.where(hit & (pick >= 0.75), level + 100.0 + 200.0 * mag, level)
        return {
            "ec_us_cm": ec,
            "salinity_ppt": sg.salinity_from_ec25(np.maximum(ec, 0.0)),
            "temp_c": temp,
            "water_level_cm": level,
        }

    def _water_quality_values(self, dev: I64, t: I64) -> dict[str, Any]:
        site, crop = self._site[dev], self._crop[dev]
        pond = site == "pond"
        canal = site == "canal"
        shrimp = pond & (crop == "shrimp")
        day = sg.local_day(t)
        doy = sg.day_of_year(t)
        rain_today = self._rain_mm(self._prov[dev], day) > 0
        # crop stage in [0, 1): 100-day shrimp crops, 180-day pangasius crops
        cycle = np.where(shrimp, 100.0, 180.0)
        stage = np.mod(t / MS_PER_DAY + self._du(_S.POND)[dev] * cycle, cycle) / cycle
        day_factor = 0.75 + 0.4 * self._u(dev, _S.POND + 1, day)
        drift = self._drift_days(dev, t)

        pond_rise = np.clip(3.4 * np.exp(0.35 * self._z(dev, _S.TEMP + 2, day)), 1.1, 7.9)
        rise = np.where(pond, pond_rise * np.where(rain_today, 0.6, 1.0), 0.8 + 0.6 * self._du(_S.TEMP)[dev])
        temp = sg.water_temp_c(t, rise, np.where(pond, 0.3, 0.0))
        temp = temp + 0.05 * self._z(dev, _S.TEMP, t)

        do_mean = np.where(shrimp, 7.0 + 0.6 * self._du(_S.DO)[dev], 4.5)
        do_diff = np.where(shrimp, 1.25 + 5.5 * stage**1.5, 1.0 + 3.0 * stage**1.5) * day_factor
        crash = shrimp & (stage > 0.45) & (self._u(dev, _S.CRASH, day) < 0.08)
        crash_depth = np.where(crash, 1.5 + 1.5 * self._u(dev, _S.CRASH + 1, day), 0.0)
        river_mean = np.where(
            canal, 3.4 + 0.9 * (2 * self._du(_S.DO)[dev] - 1), 4.8 + 0.8 * (2 * self._du(_S.DO)[dev] - 1)
        )
        river_mean = np.maximum(river_mean + 1.2 * (self._smooth(dev, _S.DO + 1, t, 6 * MS_PER_H) - 0.5), 0.8)
        do = np.where(pond, sg.pond_do_mg_l(t, do_mean, do_diff, crash_depth), sg.river_do_mg_l(t, river_mean))
        do = np.maximum(do - 0.06 * drift + 0.1 * self._z(dev, _S.DO, t), 0.0)

        bloom_day = (stage > 0.6) & (self._u(dev, _S.BLOOM, day) < 0.2)
        bloom = np.where(bloom_day, 0.3 + 0.5 * self._u(dev, _S.BLOOM + 1, day), 0.0)
        swing = (0.3 + 0.9 * stage) * day_factor
        pond_base = np.where(shrimp, 7.9, 7.4) + 0.2 * (self._du(_S.PH)[dev] - 0.5)
        flush_block = t // (10 * MS_PER_DAY)
        flush_chance = 0.5 * sg.acid_flush_season(sg.day_of_year(flush_block * 10 * MS_PER_DAY))
        acid, acid_start = self._window(dev, t, _S.ACID, 10 * MS_PER_DAY, flush_chance, 24 * MS_PER_H, 96 * MS_PER_H)
        acid &= canal
        acid_dur = 24.0 + self._u(dev, _S.ACID + 1, flush_block) * 72.0
        acid_depth = 1.6 + 0.6 * self._u(dev, _S.ACID + 3, flush_block)
        acid_drop = np.where(acid, sg.acid_flush_drop((t - acid_start) / MS_PER_H, acid_depth, acid_dur), 0.0)
        river_base = 7.25 + 0.5 * (self._du(_S.PH)[dev] - 0.5)
        ph = np.where(pond, sg.pond_ph(t, pond_base, swing, bloom), sg.river_ph(t, river_base, acid_drop))
        ph = ph - 0.025 * drift + 0.02 * self._z(dev, _S.PH, t)

        pond_salinity = np.where(
            shrimp,
            np.clip(25.0 - 0.25 * self._km[dev], 5.0, 25.0)
            * (0.7 + 0.6 * sg.salinity_season(doy))
            * (0.9 + 0.2 * self._du(_S.POND + 2)[dev]),
            0.15 + 0.2 * self._du(_S.POND + 2)[dev],
        )
        salinity = np.where(pond, pond_salinity, self._salinity_here(dev, t))
        ec = self._measured_ec(dev, t, salinity, 0.01)

        u_turb = self._du(_S.TURB)[dev]
        turb_base = np.where(
            pond, 15.0 * 4.0**u_turb * (0.8 + 0.4 * stage), np.where(canal, 20.0 * 7.5**u_turb, 35.0 * 3.7**u_turb)
        )
        rain = self._rain_intensity(self._prov[dev], t)
        turbidity = (
            turb_base
            * (0.75 + 0.5 * self._smooth(dev, _S.TURB + 1, t, 8 * MS_PER_H))
            * (1.0 + np.where(pond, 0.2, 0.8) * rain)
            * (1.0 + np.where(pond, 0.0, 0.5) * sg.flood_season(doy))
        )
        turbidity = turbidity + 0.4 * drift
        turbidity = turbidity * (1.0 + 0.02 * self._z(dev, _S.TURB, t))
        tss = turbidity * (1.15 + 0.2 * self._du(_S.TURB + 2)[dev]) * (1.0 + 0.05 * self._z(dev, _S.TURB + 3, t))
        u_nh4 = self._du(_S.NH4)[dev]
        nh4_base = np.where(pond, 0.1 + 1.0 * stage**2, np.where(canal, 0.06 * 35.0**u_nh4, 0.05 * 7.0**u_nh4))
        nh4 = nh4_base * (0.6 + 0.8 * self._smooth(dev, _S.NH4 + 1, t, 12 * MS_PER_H))
        nh4 = nh4 * (1.0 + 0.03 * self._z(dev, _S.NH4, t))

        hit, pick, mag = self._spiking(dev, t, 0.005)
        do = np.where(hit & (pick < 0.3), 15.0 * mag, do)
        ph = np.where(hit & (pick >= 0.3) & (pick < 0.55), 4.0 + 6.5 * mag, ph)
        turbidity = np.where(hit & (pick >= 0.55) & (pick < 0.8), 500.0 + 1500.0 * mag, turbidity)
        temp = np.where(hit & (pick >= 0.8), temp - 6.0 - 4.0 * mag, temp)
        return {
            "temp_c": temp,
            "ph": ph,
            "do_mg_l": do,
            "ec_us_cm": ec,
            "salinity_ppt": sg.salinity_from_ec25(np.maximum(ec, 0.0)),
            "turbidity_ntu": turbidity,
            "tss_mg_l": tss,
            "nh4_mg_l": nh4,
        }

    # --- light traps --------------------------------------------------------------------------

    def _traps(self, t0: int, t1: int) -> list[_Block]:
        idx = self._by_kind[Kind.LIGHT_TRAP]
        if not len(idx):
            return []
        dev, ts = _grid(idx, MS_PER_H, self._trap_offset[idx], t0, t1)
        hour = ((ts - self._trap_offset[dev]) // MS_PER_H + 7) % 24
        counting = np.isin(hour, list(TRAP_COUNT_HOURS))
        heartbeat = np.isin(hour, list(TRAP_HEARTBEAT_HOURS))
        battery = self._battery_v(dev, ts)
        keep = (counting | heartbeat) & self._alive(dev, ts) & (battery >= BATTERY_CUTOFF_V)
        dev, ts, hour, battery = dev[keep], ts[keep], hour[keep], battery[keep]
        counting = counting[keep]
        specs = TELEMETRY_FIELDS[Kind.LIGHT_TRAP]
        blocks: list[_Block] = []

        hb = ~counting
        if hb.any():
            values: dict[str, Any] = {
                "lamp_on": np.zeros(int(hb.sum())),
                "battery_v": battery[hb],
                "rssi_dbm": self._rssi(dev[hb], ts[hb]),
            }
            blocks.append(_Block(Channel.TELEMETRY, dev[hb], ts[hb], _columns(specs, values)))

        night = sg.trap_night(ts - self._trap_offset[dev] - MS_PER_H // 2)
        slot = (hour - sg.TRAP_NIGHT_START_H) % 24
        for final in (False, True):
            rows = counting & ((slot == 12) == final)
            if not rows.any():
                continue
            d, t, n, j = dev[rows], ts[rows], night[rows], slot[rows]
            values = {f"{s}_count": c for s, c in self._trap_counts(d, n, j).items()}
            if final:
                reps = len(sg.TRAP_HOUR_WEIGHTS)
                all_hours = self._trap_counts(
                    np.repeat(d, reps), np.repeat(n, reps), np.tile(np.arange(1, reps + 1), len(d))
                )
                for s, c in all_hours.items():
                    values[f"{s}_night"] = c.reshape(-1, reps).sum(axis=1)
            hit, _, mag = self._spiking(d, t, 0.02)
            values["bph_count"] = np.where(hit, values["bph_count"] * 10 + 50 + 200 * mag, values["bph_count"])
            values.update(self._trap_weather(d, t, n, j))
            values["interval_s"] = np.full(len(d), TRAP_INTERVAL_S)
            values["lamp_on"] = np.ones(len(d))
            values["battery_v"] = battery[rows]
            values["rssi_dbm"] = self._rssi(d, t)
            blocks.append(_Block(Channel.TELEMETRY, d, t, _columns(specs, values)))
        return blocks

    def _trap_rain(self, prov: U64, night: I64) -> F64:
        """Catch factor of a night: rain cuts it to a quarter or half."""
        doy = sg.day_of_year(night * MS_PER_DAY + 12 * MS_PER_H)
        rainy = self._keyed.uniform(prov, _S.TRAP_RAIN, night) < 0.7 * sg.wet_day_probability(doy)
        factor = 0.25 + 0.3 * self._keyed.uniform(prov, _S.TRAP_RAIN + 1, night)
        return np.asarray(np.where(rainy, factor, 1.0))

    def _trap_counts(self, dev: I64, night: I64, slot: I64) -> dict[str, I64]:
        """Insects of each species caught in hour ``slot`` (1–12) of ``night``."""
        prov = self._prov[dev]
        rain = self._trap_rain(prov, night)
        bph_wave = sg.migration_surge(
            self._keyed, prov, _S.BPH_WAVE, night, window_nights=21, probability=0.85, peak_lo=200.0, peak_hi=1200.0
        )
        surges = {
            "bph": bph_wave,
            "wbph": 0.15 * bph_wave,
            "glh": np.zeros(len(dev)),
            "leaffolder": sg.migration_surge(
                self._keyed, prov, _S.LF_WAVE, night, window_nights=30, probability=0.5, peak_lo=50.0, peak_hi=150.0
            ),
            "stemborer": sg.migration_surge(
                self._keyed, prov, _S.SB_WAVE, night, window_nights=30, probability=0.5, peak_lo=50.0, peak_hi=150.0
            ),
        }
        share = sg.TRAP_HOUR_WEIGHTS[np.clip(slot, 1, 12) - 1]
        reach = 0.6 + 0.5 * self._du(_S.TRAP_BASE + 9)[dev]
        counts: dict[str, I64] = {}
        for i, species in enumerate(sg.TRAP_SPECIES):
            base = sg.TRAP_MEDIAN_PER_NIGHT[species] * np.exp(0.5 * self._dz(_S.TRAP_BASE + i)[dev])
            nightly = base * np.exp(0.45 * self._z(dev, _S.TRAP_NIGHT + i, night) - 0.1)
            lam = (nightly + surges[species] * reach) * rain * share
            key = night * 16 + slot
            counts[species] = sg.poisson(
                self._u(dev, _S.TRAP_COUNT + i, key), self._z(dev, _S.TRAP_COUNT_Z + i, key), lam
            )
        return counts

    def _trap_weather(self, dev: I64, ts: I64, night: I64, slot: I64) -> dict[str, Any]:
        """Air temperature and humidity at the trap: cooling and damper through the night."""
        late = slot / 12.0
        rainy = self._trap_rain(self._prov[dev], night) < 1.0
        air = (
            sg.water_temp_base_c(sg.day_of_year(ts))
            - 2.0
            + 2.0 * (1.0 - late)
            + 0.3 * self._z(dev, _S.TRAP_AIR, ts)
            - np.where(rainy, 1.5, 0.0)
        )
        humidity = np.where(rainy, 96.0, 78.0 + 16.0 * late) + 1.5 * self._z(dev, _S.TRAP_AIR + 1, ts)
        return {"air_temp_c": air, "humidity_pct": humidity}

    # --- cameras ------------------------------------------------------------------------------

    def _video_loss(self, dev: I64, ts: I64) -> tuple[Bool, I64]:
        return self._window(dev, ts, _S.VLOSS, 2 * MS_PER_DAY, 0.2, 5 * 60_000, 40 * 60_000)

    def _uptime_s(self, dev: I64, ts: I64) -> I64:
        """Seconds since the last (seeded) reboot: about one every week."""
        block = 6 * MS_PER_DAY
        b = ts // block
        last = (b - 2) * block - (self._u(dev, _S.BOOT + 3, b) * 30 * MS_PER_DAY).astype(np.int64)
        for back in (2, 1, 0):
            k = b - back
            exists = self._u(dev, _S.BOOT, k) < 0.7
            at = k * block + (self._u(dev, _S.BOOT + 1, k) * block).astype(np.int64)
            last = np.where(exists & (at <= ts), at, last)
        return np.asarray((ts - last) // 1000, dtype=np.int64)

    def _cameras(self, t0: int, t1: int) -> list[_Block]:
        idx = self._by_kind[Kind.CAMERA]
        if not len(idx):
            return []
        dev, ts = _grid(idx, self._interval_ms, self._phase[idx], t0, t1)
        keep = self._alive(dev, ts)
        dev, ts = dev[keep], ts[keep]
        lost, _ = self._video_loss(dev, ts)
        nominal = np.array([10.0, 12.5, 15.0, 25.0])[np.floor(self._du(_S.CAM)[dev] * 4).astype(np.int64)]
        values: dict[str, Any] = {
            "video_ok": np.where(lost, 0, 1),
            "fps": np.where(lost, 0.0, nominal + 0.3 * self._z(dev, _S.CAM, ts)),
            "uptime_s": self._uptime_s(dev, ts),
            "rssi_dbm": self._rssi(dev, ts),
        }
        blocks = [_Block(Channel.TELEMETRY, dev, ts, _columns(TELEMETRY_FIELDS[Kind.CAMERA], values))]
        blocks.extend(self._detections(idx, t0, t1))
        blocks.extend(self._video_loss_events(idx, t0, t1))
        return blocks

    def _bins(self, idx: I64, bin_ms: int, t0: int, t1: int) -> tuple[I64, I64]:
        """(device, bin) for every bin overlapping [t0, t1)."""
        first, last = t0 // bin_ms, (t1 - 1) // bin_ms
        bins = np.arange(first, last + 1, dtype=np.int64)
        return np.repeat(idx, len(bins)), np.tile(bins, len(idx))

    def _detections(self, idx: I64, t0: int, t1: int) -> Iterable[_Block]:
        """Detector events: smoke/fire, flooding, traffic, hygiene and intrusion."""
        site = self._site[idx]
        classes: tuple[tuple[str, int, Bool], ...] = (
            ("traffic_violation", 60_000, site == "road"),
            ("flooding", 300_000, (site == "road") | (site == "market")),
            ("smoke_fire", 600_000, np.ones(len(idx), dtype=bool)),
            ("hygiene_violation", 600_000, (site == "kitchen") | (site == "school")),
            ("intrusion", 600_000, (site == "sluice") | (site == "school") | (site == "market")),
        )
        for c, (event, bin_ms, where) in enumerate(classes):
            if not where.any():
                continue
            dev, b = self._bins(idx[where], bin_ms, t0, t1)
            stream = _S.EVENT + 10 * c
            centre = b * bin_ms + bin_ms // 2
            hour = sg.local_hour(centre)
            extra: dict[str, Any] = {}
            if event == "flooding":
                line = 0.85 + 0.2 * self._du(stream + 5)[dev]
                rain = self._rain_intensity(self._prov[dev], centre)
                depth = sg.flood_depth_cm(centre, self._west[dev], self._km[dev], line, rain)
                p = np.where(depth > 0.0, 0.9, 0.0)
                extra["water_above_line_cm"] = np.maximum(depth + 2.0 * self._z(dev, stream + 6, b), 0.5)
            else:
                if event == "traffic_violation":
                    rate = sg.traffic_rate_per_h(hour)
                elif event == "smoke_fire":
                    kitchen = self._site[dev] == "kitchen"
                    rate = sg.SMOKE_FIRE_RATE_PER_H * np.where(kitchen, 2.0, 1.0)
                elif event == "hygiene_violation":
                    rate = sg.hygiene_rate_per_h(hour)
                else:
                    rate = sg.intrusion_rate_per_h(hour)
                p = 1.0 - np.exp(-np.asarray(rate) * bin_ms / MS_PER_H)
            hit = self._u(dev, stream, b) < p
            ts = b * bin_ms + np.floor(self._u(dev, stream + 1, b) * bin_ms).astype(np.int64)
            hit &= (ts >= t0) & (ts < t1)
            if not hit.any():
                continue
            dev, b, ts = dev[hit], b[hit], ts[hit]
            extra = {k: v[hit] for k, v in extra.items()}
            lost, _ = self._video_loss(dev, ts)
            keep = self._alive(dev, ts) & ~lost
            if not keep.any():
                continue
            dev, b, ts = dev[keep], b[keep], ts[keep]
            extra = {k: v[keep] for k, v in extra.items()}
            u1, u2 = self._u(dev, stream + 2, b), self._u(dev, stream + 3, b)
            values = self._event_values(event, u1, u2)
            values.update(extra)
            if event == "traffic_violation":
                values["speed_kmh"] = 55.0 + 50.0 * self._u(dev, stream + 4, b) + np.where(u2 < 0.05, 30.0, 0.0)
            yield self._event_block(event, dev, ts, values, with_image=True)

    @staticmethod
    def _event_values(event: str, u1: F64, u2: F64) -> dict[str, Any]:
        if event == "smoke_fire":
            strong = u2 >= 0.3
            return {
                "confidence": np.where(strong, 0.8 + 0.19 * u1, 0.35 + 0.44 * u1),
                "frames": np.where(strong, 2 + np.floor(38 * u1), 1 + np.floor(2 * u1)),
            }
        lo, span, frames_lo, frames_span = {
            "flooding": (0.75, 0.23, 5, 55),
            "traffic_violation": (0.8, 0.19, 3, 22),
            "hygiene_violation": (0.6, 0.38, 2, 18),
            "intrusion": (0.7, 0.28, 3, 47),
        }[event]
        return {"confidence": lo + span * u1, "frames": frames_lo + np.floor(frames_span * u2)}

    def _event_block(self, event: str, dev: I64, ts: I64, values: dict[str, Any], *, with_image: bool) -> _Block:
        columns: list[tuple[str, list[Any]]] = [("event", [event] * len(dev))]
        columns += _columns(EVENT_FIELDS, values)
        if with_image:
            ids = [self._devices[i].id for i in dev.tolist()]
            columns.append(
                ("image_url", [IMAGE_URL.format(device=i, ts=t) for i, t in zip(ids, ts.tolist(), strict=True)])
            )
        return _Block(Channel.EVENT, dev, ts, columns)

    def _video_loss_events(self, idx: I64, t0: int, t1: int) -> Iterable[_Block]:
        block = 2 * MS_PER_DAY
        dev, b = self._bins(idx, block, t0, t1)
        start_probe = b * block
        # _window keys on the block of the probe time: probing at the block start finds its window
        _, start = self._video_loss(dev, start_probe)
        exists = self._u(dev, _S.VLOSS, b) < 0.2
        hit = exists & (start >= t0) & (start < t1)
        dev, ts = dev[hit], start[hit]
        keep = self._alive(dev, ts)
        dev, ts = dev[keep], ts[keep]
        if len(dev):
            values = {"confidence": np.ones(len(dev)), "frames": np.ones(len(dev))}
            yield self._event_block("video_loss", dev, ts, values, with_image=False)

    # --- offline ------------------------------------------------------------------------------

    def _offline_status(self, t0: int, t1: int) -> list[_Block]:
        at = self._offline_at
        dev = np.flatnonzero((at >= t0) & (at < t1)).astype(np.int64)
        if not len(dev):
            return []
        return [_Block(Channel.STATUS, dev, at[dev], [("state", ["offline"] * len(dev))], with_seq=False)]

    # --- assembly -----------------------------------------------------------------------------

    def _assemble(self, blocks: list[_Block]) -> list[SimMessage]:
        """Sort by time, number each device's messages on from its last ``seq``, build dicts."""
        if not blocks:
            return []
        ts = np.concatenate([b.ts for b in blocks])
        dev = np.concatenate([b.dev for b in blocks])
        numbered = np.concatenate([np.full(len(b.ts), b.with_seq) for b in blocks])
        g = np.arange(len(ts))
        order = np.lexsort((g, dev, ts))
        seq = np.full(len(ts), -1, dtype=np.int64)
        sel = order[numbered[order]]
        if len(sel):
            d = dev[sel]
            by_dev = np.argsort(d, kind="stable")
            ds = d[by_dev]
            first = np.r_[True, ds[1:] != ds[:-1]]
            run_start = np.maximum.accumulate(np.where(first, np.arange(len(ds)), 0))
            seq[sel[by_dev]] = self._seq[ds] + (np.arange(len(ds)) - run_start)
            self._seq += np.bincount(d, minlength=len(self._seq))

        readings: list[Reading] = []
        offset = 0
        for b in blocks:
            n = len(b.ts)
            names = [name for name, _ in b.columns]
            cols = [col for _, col in b.columns]
            if b.with_seq:
                names = ["ts", "seq", *names]
                cols = [b.ts.tolist(), seq[offset : offset + n].tolist(), *cols]
            readings.extend(dict(zip(names, row, strict=True)) for row in zip(*cols, strict=True))
            offset += n
        channels = [b.channel for b in blocks for _ in range(len(b.ts))]
        devices = self._devices
        ts_list, dev_list = ts.tolist(), dev.tolist()
        return [SimMessage(devices[dev_list[i]], channels[i], readings[i], ts_list[i]) for i in order.tolist()]
