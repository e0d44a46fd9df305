"""Rules inside ingest: every stored batch through the engine; alert changes to the alert store
(which queues the webhooks in the same transaction) and to InfluxDB measurement ``alerts``.

All of it runs on the writer task, after the batch is stored and before it is acknowledged, so a
batch whose alerts were not recorded is redelivered (the store ignores a replayed transition).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Counter

from alerts.store import AlertStore
from contract.fields import CAMERA_EVENTS
from contract.fleet import Fleet
from ingest.batch import Batch
from ingest.devices import device_infos
from ingest.lineprotocol import escape_tag, format_float, format_string_field
from rules.engine import Engine
from rules.model import DeviceInfo, Transition
from rules.pack import Pack

log = logging.getLogger(__name__)

ALERTS_MEASUREMENT = "alerts"


def alert_line(t: Transition, device: DeviceInfo) -> str:
    """One transition as a point of measurement ``alerts`` (for Grafana annotations)."""
    tags = {
        "crop": device.crop,
        "device_id": t.device_id,
        "district": device.district,
        "province": device.province,
        "rule_id": t.rule_id,
        "severity": t.severity.label,
        "site": device.site,
        "state": t.state.value,
    }
    tag_part = ",".join(f"{k}={escape_tag(v)}" for k, v in tags.items() if v)
    fields = [f"level={int(t.severity)}i"]
    if t.value == t.value:  # not NaN
        fields.append(f"value={format_float(t.value)}")
    fields += [f"message_vi={format_string_field(t.message_vi)}", f"message_en={format_string_field(t.message_en)}"]
    return f"{ALERTS_MEASUREMENT},{tag_part} {','.join(fields)} {t.ts_ms}"


class Alerting:
    """The engine, the alert store and the counters of both, for one ingest process."""

    def __init__(
        self,
        pack: Pack,
        fleet: Fleet,
        store: AlertStore,
        *,
        deliver_max_age_ms: int,
        registry: CollectorRegistry,
        notify: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.devices: Sequence[DeviceInfo] = device_infos(fleet)
        self.store = store
        self._clock = clock
        self.engine = Engine(pack, self.devices, event_classes=CAMERA_EVENTS, start_ms=self._now())
        restored = self.engine.restore_active((a.rule_id, a.device_id) for a in store.active())
        if restored:
            log.info("rules: %d alerts still active from before", restored)
        self._deliver_max_age_ms = deliver_max_age_ms
        self.notify = notify
        self.transitions = Counter(
            "ioc_rules_transitions", "alert transitions the engine produced", ["state", "severity"], registry=registry
        )
        self.queued = Counter(
            "ioc_alerts_webhooks_queued", "webhook deliveries queued in the outbox", registry=registry
        )

    def _now(self) -> int:
        return int(self._clock() * 1000)

    def on_batch(self, batch: Batch) -> list[str]:
        """Evaluate a stored batch; return the ``alerts`` points to write."""
        now = self._now()
        return self._record(self.engine.evaluate(batch.columns(), now_ms=now), now)

    def tick(self) -> list[str]:
        """Time passing (no-data rules); return the ``alerts`` points to write."""
        now = self._now()
        return self._record(self.engine.tick(now), now)

    def _record(self, transitions: list[Transition], now: int) -> list[str]:
        if not transitions:
            return []
        events = self.store.apply(transitions, self.devices, deliver_since_ms=now - self._deliver_max_age_ms)
        queued = sum(len(e.queued_for) for e in events)
        for t in transitions:
            self.transitions.labels(t.state.value, t.severity.label).inc()
        if queued:
            self.queued.inc(queued)
            self.notify()
        return [alert_line(t, self.devices[t.device]) for t in transitions]
