"""Looking at an alert store's database behind the store's back: a SQLite file or PostgreSQL alike."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg


def on_postgres(location: Path | str) -> bool:
    return not isinstance(location, Path)


@contextmanager
def raw(location: Path | str) -> Iterator[Any]:
    """A plain DB-API connection in autocommit: ``sqlite3`` (``?``) or ``psycopg`` (``%s``)."""
    conn: Any = (
        psycopg.connect(location, autocommit=True)
        if on_postgres(location)
        else sqlite3.connect(location, isolation_level=None)
    )
    try:
        yield conn
    finally:
        conn.close()


def tables(location: Path | str) -> set[str]:
    sql = (
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        if on_postgres(location)
        else "SELECT name FROM sqlite_master WHERE type = 'table'"
    )
    with raw(location) as conn:
        return {r[0] for r in conn.execute(sql).fetchall()}


def dump(location: Path | str, table: str) -> str:
    """Every row of ``table`` as text (what someone with a copy of the database would see)."""
    with raw(location) as conn:
        return "\n".join(repr(tuple(r)) for r in conn.execute(f"SELECT * FROM {table}").fetchall())
