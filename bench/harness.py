"""Run every contender through every workload, interleaved over rounds, on fresh servers.

For each (round, workload) every contender gets, in turn (A B C … A B C …):

* a **ramp**: a fresh broker and database, the contender started and subscribed, then steps of
  ``step_s`` seconds at a rising offered rate. A step passes when the contender kept up (in the
  step's second half it stored 90 % of what was offered, less one second's worth for consumers
  that write once a second: lag is not growing) and had stored everything within ``grace_s``
  after the step (no loss, no backlog: a consumer with capacity C passes a step at rate R only if
  (R - C) × step_s ≤ C × grace_s). The last passing step's rate
  is the contender's loss-free rate. CPU seconds and peak RSS are read from ``/proc``; so is, for
  each step's second half, where the machine's cores went (:class:`StepRecord`'s ``cores``: the
  contender, the broker, the database and the publisher).
* a **latency** run (consumers that store): a fresh broker and database with a UDP subscription
  (:mod:`bench.latency`), ``latency_s`` seconds at a fixed moderate rate, publish → stored p50/p99.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from bench.contenders import ROOT, Contender, ContenderError, Stage
from bench.latency import LatencyProbe
from bench.procstat import PARTS, cpu_seconds
from bench.publish import PublishResult
from bench.workload import Workload
from ioc.servers import InfluxServer, ServerError, ServerProcess, start_influxd, start_mosquitto
from storage.influxql import query

BATCH_ALLOWANCE_S = 1.0
"""A consumer that writes once a second (the DIY peer) stores in steps: lag may wobble by that much."""

SETTLED_S = 3.0
"""A drain has settled when nothing more was stored for this long: what is still missing was lost."""

BROKER_EXTRA = "persistence false\nsys_interval 1\n"
"""The bench broker keeps queues in memory only (limits raised in :func:`mosquitto_config`)."""


@dataclass(frozen=True)
class Plan:
    """How long and how hard: ``make bench`` and ``make bench-quick`` differ only here."""

    rounds: int
    step_s: float
    grace_s: float
    factor: float
    max_steps: int
    latency_rate: float
    latency_s: float
    final_drain_s: float
    workloads: tuple[Workload, ...]
    contenders: tuple[str, ...]
    only: dict[str, tuple[str, ...]]
    """Per workload (its letter), the contenders that run it, if not all."""
    latency_for: tuple[str, ...]
    """The contenders given a latency run (of those that store)."""
    store_only_readings: int
    rule_readings: int
    rule_repeats: int
    webhook_probes: int
    registry_sizes: tuple[int, ...] = (1_000, 10_000, 100_000)
    first_guess_scale: float = 1.0
    """Round 1's ramp starts at this × the first guess (the quick plan starts higher, to save steps)."""


@dataclass
class StepRecord:
    offered: float
    achieved: float
    kept_up: bool
    drained: bool
    lag_after_s: float
    cores: dict[str, float] = field(default_factory=dict)
    """Cores each part of the machine used in the step's second half (CPU seconds ÷ seconds):
    ``contender``, ``broker``, ``database``, ``publisher`` (the parts the ramp was given)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "offered": round(self.offered),
            "achieved": round(self.achieved),
            "kept_up": self.kept_up,
            "drained": self.drained,
            "lag_after_s": round(self.lag_after_s, 2),
            "cores": {part: round(c, 2) for part, c in self.cores.items()},
        }


@dataclass
class RampResult:
    loss_free_rate: float
    publisher_bound: bool
    published: int
    stored: int
    lost: int
    cpu_s_per_100k: float | None
    peak_rss_mib: float
    steps: list[StepRecord] = field(default_factory=list)


def _server_pid(server: ServerProcess) -> int:
    if server.proc is None:
        raise ServerError(f"{server.name} is not running")
    return server.proc.pid


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Publisher:
    """The ``bench.publish`` process for one stage: commands in, results out."""

    def __init__(self, stage: Stage, workload: Workload, streams: Path) -> None:
        cmd = [sys.executable, "-m", "bench.publish", "--port", str(stage.mqtt_port), "--workload", workload.value,
               "--fleet", str(stage.fleet), "--streams", str(streams)]  # fmt: skip
        self._log = (stage.workdir / "publisher.log").open("ab")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)
        self._read()  # "ready"

    def _read(self) -> bytes:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise ContenderError(f"the publisher exited ({self.proc.wait()}); see its log")
        return line

    def send(self, rate: float, seconds: float, first_seq: int) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(msgspec.json.encode({"rate": rate, "seconds": seconds, "first_seq": first_seq}) + b"\n")
        self.proc.stdin.flush()

    def result(self) -> PublishResult:
        return msgspec.json.decode(self._read(), type=PublishResult)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


class SubscriptionWatch:
    """Follows ``$SYS/broker/subscriptions/count`` to know when a contender has subscribed."""

    def __init__(self, port: int) -> None:
        self.count = -1
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-watch")
        self._client.on_message = self._on_message
        self._client.on_connect = lambda c, u, f, rc, p: c.subscribe("$SYS/broker/subscriptions/count")
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        _wait(lambda: self.count >= 1, 10, "the broker's $SYS subscription count")
        self.baseline = self.count

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with contextlib.suppress(ValueError):
            self.count = int(msg.payload)

    def wait_for_new(self, contender: Contender, timeout: float = 90.0) -> None:
        def subscribed() -> bool:
            contender.check_alive()
            return self.count > self.baseline

        _wait(subscribed, timeout, f"{contender.name} to subscribe")
        time.sleep(0.5)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise ContenderError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


class Bench:
    """Shared servers and files of one benchmark run."""

    def __init__(
        self, plan: Plan, workdir: Path, influx: InfluxServer, fleet: Path, streams: Path, n_streams: int
    ) -> None:
        self.plan = plan
        self.n_streams = n_streams
        self.workdir = workdir
        self.influx = influx
        self.fleet = fleet
        self.streams = streams
        self._stages = 0

    @contextlib.contextmanager
    def own_influx(self, section: str) -> Iterator[Bench]:
        """This bench with a fresh InfluxDB of its own, in its own folder, for one ``section``: its figures
        do not depend on what the sections before it wrote to the shared one (an hour of ramps)."""
        folder = self.workdir / section
        folder.mkdir()
        influx = start_influxd(folder / "influxdb")  # one that does not come up is stopped (ServerProcess.start)
        try:
            yield Bench(self.plan, folder, influx, self.fleet, self.streams, self.n_streams)
        finally:
            influx.stop()
            shutil.rmtree(folder / "influxdb", ignore_errors=True)  # the contenders' logs stay, as the run's do

    @contextlib.contextmanager
    def stage(self, label: str) -> Iterator[Stage]:
        """A fresh broker and a fresh database for one contender run."""
        self._stages += 1
        folder = self.workdir / f"{self._stages:03d}-{label}"
        folder.mkdir(parents=True)
        db = f"bench{self._stages}"
        self.influx.create_database(db)
        broker: ServerProcess = start_mosquitto(folder / "broker", extra_config=BROKER_EXTRA)
        try:
            yield Stage(broker.port, self.influx.url, db, self.fleet, folder, _server_pid(broker))
        finally:
            broker.stop()
            query(self.influx.url, f'DROP DATABASE "{db}"', method="POST")
            shutil.rmtree(folder / "broker", ignore_errors=True)

    @contextlib.contextmanager
    def running(self, contender: Contender, stage: Stage) -> Iterator[None]:
        watch = SubscriptionWatch(stage.mqtt_port)
        contender.start(stage)
        try:
            watch.wait_for_new(contender)
            yield
        finally:
            watch.close()
            contender.stop()

    def ramp(self, contender: Contender, workload: Workload, start_rate: float, factor: float) -> RampResult:
        """Raise the offered rate until the contender loses readings or falls behind."""
        contender.readings_per_message = workload.readings_per_message
        with self.stage(f"{workload.value}-{contender.name}-ramp") as stage, self.running(contender, stage):
            publisher = Publisher(stage, workload, self.streams)
            pids = ([stage.broker_pid], [_server_pid(self.influx)], [publisher.proc.pid])
            parts = dict(zip(PARTS[1:], pids, strict=True))  # broker, database, publisher
            try:
                return self._ramp_steps(contender, publisher, workload, start_rate, factor, parts)
            finally:
                publisher.close()

    def _ramp_steps(
        self,
        contender: Contender,
        publisher: Publisher,
        workload: Workload,
        start_rate: float,
        factor: float,
        parts: dict[str, list[int]] | None = None,
    ) -> RampResult:
        """The ramp's steps; ``parts``: the processes of the machine's other parts (broker, database,
        publisher), whose cores each step records beside the contender's."""
        p = self.plan
        others = parts or {}

        def cpu_now() -> dict[str, float]:
            return {PARTS[0]: contender.cpu_seconds()} | {part: cpu_seconds(pids) for part, pids in others.items()}

        cpu0 = contender.cpu_seconds()
        published = 0
        written_off = 0  # readings a failed first guess lost for good: not owed by the steps after it
        first_seq = 0
        steps: list[StepRecord] = []
        best, bound = 0.0, False
        rate = start_rate
        retries = 3
        yield_: float | None = None
        for _ in range(p.max_steps):
            publisher.send(rate, p.step_s, first_seq)
            t0 = time.monotonic()
            time.sleep(max(0.0, t0 + p.step_s / 2 - time.monotonic()))
            mid = contender.stored()
            cpu_mid, t_mid = cpu_now(), time.monotonic()  # cores: from after the count to the step's end
            time.sleep(max(0.0, t0 + p.step_s - time.monotonic()))
            cpu_end, t_end = cpu_now(), time.monotonic()
            end = contender.stored()
            # a process gone meanwhile reads 0 (no contender's process exits mid-ramp): never below 0
            cores = {part: max(0.0, cpu_end[part] - cpu_mid[part]) / max(t_end - t_mid, 1e-3) for part in cpu_end}
            res = publisher.result()
            published += res.readings
            per_device = math.ceil(res.messages / self.n_streams) + 1
            first_seq += per_device * workload.readings_per_message
            ended = time.monotonic()
            drained = False
            while time.monotonic() - ended < p.grace_s:
                contender.check_alive()
                if contender.stored() + written_off >= published:
                    drained = True
                    break
                time.sleep(0.2)
            lag_after = time.monotonic() - ended
            achieved = res.achieved_readings_per_s
            kept_up = (end - mid) >= achieved * (0.9 * p.step_s / 2 - BATCH_ALLOWANCE_S)
            steps.append(StepRecord(rate, res.achieved_readings_per_s, kept_up, drained, lag_after, cores))
            log(
                f"  {contender.name:13s} {workload.value} offered {rate:>9,.0f}/s achieved "
                f"{res.achieved_readings_per_s:>9,.0f}/s kept_up={kept_up} drained={drained} ({lag_after:.1f} s)"
            )
            if not (drained and kept_up):
                if best > 0 or retries == 0:
                    break
                retries -= 1  # the first guess was too high: let it drain, then start lower
                stored_now, settled = self._drain(contender, published)
                log(f"  {contender.name:13s} {workload.value} backlog drained to {stored_now}/{published}")
                if settled:  # nothing more arrived for 3 s: what is missing was lost, not late
                    written_off = published - stored_now
                rate /= 2
                continue
            best = res.achieved_readings_per_s
            if yield_ is None:
                # (c) is offered in messages/s to ioc simulate, whose light traps report only on
                # their night schedule: readings/s is a fixed share of it, read off the first step.
                yield_ = min(1.0, res.achieved_readings_per_s / rate) if workload is Workload.SIMULATE else 1.0
            if res.achieved_readings_per_s < 0.95 * rate * yield_:
                bound = True  # the publisher could not offer more: the contender is not the limit
                break
            rate *= factor
        stored = self._final_drain(contender, published)
        cpu = contender.cpu_seconds() - cpu0
        rss = contender.peak_rss_mib()
        return RampResult(
            loss_free_rate=round(best, 1), publisher_bound=bound, published=published, stored=stored,
            lost=max(0, published - stored),
            cpu_s_per_100k=round(cpu / stored * 100_000, 3) if stored else None, peak_rss_mib=rss, steps=steps,
        )  # fmt: skip

    def _final_drain(self, contender: Contender, published: int) -> int:
        """Wait until everything is stored, or nothing more arrives for 3 s (at most ``final_drain_s``)."""
        return self._drain(contender, published)[0]

    def _drain(self, contender: Contender, published: int) -> tuple[int, bool]:
        """:meth:`_final_drain`'s stored count, and whether it settled: everything stored, or nothing
        more arrived for 3 s (not: the deadline came while readings were still arriving)."""
        deadline = time.monotonic() + self.plan.final_drain_s
        last, last_change = contender.stored(), time.monotonic()
        while last < published and time.monotonic() < deadline and time.monotonic() - last_change < SETTLED_S:
            time.sleep(0.5)
            now = contender.stored()
            if now != last:
                last, last_change = now, time.monotonic()
        return last, last >= published or time.monotonic() - last_change >= SETTLED_S

    def latency(self, contender: Contender, workload: Workload) -> dict[str, Any]:
        """Publish → stored p50/p99 at the plan's fixed moderate rate."""
        p = self.plan
        contender.readings_per_message = workload.readings_per_message
        probe = LatencyProbe(workload.readings_per_message)
        try:
            with self.stage(f"{workload.value}-{contender.name}-latency") as stage:
                probe.subscribe(stage.influx_url, stage.db)
                with self.running(contender, stage):
                    publisher = Publisher(stage, workload, self.streams)
                    try:
                        time.sleep(1.0)  # the subscription starts forwarding
                        probe.start_counting()
                        publisher.send(p.latency_rate, p.latency_s, 0)
                        res = publisher.result()
                    finally:
                        publisher.close()
                    stored = self._final_drain(contender, res.readings)
                    time.sleep(0.5)
                    p50, p99 = probe.percentiles()
                    seen = probe.count
        finally:
            probe.close()
        unstored = max(0, res.readings - stored)
        log(f"  {contender.name:13s} {workload.value} latency at {res.achieved_readings_per_s:,.0f}/s: "
            f"p50 {p50} ms p99 {p99} ms ({seen} of {res.readings} seen, {unstored} unstored)")  # fmt: skip
        return {
            "rate": round(res.achieved_readings_per_s), "published": res.readings, "stored": stored,
            "seen": seen, "unstored": unstored, "p50_ms": p50, "p99_ms": p99,
        }  # fmt: skip
