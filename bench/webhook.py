"""Publish → webhook latency of a firing rule, with ``ioc ingest`` under a moderate load.

The background is workload (a) at the plan's latency rate (5k readings/s) from every device but
the probe stations. Every second one probe salinity station reports two readings at 1.6 ‰
(``SAL_1PPT`` fires on two consecutive readings ≥ 1 ‰); the clock runs from publishing the
second reading to the signed webhook arriving at a real, verifying HTTP receiver.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from alerts.config import WebhookSettings
from alerts.notify import Pacing
from alerts.receiver import WebhookReceiver
from alerts.signing import generate_secret
from alerts.store import AlertStore
from bench.contenders import Ours, Stage
from bench.harness import Bench, Publisher, log
from bench.workload import DeviceStream, Workload, load_streams, save_streams

PROBE_RULE = "SAL_1PPT"
PROBE_PPT = 1.6


class _OursWithHooks(Ours):
    """``ioc ingest`` with its defaults, allowed to deliver to the loopback receiver."""

    def environment(self, stage: Stage) -> dict[str, str]:
        return dict(super().environment(stage), IOC_WEBHOOK_ALLOW_HOSTS="127.0.0.0/8")


def _probe_streams(streams: list[DeviceStream], count: int) -> tuple[list[DeviceStream], list[DeviceStream]]:
    salinity = [s for s in streams if "/salinity/" in s.topic]
    probes = salinity[:count]
    chosen = {s.topic for s in probes}
    return probes, [s for s in streams if s.topic not in chosen]


def run(bench: Bench, probes: int) -> dict[str, Any]:
    """``probes`` firings, one a second, under background load; p50/p99 in ms."""
    plan = bench.plan
    streams = load_streams(bench.streams)
    probe_streams, background = _probe_streams(streams, probes)
    with bench.stage("webhook-ours") as stage:
        bg_file = stage.workdir / "background.streams"
        save_streams(background, bg_file)
        secret = generate_secret()
        settings = WebhookSettings(
            alerts_db=stage.workdir / "alerts.db", webhook_allow_hosts=["127.0.0.0/8"], _env_file=None,
        )  # fmt: skip
        store = AlertStore(settings.alerts_db, policy=settings.target_policy())
        receiver = WebhookReceiver(secret, quiet=True).start()
        device_ids = [s.topic.split("/")[4] for s in probe_streams]
        at_once = Pacing.make(group_wait_s=0, group_interval_s=0)  # one alert's latency: no grouping wait
        store.add_subscription(
            receiver.url, secret, devices=device_ids, rule_ids=[PROBE_RULE], description="bench", pacing=at_once
        )
        store.close()
        published_at: dict[str, float] = {}
        ours = _OursWithHooks()
        try:
            with bench.running(ours, stage):
                publisher = Publisher(stage, Workload.SINGLE, bg_file)
                client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-probe")
                client.connect("127.0.0.1", stage.mqtt_port)
                client.loop_start()
                try:
                    publisher.send(plan.latency_rate, probes + 3.0, 0)
                    time.sleep(1.5)
                    for stream, device in zip(probe_streams, device_ids, strict=True):
                        body = msgspec.json.decode(b"{" + stream.fields[0] + b"}")
                        body["salinity_ppt"] = PROBE_PPT
                        for seq in (0, 1):
                            now_ms = int(time.time() * 1000)
                            client.publish(stream.topic, msgspec.json.encode({**body, "ts": now_ms, "seq": seq}), qos=1)
                            if seq == 0:
                                time.sleep(0.05)
                        published_at[device] = time.monotonic()
                        time.sleep(max(0.0, 1.0 - 0.05))
                    publisher.result()
                finally:
                    publisher.close()
                    client.loop_stop()
                    client.disconnect()
                _wait_for_webhooks(receiver, len(device_ids), 15.0)
        finally:
            receiver.stop()
    latencies = []
    for r in receiver.requests:
        if r.accepted and r.payload and r.payload.get("state") == "firing":
            device = str(r.payload.get("device_id"))
            if device in published_at:
                latencies.append((r.at - published_at.pop(device)) * 1000)
    p50, p99 = np.percentile(latencies, [50, 99]).round(1).tolist() if latencies else [float("nan")] * 2
    log(f"  webhook latency: p50 {p50} ms p99 {p99} ms ({len(latencies)} of {probes} delivered)")
    return {
        "rule": PROBE_RULE, "background_rate": plan.latency_rate, "probes": probes,
        "delivered": len(latencies), "p50_ms": p50, "p99_ms": p99,
        "max_ms": round(max(latencies), 1) if latencies else None,
    }  # fmt: skip


def _wait_for_webhooks(receiver: WebhookReceiver, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(1 for r in receiver.requests if r.accepted) >= n:
            return
        time.sleep(0.1)
