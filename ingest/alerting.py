"""Rules inside ingest: every stored batch through the engine; alert changes to the alert store
(which queues the webhooks in the same transaction) and to InfluxDB measurement ``alerts``.

The engine runs on the writer task, after the batch is stored and before it is acknowledged. The
alert store is SQLite, whose writes can wait on another process's lock (an operator's ``sqlite3``
shell, a backup, the API): so every store call runs in one thread of its own, never on the event
loop, and a write that fails (locked past the busy timeout, disk full, an error of the file) is
retried in place, with back-off, until it is recorded. Until then the batch is not acknowledged:
acks stop, the write queue fills and the broker holds the rest. A transition is recorded exactly
once: a failed write rolled back whole, and the store ignores a transition it already holds.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import CollectorRegistry, Counter, Gauge

from alerts.errors import StoreError
from alerts.store import AlertEvent, AlertStore
from contract.fields import CAMERA_EVENTS
from contract.retry import Backoff
from ingest.batch import Batch
from ingest.registry import Registry
from rules.engine import Engine
from rules.model import DeviceInfo, Transition
from rules.pack import Pack
from storage.layout import (
    ALERTS_MEASUREMENT,
    CROP,
    DEVICE_ID,
    DISTRICT,
    LEVEL,
    MESSAGE_EN,
    MESSAGE_VI,
    PROVINCE,
    RULE_ID,
    SEVERITY,
    SITE,
    STATE,
    VALUE,
)
from storage.lineprotocol import escape_tag, format_float, format_string_field

log = logging.getLogger(__name__)


def alert_line(t: Transition, device: DeviceInfo) -> str:
    """One transition as a point of measurement ``alerts`` (for Grafana annotations)."""
    tags = {  # in ALERT_TAGS order (sorted, as InfluxDB keeps them)
        CROP: device.crop,
        DEVICE_ID: t.device_id,
        DISTRICT: device.district,
        PROVINCE: device.province,
        RULE_ID: t.rule_id,
        SEVERITY: t.severity.label,
        SITE: device.site,
        STATE: t.state.value,
    }
    tag_part = ",".join(f"{k}={escape_tag(v)}" for k, v in tags.items() if v)
    fields = [f"{LEVEL}={int(t.severity)}i"]
    if math.isfinite(t.value):  # NaN for no-data rules
        fields.append(f"{VALUE}={format_float(t.value)}")
    fields += [f"{MESSAGE_VI}={format_string_field(t.message_vi)}", f"{MESSAGE_EN}={format_string_field(t.message_en)}"]
    return f"{ALERTS_MEASUREMENT},{tag_part} {','.join(fields)} {t.ts_ms}"


class Alerting:
    """The engine, the alert store and the counters of both, for one ingest process."""

    def __init__(
        self,
        pack: Pack,
        devices: Sequence[DeviceInfo],
        store: AlertStore,
        *,
        deliver_max_age_ms: int,
        registry: CollectorRegistry,
        notify: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        retry: Backoff | None = None,
    ) -> None:
        self.devices: Sequence[DeviceInfo] = list(devices)
        self.store = store
        self._clock = clock
        self.engine = Engine(pack, self.devices, event_classes=CAMERA_EVENTS, start_ms=self._now())
        restored = self.engine.restore_active((a.rule_id, a.device_id) for a in store.active())
        if restored:
            log.info("rules: %d alerts still active from before", restored)
        self.deliver_max_age_ms = deliver_max_age_ms
        """Events of readings older than this are recorded, not sent (a logger's backfill)."""
        self.notify = notify
        self._retry = retry or Backoff(0.2, 5.0)
        self._pending: tuple[Batch | None, int, list[Transition]] | None = None
        """A batch (None: a tick) evaluated but not yet recorded: its clock and transitions."""
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="alert-store")  # its own SQLite connection
        self.transitions = Counter(
            "ioc_rules_transitions", "alert transitions the engine produced", ["state", "severity"], registry=registry
        )
        self.queued = Counter(
            "ioc_alerts_webhooks_queued", "webhook deliveries queued in the outbox", registry=registry
        )
        self.store_errors = Counter(
            "ioc_alerts_store_errors", "alert-store writes that failed and were retried", registry=registry
        )
        self.unrecorded = Gauge(
            "ioc_alerts_transitions_unrecorded",
            "transitions waiting for the alert store to take them",
            registry=registry,
        )

    def _now(self) -> int:
        return int(self._clock() * 1000)

    def follow(self, registry: Registry) -> None:
        """The registry changed: name devices anew and grow the engine's state for new ones."""
        self.devices = list(registry.devices)  # a snapshot: the engine's list, until the next change
        self.engine.set_devices(self.devices, now_ms=self._now())

    async def on_batch(self, batch: Batch) -> list[str]:
        """Evaluate a stored batch and record its transitions; return the ``alerts`` points to write.

        Called again with the same batch (the service retries a hook that raised), it records the
        transitions of the first evaluation: the engine's state has moved on, and must not twice.
        """
        return await self._evaluated(batch, lambda now: self.engine.evaluate(batch.columns(), now_ms=now))

    async def tick(self) -> list[str]:
        """Time passing (no-data rules); return the ``alerts`` points to write."""
        return await self._evaluated(None, self.engine.tick)

    async def _evaluated(self, key: Batch | None, evaluate: Callable[[int], list[Transition]]) -> list[str]:
        pending = self._pending
        if pending is not None and pending[0] is key:
            now, transitions = pending[1], pending[2]
        else:
            now = self._now()
            transitions = evaluate(now)
            self._pending = (key, now, transitions)
        lines = await self._record(transitions, now)
        self._pending = None
        return lines

    async def close(self) -> None:
        """Stop the store's thread, after any write in progress (off the loop: it may wait on a lock)."""
        await asyncio.to_thread(self._worker.shutdown, wait=True)

    async def _record(self, transitions: list[Transition], now: int) -> list[str]:
        if not transitions:
            return []
        events = await self._apply(transitions, deliver_since_ms=now - self.deliver_max_age_ms)
        queued = sum(len(e.queued_for) for e in events)
        for t in transitions:
            self.transitions.labels(t.state.value, t.severity.label).inc()
        if queued:
            self.queued.inc(queued)
            self.notify()
        return [alert_line(t, self.devices[t.device]) for t in transitions]

    async def _apply(self, transitions: list[Transition], *, deliver_since_ms: int) -> list[AlertEvent]:
        """``store.apply`` in the store's thread, retried until it succeeds (see the module docstring)."""
        loop = asyncio.get_running_loop()
        self.unrecorded.inc(len(transitions))
        attempt = 0
        try:
            while True:
                try:
                    events = await loop.run_in_executor(
                        self._worker,
                        lambda: self.store.apply(transitions, self.devices, deliver_since_ms=deliver_since_ms),
                    )
                    if attempt:
                        log.info("alert store took %d transitions after %d failed attempts", len(transitions), attempt)
                    return events
                except StoreError as exc:
                    self.store_errors.inc()
                    delay = self._retry.delay(attempt)
                    if attempt == 0:
                        log.error("alert store write failed, retrying (batch not acknowledged meanwhile): %s", exc)
                    else:
                        log.warning("alert store write failed again (attempt %d): %s", attempt + 1, exc)
                    await asyncio.sleep(delay)
                    attempt += 1
        finally:
            self.unrecorded.dec(len(transitions))
