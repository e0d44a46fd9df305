"""Helpers for tests against the real servers: run ingest in a thread, count points, subscribe."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as paho

from contract.fields import Kind
from contract.fleet import Fleet
from ingest.config import IngestSettings
from ingest.service import IngestService
from ioc.servers import query


def ingest_settings(mqtt_port: int, influx_url: str, db: str, **overrides: Any) -> IngestSettings:
    values: dict[str, Any] = {
        "mqtt_url": f"mqtt://127.0.0.1:{mqtt_port}",
        "influx_url": influx_url,
        "influx_api": "v1",
        "influx_db": db,
        "metrics_port": 0,
        "retry_initial_s": 0.05,
        "retry_max_s": 0.5,
        **overrides,
    }
    return IngestSettings(_env_file=None, **values)  # type: ignore[call-arg]


class LoopThread:
    """A coroutine ``run(stop)`` on its own event loop in a thread; ``stop()`` sets the event and joins."""

    def __init__(self, run: Callable[[asyncio.Event], Any]) -> None:
        self._run_coro = run
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._run_coro(self._stop))
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop_when(self, predicate: Callable[[], bool]) -> None:
        """Stop from inside the loop on the first turn that finds ``predicate`` true (no polling delay)."""

        async def watch() -> None:
            while not predicate() and not self._stop.is_set():  # noqa: ASYNC110  # every turn: no event to wait on
                await asyncio.sleep(0)
            self._stop.set()

        asyncio.run_coroutine_threadsafe(watch(), self._loop)

    def stop(self, timeout: float = 60) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout)
        if self.error is not None:
            raise self.error


class IngestThread(LoopThread):
    """The ingest service (without rules) on its own event loop in a thread."""

    def __init__(self, settings: IngestSettings, fleet: Fleet) -> None:
        self.service = IngestService(settings, fleet)
        super().__init__(self.service.run)

    def __enter__(self) -> IngestThread:
        self.start()
        self.wait_for(lambda: self.service.connected, timeout=20, what="subscribed")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def metric(self, name: str, **labels: str) -> float:
        return self.service.metrics.value(name, **labels)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if not self.alive:
                raise AssertionError(f"ingest stopped while waiting for {what}: {self.error!r}")
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")


def count_points(url: str, db: str, measurements: list[str] | None = None) -> int:
    total = 0
    for m in measurements or [k.value for k in Kind]:
        for s in query(url, f'SELECT count("seq") FROM "{m}"', db=db):
            total += int(s["values"][0][1])  # type: ignore[index]
    return total


class Collector:
    """A plain paho subscriber that keeps every message on a topic filter (e.g. dead letters)."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self._client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        subscribed = threading.Event()
        self._client.on_subscribe = lambda *a: subscribed.set()
        self._client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        if not subscribed.wait(10):
            raise AssertionError("collector did not subscribe")

    def json(self) -> list[dict[str, Any]]:
        return [msgspec.json.decode(p) for _, p in list(self.messages)]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def publish(port: int, items: list[tuple[str, bytes]], *, client_id: str = "test-pub", timeout: float = 30) -> None:
    """Publish (topic, payload) pairs with QoS 1 and wait for every PUBACK (TimeoutError if not)."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [client.publish(t, p, qos=1) for t, p in items]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.01, deadline - time.monotonic()))
            if not info.is_published():
                raise TimeoutError(f"broker did not acknowledge message {info.mid}")
    finally:
        client.disconnect()
        client.loop_stop()


class PipelineThread(IngestThread):
    """``ioc ingest`` as it runs in production — ingest, rules, alert store and webhook sender —
    on its own event loop in a thread."""

    def __init__(self, settings: IngestSettings, webhooks: Any) -> None:
        from ingest.runner import build, run_until_stopped

        self.process = build(settings, webhooks)
        self.service = self.process.service
        LoopThread.__init__(self, lambda stop: run_until_stopped(self.process, stop))


ROOT = Path(__file__).resolve().parents[1]


def python_output(code: str, timeout: float = 60, env: dict[str, str] | None = None) -> str:
    """The standard output of ``code`` run by this Python in a fresh process (in the repository's root,
    with ``env`` if given); the test fails with its standard error if it fails."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout
