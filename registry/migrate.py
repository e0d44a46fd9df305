"""Bring a registry database to the schema this code expects (Alembic, run in-process).

Opening a registry migrates it up to the newest revision inside one transaction that holds the
database's write lock (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL advisory lock), so two processes
starting at once do not both migrate.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0002"
"""The newest revision in ``migrations/`` (a test checks it against Alembic's own answer): a
database already there is opened without importing Alembic (a tenth of a second at every start)."""
_ADVISORY_LOCK = 7_221_100_412  # any constant shared by every ingest and API process


def _config(connection: Connection) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The newest schema revision in ``migrations/``, as Alembic finds it."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    found = ScriptDirectory.from_config(cfg).get_current_head()
    assert found is not None
    return found


def current(connection: Connection) -> str | None:
    """The schema revision the database is at (None: empty)."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def create_head(connection: Connection) -> None:
    """Create the newest schema in an empty database from :mod:`registry.schema`, stamped :data:`HEAD`,
    without Alembic: what an in-memory registry (a fleet file) does at every start. Importing Alembic
    (with Mako, Pygments and every PostgreSQL dialect) costs 10 MiB that a process keeps; a test
    checks that this schema is the one the migrations make."""
    from registry.schema import metadata, registry_meta

    metadata.create_all(connection)
    connection.execute(registry_meta.insert().values(id=1, revision=0))
    connection.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
    connection.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": HEAD})


def upgrade(connection: Connection, to: str = "head") -> None:
    """Migrate up, in the connection's (already begun, locked) transaction.

    Alembic's own INFO lines (its dialect, each step) are kept off a command's stderr; a migration
    that runs is logged once here.
    """
    if to == "head" and current(connection) == HEAD:
        return
    logging.getLogger("alembic").setLevel(logging.WARNING)  # before the import: it logs its plugins
    from alembic import command

    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK})
    before = current(connection)
    command.upgrade(_config(connection), to)
    after = current(connection)
    if after != before:
        log.debug("registry schema migrated from %s to %s", before or "empty", after)


def downgrade(connection: Connection, to: str = "base") -> None:
    """Migrate down (tests, and an operator undoing an upgrade)."""
    from alembic import command

    command.downgrade(_config(connection), to)
