"""Vectorised building blocks over readings sorted by (device, time).

Every function takes rows already sorted by device then time, with ``first`` marking the first
row of each device's group, and carries per-device state in from the previous batch. None of them
loops over rows in Python.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import numpy.typing as npt

Bools = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
S = TypeVar("S", bound=np.generic)


def grow(arr: npt.NDArray[S], n: int, fill: bool | int | float) -> npt.NDArray[S]:
    """``arr`` (per device along axis 0) extended to ``n`` devices; the new ones set to ``fill``."""
    if n < len(arr):
        raise ValueError(f"cannot grow {len(arr)} devices to {n}")
    if n == len(arr):
        return arr
    out = np.empty((n, *arr.shape[1:]), dtype=arr.dtype)
    out[: len(arr)] = arr
    out[len(arr) :] = fill
    return out


def group_firsts(device: npt.NDArray[np.integer]) -> Bools:
    """True at the first row of each device's run (rows sorted by device)."""
    first = np.ones(len(device), dtype=bool)
    if len(device) > 1:
        first[1:] = device[1:] != device[:-1]
    return first


def group_lasts(device: npt.NDArray[np.integer]) -> Bools:
    """True at the last row of each device's run."""
    last = np.ones(len(device), dtype=bool)
    if len(device) > 1:
        last[:-1] = device[1:] != device[:-1]
    return last


def latch(set_: Bools, reset: Bools, first: Bools, initial: Bools) -> Bools:
    """A set/reset latch per device: on at ``set_``, off at ``reset``, else as before.

    ``initial`` is each row's device state from before this batch (only read at group starts).
    Where ``set_`` and ``reset`` are both true, set wins.
    """
    n = len(set_)
    idx = np.arange(n)
    decided = set_ | reset | first
    value = np.where(set_, True, np.where(reset, False, initial))
    last_decided = np.maximum.accumulate(np.where(decided, idx, 0))
    return value[last_decided]


def latch_sparse(set_: Bools, reset: Bools, first: Bools, firsts: Ints, initial: Bools) -> Bools:
    """:func:`latch`, reading ``initial`` (one per device: at ``firsts``, the positions of ``first``) only
    there, and walking only the rows neither set nor reset: where a level has hysteresis, those are few.
    """
    out = set_.copy()
    out[firsts] = set_[firsts] | (~reset[firsts] & initial)
    undecided = ~(set_ | reset | first)
    held = np.flatnonzero(undecided) if undecided.any() else np.empty(0, np.int64)  # each takes the row before's
    if len(held):
        starts = np.ones(len(held), dtype=bool)
        starts[1:] = held[1:] != held[:-1] + 1
        run = np.cumsum(starts) - 1
        out[held] = out[held[starts] - 1][run]
    return out


def run_lengths(cond: Bools, first: Bools, carry_len: Ints, carry_start: Ints, ts: Ints) -> tuple[Ints, Ints]:
    """For each row: how many consecutive rows (this one included) ``cond`` has held, and since when.

    ``carry_len``/``carry_start`` are each row's device run from before this batch; they continue
    a run that is still going at the device's first row. Rows where ``cond`` is false get (0, -1).
    """
    n = len(cond)
    idx = np.arange(n)
    brk = ~cond | first
    seg = np.maximum.accumulate(np.where(brk, idx, 0))
    seg_true = cond[seg]  # the segment began with a true row: a device's first row, continuing or new
    carried = np.where(seg_true, carry_len, 0)
    length = np.where(cond, idx - seg + np.where(seg_true, 1, 0) + carried, 0)
    start_row = np.where(seg_true, seg, np.minimum(seg + 1, n - 1))
    start = np.where(seg_true & (carry_len > 0), carry_start, ts[start_row])
    return length.astype(np.int64), np.where(cond, start, -1).astype(np.int64)


def run_starts(cond: Bools, firsts: Ints, carried: Bools, carry_start: Ints, ts: Ints) -> Ints:
    """For each row where ``cond`` holds, the time its run of such rows began (elsewhere: anything).

    ``firsts`` are the positions of each device's first row; ``carried`` and ``carry_start``, one per
    device, whether a run goes on from before this batch, and since when (it goes on at the device's
    first row if ``cond`` holds there). :func:`run_lengths` without the lengths.
    """
    n = len(cond)
    brk = ~cond
    brk[firsts] = True
    seg = np.arange(n)  # the row that began each row's segment, made in place (each large temporary costs)
    seg[~brk] = 0
    np.maximum.accumulate(seg, out=seg)
    start_row = seg + ~cond[seg]  # a false row ends a run: the next one begins it
    np.minimum(start_row, n - 1, out=start_row)
    start: Ints = ts[start_row]
    going = cond[firsts] & carried
    if going.any():  # runs that go on from the last batch: their start came with them
        at = firsts[going]
        began = np.zeros(n, dtype=np.int64)
        began[at] = carry_start[going]
        goes = np.zeros(n, dtype=bool)
        goes[at] = True
        start = np.where(goes[seg], began[seg], start)
    return start


def previous_in_group(
    values: npt.NDArray[np.generic], first: Bools, initial: npt.NDArray[np.generic]
) -> npt.NDArray[np.generic]:
    """Each row's previous value within its device group; ``initial`` (per row) at group starts."""
    prev = np.empty_like(values)
    if len(values):
        prev[1:] = values[:-1]
        prev[first] = initial[first]
    return prev


def last_per_group(values: npt.NDArray[np.generic], last: Bools) -> npt.NDArray[np.generic]:
    """The value at each device's last row (in device order)."""
    return values[last]
