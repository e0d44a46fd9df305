"""The registry database: devices by id, one revision counter, SQLite or PostgreSQL alike.

URLs: ``sqlite:///var/registry.db`` (a file, WAL mode), ``sqlite:///:memory:`` (one process), or
``postgresql://user:password@host:5432/db`` (psycopg 3). Every write is one transaction that bumps
``registry_meta.revision`` and stamps it on the rows it changed; writers serialise on that row
(PostgreSQL) or on the file's write lock (SQLite), so revisions commit in order and a reader that
polls :meth:`DeviceRegistry.revision` and asks :meth:`DeviceRegistry.changes_since` misses nothing.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import re
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError
from sqlalchemy import Connection, Engine, RowMapping, bindparam, create_engine, event, func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from contract.clock import now_ms
from contract.fields import Kind
from contract.fleet import Device, DeviceState, DeviceTags, ExternalIds
from registry import migrate
from registry.errors import DeviceExists, DeviceNotFound, ImportRefused, RegistryError, RegistryUnavailable
from registry.files import EXTERNAL_ID_COLUMNS, claimed_twice, repeated_ids
from registry.schema import devices, registry_meta

log = logging.getLogger(__name__)

MEMORY_URL: Final = "sqlite:///:memory:"
_TRANSITIONS: Final[dict[DeviceState, frozenset[DeviceState]]] = {
    "active": frozenset({"active", "suspended", "decommissioned"}),
    "suspended": frozenset({"active", "suspended", "decommissioned"}),
    "decommissioned": frozenset({"decommissioned"}),
}


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A device as the registry holds it: the device, when it was created and changed, and how."""

    device: Device
    created_ms: int
    updated_ms: int
    revision: int


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import did: ids added, changed, and already equal."""

    added: int
    changed: int
    unchanged: int
    revision: int


_PASSWORD = re.compile(r"^([\w+]+://[^:/]*):[^@]*@")  # where SQLAlchemy's URL parser finds the password


def redact(url: str) -> str:
    """``url`` as written, its password hidden (for logs and messages)."""
    return _PASSWORD.sub(r"\1:***@", url, count=1)


def _engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise RegistryUnavailable(
            f"registry URL {url!r} is not a database URL: use sqlite:///path/registry.db or "
            "postgresql://user:password@host:5432/db"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        engine = create_engine(parsed.set(drivername="postgresql+psycopg"), pool_pre_ping=True)
    elif backend == "sqlite":
        memory = parsed.database in (None, "", ":memory:")
        if not memory and parsed.database is not None:
            from pathlib import Path

            try:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RegistryUnavailable(
                    f"cannot open the registry {redact(url)}: cannot create its folder ({exc.strerror}: {exc.filename})"
                ) from None
        engine = create_engine(
            parsed.set(drivername="sqlite+pysqlite"),
            connect_args={"check_same_thread": False, "timeout": 30},
            **({"poolclass": StaticPool} if memory else {}),
        )
        _sqlite_transactions(engine, wal=not memory)
    else:
        raise RegistryUnavailable(f"registry URL {redact(url)!r}: only sqlite:/// and postgresql:// are supported")
    return engine


def _sqlite_transactions(engine: Engine, *, wal: bool) -> None:
    """SQLite: the driver's own transaction handling off; writes take the lock at BEGIN."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        if wal:
            _journal_mode_wal(dbapi_conn)
        dbapi_conn.execute("PRAGMA synchronous = FULL")

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("registry_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _journal_mode_wal(dbapi_conn: Any, timeout_s: float = 30.0) -> None:
    """Put the file in WAL mode (it stays so); retried, as SQLite does not wait for the lock this takes.

    Two processes opening a new file at once both switch it: the loser is told "database is locked"
    at once, whatever the busy timeout.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            dbapi_conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


_NO_IDS: Final = ExternalIds()
_KINDS: Final = {k.value: k for k in Kind}
_TAGS_PER_FETCH: Final = 2_000
_ALL_FIELDS: Final = set(Device.model_fields)
"""One fields-set shared by every device read back (each would otherwise carry a set of its own)."""
_SHARED_TEXT: Final = ("province", "district", "site", "crop", "coast", "model", "state")


def _row_to_device(row: RowMapping) -> Device:
    """A row as a device, without validating it again: every row was validated when written (this
    is 10 times faster at 100,000 devices); repeated tag strings are shared, not copied per row."""
    ids = {k: row[k] for k in EXTERNAL_ID_COLUMNS if row[k] is not None}
    fields: dict[str, Any] = {k: sys.intern(row[k]) for k in _SHARED_TEXT}
    fields.update(
        id=row["id"],
        kind=Kind(row["kind"]),
        lat=row["lat"],
        lon=row["lon"],
        km_from_sea=row["km_from_sea"],
        faults=tuple(sys.intern(f) for f in row["faults"].split(",") if f),
        external_ids=ExternalIds.model_construct(**ids) if ids else _NO_IDS,
    )
    return Device.model_construct(_ALL_FIELDS, **fields)


def _record(row: RowMapping) -> DeviceRecord:
    return DeviceRecord(_row_to_device(row), row["created_ms"], row["updated_ms"], row["revision"])


def _device_columns(d: Device) -> dict[str, Any]:
    return {
        "id": d.id,
        "kind": d.kind.value,
        "province": d.province,
        "district": d.district,
        "site": d.site,
        "crop": d.crop,
        "lat": d.lat,
        "lon": d.lon,
        "km_from_sea": d.km_from_sea,
        "coast": d.coast,
        "faults": ",".join(d.faults),
        "model": d.model,
        **{k: getattr(d.external_ids, k) for k in EXTERNAL_ID_COLUMNS},
        "state": d.state,
    }


def _transition_problem(old: Device, new: Device) -> str | None:
    if new.state not in _TRANSITIONS[old.state]:
        return f"device {old.id!r} is decommissioned: it stays so (register the hardware under a new id)"
    return None


class DeviceRegistry:
    """The registry database, thread-safe: SQLAlchemy's pool gives each call its own connection
    (an in-memory SQLite database has one connection, which a lock lends to one call at a time)."""

    def __init__(self, url: str) -> None:
        """Open (and migrate) the database at ``url``; :class:`RegistryUnavailable` if it cannot."""
        self.url = redact(url)
        self._engine = _engine(url)
        shared = isinstance(self._engine.pool, StaticPool)
        self._one_at_a_time: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if shared else contextlib.nullcontext()
        )
        try:
            with self._write() as conn:
                if shared:  # in memory: always new, never migrated
                    migrate.create_head(conn)
                else:
                    migrate.upgrade(conn)
        except RegistryError:
            self._engine.dispose()
            raise
        except SQLAlchemyError as exc:
            self._engine.dispose()
            raise RegistryUnavailable(f"cannot open the registry {self.url}: {_reason(exc)}") from None

    # -- plumbing ----------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        try:
            with (
                self._one_at_a_time,
                self._engine.connect().execution_options(registry_write=True) as conn,
                conn.begin(),
            ):
                yield conn
        except IntegrityError as exc:
            raise DeviceExists(_integrity_reason(exc)) from None
        except OperationalError as exc:
            raise RegistryUnavailable(f"registry {self.url}: {_reason(exc)}") from None

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self._one_at_a_time, self._engine.connect() as conn, conn.begin():
                yield conn
        except OperationalError as exc:
            raise RegistryUnavailable(f"registry {self.url}: {_reason(exc)}") from None

    @staticmethod
    def _lock(conn: Connection) -> None:
        """Take the writers' lock before reading what the write depends on.

        SQLite's ``BEGIN IMMEDIATE`` holds it already; on PostgreSQL this locks the revision row, so
        a concurrent writer waits here and then reads the rows this one committed (no lost update).
        """
        if conn.dialect.name == "postgresql":
            conn.execute(select(registry_meta.c.revision).where(registry_meta.c.id == 1).with_for_update())

    @staticmethod
    def _bump(conn: Connection) -> int:
        conn.execute(update(registry_meta).where(registry_meta.c.id == 1).values(revision=registry_meta.c.revision + 1))
        return int(conn.execute(select(registry_meta.c.revision).where(registry_meta.c.id == 1)).scalar_one())

    def close(self) -> None:
        self._engine.dispose()

    # -- reads -------------------------------------------------------------------------------

    def revision(self) -> int:
        """The revision of the newest committed change (0: nothing written yet)."""
        with self._read() as conn:
            return int(conn.execute(select(registry_meta.c.revision).where(registry_meta.c.id == 1)).scalar_one())

    def find(self, device_id: str) -> DeviceRecord | None:
        with self._read() as conn:
            row = conn.execute(select(devices).where(devices.c.id == device_id)).mappings().first()
        return None if row is None else _record(row)

    def get(self, device_id: str) -> DeviceRecord:
        found = self.find(device_id)
        if found is None:
            raise DeviceNotFound(f"no device {device_id!r} in the registry {self.url}")
        return found

    def list(
        self,
        *,
        province: str | None = None,
        district: str | None = None,
        kind: str | None = None,
        site: str | None = None,
        states: Collection[DeviceState] | None = None,
        provinces: Collection[str] | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[DeviceRecord]:
        """Devices by id, filtered; ``after`` and ``limit`` page through them (keyset pagination)."""
        q = select(devices).order_by(devices.c.id)
        for column, value in (
            (devices.c.province, province),
            (devices.c.district, district),
            (devices.c.kind, kind),
            (devices.c.site, site),
        ):
            if value is not None:
                q = q.where(column == value)
        if states is not None:
            q = q.where(devices.c.state.in_(list(states)))
        if provinces is not None:
            q = q.where(devices.c.province.in_(list(provinces)))
        if after is not None:
            q = q.where(devices.c.id > after)
        if limit is not None:
            q = q.limit(limit)
        with self._read() as conn:
            return [_record(r) for r in conn.execute(q).mappings()]

    def count(self) -> int:
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(devices)).scalar_one())

    def changes_since(self, revision: int) -> tuple[int, builtins.list[DeviceRecord]]:
        """(the current revision, every device changed after ``revision``), in revision order."""
        with self._read() as conn:
            now = int(conn.execute(select(registry_meta.c.revision).where(registry_meta.c.id == 1)).scalar_one())
            if now == revision:
                return now, []
            q = (
                select(devices)
                .where(devices.c.revision > revision, devices.c.revision <= now)
                .order_by(devices.c.revision, devices.c.id)
            )
            return now, [_record(r) for r in conn.execute(q).mappings()]

    def tags_since(self, revision: int) -> tuple[int, builtins.list[DeviceTags]]:
        """Like :meth:`changes_since`, but only what ingest needs of each device (10 times lighter)."""
        tags: builtins.list[DeviceTags] = []
        return self.each_tags_since(revision, tags.extend), tags

    def each_tags_since(self, revision: int, consume: Callable[[builtins.list[DeviceTags]], object]) -> int:
        """:meth:`tags_since` handed to ``consume`` a few thousand at a time; returns the revision.

        A caller that keeps its own form of each device (ingest) never holds 100,000 tuples at once.
        """
        cols = [devices.c[name] for name in DeviceTags._fields]
        with self._read() as conn:
            now = int(conn.execute(select(registry_meta.c.revision).where(registry_meta.c.id == 1)).scalar_one())
            if now == revision:
                return now
            q = (
                select(*cols)
                .where(devices.c.revision > revision, devices.c.revision <= now)
                .order_by(devices.c.revision, devices.c.id)
            )
            n = sys.intern
            # In partitions: 100,000 rows at once would be ~50 MB of row objects that the heap keeps.
            for part in conn.execution_options(yield_per=_TAGS_PER_FETCH).execute(q).partitions():
                consume([
                    DeviceTags(i, _KINDS[k], n(p), n(d), n(si), n(c), n(st), n(m), e, t, s, b, ml, la, lo)
                    for i, k, p, d, si, c, st, m, e, t, s, b, ml, la, lo in part
                ])  # fmt: skip
        return now

    # -- writes ------------------------------------------------------------------------------

    def add(self, device: Device) -> DeviceRecord:
        """Register a new device; :class:`DeviceExists` if its id or an external id is taken."""
        at = now_ms()
        with self._write() as conn:
            self._lock(conn)
            if conn.execute(select(devices.c.id).where(devices.c.id == device.id)).first() is not None:
                raise DeviceExists(f"device {device.id!r} is registered already (change it with update)")
            rev = self._bump(conn)
            conn.execute(devices.insert().values(**_device_columns(device), created_ms=at, updated_ms=at, revision=rev))
        return DeviceRecord(device, at, at, rev)

    def update(self, device_id: str, changes: Mapping[str, Any]) -> DeviceRecord:
        """Change some fields of a device (validated as a whole); :class:`DeviceNotFound` if absent."""
        with self._write() as conn:
            self._lock(conn)
            row = conn.execute(select(devices).where(devices.c.id == device_id)).mappings().first()
            if row is None:
                raise DeviceNotFound(f"no device {device_id!r} in the registry {self.url}")
            old = _record(row)
            data = {**old.device.model_dump(), **changes, "id": device_id}
            try:
                new = Device.model_validate(data)
            except ValidationError as exc:
                raise RegistryError(f"device {device_id!r}: {_validation_text(exc)}") from None
            problem = _transition_problem(old.device, new)
            if problem:
                raise RegistryError(problem)
            if new == old.device:
                return old
            rev, at = self._bump(conn), now_ms()
            conn.execute(
                update(devices)
                .where(devices.c.id == device_id)
                .values(**_device_columns(new), updated_ms=at, revision=rev)
            )
        return DeviceRecord(new, old.created_ms, at, rev)

    def set_state(self, device_id: str, state: DeviceState) -> DeviceRecord:
        """Activate, suspend or decommission a device (decommissioned is final)."""
        return self.update(device_id, {"state": state})

    def import_devices(self, incoming: Sequence[Device], *, source: str = "import") -> ImportResult:
        """Add or change every device in ``incoming`` in one transaction: all of them, or none.

        Idempotent: importing the same devices again changes nothing (and bumps no revision).
        :class:`ImportRefused` lists every row that cannot be taken, and nothing is written.
        """
        problems = repeated_ids(incoming)
        at = now_ms()
        with self._write() as conn:
            self._lock(conn)
            existing = {r["id"]: r for r in conn.execute(select(devices)).mappings()}
            owners = {
                (col, r[col]): r["id"] for r in existing.values() for col in EXTERNAL_ID_COLUMNS if r[col] is not None
            }
            new_rows: builtins.list[dict[str, Any]] = []
            changed_rows: builtins.list[dict[str, Any]] = []
            unchanged = 0
            claimed: dict[tuple[str, str], tuple[str, int]] = {}  # (column, value) → (device id, row)
            released = _released(existing, incoming)
            for i, d in enumerate(incoming, start=1):
                old_row = existing.get(d.id)
                old = _row_to_device(old_row) if old_row is not None else None
                for col in EXTERNAL_ID_COLUMNS:
                    value = getattr(d.external_ids, col)
                    if value is None:
                        continue
                    key = (col, value)
                    other = claimed.get(key)
                    owner = owners.get(key)
                    if other is not None and other[0] != d.id:
                        problems.append(claimed_twice(i, col, value, other))
                    elif owner is not None and owner != d.id and key not in released:
                        problems.append(f"row {i}: {col} {value!r} belongs to device {owner!r}")
                    else:
                        claimed.setdefault(key, (d.id, i))
                if old is None:
                    new_rows.append(_device_columns(d))
                elif old == d:
                    unchanged += 1
                else:
                    problem = _transition_problem(old, d)
                    if problem:
                        problems.append(f"row {i}: {problem}")
                    changed_rows.append(_device_columns(d))
            if problems:
                raise ImportRefused(source, problems)
            if not new_rows and not changed_rows:
                rev = int(conn.execute(select(registry_meta.c.revision).where(registry_meta.c.id == 1)).scalar_one())
                return ImportResult(0, 0, unchanged, rev)
            rev = self._bump(conn)
            if changed_rows:  # external ids move between devices: clear the old owners' first
                ids = [r["id"] for r in changed_rows]
                for start in range(0, len(ids), 500):
                    conn.execute(
                        update(devices)
                        .where(devices.c.id.in_(ids[start : start + 500]))
                        .values(dict.fromkeys(EXTERNAL_ID_COLUMNS))
                    )
                stmt = update(devices).where(devices.c.id == bindparam("_id"))
                conn.execute(stmt, [{**r, "_id": r["id"], "updated_ms": at, "revision": rev} for r in changed_rows])
            if new_rows:
                stamp = {"created_ms": at, "updated_ms": at, "revision": rev}
                conn.execute(devices.insert(), [{**r, **stamp} for r in new_rows])
        return ImportResult(len(new_rows), len(changed_rows), unchanged, rev)

    def all_devices(self) -> builtins.list[Device]:
        """Every device, decommissioned ones included, by id."""
        return [r.device for r in self.list()]


def _released(existing: Mapping[str, RowMapping], incoming: Iterable[Device]) -> set[tuple[str, str]]:
    """External ids that the import takes away from their current owner (moved to another device)."""
    moved: set[tuple[str, str]] = set()
    for d in incoming:
        row = existing.get(d.id)
        if row is None:
            continue
        for col in EXTERNAL_ID_COLUMNS:
            if row[col] is not None and getattr(d.external_ids, col) != row[col]:
                moved.add((col, row[col]))
    return moved


def _validation_text(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'device'}: {e['msg']}" for e in exc.errors()[:10])


def _reason(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig or exc).strip().splitlines()[0]


def _integrity_reason(exc: IntegrityError) -> str:
    text_ = _reason(exc)
    for col in EXTERNAL_ID_COLUMNS:
        if col in text_:
            return f"that {col} belongs to another device ({text_})"
    return f"conflicts with a registered device ({text_})"


def open_registry(url: str | None) -> DeviceRegistry:
    """The registry at ``url``, or an empty in-memory one."""
    return DeviceRegistry(url or MEMORY_URL)
