"""The payload formats benchmark (``bench/formats_bench.py``) on a small backlog, against real servers:
every format's messages build, publish, drain and decode, and the counts add up. Never speed: that
is ``make bench``'s."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench import formats_bench, report
from bench.harness import Bench
from bench.run import QUICK
from bench.workload import bench_fleet, write_bench_fleet
from ioc.servers import InfluxServer

N = 300


def test_every_format_drains_exactly_its_backlog(influxd: InfluxServer, tmp_path: Path) -> None:
    write_bench_fleet(tmp_path / "fleet.yaml")
    bench = Bench(QUICK, tmp_path, influxd, tmp_path / "fleet.yaml", tmp_path / "no.streams", 0)
    section = formats_bench.run(bench, N)

    rows = {r["format"]: r for r in section["rows"]}
    assert tuple(rows) == formats_bench.ORDER
    for name, r in rows.items():
        assert "error" not in r, (name, r.get("error"))
        assert not r.get("errors"), (name, r.get("errors"))  # no drain failed
        assert "decode_error" not in r, (name, r.get("decode_error"))
        assert r["messages"] == r["readings"] == N, name
        assert r["readings_per_message"] == 1.0, name
        assert r["stored"] == r["in_db"] == N, name  # every reading once, none refused
        assert r["rejected"] == 0, name
        assert r["drain_s"] > 0, name
        assert r["end_to_end_rate"] > 0, name
        drains = 2 * (len(formats_bench.ORDER) - 1) + 1 if name == "ioc_v1" else 2  # ioc_v1 beside every drain
        assert len(r["runs"]) == drains, name
        assert r["decode_rate"] > 0, name
        assert r["cpu_s_per_100k"] > 0, name
        assert isinstance(r["met"], bool), name
    assert rows["sparkplug_b"]["births"] > 0  # NBIRTH and DBIRTHs first
    assert rows["ioc_v1"]["ratio"] == 1.0

    results: dict[str, Any] = {"formats": section}
    ratios = report.ratios(results)["formats"]
    assert set(ratios) == {f"{f}/ioc_v1" for f in formats_bench.ORDER[1:]}
    targets = [t for t in report.targets(results) if t["target"].startswith("formats:")]
    assert len(targets) == len(formats_bench.ORDER) - 1
    assert all(t["met"] is not None for t in targets)
    table = report.table(results | {"targets": report.targets(results)})
    for name in formats_bench.ORDER:
        assert f"| `{name}` | 1 |" in table


def test_every_format_carries_the_same_readings_one_per_message() -> None:
    fleet = bench_fleet()
    now_ms = int(time.time() * 1000)
    taken = formats_bench.sample(fleet, 2_000, now_ms)
    assert len(taken) == 2_000
    assert {d.kind for d, _ in taken} == set(formats_bench.KINDS)  # no cameras: only the native contract has them
    assert max(int(r["ts"]) for _, r in taken) == now_ms - 60_000
    for name in formats_bench.ORDER:
        work = formats_bench.build(name, fleet, taken, now_ms)
        assert work.readings == len(work.messages) == 2_000, name
        assert all(0 <= conn < formats_bench.CLIENTS for conn, _, _ in work.messages), name
