"""Condition evaluators: per-device state in numpy arrays, one batch at a time.

Each evaluator sees the rule's rows of a batch (sorted by device, then time; NaN values and late
readings already removed) and reports the *condition changes* — where the condition turned on or
off — plus, per device, the newest row while it is on. The engine turns those into alerts.

Policies (documented in docs/rules.md):
* Row conditions (threshold, range) are evaluated at every reading, in device time order.
* Window and change conditions are evaluated once per device per batch, at its newest reading.
* A reading older than the newest one a rule has seen from that device is ignored by the rule.

"Device" here means a slot of the rule's state: the engine gives a rule one per device it selects
and passes slot numbers as ``Rows.device``; the evaluators never see the engine's device indexes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from rules.kernels import (
    Bools,
    Floats,
    Ints,
    group_firsts,
    group_lasts,
    grow,
    latch_sparse,
    run_lengths,
    run_starts,
)
from rules.pack import AfterPeak, Change, Event, NoData, Range, Surge, Threshold, Trend, Window

DAY_MS = 86_400_000
LOCAL_OFFSET_MS = 7 * 3_600_000
NEVER = np.iinfo(np.int64).min // 2


@dataclass(frozen=True, slots=True)
class Groups:
    """Each device's run of rows, for rows sorted by (device, ts)."""

    first: Bools
    """True at the first row of each device's run."""
    last: Bools
    firsts: Ints
    """Positions of the first rows; ``lasts`` of the last ones."""
    lasts: Ints
    head: Ints
    """The device of each run (in row order); ``head_ts`` the time of its first row, ``tail_ts`` of its last."""
    head_ts: Ints
    tail_ts: Ints

    @classmethod
    def of(cls, device: Ints, ts: Ints) -> Groups:
        first, last = group_firsts(device), group_lasts(device)
        firsts, lasts = np.flatnonzero(first), np.flatnonzero(last)
        return cls(first, last, firsts, lasts, device[firsts], ts[firsts], ts[lasts])


@dataclass(slots=True, init=False)
class Rows:
    """One rule's rows of a batch, sorted by (device, ts)."""

    device: Ints
    ts: Ints
    value: Floats
    extra: dict[str, Floats] = field(default_factory=dict)
    seen: tuple[Ints, Ints] | None = field(default=None, kw_only=True)
    """Devices (distinct) and the newest time of their other readings, which only move their clocks on
    (a camera's heartbeats, for its events)."""
    _groups: Groups | None = field(default=None, kw_only=True)

    def __init__(
        self,
        device: Ints,
        ts: Ints,
        value: Floats,
        extra: dict[str, Floats] | None = None,
        *,
        groups: Groups | None = None,
        seen: tuple[Ints, Ints] | None = None,
    ) -> None:
        self.device, self.ts, self.value = device, ts, value
        self.extra = {} if extra is None else extra
        self.seen = seen
        self._groups = groups

    def __len__(self) -> int:
        return len(self.device)

    def groups(self) -> Groups:
        """Each device's run of rows (computed once)."""
        if self._groups is None:
            self._groups = Groups.of(self.device, self.ts)
        return self._groups


@dataclass(slots=True)
class Changes:
    """Condition changes of one batch, in time order per device, and the devices still on."""

    device: Ints
    ts: Ints
    value: Floats
    on: Bools
    on_device: Ints
    on_ts: Ints
    on_value: Floats

    @classmethod
    def empty(cls) -> Changes:
        i, f, b = np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, bool)
        return cls(i, i, f, b, i, i, f)


_EMPTY = (np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, bool))


def compare(values: Floats, op: str, level: float) -> Bools:
    if op == ">=":
        return values >= level
    if op == ">":
        return values > level
    if op == "<=":
        return values <= level
    return values < level


def _safe_side(values: Floats, op: str, level: float) -> Bools:
    """Back on the safe side of ``level`` for a condition ``value op level``."""
    return values < level if op in (">", ">=") else values > level


def _row_changes(rows: Rows, on_rows: Bools, initial: Bools) -> Changes:
    """Where ``on_rows`` differs from the row before (``initial``: each device's state before its first row)."""
    g = rows.groups()
    firsts, lasts = g.firsts, g.lasts
    prev = np.empty_like(on_rows)
    prev[1:] = on_rows[:-1]
    prev[firsts] = initial
    changed = np.flatnonzero(on_rows != prev)
    on_tail = on_rows[lasts]
    on_last = lasts[on_tail]
    if not len(changed):
        i, f, b = _EMPTY
        return Changes(i, i, f, b, g.head[on_tail], g.tail_ts[on_tail], rows.value[on_last])
    return Changes(
        rows.device[changed], rows.ts[changed], rows.value[changed], on_rows[changed],
        g.head[on_tail], g.tail_ts[on_tail], rows.value[on_last],
    )  # fmt: skip


def _device_changes(device: Ints, ts: Ints, value: Floats, new_on: Bools, old_on: Bools) -> Changes:
    changed = new_on != old_on
    return Changes(
        device[changed], ts[changed], value[changed], new_on[changed],
        device[new_on], ts[new_on], value[new_on],
    )  # fmt: skip


class Evaluator(Protocol):
    on: Bools
    """Per device: is the condition on now."""

    def changes(self, rows: Rows, now_ms: int) -> Changes: ...

    def grow(self, n: int, now_ms: int) -> None:
        """Extend the per-device state to ``n`` devices; the new ones start as at construction."""
        ...


class ThresholdEval:
    """Threshold or range, with hysteresis, N consecutive readings and a sustained duration."""

    def __init__(self, cond: Threshold | Range, n_devices: int) -> None:
        self.cond = cond
        self.on = np.zeros(n_devices, dtype=bool)
        self.run_len = np.zeros(n_devices, dtype=np.int64)
        self.run_start = np.full(n_devices, -1, dtype=np.int64)

    def grow(self, n: int, now_ms: int) -> None:
        self.on = grow(self.on, n, False)
        self.run_len, self.run_start = grow(self.run_len, n, 0), grow(self.run_start, n, -1)

    def _bad_and_clear(self, v: Floats) -> tuple[Bools, Bools]:
        c = self.cond
        if isinstance(c, Threshold):
            bad = compare(v, c.op, c.value)
            return bad, (~bad if c.clear is None else _safe_side(v, c.op, c.clear))
        lo = c.low if c.clear_low is None else c.clear_low
        hi = c.high if c.clear_high is None else c.clear_high
        return (v < c.low) | (v > c.high), (v >= lo) & (v <= hi)

    def changes(self, rows: Rows, now_ms: int) -> Changes:
        if not len(rows):
            return Changes.empty()
        dev, ts = rows.device, rows.ts
        g = rows.groups()
        first, firsts, lasts, d = g.first, g.firsts, g.lasts, g.head
        bad, clear = self._bad_and_clear(rows.value)
        c = self.cond
        if c.for_ms == 0 and c.consecutive <= 2:  # the pack's usual case: a run of 2 at most matters
            ready = bad
            if c.consecutive == 2:  # runs counted up to 2: the row before was bad too
                before = np.empty_like(bad)
                before[1:] = bad[:-1]
                before[firsts] = self.run_len[d] >= 1
                ready = bad & before
                self.run_len[d] = np.where(bad[lasts], 1 + before[lasts], 0)
            else:
                self.run_len[d] = bad[lasts]
        elif c.consecutive <= 1:  # a duration only: when each run of bad rows began
            start = run_starts(bad, firsts, self.run_len[d] > 0, self.run_start[d], ts)
            ready = bad & (ts - start >= c.for_ms)
            tail_bad = bad[lasts]
            self.run_len[d] = tail_bad  # runs counted up to 1: whether one goes on
            self.run_start[d] = np.where(tail_bad, start[lasts], -1)
        else:
            length, start = run_lengths(bad, first, self.run_len[dev], self.run_start[dev], ts)
            ready = bad & (length >= c.consecutive) & (ts - start >= c.for_ms)
            self.run_len[d], self.run_start[d] = length[lasts], start[lasts]
        initial = self.on[d]
        if not initial.any() and not ready.any():  # off, and nothing turns it on: no change
            return Changes.empty()
        on_rows = latch_sparse(ready, clear, first, firsts, initial)
        out = _row_changes(rows, on_rows, initial)
        self.on[d] = on_rows[lasts]
        return out


class BucketStats:
    """Per-device rolling statistics in time buckets (a ring of ``slots`` buckets per device).

    Given a ``stat``, only what it needs is kept: sums for ``mean``; minima and maxima for ``min``,
    ``max`` and ``range`` (without one, all of them). Counts are whole numbers (int32), summed as
    floats as ever. A cell's id is its bucket's number + 1, and 0 a cell never used: every array
    starts as zeros, which the system gives lazily, so a device's buckets take memory once it
    reports (100,000 devices in a pack: tens of MB that a silent fleet never uses). Adding rows
    touches their cells only, whatever the number of devices.
    """

    def __init__(self, window_ms: int, n_devices: int, buckets: int = 24, *, stat: str | None = None) -> None:
        self.window_ms = window_ms
        self.bucket_ms = max(1000, window_ms // buckets)
        self.span = math.ceil(window_ms / self.bucket_ms)
        self.slots = self.span + 1
        self.kept = stat
        shape = (n_devices, self.slots)
        self.ids = np.zeros(shape, dtype=np.int64)
        self.count = np.zeros(shape, dtype=np.int32)
        sums, extremes = stat in (None, "mean"), stat != "mean"
        self.sum: Floats | None = np.zeros(shape) if sums else None
        self.min: Floats | None = np.zeros(shape) if extremes else None  # set when a cell starts
        self.max: Floats | None = np.zeros(shape) if extremes else None

    def grow(self, n: int) -> None:
        self.ids, self.count = grow(self.ids, n, 0), grow(self.count, n, 0)
        if self.sum is not None:
            self.sum = grow(self.sum, n, 0.0)
        if self.min is not None and self.max is not None:
            self.min, self.max = grow(self.min, n, 0.0), grow(self.max, n, 0.0)

    def add(self, dev: Ints, ts: Ints, v: Floats) -> None:
        """Add rows sorted by (device, ts) (each device's rows contiguous, in time order)."""
        n = len(dev)
        if not n:
            return
        bucket = ts // self.bucket_ms
        b = bucket + 1
        # Runs of rows in one (device, bucket): they go to one cell, and a cell takes one run at most.
        starts_run = np.empty(n, dtype=bool)
        starts_run[0] = True
        np.not_equal(b[1:], b[:-1], out=starts_run[1:])
        starts_run[1:] |= dev[1:] != dev[:-1]
        single = bool(starts_run.all())  # every row a run of its own: no gathers
        if not single:
            start = np.flatnonzero(starts_run)
            size = np.diff(start, append=n)
            dev, bucket, b = dev[start], bucket[start], b[start]
        cell = bucket  # made in place (each large temporary costs): the flat index into the (device, slot) arrays
        cell %= self.slots
        cell += dev * self.slots
        ids = self.ids.reshape(-1)  # views: every array here is C-contiguous
        current = ids[cell]
        np.maximum.at(ids, cell, b)  # a cell moves on to its newest bucket, never back
        target = ids[cell]
        keep = b == target  # runs of a bucket the cell has left behind are too old
        every = bool(keep.all())
        at = cell if every else cell[keep]  # cells distinct: one run each
        rows = 1 if single else (size if every else size[keep]).astype(np.int32)  # each kept run's
        # A cell that moved on starts over; it has a kept run (its newest bucket's), so only those are reset.
        renewed = (target != current) if every else (target[keep] != current[keep])
        count = self.count.reshape(-1)
        count[at] = np.where(renewed, 0, count[at]) + rows
        if self.sum is not None:
            total = self.sum.reshape(-1)
            before = np.where(renewed, 0.0, total[at])
            if single:  # a row per run, so one per cell: one add each
                total[at] = before + (v if every else v[keep])
            else:  # row by row, in order, as a float sum must be
                total[at] = before
                np.add.at(total, np.repeat(at, rows), v if every else v[np.repeat(keep, size)])
        if self.min is not None and self.max is not None:
            lo, hi = self.min.reshape(-1), self.max.reshape(-1)
            low, high = (v, v) if single else (np.minimum.reduceat(v, start), np.maximum.reduceat(v, start))
            lo[at] = np.minimum(np.where(renewed, np.inf, lo[at]), low if every else low[keep])
            hi[at] = np.maximum(np.where(renewed, -np.inf, hi[at]), high if every else high[keep])

    def stat(self, dev: Ints, at_ts: Ints, stat: str) -> Floats:
        """The statistic over the window ending at ``at_ts`` for each device (NaN if empty)."""
        newest = (at_ts // self.bucket_ms + 1)[:, None]
        ids = self.ids[dev]
        counts = self.count[dev]
        valid = (ids > newest - self.span) & (ids <= newest) & (counts > 0)
        count = np.where(valid, counts, 0.0).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            if stat == "mean":
                if self.sum is None:
                    raise ValueError(f"buckets kept for {self.kept!r}, not the mean")
                result = np.where(valid, self.sum[dev], 0.0).sum(axis=1) / count
            else:
                if self.min is None or self.max is None:
                    raise ValueError(f"buckets kept for {self.kept!r}, not {stat!r}")
                lo = np.where(valid, self.min[dev], np.inf).min(axis=1)
                hi = np.where(valid, self.max[dev], -np.inf).max(axis=1)
                result = {"min": lo, "max": hi, "range": hi - lo}[stat]
        return np.where(count > 0, result, np.nan)


class WindowEval:
    """A rolling statistic against a level, with hysteresis; evaluated at each device's newest row."""

    def __init__(self, cond: Window, n_devices: int) -> None:
        self.cond = cond
        self.stats = BucketStats(cond.window_ms, n_devices, stat=cond.stat)
        self.on = np.zeros(n_devices, dtype=bool)

    def grow(self, n: int, now_ms: int) -> None:
        self.stats.grow(n)
        self.on = grow(self.on, n, False)

    def changes(self, rows: Rows, now_ms: int) -> Changes:
        if not len(rows):
            return Changes.empty()
        self.stats.add(rows.device, rows.ts, rows.value)
        g = rows.groups()
        dev, ts = g.head, g.tail_ts  # each device's newest row
        c = self.cond
        s = self.stats.stat(dev, ts, c.stat)
        bad = compare(s, c.op, c.value)
        clear = ~bad if c.clear is None else _safe_side(s, c.op, c.clear)
        old = self.on[dev]
        new = bad | (old & ~clear)
        self.on[dev] = new
        return _device_changes(dev, ts, s, new, old)


class TrendGate:
    """``also`` gate: the newest value is below (falling) or above (rising) the window mean."""

    def __init__(self, gate: Trend, n_devices: int) -> None:
        self.gate = gate
        self.stats = BucketStats(gate.window_ms, n_devices, stat="mean")
        self.latest = np.full(n_devices, np.nan)

    def grow(self, n: int) -> None:
        self.stats.grow(n)
        self.latest = grow(self.latest, n, np.nan)

    def update(self, dev: Ints, ts: Ints, v: Floats) -> None:
        if len(dev):
            self.stats.add(dev, ts, v)
            last = group_lasts(dev)
            self.latest[dev[last]] = v[last]

    def passes(self, dev: Ints, ts: Ints) -> Bools:
        mean = self.stats.stat(dev, ts, "mean")
        current = self.latest[dev]
        return current < mean if self.gate.trend == "falling" else current > mean


class ChangeEval:
    """Today's statistic minus yesterday's (local days), evaluated at each device's newest row."""

    def __init__(self, cond: Change, n_devices: int) -> None:
        self.cond = cond
        self.day = np.full((n_devices, 2), -1, dtype=np.int64)  # [:,0] today, [:,1] yesterday
        self.sum = np.zeros((n_devices, 2))
        self.count = np.zeros((n_devices, 2))
        self.min = np.full((n_devices, 2), np.inf)
        self.max = np.full((n_devices, 2), -np.inf)
        self.on = np.zeros(n_devices, dtype=bool)

    def grow(self, n: int, now_ms: int) -> None:
        self.day, self.sum, self.count = grow(self.day, n, -1), grow(self.sum, n, 0.0), grow(self.count, n, 0.0)
        self.min, self.max = grow(self.min, n, np.inf), grow(self.max, n, -np.inf)
        self.on = grow(self.on, n, False)

    def changes(self, rows: Rows, now_ms: int) -> Changes:
        if not len(rows):
            return Changes.empty()
        n = len(self.on)
        stat_name = self.cond.stat
        day = rows.ts + LOCAL_OFFSET_MS  # in place from here (each large temporary costs)
        day //= DAY_MS
        g = rows.groups()
        lasts, dev, ts = g.lasts, g.head, g.tail_ts
        newest = self.day[:, 0].copy()  # a device's newest day is its last row's (its rows are in time order)
        newest[dev] = np.maximum(newest[dev], day[lasts])
        shape = (n, 2)
        s, c = np.zeros(shape), np.zeros(shape)
        lo, hi = np.full(shape, np.inf), np.full(shape, -np.inf)
        for k in (0, 1):  # carry the stored days over: they may still be today or yesterday
            rel = newest - self.day[:, k]
            ok = (self.day[:, k] >= 0) & (rel >= 0) & (rel <= 1)
            idx = np.nonzero(ok)[0]
            r = rel[ok]
            s[idx, r] += self.sum[ok, k]
            c[idx, r] += self.count[ok, k]
            lo[idx, r] = np.minimum(lo[idx, r], self.min[ok, k])
            hi[idx, r] = np.maximum(hi[idx, r], self.max[ok, k])
        rel = newest[rows.device]
        rel -= day
        kept = rel <= 1
        cell, v = rows.device[kept] * 2, rows.value[kept]
        cell += rel[kept]  # flat (device, day) index
        c.reshape(-1)[:] += np.bincount(cell, minlength=2 * n)  # whole numbers: exact in any order
        if stat_name == "mean":  # only the statistic the rule reads is kept
            np.add.at(s.reshape(-1), cell, v)  # in row order, as ever (a float sum depends on it)
        elif len(cell):
            # A (device, day) is one run of rows: devices' rows are contiguous, days rise in each.
            start = np.flatnonzero(np.concatenate(([True], cell[1:] != cell[:-1])))
            at = cell[start]
            if stat_name == "min":
                flat = lo.reshape(-1)
                flat[at] = np.minimum(flat[at], np.minimum.reduceat(v, start))
            else:
                flat = hi.reshape(-1)
                flat[at] = np.maximum(flat[at], np.maximum.reduceat(v, start))
        self.day = np.stack([newest, np.where(newest >= 0, newest - 1, -1)], axis=1)
        self.sum, self.count, self.min, self.max = s, c, lo, hi
        with np.errstate(invalid="ignore", divide="ignore"):
            stat = {"max": hi, "min": lo, "mean": s / c}[self.cond.stat][dev]
        both = (c[dev, 0] > 0) & (c[dev, 1] > 0)
        diff = np.where(both, stat[:, 0] - stat[:, 1], np.nan)
        old = self.on[dev]
        new = both & compare(diff, self.cond.op, self.cond.value)
        self.on[dev] = new
        return _device_changes(dev, ts, diff, new, old)


class SurgeEval:
    """Each value against the median of the device's previous ``baseline`` values (e.g. 7 nights)."""

    def __init__(self, cond: Surge, n_devices: int) -> None:
        self.cond = cond
        self.history = np.full((n_devices, cond.baseline), np.nan)
        self.on = np.zeros(n_devices, dtype=bool)

    def grow(self, n: int, now_ms: int) -> None:
        self.history, self.on = grow(self.history, n, np.nan), grow(self.on, n, False)

    def changes(self, rows: Rows, now_ms: int) -> Changes:
        if not len(rows):
            return Changes.empty()
        k = self.cond.baseline
        dev = rows.device
        first, last = group_firsts(dev), group_lasts(dev)
        starts = np.nonzero(first)[0]
        sizes = np.diff(np.append(starts, len(dev)))
        # One flat sequence per device: its stored history, then this batch's values.
        offsets = np.concatenate([[0], np.cumsum(sizes + k)[:-1]])
        flat = np.empty(int((sizes + k).sum()))
        hist_pos = (offsets[:, None] + np.arange(k)).ravel()
        flat[hist_pos] = self.history[dev[starts]].ravel()
        group = np.cumsum(first) - 1
        pos_in_group = np.arange(len(dev)) - starts[group]
        row_pos = offsets[group] + k + pos_in_group
        flat[row_pos] = rows.value
        windows = np.sort(np.lib.stride_tricks.sliding_window_view(flat, k)[row_pos - k], axis=1)  # NaN last
        known = np.sum(~np.isnan(windows), axis=1)
        # The median of the known values, as np.nanmedian takes it: the middle one, or the mean of two.
        rows_at = np.arange(len(windows))
        low, high = windows[rows_at, np.maximum(known - 1, 0) // 2], windows[rows_at, known // 2]
        median = np.where(known > 0, (low + high) / 2.0, np.nan)
        c = self.cond
        on_rows = (known >= min(3, k)) & (rows.value >= c.factor * median) & (rows.value >= c.min)
        out = _row_changes(rows, on_rows, self.on[dev[starts]])
        ends = offsets + k + sizes
        self.history[dev[starts]] = flat[ends[:, None] - k + np.arange(k)]
        self.on[dev[last]] = on_rows[last]
        return out


class AfterPeakEval:
    """``count`` values in a row below ``fraction`` × a peak ≥ ``peak`` (e.g. the sowing window).

    Nightly totals are one value per device per night, so this walks its (few) rows in order.
    """

    def __init__(self, cond: AfterPeak, n_devices: int) -> None:
        self.cond = cond
        self.peak = np.full(n_devices, np.nan)
        self.after = np.zeros(n_devices, dtype=np.int64)
        self.on = np.zeros(n_devices, dtype=bool)

    def grow(self, n: int, now_ms: int) -> None:
        self.peak, self.after, self.on = grow(self.peak, n, np.nan), grow(self.after, n, 0), grow(self.on, n, False)

    def changes(self, rows: Rows, now_ms: int) -> Changes:
        c = self.cond
        out_d, out_t, out_v, out_on = [], [], [], []
        for d, t, v in zip(rows.device.tolist(), rows.ts.tolist(), rows.value.tolist(), strict=True):
            was = bool(self.on[d])
            peak = self.peak[d]
            if v >= c.peak and (math.isnan(peak) or v >= peak or self.after[d] >= c.count):
                self.peak[d], self.after[d] = v, 0
            elif not math.isnan(peak) and v < c.fraction * peak:
                self.after[d] += 1
            elif not math.isnan(peak):
                self.after[d] = 0
            now_on = not math.isnan(self.peak[d]) and self.after[d] == c.count
            if now_on != was:
                out_d.append(d)
                out_t.append(t)
                out_v.append(v)
                out_on.append(now_on)
            self.on[d] = now_on
            if self.after[d] >= c.count:
                self.peak[d] = np.nan  # the window was announced; wait for the next peak
        on_dev = np.nonzero(self.on)[0]
        return Changes(
            np.array(out_d, np.int64), np.array(out_t, np.int64), np.array(out_v), np.array(out_on, bool),
            on_dev.astype(np.int64), np.full(len(on_dev), now_ms, np.int64), np.full(len(on_dev), np.nan),
        )  # fmt: skip


class NoDataEval:
    """Silent longer than ``after`` by the ingest clock, or its will said offline."""

    def __init__(self, cond: NoData, n_devices: int, mask: Bools, start_ms: int) -> None:
        self.cond = cond
        self.mask = mask
        self.last_arrival = np.full(n_devices, start_ms, dtype=np.int64)
        self.offline = np.zeros(n_devices, dtype=bool)
        self.on = np.zeros(n_devices, dtype=bool)

    def grow(self, n: int, now_ms: int) -> None:
        """New devices' clocks start at ``now_ms`` (a device just added is not silent yet), unselected."""
        self.mask = grow(self.mask, n, False)
        self.last_arrival = grow(self.last_arrival, n, now_ms)
        self.offline, self.on = grow(self.offline, n, False), grow(self.on, n, False)

    def select(self, mask: Bools, now_ms: int) -> None:
        """Watch the devices of ``mask`` from now on; those it newly takes in start their clock at ``now_ms``.

        A device that leaves keeps its state (an active alert is neither resolved nor re-fired).
        """
        joined = mask & ~self.mask
        self.last_arrival[joined] = now_ms
        self.offline[joined] = False
        self.mask = mask

    def seen(self, device: Ints, now_ms: int) -> None:
        self.last_arrival[device] = now_ms
        self.offline[device] = False

    def status(self, device: Ints, online: Floats) -> None:
        if self.cond.offline:
            self.offline[device] = online < 0.5

    def changes(self, rows: Rows, now_ms: int) -> Changes:
        dev = np.nonzero(self.mask)[0].astype(np.int64)
        new = (now_ms - self.last_arrival[dev] > self.cond.after_ms) | self.offline[dev]
        old = self.on[dev]
        self.on[dev] = new
        silent_s = (now_ms - self.last_arrival[dev]) / 1000.0
        return _device_changes(dev, np.full(len(dev), now_ms, np.int64), silent_s, new, old)


class EventEval:
    """Matching camera events; an episode resolves ``resolve_after`` after its last match.

    Device time decides (the camera's heartbeats move it on); events are rare, so matches are
    walked in order.
    """

    def __init__(self, cond: Event, n_devices: int, code: int) -> None:
        self.cond = cond
        self.code = code
        self.last_match = np.full(n_devices, NEVER, dtype=np.int64)
        self.episode_start = np.full(n_devices, NEVER, dtype=np.int64)
        self.on = np.zeros(n_devices, dtype=bool)

    def grow(self, n: int, now_ms: int) -> None:
        self.last_match, self.episode_start = grow(self.last_match, n, NEVER), grow(self.episode_start, n, NEVER)
        self.on = grow(self.on, n, False)

    def changes(self, rows: Rows, now_ms: int) -> Changes:
        c = self.cond
        gap = c.resolve_after_ms
        out: list[tuple[int, int, float, bool]] = []
        if len(rows):
            x = rows.extra
            match = np.flatnonzero(
                (x["event_code"] == self.code) & (x["confidence"] >= c.min_confidence) & (x["frames"] >= c.min_frames)
            )
            for d, t, v in zip(
                rows.device[match].tolist(), rows.ts[match].tolist(), rows.value[match].tolist(), strict=True
            ):
                if t - self.last_match[d] >= gap:  # a new episode
                    if self.on[d]:
                        out.append((d, int(self.last_match[d]) + gap, math.nan, False))
                        self.on[d] = False
                    self.episode_start[d] = t
                self.last_match[d] = t
                if not self.on[d] and t - self.episode_start[d] >= c.for_ms:
                    out.append((d, t, v, True))
                    self.on[d] = True
        if len(rows) or rows.seen is not None:
            seen = np.full(len(self.on), NEVER, dtype=np.int64)
            if len(rows):  # each device's rows are contiguous and in time order: its newest is its last
                g = rows.groups()
                seen[g.head] = g.tail_ts
            if rows.seen is not None:
                d_seen, newest = rows.seen
                seen[d_seen] = np.maximum(seen[d_seen], newest)
            done = np.nonzero(self.on & (seen - self.last_match >= gap))[0]
            for d in done.tolist():
                out.append((d, int(self.last_match[d]) + gap, math.nan, False))
                self.on[d] = False
        out.sort(key=lambda e: (e[0], e[1]))
        on_dev = np.nonzero(self.on)[0]
        return Changes(
            np.array([o[0] for o in out], np.int64), np.array([o[1] for o in out], np.int64),
            np.array([o[2] for o in out]), np.array([o[3] for o in out], bool),
            on_dev.astype(np.int64), self.last_match[on_dev], np.full(len(on_dev), np.nan),
        )  # fmt: skip
