"""Ingest against the registry's size: 1,000, 10,000 and 100,000 registered devices (issue 15).

Per size, ``ioc ingest --registry-url …`` (``ours``' defaults, the devices in a SQLite registry
filled by ``ioc devices import``, as :mod:`bench.registry_bench` does) on fresh servers
(:meth:`bench.harness.Bench.stage`):

- **end to end readings/s** — a backlog drain, as in :mod:`bench.formats_bench`: ingest starts once
  (its persistent session), stops; ``readings`` readings in gateway messages of
  :data:`~bench.workload.GATEWAY_READINGS` (workload (b)'s payload) are published, each message
  from another device spread evenly over the whole registry, and every PUBACK awaited; ingest starts
  again, and the rate is readings ÷ the time from its first received message to
  ``ioc_ingest_readings_stored_total`` reaching them all. A backlog drains as fast as ingest can take
  it, so the publisher is not the limit. The median of ``rounds`` drains, interleaved over the sizes;
- **peak RSS** — ingest's ``VmHWM`` over a drain (registry loaded, backlog stored), the largest of the rounds;
- **publish → stored p50 / p99** — :meth:`bench.harness.Bench.latency` with workload (b)'s publisher at
  the plan's fixed rate (5,000 readings/s), over devices spread evenly over the registry.

Readings are the bench fleet's simulated field values (:func:`bench.workload.device_streams`), lent
to the registry's devices of the same kind.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench.contenders import ContenderError, Ours, Stage
from bench.formats_bench import CLIENTS, FormatIngest, Workset, _drained, publish
from bench.harness import Bench, log
from bench.workload import GATEWAY_READINGS, DeviceStream, Workload, gateway_payload, load_streams, save_streams
from contract.topics import Channel, device_topic
from ioc.servers import free_port
from registry.files import write_devices
from simulators.fleetgen import generate_fleet

FULL_READINGS: Final = 500_000
QUICK_READINGS: Final = 200_000
FULL_ROUNDS: Final = 2
QUICK_ROUNDS: Final = 1
LATENCY_STREAMS: Final = 5_000
"""Devices (spread over the registry) the latency run's publisher cycles through, at most."""
POOL: Final = 8
"""Field values per device stream."""
SEED: Final = 1


@dataclass
class RegistryIngest(FormatIngest):
    """``ioc ingest`` with ``ours``' defaults, its devices from a registry instead of a fleet file."""

    name = "ours_registry"
    label = "ioc ingest --registry-url (ours, defaults)"
    registry_url: str = ""

    def environment(self, stage: Stage) -> dict[str, str]:
        env = Ours.environment(self, stage) | {
            "IOC_REGISTRY_URL": self.registry_url, "IOC_METRICS_PORT": str(self.metrics_port),
        }  # fmt: skip
        env.pop("IOC_FLEET", None)
        env.pop("IOC_SOURCES", None)
        return env


def spread(items: Sequence[Any], k: int) -> list[Any]:
    """``k`` items (all if fewer) picked evenly from the whole of ``items``, in order."""
    n = len(items)
    return list(items) if k >= n else [items[i * n // k] for i in range(k)]


def streams_for(devices: Sequence[Any], pools: dict[str, list[tuple[bytes, ...]]]) -> list[DeviceStream]:
    """A stream per device of a kind in ``pools``, its field values lent by a bench fleet device of that kind."""
    out = []
    for i, d in enumerate(devices):
        kind_pools = pools.get(d.kind.value)
        if kind_pools:
            topic = device_topic(d.province, d.kind, d.id, Channel.TELEMETRY)
            out.append(DeviceStream(topic, kind_pools[i % len(kind_pools)]))
    return out


def kind_pools(streams: Sequence[DeviceStream]) -> dict[str, list[tuple[bytes, ...]]]:
    """The bench fleet's field pools (first :data:`POOL` values of each device) by kind."""
    pools: dict[str, list[tuple[bytes, ...]]] = {}
    for s in streams:
        pools.setdefault(s.topic.split("/")[3], []).append(s.fields[:POOL])
    return pools


def backlog(streams: Sequence[DeviceStream], readings: int, now_ms: int) -> Workset:
    """``readings`` readings in gateway messages, message ``j`` from stream ``j × len ÷ messages`` (cycling
    when there are more messages than streams); each device's readings 1 ms apart, newest a minute ago."""
    n = GATEWAY_READINGS
    messages = max(1, readings // n)
    order = spread(streams, messages)
    order = [order[j % len(order)] for j in range(messages)]
    seqs: dict[str, int] = {}
    work = Workset("registry")
    t0 = now_ms - 60_000 - messages * n
    for j, s in enumerate(order):
        seq = seqs.get(s.topic, 0)
        seqs[s.topic] = seq + n
        ts = t0 + seq + n - 1 + j  # seq advances by n per message of a device: its readings never overlap
        work.messages.append((j % CLIENTS, s.topic, gateway_payload(ts, seq, s.fields, seq // n, n)))
        work.readings += n
    return work


def _import(n: int, work: Path) -> tuple[list[Any], str, float]:
    fleet = generate_fleet(n, SEED)
    csv_file = work / f"fleet-{n}.csv"
    write_devices(fleet.devices, csv_file)
    url = f"sqlite:///{work / f'registry-{n}.db'}"
    started = time.monotonic()
    ioc = str(Path(sys.executable).parent / "ioc")
    subprocess.run([ioc, "devices", "import", str(csv_file), "--registry-url", url], check=True,
                   capture_output=True, timeout=600)  # fmt: skip
    csv_file.unlink()
    return list(fleet.devices), url, time.monotonic() - started


def _drain(bench: Bench, work: Workset, url: str, label: str) -> dict[str, Any]:
    with bench.stage(label) as stage:
        first = RegistryIngest(metrics_port=free_port(), registry_url=url)
        first.start(stage)
        try:
            first.wait_subscribed()
        finally:
            first.stop()
        publish_s = publish(stage.mqtt_port, work)
        ingest = RegistryIngest(metrics_port=free_port(), registry_url=url)
        ingest.start(stage)
        try:
            row = _drained(ingest, stage, work, publish_s)
            row["peak_rss_mib"] = ingest.peak_rss_mib()
            return row
        finally:
            ingest.stop()


@dataclass
class _Size:
    """One registry size: its registry, streams and backlog, and the drains so far."""

    url: str
    streams: list[DeviceStream]
    work: Workset
    row: dict[str, Any]
    drains: list[dict[str, Any]] = field(default_factory=list)


def _prepare(bench: Bench, n: int, pools: dict[str, list[tuple[bytes, ...]]], readings: int) -> _Size:
    devices, url, import_s = _import(n, bench.workdir)
    streams = streams_for(devices, pools)
    work = backlog(streams, readings, int(time.time() * 1000))
    row = {"devices": n, "import_s": round(import_s, 2), "devices_published": len({t for _, t, _ in work.messages})}
    return _Size(url, streams, work, row)


def _drain_round(bench: Bench, size: _Size, rnd: int) -> None:
    n = size.row["devices"]
    try:
        size.drains.append(_drain(bench, size.work, size.url, f"scaling-{n}-{rnd}"))
    except ContenderError as exc:
        log(f"  scaling: {n:,} devices, drain {rnd + 1} failed: {exc}")
        size.row.setdefault("errors", []).append(str(exc)[:2000])
        return
    d = size.drains[-1]
    log(f"  scaling: {n:>7,} devices, drain {rnd + 1}: {d['end_to_end_rate'] or 0:>9,.0f} readings/s end to end, "
        f"{d['cpu_s_per_100k']} CPU s/100k, peak RSS {d['peak_rss_mib']} MiB")  # fmt: skip


def _finish(bench: Bench, size: _Size) -> dict[str, Any]:
    """The drains' summary and the latency run of one size."""
    row, drains, n = size.row, size.drains, size.row["devices"]
    rates = [d["end_to_end_rate"] for d in drains if d.get("end_to_end_rate")]
    row["runs"] = rates
    row["end_to_end_rate"] = round(statistics.median(rates), 1) if rates else None
    after = [d["after_first_batch_rate"] for d in drains if d.get("after_first_batch_rate")]
    row["after_first_batch_rate"] = round(statistics.median(after), 1) if after else None
    row["cpu_s_per_100k"] = round(statistics.median(d["cpu_s_per_100k"] for d in drains), 3) if drains else None
    row["peak_rss_mib"] = max((d["peak_rss_mib"] for d in drains), default=None)
    row["rejected"] = sum(d["rejected"] for d in drains)
    latency_streams = bench.workdir / f"scaling-{n}.streams"
    save_streams(spread(size.streams, LATENCY_STREAMS), latency_streams)
    folder = bench.workdir / f"scaling-{n}"  # a Bench of its own (its own stage numbers) for the latency run
    folder.mkdir(exist_ok=True)
    streams = min(len(size.streams), LATENCY_STREAMS)
    scaled = Bench(bench.plan, folder, bench.influx, bench.fleet, latency_streams, streams)
    try:
        lat = scaled.latency(RegistryIngest(metrics_port=free_port(), registry_url=size.url), Workload.GATEWAY)
        row |= {"latency_rate": lat["rate"], "latency_p50_ms": lat["p50_ms"], "latency_p99_ms": lat["p99_ms"],
                "latency_unstored": lat["unstored"]}  # fmt: skip
    except ContenderError as exc:
        log(f"  scaling: {n:,} devices, latency failed: {exc}")
        row.setdefault("errors", []).append(str(exc)[:2000])
    finally:
        latency_streams.unlink(missing_ok=True)
    log(
        f"  scaling: {n:>7,} devices {row['end_to_end_rate'] or 0:>9,.0f} readings/s end to end (median), "
        f"peak RSS {row['peak_rss_mib']} MiB, p50 {row.get('latency_p50_ms')} ms p99 {row.get('latency_p99_ms')} ms"
    )
    return row


def run(bench: Bench, sizes: Sequence[int], *, quick: bool) -> dict[str, Any]:
    """Every size (drains interleaved over the rounds): the ``scaling.registry`` section of ``bench.run``'s results."""
    readings = QUICK_READINGS if quick else FULL_READINGS
    rounds = QUICK_ROUNDS if quick else FULL_ROUNDS
    pools = kind_pools(load_streams(bench.streams))
    prepared = [_prepare(bench, n, pools, readings) for n in sizes]
    for rnd in range(rounds):  # interleaved, as the workloads: every size in turn, then again
        for size in prepared:
            _drain_round(bench, size, rnd)
    rows = [_finish(bench, size) for size in prepared]
    return {
        "readings": readings, "readings_per_message": GATEWAY_READINGS, "rounds": rounds,
        "latency_rate": bench.plan.latency_rate, "latency_s": bench.plan.latency_s, "rows": rows,
    }  # fmt: skip


def main() -> None:
    """``python -m bench.scaling [--quick] [--sizes 1000,10000]``: the section alone, printed as JSON."""
    import argparse
    import shutil

    import msgspec

    from bench.run import FULL, QUICK
    from bench.workload import device_streams, write_bench_fleet
    from ioc.servers import start_influxd

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else plan.registry_sizes
    workdir = Path(tempfile.mkdtemp(prefix="ioc-bench-scaling-"))
    fleet_path = workdir / "fleet.yaml"
    streams_path = workdir / "devices.streams"
    streams = device_streams(write_bench_fleet(fleet_path))
    save_streams(streams, streams_path)
    influx = start_influxd(workdir / "influxdb")
    try:
        section = run(Bench(plan, workdir, influx, fleet_path, streams_path, len(streams)), sizes, quick=args.quick)
    finally:
        influx.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(msgspec.json.encode(section).decode())


if __name__ == "__main__":
    main()
