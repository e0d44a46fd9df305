"""One SQLite file shared by threads: a connection per thread, one transaction per change.

:class:`SQLiteFile` is the plumbing under :class:`alerts.store.AlertStore` and
:class:`api.keys.KeyStore`: WAL mode (readers never block the writer), ``synchronous = FULL``,
foreign keys on, a busy timeout (30 s by default), rows as :class:`sqlite3.Row`. :meth:`SQLiteFile.write`
wraps its block in ``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on any error, a failed
``COMMIT`` included); :meth:`SQLiteFile.read` uses the thread's connection as it is. Every
``sqlite3`` error, and a failure to create the file's folder, is raised as ``error_type``. Its
PostgreSQL twin is :class:`alerts.postgres.PostgresDatabase` (both: :class:`alerts.database.Database`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from alerts.database import Connection, Dialect


class SQLiteFile:
    """Per-thread connections to one SQLite file and the transactions on them (thread-safe)."""

    dialect: Final[Dialect] = "sqlite"

    def __init__(
        self, path: Path | str, error_type: type[Exception], *, name: str = "the database", busy_timeout_s: float = 30.0
    ) -> None:
        """Create the file's folder; connections are opened lazily, one per thread.

        Args:
            path: the SQLite file.
            error_type: what every failure is raised as (called with one message).
            name: how the "is closed" error names this file (``"the alert store"``).
            busy_timeout_s: how long a statement waits for another connection's lock.
        """
        self._busy_timeout_s = busy_timeout_s
        self._path = Path(path)
        self._error = error_type
        self._name = name
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._closed = False
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise error_type(f"cannot create {self._path.parent}: {exc}") from None

    @property
    def path(self) -> Path:
        return self._path

    @property
    def location(self) -> Path:
        return self._path

    @staticmethod
    def schema_version(conn: Connection) -> int:
        """The file's ``PRAGMA user_version`` (0 for a new file)."""
        return int(conn.execute("PRAGMA user_version").fetchone()[0])

    @staticmethod
    def set_schema_version(conn: Connection, version: int) -> None:
        conn.execute(f"PRAGMA user_version = {int(version)}")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA busy_timeout = {round(self._busy_timeout_s * 1000)}")
        return conn

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        if self._closed:
            raise self._error(f"{self._name} is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = self._connect()
            except sqlite3.Error as exc:
                raise self._error(f"cannot open {self._path}: {exc}") from None
            self._local.conn = conn
            with self._lock:
                ended = [c for t, c in self._connections if not t.is_alive()]  # threads come and go
                self._connections = [(t, c) for t, c in self._connections if t.is_alive()]
                self._connections.append((threading.current_thread(), conn))
            for c in ended:
                c.close()
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed if the block succeeds, else rolled back."""
        conn = self.connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._error(f"{self._path}: {exc}") from None
        try:
            yield conn
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise self._error(f"{self._path}: {exc}") from None
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise self._error(f"{self._path}: {exc}") from None

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, outside any explicit transaction."""
        conn = self.connection()
        try:
            yield conn
        except sqlite3.Error as exc:
            raise self._error(f"{self._path}: {exc}") from None

    def close(self) -> None:
        """Close every thread's connection; any later use raises ``error_type``."""
        with self._lock:
            self._closed = True
            for _, conn in self._connections:
                conn.close()
            self._connections.clear()
