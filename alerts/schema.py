"""The alert store's tables, their migrations, and how a dataclass is stored as a row.

Each row shape is declared once, as a :class:`Shape` of its dataclass: the fields are the table's
columns of the same names (a nested shape spreads a field over several, as a subscription's filters
do), with a :class:`Column` converter where the stored value differs from the field's (an enum's
value, JSON, a bool as 0/1). INSERTs, UPDATE assignments and row → dataclass conversions are all
derived from it. ``None`` is stored and read as NULL, never converted.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from typing import Any, Generic, TypeVar

from alerts.database import Connection, Cursor, Row
from rules.model import Severity, State

T = TypeVar("T")

SCHEMA_VERSION = 5

# One schema for both databases (alerts.database.ddl): {serial} is an auto-numbered key, {rowid} gives
# PostgreSQL tables the insertion order SQLite's rowid is. SQLite files of schema 1 made before
# PostgreSQL was supported say INTEGER/REAL where this says BIGINT/DOUBLE PRECISION: the same to SQLite.
SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    rule_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    province TEXT NOT NULL,
    district TEXT NOT NULL,
    site TEXT NOT NULL,
    crop TEXT NOT NULL,
    place_vi TEXT NOT NULL,
    place_en TEXT NOT NULL,
    severity INTEGER NOT NULL CHECK (severity BETWEEN 1 AND 3),
    state TEXT NOT NULL CHECK (state IN ('firing', 'resolved')),
    source TEXT NOT NULL,
    fired_at_ms BIGINT NOT NULL,
    value DOUBLE PRECISION,
    message_vi TEXT NOT NULL,
    message_en TEXT NOT NULL,
    resolved_at_ms BIGINT,
    resolved_value DOUBLE PRECISION,
    resolved_message_vi TEXT,
    resolved_message_en TEXT,
    acknowledged_by TEXT,
    acknowledged_at_ms BIGINT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    lat DOUBLE PRECISION,
    lon DOUBLE PRECISION,
    family TEXT NOT NULL DEFAULT '',
    rank INTEGER NOT NULL DEFAULT 0,
    title_vi TEXT NOT NULL DEFAULT '',
    title_en TEXT NOT NULL DEFAULT '',
    change_seq BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_active ON alerts (rule_id, device_id) WHERE state = 'firing';
CREATE UNIQUE INDEX IF NOT EXISTS alerts_fired_once ON alerts (rule_id, device_id, fired_at_ms);
CREATE INDEX IF NOT EXISTS alerts_by_time ON alerts (fired_at_ms);
CREATE INDEX IF NOT EXISTS alerts_active_family ON alerts (device_id, family) WHERE state = 'firing';
CREATE INDEX IF NOT EXISTS alerts_by_change ON alerts (change_seq);

CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    alert_id TEXT NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    type TEXT NOT NULL CHECK (type IN ('alert.firing', 'alert.resolved')),
    ts_ms BIGINT NOT NULL,
    value DOUBLE PRECISION,
    severity INTEGER NOT NULL,
    message_vi TEXT NOT NULL,
    message_en TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL{rowid},
    message_sms TEXT NOT NULL DEFAULT '',
    message_short TEXT NOT NULL DEFAULT '',
    params TEXT NOT NULL DEFAULT '{}',
    notice TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS events_by_alert ON events (alert_id);

CREATE TABLE IF NOT EXISTS subscriptions (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    language TEXT NOT NULL CHECK (language IN ('vi', 'en')),
    provinces TEXT NOT NULL DEFAULT '[]',
    districts TEXT NOT NULL DEFAULT '[]',
    devices TEXT NOT NULL DEFAULT '[]',
    kinds TEXT NOT NULL DEFAULT '[]',
    rule_ids TEXT NOT NULL DEFAULT '[]',
    min_severity INTEGER NOT NULL DEFAULT 1,
    enabled INTEGER NOT NULL DEFAULT 1,
    disabled_reason TEXT,
    description TEXT NOT NULL DEFAULT '',
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL{rowid},
    crops TEXT NOT NULL DEFAULT '[]',
    near_lat DOUBLE PRECISION,
    near_lon DOUBLE PRECISION,
    near_radius_km DOUBLE PRECISION,
    template TEXT,
    group_wait_s INTEGER NOT NULL DEFAULT 60,
    group_interval_s INTEGER NOT NULL DEFAULT 1800,
    quiet TEXT,
    max_per_hour INTEGER
);

CREATE TABLE IF NOT EXISTS outbox (
    seq {serial},
    event_id TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    subscription_id TEXT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    event_type TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL,
    queued_at_ms BIGINT NOT NULL,
    next_attempt_at_ms BIGINT NOT NULL,
    last_attempt_at_ms BIGINT,
    last_status INTEGER,
    last_error TEXT,
    delivered_at_ms BIGINT,
    lease_owner TEXT,
    lease_until_ms BIGINT,
    notice TEXT NOT NULL DEFAULT '',
    notices INTEGER NOT NULL DEFAULT 1,
    UNIQUE (event_id, subscription_id)
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (subscription_id, seq) WHERE status = 'pending';

CREATE TABLE IF NOT EXISTS deliveries (
    id {serial},
    seq BIGINT NOT NULL REFERENCES outbox (seq) ON DELETE CASCADE,
    event_id TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at_ms BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    status INTEGER,
    error TEXT,
    verdict TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_by_seq ON deliveries (seq);
CREATE INDEX IF NOT EXISTS deliveries_by_subscription ON deliveries (subscription_id, id);

CREATE TABLE IF NOT EXISTS dead_letters (
    id {serial},
    seq BIGINT NOT NULL REFERENCES outbox (seq) ON DELETE CASCADE,
    event_id TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    dead_at_ms BIGINT NOT NULL,
    replayed_at_ms BIGINT
);
CREATE INDEX IF NOT EXISTS dead_letters_open ON dead_letters (subscription_id, id) WHERE replayed_at_ms IS NULL;

CREATE TABLE IF NOT EXISTS notices (
    id {serial},
    subscription_id TEXT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    event_id TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    alert_id TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    group_key TEXT NOT NULL,
    notice TEXT NOT NULL,
    severity INTEGER NOT NULL,
    rank INTEGER NOT NULL,
    ts_ms BIGINT NOT NULL,
    value DOUBLE PRECISION,
    place_vi TEXT NOT NULL,
    place_en TEXT NOT NULL,
    title_vi TEXT NOT NULL,
    title_en TEXT NOT NULL,
    message_vi TEXT NOT NULL,
    message_en TEXT NOT NULL,
    message_sms TEXT NOT NULL,
    message_short TEXT NOT NULL,
    params TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    held TEXT,
    message_seq BIGINT,
    UNIQUE (event_id, subscription_id)
);
CREATE INDEX IF NOT EXISTS notices_waiting ON notices (subscription_id, id) WHERE message_seq IS NULL;
CREATE INDEX IF NOT EXISTS notices_by_group ON notices (subscription_id, group_key, device_id);

CREATE TABLE IF NOT EXISTS notice_groups (
    subscription_id TEXT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    group_key TEXT NOT NULL,
    last_sent_at_ms BIGINT NOT NULL,
    live INTEGER NOT NULL,
    PRIMARY KEY (subscription_id, group_key)
);
"""

MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: (  # alerts carry their device's coordinates; subscriptions by crop and by point and radius
        "ALTER TABLE alerts ADD COLUMN lat DOUBLE PRECISION",
        "ALTER TABLE alerts ADD COLUMN lon DOUBLE PRECISION",
        "ALTER TABLE subscriptions ADD COLUMN crops TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE subscriptions ADD COLUMN near_lat DOUBLE PRECISION",
        "ALTER TABLE subscriptions ADD COLUMN near_lon DOUBLE PRECISION",
        "ALTER TABLE subscriptions ADD COLUMN near_radius_km DOUBLE PRECISION",
    ),
    3: (  # every event in one SMS segment too (rules.sms), and as a template's parameters
        "ALTER TABLE events ADD COLUMN message_sms TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE events ADD COLUMN message_short TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE events ADD COLUMN params TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE subscriptions ADD COLUMN template TEXT",
    ),
    4: (  # families (one message per level change), grouping, quiet hours and rate limits (alerts.notify)
        "ALTER TABLE alerts ADD COLUMN family TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE alerts ADD COLUMN rank INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE alerts ADD COLUMN title_vi TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE alerts ADD COLUMN title_en TEXT NOT NULL DEFAULT ''",
        "UPDATE alerts SET family = rule_id",
        "ALTER TABLE events ADD COLUMN notice TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE subscriptions ADD COLUMN group_wait_s INTEGER NOT NULL DEFAULT 60",
        "ALTER TABLE subscriptions ADD COLUMN group_interval_s INTEGER NOT NULL DEFAULT 1800",
        "ALTER TABLE subscriptions ADD COLUMN quiet TEXT",
        "ALTER TABLE subscriptions ADD COLUMN max_per_hour INTEGER",
        "ALTER TABLE outbox ADD COLUMN notice TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE outbox ADD COLUMN notices INTEGER NOT NULL DEFAULT 1",
    ),
    5: (  # a change cursor: what opened, resolved or was acknowledged since (the API's live stream)
        "ALTER TABLE alerts ADD COLUMN change_seq BIGINT NOT NULL DEFAULT 0",
    ),
}
"""Version → the statements that take a store of the version before to it. New columns go last in
:data:`SCHEMA` too, so a new store and a migrated one have the same tables."""


def _same(value: Any) -> Any:
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class Column:
    """How a field is kept in its column: ``dump`` on the way in, ``load`` on the way out."""

    dump: Callable[[Any], Any] = _same
    load: Callable[[Any], Any] = _same


def _names_json(values: Iterable[str]) -> str:
    return json.dumps(sorted(values), ensure_ascii=False)


NAMES = Column(_names_json, lambda text: frozenset(json.loads(text)))
"""A set of names, as a sorted JSON list."""
JSON = Column(lambda value: json.dumps(dict(value), ensure_ascii=False), json.loads)
"""A mapping, as a JSON object."""
FLAG = Column(int, bool)
"""A bool, as 0 or 1."""


def text_enum(kind: type[StrEnum]) -> Column:
    """A string enum, as its value."""
    return Column(lambda value: kind(value).value, kind)


SEVERITY = Column(int, Severity)
"""A :class:`~rules.model.Severity`, as its level (1–3)."""
STATE = text_enum(State)
"""A :class:`~rules.model.State`: ``firing`` or ``resolved``."""


class Shape(Generic[T]):
    """How a dataclass ``kind`` is stored in ``table`` (or, nested, in some of its parent's columns)."""

    def __init__(
        self,
        kind: type[T],
        table: str = "",
        *,
        columns: Mapping[str, Column | Shape[Any]] | None = None,
        given: Iterable[str] = (),
        prefix: str = "",
        nullable: bool = False,
    ) -> None:
        """Declare a shape.

        Args:
            kind: the dataclass.
            table: its table (none for a shape nested in another).
            columns: the fields whose stored value differs (a :class:`Column`) or that spread over
                several columns (a nested :class:`Shape`); every other field is its column as it is.
            given: fields that are no column: :meth:`load` takes them as arguments.
            prefix: put before each column name (``near_`` for a subscription's circle).
            nullable: a nested shape that is ``None`` when any of its columns is NULL.
        """
        self.kind = kind
        self.table = table
        self.nullable = nullable
        special = dict(columns or {})
        skipped = set(given)
        self.fields: dict[str, Column | Shape[Any]] = {
            f.name: special.get(f.name, Column())
            for f in dataclasses.fields(kind)  # type: ignore[arg-type]
            if f.name not in skipped
        }
        self._columns: dict[str, tuple[str, ...]] = {
            name: codec.columns if isinstance(codec, Shape) else (prefix + name,) for name, codec in self.fields.items()
        }
        self.columns: tuple[str, ...] = tuple(c for names in self._columns.values() for c in names)

    def cells(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Field → value (some of the fields) as column → stored value, in the columns' order."""
        unknown = set(values) - set(self.fields)
        if unknown:
            raise KeyError(f"{self.kind.__name__} has no stored field {sorted(unknown)[0]!r}")
        cells: dict[str, Any] = {}
        for name, codec in self.fields.items():
            if name not in values:
                continue
            value = values[name]
            if isinstance(codec, Shape):
                cells.update(codec.dump(value))
            else:
                cells[self._columns[name][0]] = None if value is None else codec.dump(value)
        return cells

    def values(self, item: T) -> dict[str, Any]:
        """Field → value of every stored field of ``item``."""
        return {name: getattr(item, name) for name in self.fields}

    def dump(self, item: T | None) -> dict[str, Any]:
        """Every column of ``item`` (all NULL for ``None``)."""
        return dict.fromkeys(self.columns) if item is None else self.cells(self.values(item))

    def load(self, row: Row, **given: Any) -> T:
        """The dataclass of a row (``SELECT *`` or any with the columns), with the ``given`` fields."""
        values = dict(given)
        for name, codec in self.fields.items():
            if isinstance(codec, Shape):
                values[name] = codec.load_nested(row)
            else:
                value = row[self._columns[name][0]]
                values[name] = None if value is None else codec.load(value)
        return self.kind(**values)

    def load_nested(self, row: Row) -> T | None:
        """:meth:`load`, or None for a nullable shape with a NULL column."""
        if self.nullable and any(row[column] is None for column in self.columns):
            return None
        return self.load(row)

    def insert(self, conn: Connection, values: Mapping[str, Any], *, or_ignore: bool = False) -> Cursor:
        """INSERT a row of the given fields (the others take their columns' defaults)."""
        cells = self.cells(values)
        sql = f"INSERT INTO {self.table} ({', '.join(cells)}) VALUES ({', '.join('?' * len(cells))})"
        return conn.execute(sql + (" ON CONFLICT DO NOTHING" if or_ignore else ""), tuple(cells.values()))

    def update(self, conn: Connection, values: Mapping[str, Any], where: str, *args: Any) -> Cursor:
        """UPDATE the given fields of the rows ``where`` (SQL with ``?`` for the ``args``) says."""
        cells = self.cells(values)
        assignments = ", ".join(f"{column} = ?" for column in cells)
        return conn.execute(f"UPDATE {self.table} SET {assignments} WHERE {where}", (*cells.values(), *args))

    def count(self, conn: Connection, where: Mapping[str, Any]) -> int:
        """How many rows meet every condition of :func:`where_clause`."""
        clause, args = where_clause(where)
        return int(conn.execute(f"SELECT count(*) FROM {self.table}{clause}", args).fetchone()[0])

    def select(self, conn: Connection, where: Mapping[str, Any], *, order_by: str, limit: int | None) -> list[T]:
        """The rows meeting every condition of :func:`where_clause`, ``limit`` at most."""
        clause, args = where_clause(where)
        sql = f"SELECT * FROM {self.table}{clause} ORDER BY {order_by}" + (" LIMIT ?" if limit is not None else "")
        return [self.load(row) for row in conn.execute(sql, (*args, max(0, limit)) if limit is not None else args)]


def where_clause(conditions: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """`` WHERE …`` (or nothing) of the conditions whose value is not None, and their arguments: the
    value fills a condition's ``?`` (a tuple one ``?`` per item); a condition without ``?`` takes none."""
    taken = {condition: value for condition, value in conditions.items() if value is not None}
    args: list[Any] = []
    for condition, value in taken.items():
        if "?" in condition:
            args.extend(value if isinstance(value, tuple) else (value,))
    return (" WHERE " + " AND ".join(taken) if taken else ""), args
