"""Benchmark: the vectorised rule engine against a per-reading Python evaluation of the same pack.

Readings come from the simulator (:class:`~simulators.model.FleetModel`, dry season, 5-minute
reporting, a fleet sized to give ``readings`` over about 48 h) and go through the ingest decoder
into :class:`~ingest.batch.Batch` objects, as in production. Both sides get their input prepared
outside the timer: the engine ``Batch.columns()``, the reference one
:class:`~bench.rules_reference.Reading` per reading built from the same columns. Timed: only the
``evaluate`` calls, each repeat on a fresh evaluator.

Run: ``python -m bench.rules_bench`` (prints the result as JSON).
"""

from __future__ import annotations

import gc
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec

from bench.rules_reference import Reading, ReferenceEngine, readings_from_columns
from contract.fields import CAMERA_EVENTS
from contract.fleet import Fleet
from contract.topics import device_topic
from ingest.batch import BatchBuilder, Columns
from ingest.decode import Decoder
from ingest.devices import device_infos
from ingest.registry import Registry
from rules.engine import Engine
from rules.model import DeviceInfo, Transition
from rules.pack import DEFAULT_PACK, Pack, load_pack
from simulators.fleetgen import generate_fleet
from simulators.model import FleetModel

END_MS = 1_774_000_000_000
"""2026-03-20: dry season, salinity intrusion at its height."""
SPAN_MS = 48 * 3_600_000
INTERVAL_S = 300.0
READINGS_PER_DEVICE = 482
"""Readings a device sends in 48 h at 5-minute reporting, on the fleet's kind mix (measured)."""
BATCH_READINGS = 10_000
"""Readings per batch when fed as ingest feeds the engine."""
REFERENCE_BUDGET_S = 10.0
"""A reference run slower than this is repeated at most twice."""


@dataclass(frozen=True, slots=True)
class Sample:
    """Decoded simulator readings: the same input as ingest batches, for both evaluators."""

    devices: tuple[DeviceInfo, ...]
    start_ms: int
    readings: int
    statuses: int
    span_ms: int
    batches: list[tuple[dict[str, Columns], int]]
    """(columns by kind, ingest clock) of each ``BATCH_READINGS``-reading batch."""
    whole: tuple[dict[str, Columns], int]
    """Every reading in one batch, with the clock at the last message."""

    def reference_batches(self) -> list[tuple[list[Reading], int]]:
        return [(readings_from_columns(cols), now) for cols, now in self.batches]

    def reference_whole(self) -> tuple[list[Reading], int]:
        return readings_from_columns(self.whole[0]), self.whole[1]


def simulate(readings: int = 100_000, seed: int = 1, *, batch_readings: int = BATCH_READINGS) -> Sample:
    """About ``readings`` simulated readings of a fleet over ~48 h, decoded by ingest (first ``readings`` kept)."""
    fleet: Fleet = generate_fleet(max(8, math.ceil(readings / READINGS_PER_DEVICE * 1.05)), seed)
    model = FleetModel(fleet, seed=seed, interval_s=INTERVAL_S)
    decoder = Decoder(Registry.from_fleet(fleet), max_payload_bytes=262_144, max_readings=10_000)
    start = END_MS - SPAN_MS
    whole, part = BatchBuilder(), BatchBuilder()
    batches: list[tuple[dict[str, Columns], int]] = []
    total = statuses = 0
    last_ts = start
    for msg in model.between(start, END_MS):
        if total >= readings:
            break
        topic = device_topic(msg.device.province, msg.device.kind, msg.device.id, msg.channel)
        payload = msgspec.json.encode(msg.reading)
        for out in (whole, part):
            decoder.decode(topic, payload, retained=False, now_ms=msg.ts_ms, out=out)
        total, statuses, last_ts = whole.readings, whole.statuses, msg.ts_ms
        if part.readings >= batch_readings:
            batches.append((part.seal().columns(), last_ts))
    if not part.empty:
        batches.append((part.seal().columns(), last_ts))
    return Sample(
        tuple(device_infos(fleet)), start, total, statuses, last_ts - start, batches, (whole.seal().columns(), last_ts)
    )


def run_engine(pack: Pack, sample: Sample, batches: Sequence[tuple[dict[str, Columns], int]]) -> list[Transition]:
    engine = Engine(pack, sample.devices, event_classes=CAMERA_EVENTS, start_ms=sample.start_ms)
    out: list[Transition] = []
    for cols, now in batches:
        out.extend(engine.evaluate(cols, now_ms=now))
    return out


def run_reference(pack: Pack, sample: Sample, batches: Sequence[tuple[list[Reading], int]]) -> list[Transition]:
    ref = ReferenceEngine(pack, sample.devices, event_classes=CAMERA_EVENTS, start_ms=sample.start_ms)
    out: list[Transition] = []
    for readings, now in batches:
        out.extend(ref.evaluate(readings, now_ms=now))
    return out


def transition_key(t: Transition) -> tuple[str, int, str, int, int, str, str]:
    """What must match between the evaluators: rule, device, state, time, severity, messages."""
    return (t.rule_id, t.device, t.state.value, t.ts_ms, int(t.severity), t.message_vi, t.message_en)


def same_transitions(a: Sequence[Transition], b: Sequence[Transition]) -> bool:
    """The same transitions in the same order (values equal to 1e-9 relative, NaN equal to NaN)."""
    return len(a) == len(b) and all(
        transition_key(x) == transition_key(y)
        and ((math.isnan(x.value) and math.isnan(y.value)) or math.isclose(x.value, y.value, rel_tol=1e-9))
        for x, y in zip(a, b, strict=True)
    )


def _time(fn: Callable[[], object], repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - t0)
    return seconds


def _rate(work: int, seconds: list[float]) -> dict[str, float]:
    rates = [work / s for s in seconds]
    return {"min": min(rates), "median": statistics.median(rates), "max": max(rates)}


def run(readings: int = 100_000, repeats: int = 5, seed: int = 1) -> dict[str, object]:
    """Time the engine (one batch, and ``BATCH_READINGS``-reading batches) and the reference; check they agree."""
    pack = load_pack(DEFAULT_PACK)
    n_rules = sum(r.enabled for r in pack.rules)
    sample = simulate(readings, seed)
    ref_batches, ref_whole = sample.reference_batches(), sample.reference_whole()

    engine_batched = run_engine(pack, sample, sample.batches)
    ref_started = time.perf_counter()
    reference_batched = run_reference(pack, sample, ref_batches)
    ref_repeats = repeats if time.perf_counter() - ref_started < REFERENCE_BUDGET_S else max(1, min(repeats, 2))
    engine_whole = run_engine(pack, sample, [sample.whole])
    reference_whole = run_reference(pack, sample, [ref_whole])
    equal_batched = same_transitions(engine_batched, reference_batched)
    equal_whole = same_transitions(engine_whole, reference_whole)

    engine_s = _time(lambda: run_engine(pack, sample, [sample.whole]), repeats)
    engine_batched_s = _time(lambda: run_engine(pack, sample, sample.batches), repeats)
    reference_s = _time(lambda: run_reference(pack, sample, ref_batches), ref_repeats)

    work = sample.readings * n_rules
    engine_rate, batched_rate = _rate(work, engine_s), _rate(work, engine_batched_s)
    reference_rate = _rate(work, reference_s)
    return {
        "benchmark": "rules engine (numpy) vs per-reading Python reference, default pack",
        "rules": n_rules,
        "devices": len(sample.devices),
        "readings": sample.readings,
        "statuses": sample.statuses,
        "span_h": round(sample.span_ms / 3_600_000, 2),
        "batch_readings": BATCH_READINGS,
        "batches": len(sample.batches),
        "engine_seconds": engine_s,
        "engine_batched_seconds": engine_batched_s,
        "reference_seconds": reference_s,
        "reference_repeats": ref_repeats,
        "engine_rr_per_s": engine_rate,
        "engine_batched_rr_per_s": batched_rate,
        "reference_rr_per_s": reference_rate,
        "ratio_engine_reference": engine_rate["median"] / reference_rate["median"],
        "ratio_engine_batched_reference": batched_rate["median"] / reference_rate["median"],
        "transitions_equal": equal_batched and equal_whole,
        "transitions_equal_batched": equal_batched,
        "transitions_equal_one_batch": equal_whole,
        "engine_transitions": len(engine_batched),
        "reference_transitions": len(reference_batched),
        "engine_transitions_one_batch": len(engine_whole),
        "reference_transitions_one_batch": len(reference_whole),
        "notes": (
            "readings×rules/s = readings × enabled rules / seconds in evaluate calls; ratio = engine median ÷ "
            f"reference median. Reference timed on the {BATCH_READINGS}-reading batches over all readings (no "
            "subset, no scaling). Inputs (engine: Batch.columns(); reference: one Reading per reading from the "
            "same columns) built outside the timer; evaluator construction untimed, fresh per repeat. "
            "transitions_equal: rule, device, state, time, severity and messages equal, in order, for both "
            "the batched and the one-batch feed."
        ),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
