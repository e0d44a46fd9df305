"""What the API talks to, opened once per process: the registry, the rule pack, the stores, InfluxDB.

:meth:`Services.open` validates everything at start-up (an unreachable registry database, a missing
fleet file or a broken pack refuses to start, naming the setting); the app's lifespan closes it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alerts.store import AlertStore
from api.config import ApiSettings
from api.influx import Influx
from api.keys import KeyStore
from contract.clock import now_ms
from contract.fleet import Device, Fleet
from registry.errors import RegistryError
from registry.source import open_source
from registry.store import DeviceRecord, DeviceRegistry, ImportResult
from rules.pack import DEFAULT_PACK, Pack, load_pack

log = logging.getLogger(__name__)

CHECK_EVERY_S = 1.0
"""How often a read asks the registry database whether anything changed."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every registered device at one moment, by id (decommissioned ones included)."""

    devices: tuple[Device, ...]
    """In id order."""
    ids: tuple[str, ...]
    """The same ids, in the same order (for :func:`bisect.bisect_right`)."""
    by_id: Mapping[str, Device]

    @classmethod
    def of(cls, by_id: dict[str, Device]) -> Snapshot:
        ids = tuple(sorted(by_id))
        return cls(tuple(by_id[i] for i in ids), ids, by_id)


class Registry:
    """The device registry as the API serves it: a snapshot kept in step with the registry database.

    Reads are served from the snapshot. At most once every ``check_every_s`` one read asks the
    database for its revision (one cheap query) while the others go on with the snapshot they have;
    when the revision moved (``ioc devices``, another API process), the changed devices are applied.
    A database that cannot be reached leaves the snapshot as it is (logged; asked again later).
    Writes through this object go to the database and into the snapshot at once. Every database call
    is made under one lock, so the in-memory registry of a fleet file (one SQLite connection) is
    safe too.
    """

    def __init__(
        self,
        source: DeviceRegistry,
        *,
        revision: int,
        records: Iterable[DeviceRecord],
        in_memory: bool = False,
        check_every_s: float = CHECK_EVERY_S,
    ) -> None:
        self.source = source
        self.in_memory = in_memory
        self.check_every_s = check_every_s
        self._lock = threading.Lock()
        self._revision = revision
        self._checked_at = time.monotonic()
        self._snapshot = Snapshot.of({r.device.id: r.device for r in records})
        self._fleet: tuple[Snapshot, Fleet] | None = None
        self._failing = False

    @classmethod
    def open(cls, settings: ApiSettings) -> Registry:
        """The registry of ``settings`` (IOC_REGISTRY_URL, or IOC_FLEET read into memory).

        Raises :class:`~registry.errors.RegistryError` naming the setting to fix.
        """
        try:
            opened = open_source(settings.registry_url, settings.fleet_file)
        except RegistryError as exc:
            what = "the device registry: IOC_REGISTRY_URL" if settings.registry_url else "the fleet file: IOC_FLEET"
            raise RegistryError(f"{exc} ({what})") from exc
        return cls(opened.registry, revision=opened.revision, records=opened.records, in_memory=opened.in_memory)

    def close(self) -> None:
        with self._lock:
            self.source.close()

    # -- the snapshot -----------------------------------------------------------------------

    @property
    def revision(self) -> int:
        """The database revision the snapshot has caught up with."""
        return self._revision

    def _apply(self, records: Iterable[DeviceRecord]) -> None:
        """Put ``records`` into the snapshot (call with the lock held)."""
        by_id = dict(self._snapshot.by_id)
        for r in records:
            by_id[r.device.id] = r.device
        self._snapshot = Snapshot.of(by_id)

    def _sync(self) -> None:
        """Apply what changed in the database since the snapshot's revision (call with the lock held)."""
        self._checked_at = time.monotonic()
        try:
            revision, records = self.source.changes_since(self._revision)
        except RegistryError as exc:
            if not self._failing:
                log.warning("device registry unreachable, serving the devices known: %s", exc)
            self._failing = True
            return
        if self._failing:
            log.info("device registry reachable again")
            self._failing = False
        if records:
            self._apply(records)
            log.info("device registry revision %d: %d devices changed", revision, len(records))
        self._revision = revision

    def snapshot(self) -> Snapshot:
        """The devices now: the database is asked for its revision at most once every ``check_every_s``
        (while one thread asks, the others are served the snapshot as it is)."""
        if time.monotonic() - self._checked_at >= self.check_every_s and self._lock.acquire(blocking=False):
            try:
                if time.monotonic() - self._checked_at >= self.check_every_s:
                    self._sync()
            finally:
                self._lock.release()
        return self._snapshot

    def refresh(self) -> Snapshot:
        """Catch up with the database now (waiting for the lock)."""
        with self._lock:
            self._sync()
        return self._snapshot

    @property
    def devices(self) -> tuple[Device, ...]:
        """Every registered device, decommissioned ones included, in id order."""
        return self.snapshot().devices

    @property
    def fleet(self) -> Fleet:
        snapshot = self.snapshot()
        cached = self._fleet
        if cached is None or cached[0] is not snapshot:
            cached = (snapshot, Fleet(devices=snapshot.devices))
            self._fleet = cached
        return cached[1]

    def get(self, device_id: str) -> Device | None:
        return self.snapshot().by_id.get(device_id)

    # -- the database -----------------------------------------------------------------------

    def record(self, device_id: str) -> DeviceRecord | None:
        """The device as the database holds it right now (not the snapshot), with its times."""
        with self._lock:
            return self.source.find(device_id)

    def add(self, device: Device) -> DeviceRecord:
        """Register ``device`` (:class:`~registry.errors.DeviceExists` if its id or an external id is taken)."""
        with self._lock:
            record = self.source.add(device)
            self._apply([record])
        return record

    def update(self, device_id: str, changes: Mapping[str, Any]) -> DeviceRecord:
        """Change some fields of a device (validated as a whole by the registry)."""
        with self._lock:
            record = self.source.update(device_id, changes)
            self._apply([record])
        return record

    def import_devices(self, devices: Sequence[Device], *, source: str) -> ImportResult:
        """Add or change every device, all or none (:class:`~registry.errors.ImportRefused` lists bad rows)."""
        with self._lock:
            result = self.source.import_devices(devices, source=source)
            self._sync()
        return result


@dataclass(frozen=True, slots=True)
class LoadedPack:
    pack: Pack
    source: str
    loaded_at_ms: int


class Rules:
    """The rule pack the API shows and backtests with; :meth:`reload` reads it again from disk."""

    def __init__(self, path: Path | None) -> None:
        self.path = path or DEFAULT_PACK
        self._current = LoadedPack(load_pack(self.path), str(self.path), now_ms())

    @property
    def current(self) -> LoadedPack:
        return self._current

    def reload(self) -> LoadedPack:
        """Load the pack again; on a :class:`~rules.errors.PackError` the old one stays."""
        self._current = LoadedPack(load_pack(self.path), str(self.path), now_ms())
        return self._current


@dataclass
class Services:
    settings: ApiSettings
    registry: Registry
    rules: Rules
    store: AlertStore
    keys: KeyStore
    influx: Influx
    closed: bool = field(default=False)

    @classmethod
    def open(cls, settings: ApiSettings) -> Services:
        """Open everything (raises ``RegistryError``, ``PackError`` or ``StoreError`` with a clear message)."""
        rules = Rules(settings.rules_pack)
        registry = Registry.open(settings)
        try:
            store = AlertStore(settings.alerts_db, policy=settings.target_policy())
        except BaseException:
            registry.close()
            raise
        try:
            keys = KeyStore(settings.alerts_db)
            if settings.api_admin_key is not None:
                keys.ensure_bootstrap(settings.api_admin_key.get_secret_value())
        except BaseException:
            store.close()
            registry.close()
            raise
        password = settings.influx_password.get_secret_value() if settings.influx_password else None
        influx = Influx(
            settings.influx_url,
            settings.influx_db,
            username=settings.influx_username,
            password=password,
            timeout_s=settings.api_query_timeout_s,
            verify=settings.influx_verify(),
        )
        return cls(settings, registry, rules, store, keys, influx)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.influx.close()
        self.keys.close()
        self.store.close()
        self.registry.close()
