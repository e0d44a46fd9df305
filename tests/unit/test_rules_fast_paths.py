"""The engine's fast paths against the plain ways they replace: same results, bit for bit."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest

from rules.conditions import BucketStats
from rules.engine import _order
from rules.kernels import group_firsts, latch, latch_sparse, run_lengths, run_starts
from rules.model import Severity, State, Texts, Transition

SEEDS = range(6)


def device_firsts(rng: np.random.Generator, n: int) -> np.ndarray:
    """True at the first row of each device's run, for rows of 7 devices sorted by device."""
    return group_firsts(np.sort(rng.integers(0, 7, n)))


@pytest.mark.parametrize("seed", SEEDS)
def test_latch_sparse_is_latch(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    first = device_firsts(rng, n)
    set_, reset = rng.random(n) < 0.2, rng.random(n) < 0.3
    firsts = np.flatnonzero(first)
    initial = rng.random(len(firsts)) < 0.5
    per_row = np.zeros(n, dtype=bool)
    per_row[firsts] = initial
    per_row = per_row[np.maximum.accumulate(np.where(first, np.arange(n), 0))]  # each row: its device's
    assert np.array_equal(latch_sparse(set_, reset, first, firsts, initial), latch(set_, reset, first, per_row))


@pytest.mark.parametrize("seed", SEEDS)
def test_run_starts_are_run_lengths_starts(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    first = device_firsts(rng, n)
    firsts = np.flatnonzero(first)
    cond = rng.random(n) < 0.6
    ts = np.cumsum(rng.integers(1, 100, n)).astype(np.int64)
    carry_len = np.where(rng.random(len(firsts)) < 0.5, rng.integers(1, 5, len(firsts)), 0).astype(np.int64)
    carry_start = np.where(carry_len > 0, -rng.integers(1, 1000, len(firsts)), -1).astype(np.int64)
    row_device = np.cumsum(first) - 1
    _, want = run_lengths(cond, first, carry_len[row_device], carry_start[row_device], ts)
    got = run_starts(cond, firsts, carry_len > 0, carry_start, ts)
    assert np.array_equal(got[cond], want[cond])


@pytest.mark.parametrize("stat", [None, "mean", "range"])
@pytest.mark.parametrize("seed", SEEDS)
def test_bucket_stats_in_one_call_are_row_by_row(stat: str | None, seed: int) -> None:
    """Rows of a batch (several to a bucket, some buckets left behind) as one call or one row at a time."""
    rng = np.random.default_rng(seed)
    window = 3_600_000
    n = 400
    device = np.sort(rng.integers(0, 5, n)).astype(np.int64)
    ts = np.empty(n, dtype=np.int64)
    for d in range(5):
        rows = device == d
        ts[rows] = np.sort(rng.integers(0, 4 * window, rows.sum()))  # a device's rows in time order
    v = np.round(rng.normal(100, 30, n), 3)
    at_once, one_by_one = BucketStats(window, 5, stat=stat), BucketStats(window, 5, stat=stat)
    at_once.add(device, ts, v)
    for i in range(n):
        one_by_one.add(device[i : i + 1], ts[i : i + 1], v[i : i + 1])
    for name in ("ids", "count", "sum", "min", "max"):
        a, b = getattr(at_once, name), getattr(one_by_one, name)
        assert (a is None and b is None) or np.array_equal(a, b), name


@pytest.mark.parametrize("n_devices", [9, 70_000])
def test_order_is_lexsort(n_devices: int) -> None:
    rng = np.random.default_rng(n_devices)
    device = rng.integers(0, n_devices, 2000).astype(np.int32)
    for ts in (np.sort(rng.integers(0, 50, 2000)), rng.integers(0, 50, 2000)):  # in time order, and not
        ts = ts.astype(np.int64)
        assert np.array_equal(_order(device, ts, n_devices), np.lexsort((ts, device)))


def test_a_transition_renders_its_texts_once_when_first_read() -> None:
    calls = []

    def render(word: str) -> Texts:
        calls.append(word)
        return Texts(f"{word} vi", f"{word} en", "sms", "short", {"place": "Ba Tri"})

    t = Transition.deferred(
        ("R", 0, "d-1", State.FIRING, 5, 1.5, Severity.WARNING, "", 0, "mặn", "salty"), partial(render, "x")
    )
    assert calls == []
    assert (t.rule_id, t.device_id, t.ts_ms, t.title_vi, t.severity) == ("R", "d-1", 5, "mặn", Severity.WARNING)
    assert (t.message_vi, t.message_en, t.message_sms, t.message_short) == ("x vi", "x en", "sms", "short")
    assert t.params == {"place": "Ba Tri"}
    assert calls == ["x"]
    given = Transition("R", 0, "d-1", State.FIRING, 5, 1.5, Severity.WARNING, "x vi", "x en", "sms", "short",
                       {"place": "Ba Tri"}, title_vi="mặn", title_en="salty")  # fmt: skip
    assert given == t
    with pytest.raises(AttributeError):
        t.value = math.nan  # type: ignore[misc]


@pytest.mark.parametrize("stat", [None, "mean", "range"])
@pytest.mark.parametrize("seed", SEEDS)
def test_bucket_stats_with_a_row_to_each_bucket_in_one_call_are_row_by_row(stat: str | None, seed: int) -> None:
    """Every row a bucket of its own (the usual window of readings every few minutes), many buckets left behind."""
    rng = np.random.default_rng(seed)
    window, n_devices = 3_600_000, 5
    stats = BucketStats(window, n_devices, stat=stat)
    device = np.sort(rng.integers(0, n_devices, 400)).astype(np.int64)
    ts = np.empty(len(device), dtype=np.int64)
    for d in range(n_devices):  # a device's rows in time order, each in a later bucket than the one before
        rows = device == d
        ts[rows] = np.cumsum(rng.integers(1, 4, rows.sum())) * stats.bucket_ms + rng.integers(0, 1000)
    v = np.round(rng.normal(100, 30, len(device)), 3)
    at_once, one_by_one = BucketStats(window, n_devices, stat=stat), BucketStats(window, n_devices, stat=stat)
    at_once.add(device, ts, v)
    for i in range(len(device)):
        one_by_one.add(device[i : i + 1], ts[i : i + 1], v[i : i + 1])
    # Then a row to each device's newest bucket, in one call: cells that keep what they hold and add to it.
    more_device = np.unique(device)
    more_ts = np.array([ts[device == d].max() + 1 for d in more_device], dtype=np.int64)
    more_v = np.round(rng.normal(100, 30, len(more_device)), 3)
    at_once.add(more_device, more_ts, more_v)
    for i in range(len(more_device)):
        one_by_one.add(more_device[i : i + 1], more_ts[i : i + 1], more_v[i : i + 1])
    for name in ("ids", "count", "sum", "min", "max"):
        a, b = getattr(at_once, name), getattr(one_by_one, name)
        assert (a is None and b is None) or np.array_equal(a, b), name
    assert int(at_once.count.max()) >= 2  # the newest cells hold two rows now
