"""The benchmark's pure parts: payloads ingest accepts, the latency arithmetic, MQTT encoding,
the store-only lines, and the report's ratios, targets and table (no timing here)."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest

from bench import harness
from bench.formats_bench import _paired_ratios, schedule
from bench.harness import Bench, RampResult
from bench.latency import LatencyProbe
from bench.publish import PublishResult, _remaining_length
from bench.report import limit_steps, ratios, table, targets
from bench.run import QUICK, _summarise, summary
from bench.storeonly import lines_for
from bench.workload import GATEWAY_READINGS, Workload, bench_fleet, device_streams, gateway_payload, single_payload
from ingest.batch import BatchBuilder
from ingest.decode import Decoder
from ingest.registry import Registry

FLEET = bench_fleet()
STREAMS = device_streams(FLEET, hours=1.0)


def _decoder() -> Decoder:
    return Decoder(Registry.from_fleet(FLEET), max_payload_bytes=262_144, max_readings=10_000)


def test_every_device_of_the_bench_fleet_has_a_stream_of_its_own_kind() -> None:
    assert len(STREAMS) >= 0.7 * len(FLEET.devices)
    kinds = {d.id: d.kind.value for d in FLEET.devices}
    for s in STREAMS:
        assert s.topic.split("/")[3] == kinds[s.topic.split("/")[4]]
        assert s.fields
        assert all(not f.startswith(b"{") for f in s.fields)


def test_single_and_gateway_payloads_are_accepted_by_ingest() -> None:
    decoder, out = _decoder(), BatchBuilder()
    now = int(time.time() * 1000)
    for s in STREAMS[:50]:
        decoder.decode(s.topic, single_payload(now, 7, s.fields[0]), retained=False, now_ms=now, out=out)
        payload = gateway_payload(now, 100, s.fields, 3, GATEWAY_READINGS)
        decoder.decode(s.topic, payload, retained=False, now_ms=now, out=out)
    batch = out.seal()
    assert batch.rejections == []
    assert batch.readings == 50 * (1 + GATEWAY_READINGS)


def test_gateway_readings_are_1_ms_apart_ending_at_the_publish_time() -> None:
    s = STREAMS[0]
    body = msgspec.json.decode(gateway_payload(5_000, 300, s.fields, 0, 4))
    assert [(r["ts"], r["seq"]) for r in body["readings"]] == [(4_997, 300), (4_998, 301), (4_999, 302), (5_000, 303)]


def test_latency_probe_counts_from_the_publish_time() -> None:
    """Reading seq % n of a gateway message was stamped n-1-(seq % n) ms before publishing."""
    probe = LatencyProbe(readings_per_message=4)
    try:
        probe.start_counting()
        now_ms = int(time.time() * 1000)
        published = now_ms  # after counting began
        lines = [
            f"salinity,device_id=x salinity_ppt=0.2,seq={300 + i}i {(published - 3 + i) * 1_000_000}" for i in range(4)
        ]
        lines.append(f"node,device_id=y v=1,seq={403} {(published - 0) * 1_000_000}")  # a float seq (Node-RED)
        lines.append(f"old,device_id=z v=1,seq=7i {(now_ms - 60_000) * 1_000_000}")  # before counting began
        probe.start()
        time.sleep(0.25)  # the points reach the probe at least 250 ms after they were published
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for line in lines:
                tx.sendto(line.encode(), ("127.0.0.1", probe.port))
        deadline = time.monotonic() + 5
        while probe.count < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        p50, p99 = probe.percentiles()
    finally:
        probe.close()
    assert probe.count == 5
    assert p50 is not None
    assert p99 is not None
    assert 250 <= p50 < 2_000
    assert p99 < 2_000


def test_mqtt_remaining_length_encoding() -> None:
    """MQTT's variable byte integer (spec 1.5.5)."""
    assert _remaining_length(0) == b"\x00"
    assert _remaining_length(127) == b"\x7f"
    assert _remaining_length(128) == b"\x80\x01"
    assert _remaining_length(16_383) == b"\xff\x7f"
    assert _remaining_length(16_384) == b"\x80\x80\x01"
    assert _remaining_length(2_097_151) == b"\xff\xff\x7f"


def test_store_only_lines_are_the_lines_ingest_writes() -> None:
    t0 = 1_796_000_000_000
    lines = lines_for(STREAMS, 2 * len(STREAMS), t0, FLEET)
    assert len(lines) == 2 * len(STREAMS)
    registry = Registry.from_fleet(FLEET)
    for i in (0, len(STREAMS)):
        series, fields, ts = lines[i].decode().split(" ")
        device = registry.by_id[STREAMS[0].topic.split("/")[4]]
        assert series == device.series  # the registry's tags, as ingest writes them
        assert fields.endswith(f",seq={i // len(STREAMS)}i")
        assert '"' not in fields
        assert int(ts) == t0 + i // len(STREAMS)


def _results(ours_a: float, batched: float, node_red: float, naive: float, paho: float) -> dict[str, Any]:
    def row(rates: list[float], group: str = "peer", lat: bool = True) -> dict[str, Any]:
        rounds = [
            {"loss_free_rate": r, "lost": 0, "cpu_s_per_100k": 2.0, "peak_rss_mib": 50.0, "publisher_bound": False}
            | ({"latency": {"p50_ms": 100.0, "p99_ms": 200.0, "unstored": 0, "rate": 5000}} if lat else {})
            for r in rates
        ]
        return {"label": group, "group": group, "rounds": rounds, "summary": _summarise(rounds)}

    return {
        "workloads": {
            "a": {
                "title": Workload.SINGLE.description,
                "contenders": {
                    "paho_count": row([paho, paho * 1.1, paho * 0.9], "limit", lat=False),
                    "paho_batched": row([batched]),
                    "node_red": row([node_red]),
                    "paho_naive": row([naive]),
                    "ours": row([ours_a * 0.9, ours_a, ours_a * 1.2], "ours"),
                },
            },
            "b": {"title": Workload.GATEWAY.description, "contenders": {"ours": row([120_000.0], "ours")}},
        },
        "store_only": {"summary": {"readings_per_s": summary([200_000.0, 220_000.0, 240_000.0])}},
        "rules": {"ratio_engine_reference": 12.0, "engine_rr_per_s": {"median": 7e7, "min": 6e7, "max": 8e7}},
        "webhook": {"rule": "SAL_1PPT", "background_rate": 5000, "probes": 3, "delivered": 3,
                    "p50_ms": 100.0, "p99_ms": 150.0, "max_ms": 151.0},
    }  # fmt: skip


def test_ratios_use_the_medians_of_the_same_run() -> None:
    results = _results(ours_a=30_000, batched=10_000, node_red=3_000, naive=1_000, paho=40_000)
    r = ratios(results)
    assert r["a"]["ours/paho_batched"] == 3.0
    assert r["a"]["ours/node_red"] == 10.0
    assert r["a"]["ours/paho_count"] == 0.75
    assert r["b"]["ours/store_only"] == round(120_000 / 220_000, 4)


def test_targets_say_which_are_met() -> None:
    results = _results(ours_a=30_000, batched=25_000, node_red=3_000, naive=1_000, paho=40_000)
    results["ratios"] = ratios(results)
    met = {t["target"]: t["met"] for t in targets(results)}
    assert met["(a) ours / DIY batched"] is False  # 1.2 < 1.5
    assert met["(a) ours / Node-RED"] is True
    assert met["(a) ours / naive paho"] is True
    assert met["(a) ours / bare paho subscriber"] is False  # 0.75 < 1.0
    assert met["(b) ours, readings/s end to end"] is True
    assert met["(b) ours / store-only limit"] is False  # 0.55 < 0.8
    assert met["rule engine / per-reading Python"] is False
    assert met["rule engine, readings × rules /s"] is True
    assert met["(a) ours publish → stored p50 at 5k/s"] is False  # 100 ms > 20
    assert met["(b) ours publish → stored p99 at 5k/s"] is False  # 200 ms > 100
    assert met["(a) ingest peak RSS (120 MB = 114.4 MiB)"] is True  # 50 MiB
    assert met["publish → webhook p99 at 5k/s"] is True


def test_a_ratio_just_under_its_goal_is_not_met_and_shows_so() -> None:
    results = _results(ours_a=29_900, batched=10_000, node_red=3_000, naive=1_000, paho=30_000)
    results["ratios"] = ratios(results)
    results["targets"] = targets(results)
    met = {t["target"]: t["met"] for t in results["targets"]}
    assert met["(a) ours / bare paho subscriber"] is False  # 0.9967
    assert "| (a) ours / bare paho subscriber | 0.997 × | >= 1.000 | **no** |" in table(results)


def test_table_shows_min_median_max_and_the_unmet_targets() -> None:
    results = _results(ours_a=30_000, batched=25_000, node_red=3_000, naive=1_000, paho=40_000)
    results["ratios"] = ratios(results)
    results["targets"] = targets(results)
    text = table(results)
    assert "| ours | 30,000 (27,000–36,000) |" in text
    assert "**no**" in text
    assert "| yes |" in text
    assert "SAL_1PPT" in text


def _step(achieved: float, passed: bool, contender: float = 0.9) -> dict[str, Any]:
    cores = {"contender": contender, "broker": 0.4, "database": 0.5, "publisher": 0.1}
    return {"offered": achieved, "achieved": achieved, "kept_up": passed, "drained": passed, "lag_after_s": 0.1,
            "cores": cores}  # fmt: skip


def test_the_cores_at_the_limit_are_of_the_median_rounds_last_passing_step_and_the_one_after_it() -> None:
    rounds = [
        {"loss_free_rate": 30_000.0, "steps": [_step(20_000, True), _step(30_000, True), _step(40_000, False)]},
        {"loss_free_rate": 20_000.0, "steps": [_step(20_000, True), _step(30_000, False)]},
        {"loss_free_rate": 45_000.0, "steps": [_step(30_000, True), _step(45_000, True), _step(52_000, False)]},
    ]
    assert [s["achieved"] for s in limit_steps(rounds)] == [30_000, 40_000]  # the median round: 30k
    assert [s["achieved"] for s in limit_steps(rounds[:2])] == [20_000, 30_000]  # the lower of two
    # a ramp that failed its first guess, then passed lower steps: the last passing one counts
    retried = [{"loss_free_rate": 15_000.0, "steps": [_step(40_000, False), _step(10_000, True), _step(15_000, True),
                                                      _step(17_000, False)]}]  # fmt: skip
    assert [s["achieved"] for s in limit_steps(retried)] == [15_000, 17_000]
    publisher_bound = [{"loss_free_rate": 9_000.0, "steps": [_step(5_000, True), _step(9_000, True)]}]
    assert [s["achieved"] for s in limit_steps(publisher_bound)] == [9_000]  # nothing failed
    assert limit_steps([{"loss_free_rate": 0.0, "steps": [_step(5_000, False)]}]) == []
    old = [{"loss_free_rate": 9_000.0, "steps": [{k: v for k, v in _step(9_000, True).items() if k != "cores"}]}]
    assert limit_steps(old) == []  # results from before the split: no table row


def test_the_table_says_where_the_cores_went_at_each_contenders_limit() -> None:
    results = _results(ours_a=30_000, batched=25_000, node_red=3_000, naive=1_000, paho=40_000)
    assert "Where the cores went" not in table(results)  # no steps recorded cores: no section
    ours = results["workloads"]["a"]["contenders"]["ours"]
    ours["label"] = "ioc ingest (ours, defaults)"
    for r in ours["rounds"]:
        r["steps"] = [_step(r["loss_free_rate"], True, 0.8), _step(r["loss_free_rate"] * 1.15, False, 1.0)]
    results["machine"] = {"cores": 2}
    text = table(results)
    assert "(2 in all;" in text
    assert "| (a) | ioc ingest | passed | 30,000 | 0.80 | 0.40 | 0.50 | 0.10 | 1.80 |" in text
    assert "| (a) | ioc ingest | failed | 34,500 | 1.00 | 0.40 | 0.50 | 0.10 | 2.00 |" in text
    public = results["workloads"]["a"]["contenders"]["ours_public"] = dict(ours)
    public["label"] = "ioc ingest (ours, public MQTT path: IOC_MQTT_FAST_PATH=off)"
    text = table(results)  # two labels that shorten alike stay apart
    assert "| (a) | ioc ingest (ours, defaults) | passed | 30,000 |" in text
    assert "| (a) | ioc ingest (ours, public MQTT path) | passed | 30,000 |" in text


def test_a_ramp_records_the_cores_of_every_part_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "SETTLED_S", 0.1)
    plan = dataclasses.replace(QUICK, step_s=0.2, grace_s=0.5, final_drain_s=1.0, max_steps=3)
    bench = Bench(plan, Path("."), cast(Any, None), Path("."), Path("."), 10)
    contender = _LossyContender(lost=0, fails_above=5_000)
    spin = {"publisher": [os.getpid()]}  # this process, kept busy during the steps below

    class _BusyPublisher(_ScriptedPublisher):
        def send(self, rate: float, seconds: float, first_seq: int) -> None:
            super().send(rate, seconds, first_seq)
            threading.Thread(target=_busy, args=(seconds,)).start()

    publisher = cast(Any, _BusyPublisher(contender))
    got = bench._ramp_steps(cast(Any, contender), publisher, Workload.SINGLE, 4_000, 1.5, spin)
    assert [s.offered for s in got.steps] == [4_000, 6_000]  # a pass, then a fail
    assert [set(s.cores) for s in got.steps] == [{"contender", "publisher"}] * 2
    assert all(s.cores["contender"] == 0.0 for s in got.steps)  # the double reports no CPU
    assert all(s.cores["publisher"] > 0.3 for s in got.steps)  # a thread spinning through each step's second half
    assert got.steps[0].as_dict()["cores"]["publisher"] == round(got.steps[0].cores["publisher"], 2)


def _busy(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_summary_of_nothing_is_empty() -> None:
    assert summary([]) == {"min": None, "median": None, "max": None}
    assert summary([None, 2.0, 1.0]) == {"min": 1.0, "median": 1.5, "max": 2.0}


@pytest.mark.parametrize("workload", list(Workload))
def test_workload_descriptions(workload: Workload) -> None:
    assert workload.description.startswith(f"({workload.value})")
    assert json.dumps(workload.value) == f'"{workload.value}"'


def test_chart_labels_of_two_contenders_that_shorten_alike_stay_apart() -> None:
    from bench.report import _shorts

    labels = ["ioc ingest (ours, defaults)", "ioc ingest (ours, public MQTT path: IOC_MQTT_FAST_PATH=off)",
              "Node-RED + node-red-contrib-influxdb"]  # fmt: skip
    assert _shorts(labels) == ["ioc ingest (ours, defaults)", "ioc ingest (ours, public MQTT path)", "Node-RED"]


class _LossyContender:
    """A contender that loses ``lost`` readings of the first step and stores every later one at once."""

    name = "lossy"

    def __init__(self, lost: int, fails_above: float) -> None:
        self.lost, self.fails_above = lost, fails_above
        self.delivered = 0
        self.steps = 0

    def take(self, readings: int, rate: float) -> None:
        self.steps += 1
        if self.steps == 1:
            self.delivered += readings - self.lost
        elif rate <= self.fails_above:
            self.delivered += readings
        else:
            self.delivered += readings // 2  # falls behind and never catches up

    def stored(self) -> int:
        return self.delivered

    def check_alive(self) -> None:
        pass

    def cpu_seconds(self) -> float:
        return 0.0

    def peak_rss_mib(self) -> float:
        return 1.0


class _ScriptedPublisher:
    """Publishes ``rate × seconds`` readings into the contender at once (the ramp's view of a publisher)."""

    def __init__(self, contender: _LossyContender) -> None:
        self.contender = contender
        self.last: PublishResult | None = None

    def send(self, rate: float, seconds: float, first_seq: int) -> None:
        readings = round(rate * seconds)
        self.contender.take(readings, rate)
        self.last = PublishResult("a", rate, readings, readings, seconds, rate, first_seq)

    def result(self) -> PublishResult:
        assert self.last is not None
        return self.last


def _ramp(contender: _LossyContender, final_drain_s: float) -> RampResult:
    plan = dataclasses.replace(QUICK, step_s=0.02, grace_s=0.5, final_drain_s=final_drain_s, max_steps=6)
    bench = Bench(plan, Path("."), cast(Any, None), Path("."), Path("."), 10)
    publisher = _ScriptedPublisher(contender)
    return bench._ramp_steps(cast(Any, contender), cast(Any, publisher), Workload.SINGLE, 4_000, 1.5)


def test_a_first_guess_that_lost_readings_is_written_off_and_the_lower_steps_judged_on_their_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A contender that loses readings at a too-high first guess (Node-RED does) is ramped down and up
    again: the readings it lost do not fail every later step, and they stay counted as lost."""
    monkeypatch.setattr(harness, "SETTLED_S", 0.1)
    got = _ramp(_LossyContender(lost=7, fails_above=3_000), final_drain_s=2.0)
    assert [(s.offered, s.drained) for s in got.steps] == [(4_000, False), (2_000, True), (3_000, True), (4_500, False)]
    assert got.loss_free_rate == 3_000
    assert got.lost == got.published - got.stored == 7 + 45  # the first guess's and the last step's


def test_readings_still_arriving_when_the_drain_gives_up_are_not_written_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Readings missing when the drain's deadline comes before it settled may be late, not lost: the
    lower steps still owe them (were they written off, their late arrival would pass a step early)."""
    monkeypatch.setattr(harness, "SETTLED_S", 10.0)
    got = _ramp(_LossyContender(lost=7, fails_above=3_000), final_drain_s=0.1)
    assert all(not s.drained for s in got.steps)
    assert got.loss_free_rate == 0


def test_the_native_contract_is_drained_beside_every_other_formats_drain() -> None:
    assert schedule(("ioc_v1", "a", "b")) == ["ioc_v1", "a", "ioc_v1", "b", "ioc_v1", "b", "ioc_v1", "a", "ioc_v1"]
    assert schedule(("a", "b")) == ["a", "b"]  # no reference to pair with: each once
    assert schedule(("ioc_v1",)) == ["ioc_v1"]


def test_a_formats_ratio_is_taken_against_the_native_drains_beside_each_of_its_drains() -> None:
    order = schedule(("ioc_v1", "a", "b"))
    rates = [100.0, 80.0, 60.0, 45.0, 50.0, 40.0, 60.0, 72.0, 100.0]  # the host slows, then recovers
    drained: list[dict[str, Any] | None] = [{"end_to_end_rate": r} for r in rates]
    paired = _paired_ratios(order, drained)
    assert paired["ioc_v1"] == [1.0]
    assert paired["a"] == [pytest.approx(1.0), pytest.approx(0.9)]  # 80 / mean(100, 60); 72 / mean(60, 100)
    assert paired["b"] == [pytest.approx(45 / 55), pytest.approx(40 / 55)]
    drained[2] = None  # a failed native drain: the one beside it on the other side still counts
    assert _paired_ratios(order, drained)["a"][0] == pytest.approx(0.8)
    assert _paired_ratios(order, drained)["b"][0] == pytest.approx(0.9)


def _formats_section(paired: bool) -> dict[str, Any]:
    rows = [
        {"format": "ioc_v1", "readings_per_message": 1.0, "end_to_end_rate": 40_000.0, "ratio": 1.0},
        {"format": "senml", "readings_per_message": 1.0, "end_to_end_rate": 34_000.0, "ratio": 0.7996},
    ]
    return {"formats": {"target": 0.8, "readings": 1000, "rows": rows} | ({"paired": True} if paired else {})}


def _format_targets(results: dict[str, Any]) -> list[tuple[Any, Any]]:
    return [(t["value"], t["met"]) for t in targets(results) if t["target"].startswith("formats:")]


def test_paired_formats_are_judged_on_their_own_ratio_and_older_results_on_the_rates() -> None:
    paired = _formats_section(paired=True)  # drains paired with the reference beside them: 0.7996, not 34k / 40k
    assert ratios(paired)["formats"] == {"senml/ioc_v1": 0.7996}
    assert _format_targets(paired) == [(0.7996, False)]
    assert "| `senml` | 1 | 34,000 | 0.800 |" in table(paired | {"targets": targets(paired)})  # shown to 3, judged on 4
    assert "**no**" in table(paired | {"targets": targets(paired)})
    older = _formats_section(paired=False)  # before the pairing: rate ÷ the reference's rate
    assert ratios(older)["formats"] == {"senml/ioc_v1": 0.85}
    assert _format_targets(older) == [(0.85, True)]


def test_a_failed_drain_costs_only_its_own_ratio(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The section's bookkeeping (servers stood in for: their drains are the integration test's)."""
    from bench import formats_bench
    from bench.contenders import ContenderError

    rates = iter([100.0, 80.0, 0.0, 45.0, 50.0, 40.0, 60.0, 72.0, 100.0])  # 0.0: the 2nd ioc_v1 drain fails
    decoded: list[str] = []

    def drain(bench: object, work: formats_bench.Workset, sources: Path) -> dict[str, Any]:
        rate = next(rates)
        if not rate:
            raise ContenderError("ioc_v1: 3 of 5 readings stored in time")
        return {"publish_s": 1.0, "drain_s": 5.0, "end_to_end_rate": rate, "after_first_batch_rate": rate,
                "cpu_s_per_100k": 2.0, "stored": 5, "rejected": 0, "in_db": 5}  # fmt: skip

    def decode_rate(work: formats_bench.Workset, fleet: object, sources: Path) -> float:
        decoded.append(work.format)
        if work.format == "b":
            raise ContenderError("b: decode-only refused a reading")
        return 1000.0

    monkeypatch.setattr(formats_bench, "load_fleet", lambda path: None)
    monkeypatch.setattr(formats_bench, "write_sources", lambda path: None)
    monkeypatch.setattr(formats_bench, "sample", lambda fleet, n, now_ms: [])
    monkeypatch.setattr(formats_bench, "build", lambda name, *_: formats_bench.Workset(name, readings=5))
    monkeypatch.setattr(formats_bench, "drain", drain)
    monkeypatch.setattr(formats_bench, "decode_rate", decode_rate)
    bench = cast(Bench, type("B", (), {"fleet": tmp_path / "fleet.yaml", "workdir": tmp_path})())
    rows = {r["format"]: r for r in formats_bench.run(bench, 5, ("ioc_v1", "a", "b"))["rows"]}

    assert decoded == ["ioc_v1", "a", "b"]  # decode only once each, after its first drain
    native = rows["ioc_v1"]
    assert "error" not in native  # four of its five drains stand
    assert native["errors"] == ["ioc_v1: 3 of 5 readings stored in time"]
    assert native["runs"] == [100.0, 50.0, 60.0, 100.0]
    assert rows["a"]["ratio"] == pytest.approx((80 / 100 + 72 / 80) / 2, abs=1e-4)  # the failed neighbour left out
    assert rows["b"]["ratio"] == pytest.approx((45 / 50 + 40 / 55) / 2, abs=1e-4)
    assert rows["b"]["decode_error"] == "b: decode-only refused a reading"
    assert rows["b"]["end_to_end_rate"] == 42.5  # its drains stand without decode only
    assert all(r["met"] is not None for r in rows.values())
