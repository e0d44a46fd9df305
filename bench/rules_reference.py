"""A straightforward per-reading Python evaluator of a rule pack: the rule engine's baseline.

What a competent Python developer writes without numpy: readings walked one at a time in device
time order; for each, the rules whose selector takes the device (looked up once per device) update
per-(rule, device) state held in dicts and small dataclasses, and append *condition changes*. At
the end of a batch each rule turns its changes into alert transitions (one active alert per rule
and device, ``min_gap`` flapping suppression, ``also`` trend gates) exactly as ``rules.engine``
does. Messages are rendered with the same ``rules.messages`` functions.

It reproduces the engine's semantics for every condition type of the default pack, including
the ones tied to batches (the engine's documented policies, not artefacts):

* readings older than or as old as the newest one a rule evaluated for a device in an earlier
  batch are ignored by it; within a batch readings are taken in device-time order (ties in arrival
  order);
* ``window`` and ``change`` conditions are evaluated at each device's newest reading of a batch;
  windows use the engine's 24 time buckets, and their means add the buckets in numpy's pairwise
  order (:func:`pairwise_sum`) so a flat signal's mean compares exactly as in the engine;
* ``also`` gates, and fires held back by ``min_gap``, are decided when the batch closes, with the
  gate state of the whole batch (a held-back fire happens at the device's newest reading still on);
* ``no_data`` uses the ingest clock (``now_ms`` of the batch): the kind's readings mark the device
  seen, then status reports (``online`` 0) mark it offline;
* camera ``event`` episodes resolve ``resolve_after`` after the last match, once any later
  reading (event or heartbeat) shows that much time has passed.

Known difference: derived ``nh3_mg_l`` uses ``math``/``**`` per reading where the engine uses
numpy's vectorised power, which may differ in the last bit on some CPUs; only a value exactly at a
threshold could tell them apart. Nothing is excluded from the equivalence check.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Final

from rules.derived import _PSS_A, _PSS_B, _PSS_K, _RT_C, C35_US_CM, CHLORIDE_SHARE, TRAP_NIGHT_FIELDS
from rules.engine import EVENTS_KEY
from rules.errors import RulesError
from rules.messages import render, resolved_text
from rules.model import DeviceInfo, Readings, Severity, State, Transition
from rules.pack import AfterPeak, Change, Event, NoData, Pack, Range, Rule, Surge, Threshold, Trend, Window
from storage.layout import STATUS_MEASUREMENT, STATUS_ONLINE

NEVER: Final = -(2**62)
"""Same as the engine's ``np.iinfo(np.int64).min // 2``."""
DAY_MS: Final = 86_400_000
LOCAL_OFFSET_MS: Final = 7 * 3_600_000
NAN: Final = math.nan

Change_ = tuple[int, int, float, bool]
"""A condition change: (device, ts, value, on)."""
OnRow = tuple[int, int, float]
"""A device whose condition is on at the end of a batch: (device, ts, value)."""


@dataclass(frozen=True, slots=True)
class Reading:
    """One reading as a per-reading evaluator receives it."""

    key: str
    """Its device kind, ``camera_event`` or ``device_status``."""
    device: int
    ts_ms: int
    fields: dict[str, float]
    """The numeric fields it carries (absent ones are left out)."""


def readings_from_columns(columns: Mapping[str, Readings]) -> list[Reading]:
    """The readings of an engine batch, one object each (NaN fields left out), in column order."""
    out: list[Reading] = []
    for key, cols in columns.items():
        names = list(cols.fields)
        values = [cols.fields[n].tolist() for n in names]
        for i, (d, t) in enumerate(zip(cols.device.tolist(), cols.ts_ms.tolist(), strict=True)):
            fields = {n: v[i] for n, v in zip(names, values, strict=True) if v[i] == v[i]}
            out.append(Reading(key, d, t, fields))
    return out


# --- derived fields, one reading at a time -------------------------------------------------------


def _poly(coefs: tuple[float, ...], x: float) -> float:
    out = 0.0
    for c in reversed(coefs):
        out = out * x + c
    return out


def _salinity_from_ec(f: Mapping[str, float]) -> float | None:
    ec = f.get("ec_us_cm")
    if ec is None:
        return None
    t68 = 25.0 * 1.00024
    rt = max(ec, 0.0) / (C35_US_CM * _poly(_RT_C, t68))
    x = math.sqrt(rt)
    ft = (t68 - 15.0) / (1.0 + _PSS_K * (t68 - 15.0))
    s = _poly(_PSS_A, x) + ft * _poly(_PSS_B, x)
    if s < 2.0:
        big_x, sqrt_y = 400.0 * rt, 10.0 * x
        s = s - _PSS_A[0] / (1.0 + big_x * (1.5 + big_x))
        s = s - _PSS_B[0] * ft / (1.0 + sqrt_y * (1.0 + sqrt_y * (1.0 + sqrt_y)))
    return max(s, 0.0)


def _nh3(f: Mapping[str, float]) -> float | None:
    nh4, ph, temp = f.get("nh4_mg_l"), f.get("ph"), f.get("temp_c")
    if nh4 is None or ph is None or temp is None:
        return None
    pka = 0.09018 + 2729.92 / (temp + 273.15)
    power: float = 10.0 ** (pka - ph)
    return nh4 * (1.0 / (1.0 + power))


def _chloride(f: Mapping[str, float]) -> float | None:
    s = f.get("salinity_ppt")
    return None if s is None else s * (CHLORIDE_SHARE * 1000.0)


def _trap_total(f: Mapping[str, float]) -> float | None:
    present = [f[n] for n in TRAP_NIGHT_FIELDS if n in f]
    return sum(present) if present else None


DERIVED: Final[dict[str, Callable[[Mapping[str, float]], float | None]]] = {
    "salinity_from_ec_ppt": _salinity_from_ec,
    "nh3_mg_l": _nh3,
    "cl_mg_l_est": _chloride,
    "trap_night_total": _trap_total,
}


def _getter(name: str) -> Callable[[Mapping[str, float]], float | None]:
    derived = DERIVED.get(name)
    if derived is not None:
        return derived
    return lambda f: f.get(name)


# --- small helpers ---------------------------------------------------------------------------------


def compare(v: float, op: str, level: float) -> bool:
    if op == ">=":
        return v >= level
    if op == ">":
        return v > level
    if op == "<=":
        return v <= level
    return v < level


def safe_side(v: float, op: str, level: float) -> bool:
    """Back on the safe side of ``level`` for a condition ``v op level``."""
    return v < level if op in (">", ">=") else v > level


def pairwise_sum(a: Sequence[float]) -> float:
    """``sum(a)`` added in numpy's pairwise order (8 accumulators; exact for up to 128 values)."""
    n = len(a)
    if n < 8:
        res = 0.0
        for x in a:
            res += x
        return res
    r = list(a[:8])
    i = 8
    while i < n - n % 8:
        for j in range(8):
            r[j] += a[i + j]
        i += 8
    res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    while i < n:
        res += a[i]
        i += 1
    return res


class Buckets:
    """A device's rolling window as a ring of time buckets (the engine's layout: 24 per window)."""

    __slots__ = ("bucket_ms", "count", "hi", "ids", "lo", "slots", "span", "sums")

    def __init__(self, window_ms: int, buckets: int = 24) -> None:
        self.bucket_ms = max(1000, window_ms // buckets)
        self.span = math.ceil(window_ms / self.bucket_ms)
        self.slots = self.span + 1
        self.ids = [-1] * self.slots
        self.sums = [0.0] * self.slots
        self.count = [0.0] * self.slots
        self.lo = [math.inf] * self.slots
        self.hi = [-math.inf] * self.slots

    def add(self, ts: int, v: float) -> None:
        b = ts // self.bucket_ms
        s = b % self.slots
        if b < self.ids[s]:
            return  # older than what the slot holds now
        if b > self.ids[s]:
            self.ids[s], self.sums[s], self.count[s], self.lo[s], self.hi[s] = b, 0.0, 0.0, math.inf, -math.inf
        self.sums[s] += v
        self.count[s] += 1.0
        self.lo[s] = min(self.lo[s], v)
        self.hi[s] = max(self.hi[s], v)

    def stat(self, ts: int, stat: str) -> float:
        """The statistic over the window ending at ``ts`` (NaN if it holds nothing)."""
        newest = ts // self.bucket_ms
        sums = [0.0] * self.slots
        n, lo, hi = 0.0, math.inf, -math.inf
        for s in range(self.slots):
            if newest - self.span < self.ids[s] <= newest and self.count[s] > 0:
                sums[s] = self.sums[s]
                n += self.count[s]
                lo, hi = min(lo, self.lo[s]), max(hi, self.hi[s])
        if n == 0:
            return NAN
        if stat == "mean":
            return pairwise_sum(sums) / n
        return {"min": lo, "max": hi, "range": hi - lo}[stat]


@dataclass(slots=True)
class _Alert:
    on: bool = False
    pending: bool = False
    last_resolve: int = NEVER


class _Gate:
    """An ``also`` trend gate: the newest value below (falling) / above (rising) the window mean."""

    def __init__(self, gate: Trend) -> None:
        self.gate = gate
        self.get = _getter(gate.field)
        self.windows: dict[int, Buckets] = {}
        self.latest: dict[int, float] = {}

    def feed(self, d: int, ts: int, fields: Mapping[str, float]) -> None:
        v = self.get(fields)
        if v is None:
            return
        w = self.windows.get(d)
        if w is None:
            w = self.windows[d] = Buckets(self.gate.window_ms)
        w.add(ts, v)
        self.latest[d] = v

    def passes(self, d: int, ts: int) -> bool:
        w = self.windows.get(d)
        mean = NAN if w is None else w.stat(ts, "mean")
        current = self.latest.get(d, NAN)
        return current < mean if self.gate.trend == "falling" else current > mean


# --- rules -------------------------------------------------------------------------------------


class _Rule:
    """One rule: per-device alert state and the condition changes of the current batch."""

    def __init__(self, rule: Rule, devices: Sequence[DeviceInfo]) -> None:
        self.rule = rule
        self.devices = devices
        self.alerts: dict[int, _Alert] = {}
        self.changes: list[Change_] = []
        self.gates = [_Gate(g) for g in rule.also]
        self.keys: tuple[str, ...] = (rule.kind,)
        """Which readings it is fed."""

    def feed(self, r: Reading) -> None:
        raise NotImplementedError

    def close(self, now_ms: int) -> list[OnRow]:
        """End of batch: add the batch-level changes; return the devices still on."""
        raise NotImplementedError

    def gates_pass(self, d: int, ts: int) -> bool:
        return all(g.passes(d, ts) for g in self.gates)

    def gate_ts(self, d: int) -> int:
        return NEVER

    def finish(self, now_ms: int) -> list[Transition]:
        """Turn the batch's condition changes into alert transitions (the engine's ``_alerts``)."""
        still_on = self.close(now_ms)
        changes, self.changes = self.changes, []
        gap = self.rule.min_gap_ms
        out: list[Transition] = []
        gates_ok: dict[int, bool] = {}
        if self.gates:
            for d in {c[0] for c in changes}:
                gates_ok[d] = self.gates_pass(d, self.gate_ts(d))
        for d, t, v, on in changes:
            a = self.alerts.get(d)
            if a is None:
                a = self.alerts[d] = _Alert()
            if on:
                if a.on:
                    continue
                if t - a.last_resolve < gap or not gates_ok.get(d, True):
                    a.pending = True
                    continue
                a.on, a.pending = True, False
                out.append(self.transition(d, State.FIRING, t, v))
            else:
                a.pending = False
                if a.on:
                    a.on, a.last_resolve = False, t
                    out.append(self.transition(d, State.RESOLVED, t, v))
        for d, t, v in still_on:  # fires held back by min_gap or a gate
            a = self.alerts.get(d)
            if a is not None and a.pending and t - a.last_resolve >= gap and self.gates_pass(d, t):
                a.on, a.pending = True, False
                out.append(self.transition(d, State.FIRING, t, v))
        return out

    def transition(self, d: int, state: State, ts: int, value: float) -> Transition:
        rule, device = self.rule, self.devices[d]
        severity = rule.severity
        unit_vi = rule.unit_vi or rule.unit
        if state is State.FIRING:
            if rule.critical_above is not None and not math.isnan(value):
                upward = getattr(rule.condition, "op", ">") in (">", ">=")
                if value >= rule.critical_above if upward else value <= rule.critical_above:
                    severity = Severity.CRITICAL
            vi = render(rule.message.vi, device=device, value=value, unit=unit_vi, ts_ms=ts, vietnamese=True)
            en = render(rule.message.en, device=device, value=value, unit=rule.unit, ts_ms=ts, vietnamese=False)
        else:
            title_vi, title_en = (rule.title.vi, rule.title.en) if rule.title else (rule.id, rule.id)
            vi = resolved_text(device, title_vi, value=value, unit=unit_vi, ts_ms=ts, vietnamese=True)
            en = resolved_text(device, title_en, value=value, unit=rule.unit, ts_ms=ts, vietnamese=False)
        return Transition(rule.id, d, device.id, state, ts, value, severity, vi, en)


class _FieldRule(_Rule):
    """A rule on one field: skips readings without it and readings older than an earlier batch's."""

    def __init__(self, rule: Rule, devices: Sequence[DeviceInfo], field_name: str) -> None:
        super().__init__(rule, devices)
        self.get = _getter(field_name)
        self.last_ts: dict[int, int] = {}
        """Newest reading evaluated per device, as of the end of the previous batch."""
        self.batch_last: dict[int, tuple[int, float]] = {}
        """Newest reading evaluated per device in this batch: (ts, value)."""

    def feed(self, r: Reading) -> None:
        d, t = r.device, r.ts_ms
        for g in self.gates:
            g.feed(d, t, r.fields)
        v = self.get(r.fields)
        if v is None or t <= self.last_ts.get(d, NEVER):
            return
        self.row(d, t, v)
        self.batch_last[d] = (t, v)

    def row(self, d: int, t: int, v: float) -> None:
        raise NotImplementedError

    def gate_ts(self, d: int) -> int:
        return self.last_ts.get(d, NEVER)

    def close(self, now_ms: int) -> list[OnRow]:
        on = self.close_rows(now_ms)
        for d, (t, _) in self.batch_last.items():
            self.last_ts[d] = max(t, self.last_ts.get(d, NEVER))
        self.batch_last = {}
        return on

    def close_rows(self, now_ms: int) -> list[OnRow]:
        raise NotImplementedError


@dataclass(slots=True)
class _Run:
    on: bool = False
    length: int = 0
    start: int = -1


class _ThresholdRule(_FieldRule):
    """Threshold or range, with hysteresis, N consecutive readings and a sustained duration."""

    def __init__(self, rule: Rule, devices: Sequence[DeviceInfo], cond: Threshold | Range) -> None:
        super().__init__(rule, devices, cond.field)
        self.cond = cond
        self.state: dict[int, _Run] = {}
        if isinstance(cond, Range):
            self.lo = cond.low if cond.clear_low is None else cond.clear_low
            self.hi = cond.high if cond.clear_high is None else cond.clear_high

    def bad_and_clear(self, v: float) -> tuple[bool, bool]:
        c = self.cond
        if isinstance(c, Threshold):
            bad = compare(v, c.op, c.value)
            return bad, (not bad if c.clear is None else safe_side(v, c.op, c.clear))
        return (v < c.low or v > c.high), (self.lo <= v <= self.hi)

    def row(self, d: int, t: int, v: float) -> None:
        s = self.state.get(d)
        if s is None:
            s = self.state[d] = _Run()
        bad, clear = self.bad_and_clear(v)
        if bad:
            if s.length == 0:
                s.start = t
            s.length += 1
        else:
            s.length, s.start = 0, -1
        was = s.on
        if bad and s.length >= self.cond.consecutive and t - s.start >= self.cond.for_ms:
            s.on = True
        elif clear:
            s.on = False
        if s.on != was:
            self.changes.append((d, t, v, s.on))

    def close_rows(self, now_ms: int) -> list[OnRow]:
        return [(d, t, v) for d, (t, v) in self.batch_last.items() if self.state[d].on]


class _WindowRule(_FieldRule):
    """A rolling statistic against a level, with hysteresis, at each device's newest reading."""

    def __init__(self, rule: Rule, devices: Sequence[DeviceInfo], cond: Window) -> None:
        super().__init__(rule, devices, cond.field)
        self.cond = cond
        self.windows: dict[int, Buckets] = {}
        self.on: dict[int, bool] = {}

    def row(self, d: int, t: int, v: float) -> None:
        w = self.windows.get(d)
        if w is None:
            w = self.windows[d] = Buckets(self.cond.window_ms)
        w.add(t, v)

    def close_rows(self, now_ms: int) -> list[OnRow]:
        c = self.cond
        on_rows: list[OnRow] = []
        for d, (t, _) in self.batch_last.items():
            s = self.windows[d].stat(t, c.stat)
            bad = compare(s, c.op, c.value)
            clear = not bad if c.clear is None else safe_side(s, c.op, c.clear)
            old = self.on.get(d, False)
            new = bad or (old and not clear)
            self.on[d] = new
            if new != old:
                self.changes.append((d, t, s, new))
            if new:
                on_rows.append((d, t, s))
        return on_rows


@dataclass(slots=True)
class _Day:
    day: int = -1
    total: float = 0.0
    count: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf

    def add(self, v: float) -> None:
        self.total += v
        self.count += 1.0
        self.lo, self.hi = min(self.lo, v), max(self.hi, v)

    def stat(self, stat: str) -> float:
        if stat == "mean":
            return self.total / self.count if self.count else NAN
        return self.hi if stat == "max" else self.lo


class _ChangeRule(_FieldRule):
    """Today's statistic minus yesterday's (local days), at each device's newest reading."""

    def __init__(self, rule: Rule, devices: Sequence[DeviceInfo], cond: Change) -> None:
        super().__init__(rule, devices, cond.field)
        self.cond = cond
        self.days: dict[int, tuple[_Day, _Day]] = {}
        self.on: dict[int, bool] = {}

    def row(self, d: int, t: int, v: float) -> None:
        day = (t + LOCAL_OFFSET_MS) // DAY_MS
        today, yesterday = self.days.get(d) or (_Day(), _Day())
        if day > today.day:
            yesterday = today if day == today.day + 1 else _Day(day - 1)
            today = _Day(day)
        self.days[d] = (today, yesterday)
        if day == today.day:
            today.add(v)
        elif day == yesterday.day:
            yesterday.add(v)

    def close_rows(self, now_ms: int) -> list[OnRow]:
        c = self.cond
        on_rows: list[OnRow] = []
        for d, (t, _) in self.batch_last.items():
            today, yesterday = self.days[d]
            both = today.count > 0 and yesterday.count > 0
            diff = today.stat(c.stat) - yesterday.stat(c.stat) if both else NAN
            old = self.on.get(d, False)
            new = both and compare(diff, c.op, c.value)
            self.on[d] = new
            if new != old:
                self.changes.append((d, t, diff, new))
            if new:
                on_rows.append((d, t, diff))
        return on_rows


class _SurgeRule(_FieldRule):
    """Each value against the median of the device's previous ``baseline`` values."""

    def __init__(self, rule: Rule, devices: Sequence[DeviceInfo], cond: Surge) -> None:
        super().__init__(rule, devices, cond.field)
        self.cond = cond
        self.history: dict[int, deque[float]] = {}
        self.on: dict[int, bool] = {}

    def row(self, d: int, t: int, v: float) -> None:
        c = self.cond
        h = self.history.get(d)
        if h is None:
            h = self.history[d] = deque(maxlen=c.baseline)
        new = len(h) >= min(3, c.baseline) and v >= c.factor * statistics.median(h) and v >= c.min
        h.append(v)
        if new != self.on.get(d, False):
            self.changes.append((d, t, v, new))
        self.on[d] = new

    def close_rows(self, now_ms: int) -> list[OnRow]:
        return [(d, t, v) for d, (t, v) in self.batch_last.items() if self.on[d]]


@dataclass(slots=True)
class _Peak:
    peak: float = NAN
    after: int = 0
    on: bool = False


class _AfterPeakRule(_FieldRule):
    """``count`` values in a row below ``fraction`` × a peak ≥ ``peak``."""

    def __init__(self, rule: Rule, devices: Sequence[DeviceInfo], cond: AfterPeak) -> None:
        super().__init__(rule, devices, cond.field)
        self.cond = cond
        self.state: dict[int, _Peak] = {}

    def row(self, d: int, t: int, v: float) -> None:
        c = self.cond
        s = self.state.get(d)
        if s is None:
            s = self.state[d] = _Peak()
        was, peak = s.on, s.peak
        if v >= c.peak and (math.isnan(peak) or v >= peak or s.after >= c.count):
            s.peak, s.after = v, 0
        elif not math.isnan(peak) and v < c.fraction * peak:
            s.after += 1
        elif not math.isnan(peak):
            s.after = 0
        s.on = not math.isnan(s.peak) and s.after == c.count
        if s.on != was:
            self.changes.append((d, t, v, s.on))
        if s.after >= c.count:
            s.peak = NAN  # announced: wait for the next peak

    def close_rows(self, now_ms: int) -> list[OnRow]:
        return [(d, now_ms, NAN) for d, s in self.state.items() if s.on]


class _NoDataRule(_Rule):
    """Silent longer than ``after`` by the ingest clock, or the device's will said offline."""

    def __init__(self, rule: Rule, devices: Sequence[DeviceInfo], cond: NoData, mine: list[int], start_ms: int) -> None:
        super().__init__(rule, devices)
        self.cond = cond
        self.keys = (rule.kind, STATUS_MEASUREMENT)
        self.mine = mine
        self.last_arrival = dict.fromkeys(mine, start_ms)
        self.offline = dict.fromkeys(mine, False)
        self.on = dict.fromkeys(mine, False)
        self.seen: set[int] = set()
        self.status: dict[int, float] = {}

    def feed(self, r: Reading) -> None:
        if r.key == STATUS_MEASUREMENT:
            self.status[r.device] = r.fields.get(STATUS_ONLINE, NAN)
        else:
            self.seen.add(r.device)

    def close(self, now_ms: int) -> list[OnRow]:
        for d in self.seen:
            self.last_arrival[d], self.offline[d] = now_ms, False
        if self.cond.offline:
            for d, online in self.status.items():
                self.offline[d] = online < 0.5
        self.seen, self.status = set(), {}
        on_rows: list[OnRow] = []
        for d in self.mine:
            silent = now_ms - self.last_arrival[d]
            new = silent > self.cond.after_ms or self.offline[d]
            if new != self.on[d]:
                self.changes.append((d, now_ms, silent / 1000.0, new))
            self.on[d] = new
            if new:
                on_rows.append((d, now_ms, silent / 1000.0))
        return on_rows


@dataclass(slots=True)
class _Episode:
    last_match: int = NEVER
    start: int = NEVER
    on: bool = False


class _EventRule(_Rule):
    """Matching camera events; an episode resolves ``resolve_after`` after its last match."""

    def __init__(self, rule: Rule, devices: Sequence[DeviceInfo], cond: Event, code: int) -> None:
        super().__init__(rule, devices)
        self.cond = cond
        self.code = code
        self.keys = (rule.kind, EVENTS_KEY)
        self.state: dict[int, _Episode] = {}

    def feed(self, r: Reading) -> None:
        c, d, t = self.cond, r.device, r.ts_ms
        gap = c.resolve_after_ms
        s = self.state.get(d)
        if s is None:
            s = self.state[d] = _Episode()
        f = r.fields
        if (
            r.key == EVENTS_KEY
            and f.get("event_code") == self.code
            and f.get("confidence", NAN) >= c.min_confidence
            and f.get("frames", NAN) >= c.min_frames
        ):
            if t - s.last_match >= gap:  # a new episode
                if s.on:
                    self.changes.append((d, s.last_match + gap, NAN, False))
                    s.on = False
                s.start = t
            s.last_match = t
            if not s.on and t - s.start >= c.for_ms:
                self.changes.append((d, t, f.get(c.field, NAN), True))
                s.on = True
        elif s.on and t - s.last_match >= gap:  # time has moved past the episode
            self.changes.append((d, s.last_match + gap, NAN, False))
            s.on = False

    def close(self, now_ms: int) -> list[OnRow]:
        return [(d, s.last_match, NAN) for d, s in self.state.items() if s.on]


# --- the evaluator -----------------------------------------------------------------------------


def _selected(rule: Rule, d: DeviceInfo) -> bool:
    s = rule.select
    return (
        d.kind == rule.kind
        and (not s.province or d.province in s.province)
        and (not s.district or d.district in s.district)
        and (not s.site or d.site in s.site)
        and (not s.crop or d.crop in s.crop)
        and (not s.devices or d.id in s.devices)
    )


class ReferenceEngine:
    """Evaluates a rule pack one reading at a time; same constructor and results as ``Engine``."""

    def __init__(
        self,
        pack: Pack,
        devices: Sequence[DeviceInfo],
        *,
        event_classes: Sequence[str] = (),
        start_ms: int = 0,
    ) -> None:
        self.pack = pack
        self.devices = tuple(devices)
        self.rules: list[_Rule] = []
        self._routes: dict[tuple[str, int], list[_Rule]] = {}
        for rule in pack.rules:
            if not rule.enabled:
                continue
            mine = [i for i, d in enumerate(self.devices) if _selected(rule, d)]
            compiled = self._compile(rule, list(event_classes), mine, start_ms)
            self.rules.append(compiled)
            for key in compiled.keys:
                for i in mine:
                    self._routes.setdefault((key, i), []).append(compiled)

    def _compile(self, rule: Rule, event_classes: list[str], mine: list[int], start_ms: int) -> _Rule:
        c = rule.condition
        if isinstance(c, Threshold | Range):
            return _ThresholdRule(rule, self.devices, c)
        if isinstance(c, Window):
            return _WindowRule(rule, self.devices, c)
        if isinstance(c, Change):
            return _ChangeRule(rule, self.devices, c)
        if isinstance(c, Surge):
            return _SurgeRule(rule, self.devices, c)
        if isinstance(c, AfterPeak):
            return _AfterPeakRule(rule, self.devices, c)
        if isinstance(c, NoData):
            return _NoDataRule(rule, self.devices, c, mine, start_ms)
        if c.event not in event_classes:
            raise RulesError(f"rule {rule.id}: unknown camera event {c.event!r}")
        return _EventRule(rule, self.devices, c, event_classes.index(c.event))

    def evaluate(self, readings: Iterable[Reading], *, now_ms: int) -> list[Transition]:
        """Feed one batch reading by reading, in device time order; return its transitions, oldest first."""
        routes = self._routes
        for r in sorted(readings, key=attrgetter("ts_ms")):
            for rule in routes.get((r.key, r.device), ()):
                rule.feed(r)
        out: list[Transition] = []
        for rule in self.rules:
            out.extend(rule.finish(now_ms))
        out.sort(key=lambda t: (t.ts_ms, t.rule_id, t.device))
        return out

    def tick(self, now_ms: int) -> list[Transition]:
        """Time passing without readings (no-data rules)."""
        return self.evaluate((), now_ms=now_ms)
