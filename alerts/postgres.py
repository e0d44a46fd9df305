"""One PostgreSQL database shared by threads, processes and machines: a connection per thread, writers in turn.

:class:`PostgresDatabase` is the twin of :class:`alerts.sqlite.SQLiteFile` under
:class:`alerts.store.AlertStore` and :class:`api.keys.KeyStore` (psycopg 3): connections in
autocommit, one per thread, opened lazily and again after a lost connection, closed once its thread
has ended (so a thread pool's turnover does not pile up server connections); rows read by column
name or position (:class:`NamedRow`, like ``sqlite3.Row``); the stores' ``?`` placeholders sent as
psycopg's ``%s`` (so their SQL holds no literal ``%``); every ``psycopg`` error raised as
``error_type``, the URL's password hidden.

Why every write takes an advisory lock first. The stores check, then write: is this firing a
replay of an alert already stored? is the head of this outbox leased by another sender? On SQLite,
``BEGIN IMMEDIATE`` takes the file's single write lock, so writers run one at a time and each
sees what the previous one committed. PostgreSQL's ``READ COMMITTED`` would let two transactions
(two ingest machines, two webhook senders) make the same check at once and both write: one alert
recorded twice, one outbox row leased to two senders. So :meth:`PostgresDatabase.write` begins
with ``pg_advisory_xact_lock(lock_key)``, one constant key per store, held until ``COMMIT`` or
``ROLLBACK``: writers to the database run one at a time across every process and machine, as on
SQLite, and each statement after the lock sees everything committed before it (``READ
COMMITTED`` takes a snapshot per statement — do not raise the isolation level, a snapshot taken
before the lock was granted would miss the previous writer's rows). Waiting for the lock is
bounded by ``lock_timeout`` (the store's busy timeout). Reads run in autocommit and take no
advisory lock: they never wait for a writer, nor hold one up.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final

import psycopg
from psycopg.rows import RowMaker

from alerts.database import Connection, Dialect, PostgresUrl, hide_password

CONNECT_TIMEOUT_S: Final = 10


class NamedRow:
    """A result row, read by column name (``row["seq"]``) or position (``row[0]``), like ``sqlite3.Row``."""

    __slots__ = ("_names", "_values")

    def __init__(self, names: Mapping[str, int], values: Sequence[Any]) -> None:
        self._names = names
        self._values = tuple(values)

    def __getitem__(self, key: int | str) -> Any:
        return self._values[self._names[key] if isinstance(key, str) else key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NamedRow) and self._values == other._values

    def __hash__(self) -> int:
        return hash(self._values)

    def __repr__(self) -> str:
        return f"NamedRow({dict(zip(self._names, self._values, strict=True))!r})"

    def keys(self) -> list[str]:
        return list(self._names)


def rows(cursor: psycopg.Cursor[Any]) -> RowMaker[NamedRow]:
    """psycopg row factory: :class:`NamedRow`."""
    names = {column.name: i for i, column in enumerate(cursor.description or ())}

    def make(values: Sequence[Any]) -> NamedRow:
        return NamedRow(names, values)

    return make


class PostgresConnection:
    """A psycopg connection that runs the stores' SQL: ``?`` placeholders, :class:`NamedRow` rows."""

    def __init__(self, conn: psycopg.Connection[NamedRow]) -> None:
        self._conn = conn

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[NamedRow]:
        if "%" in sql:
            raise ValueError(f"SQL for the alert store may not hold a literal %: {sql}")
        return self._conn.execute(sql.replace("?", "%s"), parameters)


class PostgresDatabase:
    """Per-thread connections to one PostgreSQL database and the transactions on them (thread-safe)."""

    dialect: Final[Dialect] = "postgresql"

    def __init__(
        self,
        url: PostgresUrl,
        error_type: type[Exception],
        *,
        lock_key: int,
        name: str = "the database",
        busy_timeout_s: float = 30.0,
    ) -> None:
        """Nothing connects yet: connections are opened lazily, one per thread.

        Args:
            url: the database.
            error_type: what every failure is raised as (called with one message).
            lock_key: the advisory lock every write takes first (one constant per store).
            name: how the "is closed" error names it (``"the alert store"``).
            busy_timeout_s: how long a write waits for another writer (``lock_timeout``).
        """
        self._url = url
        self._error = error_type
        self._lock_key = lock_key
        self._name = name
        self._lock_timeout_ms = max(1, round(busy_timeout_s * 1000))
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[tuple[threading.Thread, psycopg.Connection[NamedRow]]] = []
        self._closed = False

    @property
    def location(self) -> PostgresUrl:
        return self._url

    def _fail(self, exc: psycopg.Error, doing: str = "") -> Exception:
        return self._error(f"{doing}{self._url}: {hide_password(str(exc), self._url) or type(exc).__name__}")

    def _connect(self) -> psycopg.Connection[NamedRow]:
        conn = psycopg.connect(self._url.conninfo, autocommit=True, row_factory=rows, connect_timeout=CONNECT_TIMEOUT_S)
        conn.execute(f"SET lock_timeout = {self._lock_timeout_ms}")
        return conn

    def connection(self) -> psycopg.Connection[NamedRow]:
        """This thread's connection (opened on first use, and again once it was lost)."""
        if self._closed:
            raise self._error(f"{self._name} is closed")
        conn: psycopg.Connection[NamedRow] | None = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed:
            return conn
        try:
            conn = self._connect()
        except psycopg.Error as exc:
            raise self._fail(exc, "cannot open ") from None
        self._local.conn = conn
        with self._lock:  # a server connection per live thread: close those of threads gone (a pool's idle ones)
            for thread, old in self._connections:
                if not thread.is_alive():
                    old.close()
            self._connections = [(t, c) for t, c in self._connections if not c.closed]
            self._connections.append((threading.current_thread(), conn))
        return conn

    @contextmanager
    def write(self) -> Iterator[PostgresConnection]:
        """One transaction that first takes the store's advisory lock: committed if the block succeeds."""
        conn = self.connection()
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
                yield PostgresConnection(conn)
        except psycopg.Error as exc:
            raise self._fail(exc) from None

    @contextmanager
    def read(self) -> Iterator[PostgresConnection]:
        """This thread's connection in autocommit: each statement on its own, no lock held."""
        conn = self.connection()
        try:
            yield PostgresConnection(conn)
        except psycopg.Error as exc:
            raise self._fail(exc) from None

    @staticmethod
    def schema_version(conn: Connection) -> int:
        """The version in table ``alert_store_schema`` (0 for a new database); call it inside ``write()``."""
        conn.execute(
            "CREATE TABLE IF NOT EXISTS alert_store_schema"
            " (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"
        )
        row = conn.execute("SELECT version FROM alert_store_schema WHERE id = 1").fetchone()
        return 0 if row is None else int(row[0])

    @staticmethod
    def set_schema_version(conn: Connection, version: int) -> None:
        conn.execute(
            "INSERT INTO alert_store_schema (id, version) VALUES (1, ?)"
            " ON CONFLICT (id) DO UPDATE SET version = excluded.version",
            (version,),
        )

    def close(self) -> None:
        """Close every thread's connection; any later use raises ``error_type``."""
        with self._lock:
            self._closed = True
            for _, conn in self._connections:
                conn.close()
            self._connections.clear()


def ping(url: PostgresUrl, timeout_s: float, error_type: type[Exception]) -> None:
    """Read one row of ``alerts`` within about ``timeout_s`` (libpq waits at least 2 s to connect)."""
    try:
        with psycopg.connect(url.conninfo, autocommit=True, connect_timeout=max(2, math.ceil(timeout_s))) as conn:
            conn.execute(f"SET statement_timeout = {max(1, round(timeout_s * 1000))}")
            conn.execute("SELECT 1 FROM alerts LIMIT 1").fetchall()
    except psycopg.Error as exc:
        raise error_type(f"{url}: {hide_password(str(exc), url) or type(exc).__name__}") from None
