"""Benchmark: the vectorised rule engine against a per-reading Python evaluation of the same pack.

Readings come from the simulator (:class:`~simulators.model.FleetModel`, dry season, 5-minute
reporting, a fleet sized to give ``readings`` over about 48 h) and go through the ingest decoder
into :class:`~ingest.batch.Batch` objects, as in production. Both sides get their input prepared
outside the timer: the engine ``Batch.columns()``, the reference one
:class:`~bench.rules_reference.Reading` per reading built from the same columns. Timed: only the
``evaluate`` calls, each repeat on a fresh evaluator (built outside the timer), with the garbage
collector off as :mod:`timeit` does (:func:`_time`).

Scaling (``scaling`` in the result): the engine alone with the default pack and with it replicated
to ten times the rules (:func:`replicated`), fed the same readings in batches of several sizes:
seconds per batch and ns per (reading × rule), and whether that stays flat as the rules grow.

Run: ``python -m bench.rules_bench [--readings N] [--repeats R]`` (prints the result as JSON); ``bench.run``
runs it so, in a process of its own.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

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
ENGINE_REPEATS = 15
"""Timed engine calls at least: each is ~50 times shorter than the reference's, and its first few in
a process run slower (memory touched for the first time), so its median needs more of them."""
SCALE_COPIES = 9
"""Copies of every rule the scaling measurement adds to the pack (38 rules → 380)."""
SCALE_BATCHES = (1_000, BATCH_READINGS)
"""Batch sizes (readings) of the scaling measurement."""
SCALE_REPEATS = 3
LINEAR_SLACK = 1.1
"""Time grows no faster than readings × rules when ns per (reading × rule) with the copies stays within this."""


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


def engine_run(
    pack: Pack, sample: Sample, batches: Sequence[tuple[dict[str, Columns], int]]
) -> Callable[[], list[Transition]]:
    """A fresh engine (built now), and how to feed it ``batches``."""
    engine = Engine(pack, sample.devices, event_classes=CAMERA_EVENTS, start_ms=sample.start_ms)

    def run() -> list[Transition]:
        out: list[Transition] = []
        for cols, now in batches:
            out.extend(engine.evaluate(cols, now_ms=now))
        return out

    return run


def reference_run(
    pack: Pack, sample: Sample, batches: Sequence[tuple[list[Reading], int]]
) -> Callable[[], list[Transition]]:
    """A fresh reference evaluator (built now), and how to feed it ``batches``."""
    ref = ReferenceEngine(pack, sample.devices, event_classes=CAMERA_EVENTS, start_ms=sample.start_ms)

    def run() -> list[Transition]:
        out: list[Transition] = []
        for readings, now in batches:
            out.extend(ref.evaluate(readings, now_ms=now))
        return out

    return run


def run_engine(pack: Pack, sample: Sample, batches: Sequence[tuple[dict[str, Columns], int]]) -> list[Transition]:
    return engine_run(pack, sample, batches)()


def run_reference(pack: Pack, sample: Sample, batches: Sequence[tuple[list[Reading], int]]) -> list[Transition]:
    return reference_run(pack, sample, batches)()


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


def replicated(pack: Pack, provinces: Sequence[str], copies: int = SCALE_COPIES) -> Pack:
    """``pack`` with ``copies`` more of each rule: copy ``k`` (id ``<ID>_R<k>``, its own family) selects
    what the rule selects, less the ``k``-th province of ``provinces`` (in turn), so every copy has a
    selection of its own that still takes most devices: no work is shared with the rule it copies."""
    rules = list(pack.rules)
    for k in range(1, copies + 1):
        dropped = provinces[k % len(provinces)]
        for r in pack.rules:
            kept = tuple(p for p in (r.select.province or provinces) if p != dropped) or r.select.province
            select = r.select.model_copy(update={"province": kept})
            family = None if r.family is None else f"{r.family}_r{k}"
            rules.append(r.model_copy(update={"id": f"{r.id}_R{k}", "select": select, "family": family}))
    return pack.model_copy(update={"name": f"{pack.name} x{copies + 1}", "rules": tuple(rules)})


def scaling(pack: Pack, samples: Mapping[int, Sample], repeats: int = SCALE_REPEATS) -> dict[str, object]:
    """Engine seconds per batch and ns per (reading × rule): ``pack``, and it replicated ×10, on the
    batches of each sample (by batch size in readings; the same readings in each)."""
    first = next(iter(samples.values()))
    big = replicated(pack, sorted({d.province for d in first.devices}))
    rows: list[dict[str, object]] = []
    per: dict[tuple[int, int], float] = {}
    for size, sample in samples.items():
        for p in (pack, big):
            n_rules = sum(r.enabled for r in p.rules)
            seconds = min(_time(partial(engine_run, p, sample, sample.batches), repeats))
            ns = seconds / (sample.readings * n_rules) * 1e9
            per[(n_rules, size)] = ns
            rows.append({"rules": n_rules, "batch_readings": size, "batches": len(sample.batches),
                         "seconds_per_batch": seconds / len(sample.batches), "ns_per_reading_rule": ns})  # fmt: skip
    small_n, big_n = sum(r.enabled for r in pack.rules), sum(r.enabled for r in big.rules)
    sizes = sorted({k[1] for k in per})
    linear = all(per[(big_n, b)] <= LINEAR_SLACK * per[(small_n, b)] for b in sizes)
    return {
        "rows": rows,
        "linear": linear,
        "note": (
            f"the default pack ({small_n} rules) and it with {SCALE_COPIES} copies of every rule ({big_n} rules; "
            "a copy selects the rule's devices less one province, in turn: a selection of its own), over the "
            f"same {first.readings} readings fed in batches of {', '.join(map(str, sizes))} readings; best "
            f"of {repeats} runs (the machine may be shared), evaluator construction untimed. linear: ns per "
            f"(reading × rule) with {big_n} rules ≤ {LINEAR_SLACK} × that with {small_n}, at each batch size."
        ),
    }


def _time(make: Callable[[], Callable[[], object]], repeats: int) -> list[float]:
    """Seconds of ``make()()`` each repeat; ``make()`` (building the evaluator) untimed.

    As :mod:`timeit` times: the collector off during the timed call, and no collection right before
    it. A full collection walks every object the process holds (the reference's input alone is
    200,000 of them) and leaves the caches cold, which cost the 10-ms engine call about 3 ms
    (a quarter) and the 500-ms reference call under 1 %: it measured the collection, not the engine.
    """
    gc.collect()
    seconds = []
    for _ in range(repeats):
        fn = make()
        gc.disable()
        try:
            t0 = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - t0)
        finally:
            gc.enable()
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

    engine_repeats = max(repeats, ENGINE_REPEATS)
    engine_s = _time(partial(engine_run, pack, sample, [sample.whole]), engine_repeats)
    engine_batched_s = _time(partial(engine_run, pack, sample, sample.batches), engine_repeats)
    reference_s = _time(partial(reference_run, pack, sample, ref_batches), ref_repeats)

    samples = {b: sample if b == BATCH_READINGS else simulate(readings, seed, batch_readings=b) for b in SCALE_BATCHES}
    scale = scaling(pack, samples)

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
        "engine_repeats": engine_repeats,
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
        "scaling": scale,
        "notes": (
            "readings×rules/s = readings × enabled rules / seconds in evaluate calls; ratio = engine median ÷ "
            f"reference median. Reference timed on the {BATCH_READINGS}-reading batches over all readings (no "
            "subset, no scaling). Timed as timeit does: collector off, no collection just before. Inputs "
            "(engine: Batch.columns(); reference: one Reading per reading from the "
            "same columns) built outside the timer; evaluator construction untimed, fresh per repeat. "
            "transitions_equal: rule, device, state, time, severity and messages equal, in order, for both "
            "the batched and the one-batch feed."
        ),
    }


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.rules_bench [--readings N] [--repeats R]``: :func:`run`, printed as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readings", type=int, default=100_000, help="simulated readings (default 100,000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of each side (default 5)")
    args = parser.parse_args(argv)
    if args.readings < 1_000 or args.repeats < 1:
        parser.error("--readings must be at least 1,000 and --repeats at least 1")
    print(json.dumps(run(readings=args.readings, repeats=args.repeats), indent=2))


if __name__ == "__main__":
    main()
