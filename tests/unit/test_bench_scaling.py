"""The scaling sections' pure parts: the registry backlog, the report's targets, tables and chart
for issue 15 (synthetic results: no timing here)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from bench.report import RSS_GOAL_MIB, chart, ratios, rule_growth, table, targets
from bench.run import _summarise
from bench.scaling import backlog, kind_pools, spread, streams_for
from bench.workload import GATEWAY_READINGS, Workload, bench_fleet, device_streams
from ingest.batch import BatchBuilder
from ingest.decode import Decoder
from ingest.registry import Registry
from simulators.fleetgen import generate_fleet

POOLS = kind_pools(device_streams(bench_fleet(), hours=1.0))


def test_spread_picks_evenly_over_the_whole() -> None:
    assert spread(list(range(10)), 5) == [0, 2, 4, 6, 8]
    assert spread(list(range(3)), 5) == [0, 1, 2]
    assert spread(list(range(1000)), 4) == [0, 250, 500, 750]


def test_every_registry_device_of_a_known_kind_gets_a_stream_of_its_kind() -> None:
    fleet = generate_fleet(3_000, 1)
    streams = streams_for(fleet.devices, POOLS)
    kinds = {d.id: d.kind.value for d in fleet.devices}
    assert len(streams) == sum(kinds[d.id] in POOLS for d in fleet.devices) > 0.7 * len(fleet.devices)
    for s in streams:
        assert s.topic.split("/")[3] == kinds[s.topic.split("/")[4]]
        assert 0 < len(s.fields) <= 8


def test_the_backlog_spreads_over_the_registry_and_ingest_accepts_it() -> None:
    fleet = generate_fleet(2_000, 1)
    streams = streams_for(fleet.devices, POOLS)
    now = int(time.time() * 1000)
    work = backlog(streams, 500 * GATEWAY_READINGS, now)
    assert work.readings == 500 * GATEWAY_READINGS
    assert len({topic for _, topic, _ in work.messages}) == 500
    positions = sorted(streams.index(next(s for s in streams if s.topic == t)) for _, t, _ in work.messages)
    assert positions[0] == 0
    assert positions[-1] >= 0.99 * (len(streams) - 1 - len(streams) / 500)
    decoder = Decoder(Registry.from_fleet(fleet), max_payload_bytes=262_144, max_readings=10_000)
    out = BatchBuilder()
    for _, topic, payload in work.messages:
        decoder.decode(topic, payload, retained=False, now_ms=now, out=out)
    batch = out.seal()
    assert batch.rejections == []
    assert batch.readings == work.readings


def test_a_device_sent_twice_never_repeats_a_timestamp() -> None:
    """More messages than devices: each device's readings stay 1 ms apart, later messages later."""
    streams = streams_for(generate_fleet(50, 1).devices, POOLS)
    work = backlog(streams, 4 * len(streams) * GATEWAY_READINGS, int(time.time() * 1000))
    seen: dict[str, list[tuple[int, int]]] = {}
    for _, topic, payload in work.messages:
        for r in msgspec.json.decode(payload)["readings"]:
            seen.setdefault(topic, []).append((r["seq"], r["ts"]))
    for pairs in seen.values():
        assert len(pairs) == 4 * GATEWAY_READINGS
        assert [s for s, _ in pairs] == list(range(len(pairs)))
        ts = [t for _, t in pairs]
        assert ts == sorted(ts)
        assert len(set(ts)) == len(ts)


def _rules_scaling(ns_38: float, ns_380: float) -> dict[str, Any]:
    rows = [
        {"rules": r, "batch_readings": b, "batches": 100_000 // b, "seconds_per_batch": b * r * ns * 1e-9,
         "ns_per_reading_rule": ns}
        for r, b, ns in [(38, 1_000, 30.0), (380, 1_000, 25.0), (38, 10_000, ns_38), (380, 10_000, ns_380)]
    ]  # fmt: skip
    return {"rows": rows, "linear": ns_380 <= ns_38 * 1.1, "note": "pack replicated with other selectors"}


def _results(*, rules_scaling: dict[str, Any] | None = None, registry: bool = True) -> dict[str, Any]:
    def ours(rate: float, p50: float, p99: float, rss: float) -> dict[str, Any]:
        latency = {"p50_ms": p50, "p99_ms": p99, "unstored": 0, "rate": 5000}
        rounds = [{"loss_free_rate": rate, "lost": 0, "cpu_s_per_100k": 1.0, "peak_rss_mib": rss,
                   "publisher_bound": False, "latency": latency}]  # fmt: skip
        return {"label": "ioc ingest (ours, defaults)", "group": "ours", "rounds": rounds,
                "summary": _summarise(rounds)}  # fmt: skip

    results: dict[str, Any] = {
        "date": "2026-12-05 04:00 UTC", "machine": {"cores": 2},
        "workloads": {
            "a": {"title": Workload.SINGLE.description, "contenders": {"ours": ours(40_000, 12.0, 80.0, 100.0)}},
            "b": {"title": Workload.GATEWAY.description, "contenders": {"ours": ours(150_000, 25.0, 90.0, 200.0)}},
        },
        "rules": {"ratio_engine_reference": 60.0, "engine_rr_per_s": {"median": 7e7, "min": 6e7, "max": 8e7}},
        "formats": {"target": 0.8, "readings": 1000, "rows": [
            {"format": "ioc_v1", "end_to_end_rate": 40_000.0}, {"format": "senml", "end_to_end_rate": 30_000.0},
        ]},
    }  # fmt: skip
    if rules_scaling is not None:
        results["rules"]["scaling"] = rules_scaling
    if registry:
        rows = [
            {"devices": n, "devices_published": 1000, "end_to_end_rate": rate, "cpu_s_per_100k": 0.7,
             "latency_p50_ms": 10.0, "latency_p99_ms": 60.0, "peak_rss_mib": rss, "import_s": 1.0}
            for n, rate, rss in [(1_000, 150_000.0, 110.0), (10_000, 140_000.0, 125.0), (100_000, 120_000.0, 260.0)]
        ]  # fmt: skip
        results["scaling"] = {"registry": {"readings": 300_000, "readings_per_message": 100, "rounds": 2,
                                           "latency_rate": 5000, "latency_s": 8.0, "rows": rows}}  # fmt: skip
    results["ratios"] = ratios(results)
    results["targets"] = targets(results)
    return results


def test_issue_15_latency_and_memory_targets() -> None:
    met = {t["target"]: (t["value"], t["met"]) for t in _results()["targets"]}
    assert met["(a) ours publish → stored p50 at 5k/s"] == (12.0, True)
    assert met["(a) ours publish → stored p99 at 5k/s"] == (80.0, True)
    assert met["(b) ours publish → stored p50 at 5k/s"] == (25.0, False)
    assert met["(b) ours publish → stored p99 at 5k/s"] == (90.0, True)
    assert met["(a) ingest peak RSS (120 MB = 114.4 MiB)"] == (100.0, True)
    assert RSS_GOAL_MIB == 114.4
    assert met["rule engine / per-reading Python"] == (60.0, True)


@pytest.mark.parametrize(("ns_38", "ns_380", "value", "ok"), [(10.0, 10.5, 1.05, True), (10.0, 12.0, 1.2, False)])
def test_rule_count_target_compares_the_largest_batches(ns_38: float, ns_380: float, value: float, ok: bool) -> None:
    scaling = _rules_scaling(ns_38, ns_380)
    assert rule_growth(scaling) == (38, 380, value)
    met = {t["target"]: (t["value"], t["met"]) for t in _results(rules_scaling=scaling)["targets"]}
    assert met["rule engine time per reading × rule, 380 vs 38 rules"] == (value, ok)


def test_without_rule_scaling_there_is_no_such_target_nor_section() -> None:
    results = _results(registry=False)
    assert rule_growth({}) is None
    assert rule_growth({"rows": [{"rules": 38, "batch_readings": 10, "ns_per_reading_rule": 1.0}]}) is None
    assert not any("vs 38 rules" in t["target"] for t in results["targets"])
    text = table(results)
    assert "Scaling: rule count" not in text
    assert "Scaling: registry size" not in text


def test_tables_of_the_scaling_sections() -> None:
    text = table(_results(rules_scaling=_rules_scaling(10.0, 10.5)))
    assert "### Scaling: registry size" in text
    assert "| 100,000 | 1,000 | 120,000 | 0.80 | 0.70 | 10.0 | 60.0 | 260.0 |" in text
    assert "### Scaling: rule count" in text
    assert "| 380 | 10,000 | 10 | 39.90 | 10.5 |" in text
    assert "linear in readings × rules: yes. 380 ÷ 38 rules, per reading × rule: 1.05×." in text


def test_the_chart_has_a_panel_per_section(tmp_path: Path) -> None:
    import matplotlib.image

    path = tmp_path / "chart.png"
    chart(_results(rules_scaling=_rules_scaling(10.0, 10.5)), path)
    height, width = matplotlib.image.imread(str(path)).shape[:2]
    assert width > 1500  # three columns
    assert height > 1500  # workloads' two rows and two rows of scaling and formats panels
