"""Bring a registry database to the schema this code expects (Alembic, run in-process).

Opening a registry migrates it up to the newest revision inside one transaction that holds the
database's write lock (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL advisory lock), so two processes
starting at once do not both migrate.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
_ADVISORY_LOCK = 7_221_100_412  # any constant shared by every ingest and API process


def _config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The newest schema revision this code knows."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    found = ScriptDirectory.from_config(cfg).get_current_head()
    assert found is not None
    return found


def current(connection: Connection) -> str | None:
    """The schema revision the database is at (None: empty)."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection, to: str = "head") -> None:
    """Migrate up, in the connection's (already begun, locked) transaction.

    Alembic's own INFO lines (its dialect, each step) are kept off a command's stderr; a migration
    that runs is logged once here.
    """
    logging.getLogger("alembic").setLevel(logging.WARNING)
    before = current(connection)
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK})
    command.upgrade(_config(connection), to)
    after = current(connection)
    if after != before:
        log.debug("registry schema migrated from %s to %s", before or "empty", after)


def downgrade(connection: Connection, to: str = "base") -> None:
    """Migrate down (tests, and an operator undoing an upgrade)."""
    command.downgrade(_config(connection), to)
