"""The benchmark harness against real servers, small enough for every test run: the raw publisher,
the ramp's bookkeeping, a receive-only limit, the latency probe, the publish → webhook run and a
section's own InfluxDB.
It checks counts only (what was published is what was stored); speed lives in ``make bench``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bench import webhook
from bench.contenders import BY_NAME
from bench.harness import Bench
from bench.run import QUICK
from bench.workload import Workload, device_streams, save_streams, write_bench_fleet
from ioc.servers import InfluxServer

PLAN = dataclasses.replace(QUICK, step_s=1.5, grace_s=5.0, max_steps=2, latency_s=1.0, final_drain_s=10.0)


def _bench(influxd: InfluxServer, tmp_path: Path) -> Bench:
    fleet = write_bench_fleet(tmp_path / "fleet.yaml")
    streams = device_streams(fleet, hours=1.0)
    save_streams(streams, tmp_path / "devices.streams")
    return Bench(PLAN, tmp_path, influxd, tmp_path / "fleet.yaml", tmp_path / "devices.streams", len(streams))


def test_ramps_store_exactly_what_was_published(influxd: InfluxServer, tmp_path: Path) -> None:
    bench = _bench(influxd, tmp_path)
    for name, workload in (
        ("ours", Workload.SINGLE),
        ("paho_naive", Workload.SINGLE),
        ("paho_count", Workload.GATEWAY),
    ):
        result = bench.ramp(BY_NAME[name](), workload, 400, 1.5)
        assert result.published >= 400, name
        assert result.stored == result.published, name
        assert result.lost == 0, name
        assert result.steps[0].drained, name
        assert result.cpu_s_per_100k is not None, name
        assert result.peak_rss_mib > 0, name


def test_latency_is_read_from_the_database_for_every_reading(influxd: InfluxServer, tmp_path: Path) -> None:
    bench = _bench(influxd, tmp_path)
    bench.plan = dataclasses.replace(PLAN, latency_rate=2_000)
    got = bench.latency(BY_NAME["ours"](), Workload.GATEWAY)
    assert got["published"] >= 2_000
    assert got["stored"] == got["published"]
    assert got["seen"] > 0
    assert 0 < got["p50_ms"] <= got["p99_ms"]


def test_publish_to_webhook_delivers_every_probe(influxd: InfluxServer, tmp_path: Path) -> None:
    bench = _bench(influxd, tmp_path)
    bench.plan = dataclasses.replace(PLAN, latency_rate=1_000)
    got = webhook.run(bench, probes=2)
    assert got["delivered"] == 2
    assert got["p50_ms"] > 0


def test_a_section_gets_an_influxdb_of_its_own(influxd: InfluxServer, tmp_path: Path) -> None:
    bench = _bench(influxd, tmp_path)
    with bench.own_influx("formats") as own:
        assert own.influx.url != influxd.url
        assert own.influx.ready()
        assert own.workdir == tmp_path / "formats"
        assert (own.plan, own.fleet, own.streams, own.n_streams) == (
            bench.plan, bench.fleet, bench.streams, bench.n_streams,
        )  # fmt: skip
        with own.stage("probe") as stage:
            assert stage.influx_url == own.influx.url
        server = own.influx
    assert not server.ready()  # stopped, its data gone
    assert not (tmp_path / "formats" / "influxdb").exists()
    assert influxd.ready()  # the shared one runs on
    started: list[InfluxServer] = []

    def failing_section() -> None:
        with bench.own_influx("scaling") as own:
            started.append(own.influx)
            raise RuntimeError("the section failed")

    with pytest.raises(RuntimeError, match="the section failed"):  # a section that fails stops it too
        failing_section()
    [server] = started
    assert not server.ready()
    assert not (tmp_path / "scaling" / "influxdb").exists()
