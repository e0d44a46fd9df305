"""What the API talks to, opened once per process: the registry, the rule pack, the stores, InfluxDB.

:meth:`Services.open` validates everything at start-up (a missing fleet file or a broken pack
refuses to start, naming the file); the app's lifespan closes it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from alerts.store import AlertStore
from api.config import ApiSettings
from api.influx import Influx
from api.keys import KeyStore
from contract.clock import now_ms
from contract.fleet import Device, Fleet, FleetError, load_fleet
from rules.pack import DEFAULT_PACK, Pack, load_pack

log = logging.getLogger(__name__)


class Registry:
    """The fleet file, reloaded when it changes on disk (a broken new version keeps the old one)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._fleet = load_fleet(path)
        self._by_id = self._fleet.by_id()
        self._mtime = self._stat()

    def _stat(self) -> float | None:
        try:
            return self._path.stat().st_mtime
        except OSError:
            return None

    def _refresh(self) -> None:
        mtime = self._stat()
        if mtime is None or mtime == self._mtime:
            return
        with self._lock:
            if mtime == self._mtime:
                return
            try:
                fleet = load_fleet(self._path)
            except FleetError as exc:
                log.warning("keeping the previous registry: %s", exc)
                self._mtime = mtime
                return
            self._fleet, self._by_id, self._mtime = fleet, fleet.by_id(), mtime
            log.info("registry reloaded: %d devices", len(fleet.devices))

    @property
    def fleet(self) -> Fleet:
        self._refresh()
        return self._fleet

    @property
    def devices(self) -> tuple[Device, ...]:
        return self.fleet.devices

    def get(self, device_id: str) -> Device | None:
        self._refresh()
        return self._by_id.get(device_id)


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
        """Open everything (raises ``FleetError``, ``PackError`` or ``StoreError`` with a clear message)."""
        registry = Registry(settings.fleet)
        rules = Rules(settings.rules_pack)
        store = AlertStore(settings.alerts_db, policy=settings.target_policy())
        try:
            keys = KeyStore(settings.alerts_db)
            if settings.api_admin_key is not None:
                keys.ensure_bootstrap(settings.api_admin_key.get_secret_value())
        except BaseException:
            store.close()
            raise
        password = settings.influx_password.get_secret_value() if settings.influx_password else None
        influx = Influx(
            settings.influx_url,
            settings.influx_db,
            username=settings.influx_username,
            password=password,
            timeout_s=settings.api_query_timeout_s,
        )
        return cls(settings, registry, rules, store, keys, influx)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.influx.close()
        self.keys.close()
        self.store.close()
