"""Ingest's throughput per payload format (issue 13): the same readings in every format ingest reads.

For each format, on a fresh broker and database (:meth:`bench.harness.Bench.stage`):

1. ``ioc ingest --sources`` (the simulator's sources file, every format; otherwise the bench's
   ``ours`` defaults) starts once, so that its persistent session (clean start false, QoS 1
   subscriptions) exists on the broker, and stops;
2. N readings in that format are published (Sparkplug: the births first) from raw MQTT connections
   writing pre-encoded PUBLISH packets; the broker queues them for the absent session, and the
   publisher waits for every PUBACK;
3. ingest starts again and drains the backlog. **End to end** is N ÷ the time from its first
   received message to ``ioc_ingest_readings_stored_total`` reaching N (its Prometheus metrics,
   polled every 20 ms): a sustained rate that does not depend on the publisher's speed.
   ``ioc_v1``, the reference, is drained before and after every other format's drain; the other
   formats go in order, then in reverse (two drains each), and each drain's ratio is taken against
   the ``ioc_v1`` drains beside it (:func:`schedule`, :func:`run`).

**Decode only** is the same messages through :class:`~ingest.sources.router.Router` into a
:class:`~ingest.batch.BatchBuilder` in this process (sealed every 10,000 readings, as ingest does),
best of 3, at most :data:`DECODE_CAP` messages: where the time goes, without MQTT and InfluxDB.

The readings are the simulator's (:class:`~simulators.model.FleetModel`: whole dry-season days,
thinned evenly to N, re-stamped to end a minute ago) for the bench fleet's devices of the kinds every format
carries (salinity, water quality, light traps; cameras' events exist only in the native contract),
one reading per message in every format, each message built by the simulator's own encoder
(:mod:`simulators.formats`). The target: every format ≥ :data:`TARGET` × ``ioc_v1`` in the same run.
"""

from __future__ import annotations

import gc
import os
import selectors
import statistics
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import msgspec

from bench.contenders import ContenderError, Ours, Stage, stored_in_influx
from bench.harness import Bench, log
from bench.publish import _Connection, _topic_field
from contract.fleet import Device, Fleet, load_fleet
from contract.topics import Channel, device_topic
from ingest.batch import BatchBuilder
from ingest.decode import Decoder
from ingest.registry import Registry
from ingest.sources.config import load_sources
from ingest.sources.router import Router
from ioc.servers import free_port
from simulators.formats import FORMATS, NATIVE, Link
from simulators.formats.base import Format
from simulators.formats.sources import write_sources
from simulators.model import FleetModel, Reading

ORDER: Final = (NATIVE, "chirpstack_v4", "tts_v3", "sparkplug_b", "senml", "thingsboard", "influx_lp", "json_map")
TARGET: Final = 0.8
"""Each format's end-to-end rate ≥ this × the native contract's, in the same run."""
FULL_READINGS: Final = 200_000
QUICK_READINGS: Final = 30_000
DECODE_CAP: Final = 50_000
"""Messages decoded per decode-only repeat, at most (the first ones of the published set)."""
DECODE_REPEATS: Final = 3
BATCH_READINGS: Final = 10_000
"""Ingest's default ``batch_max_readings``: the decode-only run seals its builder as often."""
KINDS: Final = Format.kinds
END_MS: Final = 1_774_000_000_000
"""2026-03-20: the simulated window ends here (dry season), then is re-stamped to the present."""
DAY_MS: Final = 24 * 3_600_000
INTERVAL_S: Final = 600.0
"""Continuous sensors report every 10 minutes, light traps hourly at night: ~3 % of the readings."""
CLIENTS: Final = 4
"""Publishing connections; every message of one link (a gateway, an edge node) goes on the same one."""
MAX_OUTSTANDING: Final = 20_000
POLL_S: Final = 0.02
_SCRAPED: Final = {"name[]": ["ioc_ingest_readings_stored_total", "ioc_ingest_messages_received_total",
                               "ioc_ingest_rejected_total"]}  # fmt: skip
"""The counters a drain polls: asked for by name, as Prometheus' exposition allows."""
SEED: Final = 1


@dataclass
class Workset:
    """One format's messages: ``births`` (Sparkplug) go first; ``messages`` carry the readings."""

    format: str
    births: list[tuple[int, str, bytes]] = field(default_factory=list)
    """(connection, topic, payload)"""
    messages: list[tuple[int, str, bytes]] = field(default_factory=list)
    readings: int = 0

    @property
    def readings_per_message(self) -> float:
        return self.readings / len(self.messages) if self.messages else 0.0

    @property
    def mean_bytes(self) -> float:
        return statistics.fmean(len(p) for _, _, p in self.messages) if self.messages else 0.0


def devices(fleet: Fleet) -> list[Device]:
    """The devices every format carries (of :data:`KINDS`)."""
    return [d for d in fleet.devices if d.kind in KINDS]


def sample(fleet: Fleet, n: int, now_ms: int) -> list[tuple[Device, Reading]]:
    """``n`` simulated readings of :func:`devices` in time order, the newest a minute before ``now_ms``:
    whole simulated days, thinned evenly to ``n`` (so the kinds' shares do not depend on ``n``)."""
    model = FleetModel(fleet, seed=SEED, interval_s=INTERVAL_S, offline_within_s=1e12)
    pool: list[tuple[Device, Reading]] = []
    t = END_MS - 7 * DAY_MS
    while len(pool) < n:
        for msg in model.between(t, t + DAY_MS):
            if msg.channel is Channel.TELEMETRY and msg.device.kind in KINDS:
                pool.append((msg.device, dict(msg.reading)))
        t += DAY_MS
    out = [pool[i * len(pool) // n] for i in range(n)]
    shift = now_ms - 60_000 - max(int(r["ts"]) for _, r in out)
    for _, r in out:
        r["ts"] = int(r["ts"]) + shift
    return out


def _connection(key: str) -> int:
    return zlib.crc32(key.encode()) % CLIENTS


def build(name: str, fleet: Fleet, readings: Sequence[tuple[Device, Reading]], now_ms: int) -> Workset:
    """The messages of ``readings`` in format ``name``, one reading each, from the simulator's encoders."""
    work = Workset(name)
    if name == NATIVE:
        for device, reading in readings:
            topic = device_topic(device.province, device.kind, device.id, Channel.TELEMETRY)
            work.messages.append((_connection(device.id), topic, msgspec.json.encode(reading)))
        work.readings = len(readings)
        return work
    links: list[Link] = FORMATS[name].links(devices(fleet))
    link_of = {d.id: link for link in links for d in link.devices}
    conn = {link.client_id: _connection(link.client_id) for link in links}
    if name == "sparkplug_b":
        for link in links:
            work.births += [(conn[link.client_id], m.topic, m.payload) for m in link.start(now_ms, _no_status)]
    for device, reading in readings:
        link = link_of[device.id]
        for m in link.readings(device, [reading], now_ms):
            work.messages.append((conn[link.client_id], m.topic, m.payload))
            work.readings += len(m.readings)
    return work


def _no_status(device: Device, t_ms: int) -> Reading:
    raise AssertionError("only Sparkplug's births are published, which need no status")


def publish(port: int, work: Workset, timeout_s: float = 300.0) -> float:
    """Publish ``work`` (QoS 1) and wait for every PUBACK; returns the seconds it took."""
    conns = [_Connection(port, f"bench-formats-{i}") for i in range(CLIENTS)]
    queues: list[list[tuple[bytes, bytes]]] = [[] for _ in conns]
    for i, topic, payload in (*work.births, *work.messages):
        queues[i].append((_topic_field(topic), payload))
    selector = selectors.DefaultSelector()
    for c in conns:
        selector.register(c.sock, selectors.EVENT_READ, c)
    total = sum(len(q) for q in queues)
    pos = [0] * len(conns)
    sent = 0
    started = time.monotonic()
    try:
        while sum(c.acked for c in conns) < total:
            if time.monotonic() - started > timeout_s:
                raise ContenderError(f"{work.format}: the broker acknowledged {sum(c.acked for c in conns)} of {total}")
            room = MAX_OUTSTANDING - (sent - sum(c.acked for c in conns))
            for i, c in enumerate(conns):
                q = queues[i]
                while pos[i] < len(q) and room > 0 and c.pending_bytes < 1 << 20:
                    c.queue(*q[pos[i]])
                    pos[i] += 1
                    sent += 1
                    room -= 1
                c.flush()
            for key, _ in selector.select(0.005):
                key.data.read_acks()
        return time.monotonic() - started
    finally:
        selector.close()
        for c in conns:
            c.close()


@dataclass
class FormatIngest(Ours):
    """``ioc ingest`` with the bench's ``ours`` settings, a sources file and a metrics port."""

    name = "ours_formats"
    label = "ioc ingest --sources (every format)"
    sources: Path | None = None
    metrics_port: int = 0

    def environment(self, stage: Stage) -> dict[str, str]:
        return dict(super().environment(stage), IOC_SOURCES=str(self.sources), IOC_METRICS_PORT=str(self.metrics_port))

    def metrics(self, client: httpx.Client) -> dict[str, float]:
        """Its counters now: ``stored``, ``received`` (messages), ``rejected``; empty before it serves them.
        Only these three are asked for, uncompressed: a whole scrape, 50 a second, took 7 % of a drain."""
        try:
            text = client.get(
                f"http://127.0.0.1:{self.metrics_port}/metrics",
                params=_SCRAPED,
                headers={"Accept-Encoding": "identity"},
            ).text
        except httpx.HTTPError:
            return {}
        out = {"stored": 0.0, "received": 0.0, "rejected": 0.0}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == "ioc_ingest_readings_stored_total":
                out["stored"] = float(value)
            elif name.startswith("ioc_ingest_messages_received_total"):
                out["received"] += float(value.rsplit(" ", 1)[-1])
            elif name.startswith("ioc_ingest_rejected_total"):
                out["rejected"] += float(value.rsplit(" ", 1)[-1])
        return out

    def wait_subscribed(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while "subscribed to " not in self.log_tail(200):
            self.check_alive()
            if time.monotonic() > deadline:
                raise ContenderError(f"{self.name} did not subscribe within {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.02)


def drain(bench: Bench, work: Workset, sources: Path) -> dict[str, Any]:
    """Steps 1–3 above on a fresh stage: the end-to-end figures of one format."""
    with bench.stage(f"formats-{work.format}") as stage:
        first = FormatIngest(sources=sources, metrics_port=free_port())
        first.start(stage)
        try:
            first.wait_subscribed()
        finally:
            first.stop()
        publish_s = publish(stage.mqtt_port, work)
        ingest = FormatIngest(sources=sources, metrics_port=free_port())
        ingest.start(stage)
        try:
            return _drained(ingest, stage, work, publish_s)
        finally:
            ingest.stop()


def _drained(ingest: FormatIngest, stage: Stage, work: Workset, publish_s: float) -> dict[str, Any]:
    n = work.readings
    deadline = time.monotonic() + 90 + n / 1_000
    t_received = t_stored = None
    stored_first = 0.0
    cpu0 = 0.0
    got: dict[str, float] = {}
    with httpx.Client(timeout=5) as client:
        while True:
            ingest.check_alive()
            if time.monotonic() > deadline:
                raise ContenderError(f"{work.format}: {got.get('stored', 0):.0f} of {n} readings stored in time")
            got = ingest.metrics(client)
            now = time.monotonic()
            if got and t_received is None and got["received"] > 0:
                t_received, cpu0 = now, ingest.cpu_seconds()
            if got and t_stored is None and got["stored"] > 0:
                t_stored, stored_first = now, got["stored"]
            if got and got["stored"] >= n:
                t_end = now
                break
            time.sleep(POLL_S)
        cpu = ingest.cpu_seconds() - cpu0
        time.sleep(0.3)
        final = ingest.metrics(client) or got
    if t_received is None or t_stored is None:
        raise ContenderError(f"{work.format}: stored before anything was seen received (poll too slow)")
    seconds = t_end - t_received
    return {
        "publish_s": round(publish_s, 2),
        "drain_s": round(seconds, 3),
        "end_to_end_rate": round(n / seconds, 1) if seconds > 0 else None,
        "after_first_batch_rate": (
            round((n - stored_first) / (t_end - t_stored), 1) if t_end > t_stored and n > stored_first else None
        ),
        "cpu_s_per_100k": round(cpu / n * 100_000, 3),
        "stored": int(final["stored"]),
        "rejected": int(final["rejected"]),
        "in_db": stored_in_influx(stage.influx_url, stage.db),
    }


def decode_rate(work: Workset, fleet: Fleet, sources: Path, repeats: int = DECODE_REPEATS) -> float:
    """Readings/s of the router decoding ``work``'s first :data:`DECODE_CAP` messages, best of ``repeats``."""
    messages = work.messages[:DECODE_CAP]
    parsed = load_sources(sources)
    best = float("inf")
    readings = 0
    for _ in range(repeats):
        registry = Registry.from_fleet(fleet)
        native = Decoder(registry, max_payload_bytes=262_144, max_readings=10_000)
        router = Router(parsed, native, registry, lambda event: None)
        builder = BatchBuilder()
        now_ms = int(time.time() * 1000)
        for _, topic, payload in work.births:
            router.decode(topic, payload, retained=False, now_ms=now_ms, out=builder)
        builder.seal()
        readings = 0
        gc.collect()
        decode = router.decode
        started = time.perf_counter()
        for _, topic, payload in messages:
            builder.note_message(None)
            decode(topic, payload, retained=False, now_ms=now_ms, out=builder)
            if len(builder) >= BATCH_READINGS:
                readings += builder.readings
                builder.seal()
        readings += builder.readings
        taken = time.perf_counter() - started
        best = min(best, taken)
        if builder.rejections:
            raise ContenderError(f"{work.format}: decode-only refused {builder.rejections[0]}")
    if readings != round(len(messages) * work.readings_per_message):
        raise ContenderError(f"{work.format}: decode-only read {readings} readings of {len(messages)} messages")
    return round(readings / best, 1)


def schedule(formats: Sequence[str]) -> list[str]:
    """The drains in order: ``ioc_v1`` before and after every other format's drain, the other formats
    in order and then in reverse (two drains each). Without ``ioc_v1`` or without others, each once."""
    others = [f for f in formats if f != NATIVE]
    if NATIVE not in formats or not others:
        return list(formats)
    order = [NATIVE]
    for name in [*others, *reversed(others)]:
        order += [name, NATIVE]
    return order


def run(bench: Bench, readings: int, formats: Sequence[str] = ORDER) -> dict[str, Any]:
    """Every format's drains as :func:`schedule` orders them. A format's ratio is the mean, over its
    drains, of its rate ÷ the mean of the two ``ioc_v1`` drains beside it (10–20 s apart), so that a
    shared host growing slower or faster during the section tilts no format against another.
    Returns the section of ``bench.run``'s results: per format, the means of its drains (``runs``:
    each drain's rate), decode only (measured after its first drain) and the ratio."""
    fleet = load_fleet(bench.fleet)
    sources = bench.workdir / "sources.sim.yaml"
    write_sources(sources)
    now_ms = int(time.time() * 1000)
    taken = sample(fleet, readings, now_ms)
    rows: dict[str, dict[str, Any]] = {}
    order = schedule(formats)
    drained: list[dict[str, Any] | None] = []  # each drain of ``order``, None where it failed or was skipped
    for name in order:
        row = rows.get(name)
        if row is not None and name != NATIVE and row.get("errors"):  # its next drain would fail alike
            drained.append(None)
            continue
        started = time.monotonic()
        work = build(name, fleet, taken, int(time.time() * 1000))
        if row is None:
            row = rows[name] = {
                "format": name, "messages": len(work.messages), "readings": work.readings,
                "readings_per_message": round(work.readings_per_message, 2),
                "mean_payload_bytes": round(work.mean_bytes), "births": len(work.births),
                "build_s": round(time.monotonic() - started, 2),
            }  # fmt: skip
        first = "decode_rate" not in row and "decode_error" not in row
        try:
            d = drain(bench, work, sources)
        except ContenderError as exc:  # recorded and shown; the reference's other drains and the other formats go on
            log(f"  formats: {name} failed: {exc}")
            row.setdefault("errors", []).append(str(exc)[:2000])
            drained.append(None)
            continue
        drained.append(d)
        if first:
            try:
                row["decode_rate"] = decode_rate(work, fleet, sources)
            except ContenderError as exc:  # the drain above stands
                log(f"  formats: {name} decode only failed: {exc}")
                row["decode_error"] = str(exc)[:2000]
        decode = f", decode only {row.get('decode_rate') or 0:>9,.0f}/s" if first else ""
        log(
            f"  formats: {name:14s} {d['end_to_end_rate'] or 0:>9,.0f} readings/s end to end{decode} "
            f"({d['drain_s']} s drain, {d['cpu_s_per_100k']} CPU s/100k)"
        )
    ordered = []
    for name in formats:
        if name not in rows:
            continue
        row = rows[name] | _mean_of([d for n, d in zip(order, drained, strict=True) if n == name and d is not None])
        if row.get("errors") and "end_to_end_rate" not in row:  # no drain of it succeeded
            row["error"] = row["errors"][0]
        ordered.append(row)
    paired = _paired_ratios(order, drained)
    for r in ordered:
        ratios = paired.get(r["format"], [])
        r["ratio"] = round(statistics.fmean(ratios), 4) if ratios and "error" not in r else None
        r["met"] = None if r["ratio"] is None else r["ratio"] >= TARGET
    return {
        "readings": readings, "decode_messages": min(readings, DECODE_CAP), "target": TARGET,
        "paired": True, "kinds": sorted(k.value for k in KINDS), "cores": os.cpu_count(), "rows": ordered,
    }  # fmt: skip


def _paired_ratios(order: Sequence[str], drained: Sequence[dict[str, Any] | None]) -> dict[str, list[float]]:
    """Per format, each drain's rate ÷ the mean rate of the ``ioc_v1`` drains right before and after it
    (those that succeeded); ``ioc_v1`` itself is 1.0."""
    out: dict[str, list[float]] = {}
    for i, (name, d) in enumerate(zip(order, drained, strict=True)):
        if d is None or not d.get("end_to_end_rate"):
            continue
        if name == NATIVE:
            out[NATIVE] = [1.0]
            continue
        beside = [
            n["end_to_end_rate"]
            for j in (i - 1, i + 1)
            if 0 <= j < len(order) and order[j] == NATIVE and (n := drained[j]) is not None and n.get("end_to_end_rate")
        ]
        if beside:
            out.setdefault(name, []).append(d["end_to_end_rate"] / statistics.fmean(beside))
    return out


def _mean_of(drains: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One row's figures from the drains that succeeded: rates, seconds and CPU are the means of those
    that have them (``runs``: each drain's rate); ``stored`` and ``in_db`` the fewest any drain stored,
    ``rejected`` the most it refused."""
    if not drains:
        return {}

    def mean(key: str, digits: int) -> float | None:
        values = [d[key] for d in drains if d.get(key) is not None]
        return round(statistics.fmean(values), digits) if values else None

    return {
        "publish_s": mean("publish_s", 2), "drain_s": mean("drain_s", 3),
        "end_to_end_rate": mean("end_to_end_rate", 1), "after_first_batch_rate": mean("after_first_batch_rate", 1),
        "cpu_s_per_100k": mean("cpu_s_per_100k", 3),
        "runs": [d["end_to_end_rate"] for d in drains if d.get("end_to_end_rate")],
        "stored": min(d["stored"] for d in drains), "rejected": max(d["rejected"] for d in drains),
        "in_db": min(d["in_db"] for d in drains),
    }  # fmt: skip
