"""Stores made by older code open with this code: the data stays, the new columns and filters work.

Version 1 is the schema as it shipped (its DDL copied below, from ``git show`` of the release);
the test builds a database of that version, fills it, and opens it with the current store. Tests
taking ``alerts_location`` run on a SQLite file and (marked integration) on a real PostgreSQL.
"""

from __future__ import annotations

import json
from pathlib import Path

from alerts.database import ddl
from alerts.notify import Pacing
from alerts.store import SCHEMA_VERSION, AlertStore
from alerts.subscriptions import Filters, Near
from rules.model import Severity, State
from tests.stores import on_postgres, raw
from tests.unit.test_alerts_store import NOW, PLACED, PUBLIC, T0, URL, fire

SCHEMA_V1 = """
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
    updated_at_ms BIGINT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_active ON alerts (rule_id, device_id) WHERE state = 'firing';
CREATE UNIQUE INDEX IF NOT EXISTS alerts_fired_once ON alerts (rule_id, device_id, fired_at_ms);
CREATE INDEX IF NOT EXISTS alerts_by_time ON alerts (fired_at_ms);

CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    alert_id TEXT NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    type TEXT NOT NULL CHECK (type IN ('alert.firing', 'alert.resolved')),
    ts_ms BIGINT NOT NULL,
    value DOUBLE PRECISION,
    severity INTEGER NOT NULL,
    message_vi TEXT NOT NULL,
    message_en TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL{rowid}
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
    updated_at_ms BIGINT NOT NULL{rowid}
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
"""

ALERT_ID = "0f6f3a52-5f7c-4bbd-9d84-6a1f1a3b0a01"


def make_v1(location: Path | str) -> None:
    """A version-1 store holding one firing alert (with its event) and one subscription."""
    dialect = "postgresql" if on_postgres(location) else "sqlite"
    if isinstance(location, Path):
        location.parent.mkdir(parents=True, exist_ok=True)
    with raw(location) as conn:
        for statement in ddl(SCHEMA_V1, dialect):
            conn.execute(statement)
        conn.execute(
            "INSERT INTO alerts (id, rule_id, device_id, kind, province, district, site, crop, place_vi, place_en,"
            " severity, state, source, fired_at_ms, value, message_vi, message_en, created_at_ms, updated_at_ms)"
            f" VALUES ('{ALERT_ID}', 'do_low', 'wq-bt-001', 'water_quality', 'ben_tre', 'ba_tri', 'pond',"
            " 'shrimp', 'Ba Tri, Bến Tre', 'Ba Tri, Ben Tre', 2, 'firing', 'ioc/v1/ben_tre/water_quality/wq-bt-001',"
            f" {T0}, 2.1, 'Oxy thấp', 'Oxygen low', {T0}, {T0})"
        )
        conn.execute(
            "INSERT INTO events (id, alert_id, type, ts_ms, value, severity, message_vi, message_en, created_at_ms)"
            f" VALUES ('evt_{ALERT_ID}_firing', '{ALERT_ID}', 'alert.firing', {T0}, 2.1, 2, 'Oxy thấp',"
            f" 'Oxygen low', {T0})"
        )
        conn.execute(
            "INSERT INTO subscriptions (id, url, secret, language, provinces, kinds, min_severity, description,"
            f" created_at_ms, updated_at_ms) VALUES ('sub_v1', '{URL}',"
            " 'whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=', 'en', '[\"ben_tre\"]', '[\"water_quality\"]', 2,"
            f" 'Ba Tri co-op', {T0}, {T0})"
        )
        if on_postgres(location):
            conn.execute(
                "CREATE TABLE alert_store_schema (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"
            )
            conn.execute("INSERT INTO alert_store_schema (id, version) VALUES (1, 1)")
        else:
            conn.execute("PRAGMA user_version = 1")


def version(location: Path | str) -> int:
    sql = "SELECT version FROM alert_store_schema" if on_postgres(location) else "PRAGMA user_version"
    with raw(location) as conn:
        return int(conn.execute(sql).fetchone()[0])


def columns(location: Path | str, table: str) -> list[str]:
    sql = (
        f"SELECT column_name FROM information_schema.columns WHERE table_name = '{table}' ORDER BY ordinal_position"
        if on_postgres(location)
        else f"SELECT name FROM pragma_table_info('{table}')"
    )
    with raw(location) as conn:
        return [r[0] for r in conn.execute(sql).fetchall() if r[0] != "rowid"]


def indexes(location: Path | str, table: str) -> set[str]:
    """The table's own indexes (not those PostgreSQL makes for its primary key and unique columns)."""
    sql = (
        f"SELECT indexname FROM pg_indexes WHERE tablename = '{table}'"
        if on_postgres(location)
        else f"SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = '{table}' AND sql IS NOT NULL"
    )
    with raw(location) as conn:
        return {r[0] for r in conn.execute(sql).fetchall() if not r[0].endswith(("_pkey", "_key"))}


def test_a_version_1_store_is_migrated(alerts_location: Path | str, tmp_path: Path) -> None:
    make_v1(alerts_location)
    assert "lat" not in columns(alerts_location, "alerts")

    with AlertStore(alerts_location, policy=PUBLIC, clock=lambda: NOW) as store:
        assert version(alerts_location) == SCHEMA_VERSION == 5
        old = store.get(ALERT_ID)
        assert (old.rule_id, old.device_id, old.state, old.severity) == ("do_low", "wq-bt-001", State.FIRING, 2)
        assert (old.place_vi, old.message_vi, old.value, old.fired_at_ms) == ("Ba Tri, Bến Tre", "Oxy thấp", 2.1, T0)
        assert (old.lat, old.lon) == (None, None)
        assert (old.family, old.rank, old.title_vi) == ("do_low", 0, ""), "a rule of its own, as before families"
        assert (old.change_seq, store.change_cursor()) == (0, 0), "changed before the change cursor"
        [event] = store.events(ALERT_ID)
        assert (event.id, event.message_vi, event.message_sms, event.message_short) == (
            f"evt_{ALERT_ID}_firing", "Oxy thấp", "", ""  # stored before events had SMS forms
        )
        [sub] = store.list_subscriptions()
        assert (sub.id, sub.url, sub.language, sub.description) == ("sub_v1", URL, "en", "Ba Tri co-op")
        assert sub.filters == Filters.make(provinces=["ben_tre"], kinds=["water_quality"], min_severity="warning")
        assert sub.filters.crops == frozenset()
        assert sub.filters.near is None
        assert sub.pacing == Pacing(), "grouping with the defaults from schema 4 on"

        # the new filters work on the migrated tables
        near = store.update_subscription(
            sub.id, filters=Filters.make(crops=["shrimp"], near=Near.make(10.04, 106.60, 10))
        )
        assert store.get_subscription(sub.id) == near
        assert not near.matches(old), "an alert stored before coordinates is never near"
        assert near.filters.crops == {"shrimp"}
        # the open alert is the one stored before: the engine firing again changes nothing
        assert store.apply([fire(device=0, rule="do_low")], PLACED) == []
        assert store.apply([fire(device=0, rule="do_low", ts=T0 - 1)], PLACED) == []  # an older batch
        [event] = store.apply([fire(device=0, rule="salinity_high", severity=Severity.CRITICAL)], PLACED)
        assert (event.alert.lat, event.alert.lon) == (10.05, 106.62)
        assert [a.id for a in store.changed_since(0)] == [event.alert_id], "the cursor counts from the migration on"
        assert store.acknowledge(ALERT_ID, "op").change_seq == 2 == store.change_cursor()
        assert event.queued_for == (sub.id,)
        assert store.outbox(subscription_id=sub.id) == [], "it waits group_wait for others of its group"
        assert store.dispatch(NOW + 60_000).messages == {"opened": 1}
        assert json.loads(store.outbox(subscription_id=sub.id)[0].body)["crop"] == "shrimp"

    # opening it again migrates nothing twice; the tables are those a new store has
    with AlertStore(alerts_location, policy=PUBLIC) as store:
        assert store.get_subscription("sub_v1").filters.near == Near(10.04, 106.60, 10.0)
        assert len(store.list(limit=None)) == 2
    assert version(alerts_location) == SCHEMA_VERSION
    fresh = tmp_path / "fresh" / "alerts.db"
    AlertStore(fresh, policy=PUBLIC).close()
    for table in ("alerts", "events", "subscriptions", "outbox", "deliveries", "dead_letters", "notices"):
        assert columns(alerts_location, table) == columns(fresh, table), table
        assert indexes(alerts_location, table) == indexes(fresh, table), table
    assert "alerts_by_change" in indexes(alerts_location, "alerts"), "the live stream's cursor reads by index"
