"""Follow the registry database while ingest runs: added, changed, suspended devices, live.

Every ``registry_poll_s`` seconds one cheap query asks for the registry's revision; when it moved,
the changed devices are applied to ingest's :class:`~ingest.registry.Registry` (new devices take the
next index, inactive ones are refused) and each listener is told (the decoder forgets its
checked topics, the rule engine grows its state). The database calls run in a thread of their own,
never on the event loop. A registry that cannot be reached keeps the devices ingest has, counted
and logged, and is asked again at the next poll.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter as Tally
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge

from ingest.registry import Registry
from registry.errors import RegistryError

if TYPE_CHECKING:
    from registry.store import DeviceRegistry

log = logging.getLogger(__name__)

Listener = Callable[[Registry], None]


class RegistryFollower:
    """Applies the registry database's changes to ingest's registry, from a known revision on."""

    def __init__(
        self,
        source: DeviceRegistry | None,
        registry: Registry,
        *,
        revision: int,
        poll_s: float,
        metrics: CollectorRegistry,
    ) -> None:
        self.source = source
        self.registry = registry
        self.revision = revision
        self.poll_s = poll_s
        self.listeners: list[Listener] = []
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="registry")
        self._failing = False
        self.revision_gauge = Gauge("ioc_registry_revision", "registry revision ingest follows", registry=metrics)
        self.devices_gauge = Gauge(
            "ioc_registry_devices", "devices ingest knows, by state", ["state"], registry=metrics
        )
        self.changes = Counter("ioc_registry_changes", "device changes applied while running", registry=metrics)
        self.errors = Counter("ioc_registry_poll_errors", "registry polls that failed (retried)", registry=metrics)
        self._publish()

    def _publish(self) -> None:
        self.revision_gauge.set(self.revision)
        states = Tally(rd.state for rd in self.registry.devices)
        for state in ("active", "suspended", "decommissioned"):
            self.devices_gauge.labels(state).set(states.get(state, 0))

    async def poll(self) -> int:
        """Apply what changed since the last poll; returns how many devices changed."""
        if self.source is None:  # a fleet file: nothing changes
            return 0
        loop = asyncio.get_running_loop()
        try:
            revision, records = await loop.run_in_executor(self._worker, self.source.tags_since, self.revision)
        except RegistryError as exc:
            self.errors.inc()
            if not self._failing:
                log.warning("registry unreachable, keeping the %d devices known: %s", len(self.registry), exc)
            self._failing = True
            return 0
        if self._failing:
            log.info("registry reachable again")
            self._failing = False
        if not records:
            self.revision = revision
            return 0
        added = self.registry.apply(records)
        self.revision = revision
        for listener in self.listeners:
            listener(self.registry)
        self.changes.inc(len(records))
        self._publish()
        log.info("registry revision %d: %d devices changed (%d new)", revision, len(records), added)
        return len(records)

    async def run(self) -> None:
        """Poll until cancelled (a fleet file: only wait)."""
        try:
            if self.source is None:
                await asyncio.Event().wait()
            while True:
                await asyncio.sleep(self.poll_s)
                await self.poll()
        finally:
            self._worker.shutdown(wait=False)
