"""``make bench`` / ``make bench-quick``: every benchmark in one run, then the report.

    python -m bench.run [--quick] [--only ours,paho_batched] [--workloads a,b]

Writes ``bench/results/latest.json`` (``quick.json`` for the quick plan), and from the full run
``docs/benchmarks.md`` and ``docs/benchmarks.png`` (:mod:`bench.report`). Each workload and
section is also saved to ``bench/results/latest.partial.json`` (``quick.partial.json``) as it
ends, removed when the run completes, so a run that fails late keeps what it measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import msgspec

from bench import formats_bench, report, scaling, storeonly, webhook
from bench.contenders import BY_NAME, ROOT, Contender, ContenderError
from bench.harness import Bench, Plan, RampResult, log
from bench.workload import Workload, device_streams, save_streams, write_bench_fleet
from contract.fleet import load_fleet
from ioc.servers import find_binary, start_influxd

RESULTS = ROOT / "bench" / "results"

FULL = Plan(
    rounds=3, step_s=6.0, grace_s=1.5, factor=1.15, max_steps=10, latency_rate=5_000, latency_s=8.0,
    final_drain_s=20.0, workloads=tuple(Workload), contenders=tuple(BY_NAME), only={},
    latency_for=tuple(BY_NAME), store_only_readings=2_000_000, rule_readings=100_000, rule_repeats=5,
    webhook_probes=30, registry_sizes=(1_000, 10_000, 100_000),
)  # fmt: skip
QUICK = dataclasses.replace(
    FULL, rounds=1, step_s=2.5, grace_s=1.5, factor=1.6, max_steps=5, latency_s=3.0, final_drain_s=5.0,
    workloads=(Workload.SINGLE, Workload.GATEWAY), only={"b": ("ours",)}, latency_for=("ours",),
    store_only_readings=300_000, rule_readings=30_000, rule_repeats=1, webhook_probes=3, first_guess_scale=2.0,
    registry_sizes=(1_000, 10_000),
)  # fmt: skip
"""About two minutes: one round, short steps, workload (b) and latency for ours only."""

FIRST_GUESS: dict[Workload, dict[str, float]] = {
    Workload.SINGLE: {"mosquitto_sub": 25_000, "paho_count": 15_000, "paho_naive": 500, "paho_batched": 5_000,
                      "node_red": 2_500, "ours": 12_000, "ours_public": 5_000},
    Workload.GATEWAY: {"mosquitto_sub": 500_000, "paho_count": 500_000, "paho_naive": 25_000,
                       "paho_batched": 25_000, "node_red": 25_000, "ours": 50_000, "ours_public": 40_000},
    Workload.SIMULATE: {"mosquitto_sub": 8_000, "paho_count": 8_000, "paho_naive": 1_000, "paho_batched": 4_000,
                        "node_red": 2_000, "ours": 6_000, "ours_public": 4_000},
}  # fmt: skip
"""Where round 1's ramp starts (readings/s); later rounds start at 75 % of round 1's result."""

FIRST_FACTOR = 1.5


def summary(values: list[float | None]) -> dict[str, float | None]:
    got = [v for v in values if v is not None]
    if not got:
        return {"min": None, "median": None, "max": None}
    return {"min": min(got), "median": statistics.median(got), "max": max(got)}


def _ramp_dict(r: RampResult) -> dict[str, Any]:
    return {
        "loss_free_rate": r.loss_free_rate, "publisher_bound": r.publisher_bound, "published": r.published,
        "stored": r.stored, "lost": r.lost, "cpu_s_per_100k": r.cpu_s_per_100k, "peak_rss_mib": r.peak_rss_mib,
        "steps": [s.as_dict() for s in r.steps],
    }  # fmt: skip


def _versions() -> dict[str, str]:
    def out(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    influxd = find_binary("influxd") or "influxd"
    mosquitto = find_binary("mosquitto") or "mosquitto"
    v = {
        "python": platform.python_version(),
        "mosquitto": out([mosquitto, "-h"]).replace("mosquitto version ", ""),
        "influxdb": out([influxd, "version"]),
        "node": out(["node", "--version"]),
        "mekong-ioc": out(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
    }
    for pkg in ("paho-mqtt", "aiomqtt", "msgspec", "numpy", "httpx"):
        v[pkg] = version(pkg)
    lock = ROOT / "bench" / ".node-red" / "node_modules"
    for pkg in ("node-red", "node-red-contrib-influxdb"):
        meta = lock / pkg / "package.json"
        if meta.is_file():
            v[pkg] = str(msgspec.json.decode(meta.read_bytes())["version"])
    return v


def _machine() -> dict[str, Any]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    import os

    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(), "os": platform.platform(terse=True),
    }  # fmt: skip


def run(plan: Plan, *, quick: bool, extras: bool = True, partial: Path | None = None) -> dict[str, Any]:
    """The workload ramps, then (``extras``) the store-only limit, publish → webhook and the rule engine;
    each workload and section saved to ``partial`` (if given) as it ends."""

    def keep() -> None:
        if partial is not None:
            _save(results, partial)

    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="ioc-bench-"))
    log(f"work folder {workdir}")
    if "node_red" in plan.contenders:
        from bench.peers import nodered

        log("installing Node-RED from npm (once) …")
        nodered.install()
    fleet_path = workdir / "fleet.yaml"
    fleet = write_bench_fleet(fleet_path)
    streams = device_streams(fleet)
    streams_path = workdir / "devices.streams"
    save_streams(streams, streams_path)
    influx = start_influxd(workdir / "influxdb")
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "quick": quick, "machine": _machine(),
        "versions": _versions(), "plan": dataclasses.asdict(plan) | {"workloads": [w.value for w in plan.workloads]},
        "devices": len(fleet.devices), "workloads": {},
    }  # fmt: skip
    try:
        bench = Bench(plan, workdir, influx, fleet_path, streams_path, len(streams))
        best: dict[tuple[Workload, str], float] = {}
        for workload in plan.workloads:
            rows: dict[str, dict[str, Any]] = {
                name: {"label": BY_NAME[name].label, "group": BY_NAME[name].group, "rounds": []}
                for name in plan.contenders
                if name in plan.only.get(workload.value, plan.contenders)
            }
            for rnd in range(plan.rounds):
                log(f"workload {workload.description}, round {rnd + 1} of {plan.rounds}")
                for name in rows:
                    contender: Contender = BY_NAME[name]()
                    if (workload, name) in best:
                        start, factor = 0.75 * best[(workload, name)], plan.factor
                    else:
                        start, factor = FIRST_GUESS[workload][name] * plan.first_guess_scale, FIRST_FACTOR
                    try:
                        ramp = bench.ramp(contender, workload, start, factor)
                        best.setdefault((workload, name), max(ramp.loss_free_rate, start / 2))
                        entry = _ramp_dict(ramp)
                        if BY_NAME[name].writes and name in plan.latency_for:
                            entry["latency"] = bench.latency(BY_NAME[name](), workload)
                    except ContenderError as exc:  # recorded and shown; the other runs go on
                        log(f"  {name} failed: {exc}")
                        rows[name].setdefault("errors", []).append(str(exc)[:2000])
                        continue
                    rows[name]["rounds"].append(entry)
            for row in rows.values():
                row["summary"] = _summarise(row["rounds"])
            results["workloads"][workload.value] = {"title": workload.description, "contenders": rows}
            keep()
        if extras:
            log("store-only limit …")
            results["store_only"] = _store_only(bench, plan)
            keep()
            log("publish → webhook …")
            results["webhook"] = webhook.run(bench, plan.webhook_probes)
            keep()
            influx.stop()  # nothing after this uses the shared one: its memory and work leave the two cores
            log("payload formats (an InfluxDB of their own) …")
            with bench.own_influx("formats") as own:
                results["formats"] = formats_bench.run(own, _format_readings(quick))
            keep()
            # issue 15: throughput, latency and RSS against the registry's size (bench/scaling.py)
            log("scaling: registry size (an InfluxDB of its own) …")
            with bench.own_influx("scaling") as own:
                results["scaling"] = {"registry": scaling.run(own, plan.registry_sizes, quick=quick)}
            keep()
    finally:
        influx.stop()
    if extras:
        log("rule engine …")
        results["rules"] = _rules(plan)
        keep()
        log("registry at scale …")
        from bench import registry_bench

        results["registry"] = registry_bench.run(plan.registry_sizes)
        keep()
    results["ratios"] = report.ratios(results)
    results["targets"] = report.targets(results)
    results["seconds"] = round(time.monotonic() - started, 1)
    shutil.rmtree(workdir, ignore_errors=True)
    return results


def _format_readings(quick: bool) -> int:
    return formats_bench.QUICK_READINGS if quick else formats_bench.FULL_READINGS


def _save(results: dict[str, Any], path: Path) -> None:
    """Write ``results`` to ``path`` whole or not at all (a run killed mid-write leaves the old file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(msgspec.json.format(msgspec.json.encode(results)) + b"\n")
    os.replace(tmp, path)


def _store_only(bench: Bench, plan: Plan) -> dict[str, Any]:
    from bench.workload import load_streams

    streams = load_streams(bench.streams)
    fleet = load_fleet(bench.fleet)
    rounds = []
    for _ in range(plan.rounds):
        with bench.stage("store-only") as stage:
            res = storeonly.run(stage.influx_url, stage.db, streams, plan.store_only_readings, fleet)
        log(f"  store-only: {res['readings_per_s']:,.0f} readings/s")
        rounds.append(res)
    return {"rounds": rounds, "summary": {"readings_per_s": summary([r["readings_per_s"] for r in rounds])}}


def _summarise(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("loss_free_rate", "lost", "cpu_s_per_100k", "peak_rss_mib"):
        out[key] = summary([r[key] for r in rounds])
    out["publisher_bound"] = any(r["publisher_bound"] for r in rounds)
    timed = [r["latency"] for r in rounds if "latency" in r]
    if timed:
        for key in ("p50_ms", "p99_ms", "unstored"):
            out[f"latency_{key}"] = summary([t[key] for t in timed])
        out["latency_rate"] = summary([t["rate"] for t in timed])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the 2-minute version")
    parser.add_argument("--only", help="contenders, comma-separated (default: all)")
    parser.add_argument("--workloads", help="workloads, comma-separated: a,b,c")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--ramps-only", action="store_true", help="skip store-only, webhook, formats and rule engine")
    parser.add_argument(
        "--registry-only", action="store_true",
        help="measure the registry section alone and put it into latest.json and docs/benchmarks.md",
    )  # fmt: skip
    parser.add_argument(
        "--rules-only", action="store_true",
        help="measure the rule engine section alone (--quick: its quick size) and put it into latest.json and "
        "docs/benchmarks.md",
    )  # fmt: skip
    parser.add_argument(
        "--formats-only", action="store_true",
        help="measure the payload formats section alone (--quick: its quick size) and put it into latest.json "
        "and docs/benchmarks.md",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.registry_only:
        _registry_only()
        return
    if args.formats_only:
        _formats_only(quick=args.quick)
        return
    if args.rules_only:
        _rules_only(quick=args.quick)
        return
    plan = QUICK if args.quick else FULL
    if args.only:
        unknown = set(args.only.split(",")) - set(BY_NAME)
        if unknown:
            parser.error(f"unknown contenders {sorted(unknown)}; known: {', '.join(BY_NAME)}")
        plan = dataclasses.replace(plan, contenders=tuple(args.only.split(",")))
    if args.workloads:
        plan = dataclasses.replace(plan, workloads=tuple(Workload(w) for w in args.workloads.split(",")))
    if args.rounds:
        plan = dataclasses.replace(plan, rounds=args.rounds)
    full = not (args.quick or args.only or args.workloads or args.rounds or args.ramps_only)
    name = "latest.json" if full else "quick.json"
    partial = RESULTS / name.replace(".json", ".partial.json")  # a quick run leaves a failed full run's alone
    results = run(plan, quick=args.quick, extras=not args.ramps_only, partial=partial)
    _save(results, RESULTS / name)
    partial.unlink(missing_ok=True)
    log(f"wrote {RESULTS / name}")
    if full:
        report.write(results, ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "benchmarks.png")
    print(report.console(results))


def _rules(plan: Plan) -> dict[str, Any]:
    """The rule engine section, measured in a process of its own (``python -m bench.rules_bench``).

    The engine runs in ingest's process, which holds ingest's data; after an hour of benchmarks the
    bench's own process held far more, and the same engine call took half as long again there
    (14-16 ms against 9-11 ms in a fresh process, measured at db08017). The reference is timed in
    the same process as the engine, so both sides see the same conditions.
    """
    cmd = [
        sys.executable, "-m", "bench.rules_bench",
        "--readings", str(plan.rule_readings), "--repeats", str(plan.rule_repeats),
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-5:]
        raise ContenderError(f"the rule engine benchmark failed (exit {done.returncode}): {' | '.join(tail)}")
    try:
        section: dict[str, Any] = msgspec.json.decode(done.stdout)
    except msgspec.DecodeError as exc:
        raise ContenderError(f"the rule engine benchmark printed no JSON result ({exc})") from None
    return section


def _rules_only(*, quick: bool) -> None:
    """The rule engine section, measured again alone (--quick: its quick size), with its own date and commit."""
    log("rule engine …")
    _put_section("rules", _rules(QUICK if quick else FULL))


def _registry_only() -> None:
    """The registry section of a full run, measured again alone (labelled with its own date and commit)."""
    from bench import registry_bench

    log("registry at scale …")
    _put_section("registry", registry_bench.run(FULL.registry_sizes))


def _formats_only(*, quick: bool) -> None:
    """The payload formats section, measured alone (labelled with its own date, commit and size)."""
    workdir = Path(tempfile.mkdtemp(prefix="ioc-bench-formats-"))
    fleet_path = workdir / "fleet.yaml"
    write_bench_fleet(fleet_path)
    influx = start_influxd(workdir / "influxdb")
    log("payload formats …")
    try:
        bench = Bench(QUICK if quick else FULL, workdir, influx, fleet_path, workdir / "no.streams", 0)
        section = formats_bench.run(bench, _format_readings(quick))
    finally:
        influx.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    _put_section("formats", section)


def _put_section(name: str, section: dict[str, Any]) -> None:
    """``section``, labelled with its own date and commit, in place of ``name`` in latest.json; the
    ratios, targets and docs/benchmarks.md follow (when latest.json holds a full run)."""
    latest = RESULTS / "latest.json"
    results: dict[str, Any] = msgspec.json.decode(latest.read_bytes()) if latest.exists() else {}
    section["date"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section["commit"] = _versions()["mekong-ioc"]
    results[name] = section
    if "workloads" in results:
        results["ratios"] = report.ratios(results)
        results["targets"] = report.targets(results)
        _save(results, latest)
        report.write(results, ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "benchmarks.png")
        log(f"wrote {latest} and docs/benchmarks.md")
    print(report.console(results))


if __name__ == "__main__":
    main()
