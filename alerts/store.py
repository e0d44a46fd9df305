"""The alert store: alerts, subscriptions, the outbox and its delivery log, in one database.

A SQLite file (one machine) or a PostgreSQL database (``postgresql://…``: several ingest machines
and API processes share one store), through :mod:`alerts.database`: one connection per thread,
every change in one transaction, writers one at a time (SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's
advisory lock). :meth:`AlertStore.apply` records a batch of rule transitions *and*, in the same
transaction, one outbox row per matching enabled subscription — so an alert change is never stored
without its notifications, nor a notification queued for a change that was rolled back.

Lifecycle: a ``firing`` transition opens an alert (one active alert per rule and device, enforced
by a unique partial index), a ``resolved`` one closes it; an operator may acknowledge it at any
time (who, when; the first acknowledgement stands). Applying the same transitions again (ingest
redelivers a batch after a crash, or two ingest machines apply the same one) changes nothing and
queues nothing: a firing with the same device time is the alert already stored, and a resolve with
no open alert, or older than the open one, is a replay.

Driver errors (``sqlite3``, ``psycopg``) are mapped to :class:`~alerts.errors.StoreError` in one
place each, :class:`alerts.sqlite.SQLiteFile` and :class:`alerts.postgres.PostgresDatabase`
(connections and transactions, shared with :mod:`api.keys`).
"""

from __future__ import annotations

import builtins
import json
import math
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import EllipsisType
from typing import Any

from alerts.database import Connection, Location, PostgresUrl, Row, ddl, open_database, parse_location
from alerts.errors import NotFound, StoreError
from alerts.outbox import DeadLetter, DeliveryAttempt, OutboxEntry, Outcome, Status, Verdict
from alerts.signing import generate_secret, validate_secret
from alerts.subscriptions import (
    Filters,
    Language,
    Near,
    Subscription,
    parse_language,
    parse_severity,
    parse_template,
)
from alerts.targets import TargetPolicy
from contract.clock import now_ms
from rules.model import DeviceInfo, Severity, State, Transition

SCHEMA_VERSION = 3

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
    lon DOUBLE PRECISION
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
    created_at_ms BIGINT NOT NULL{rowid},
    message_sms TEXT NOT NULL DEFAULT '',
    message_short TEXT NOT NULL DEFAULT '',
    params TEXT NOT NULL DEFAULT '{}'
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
    template TEXT
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
}
"""Version → the statements that take a store of the version before to it. New columns go last in
:data:`SCHEMA` too, so a new store and a migrated one have the same tables."""


def iso_ms(ms: int) -> str:
    """Epoch milliseconds → ISO 8601 UTC with milliseconds, e.g. ``2024-03-01T05:30:00.123Z``."""
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_id(alert_id: str, state: State | str) -> str:
    """The deterministic id of an alert event: the ``webhook-id`` of every attempt and replay."""
    return f"evt_{alert_id}_{State(state).value}"


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert: opened by a firing transition, closed by a resolved one."""

    id: str
    rule_id: str
    device_id: str
    kind: str
    province: str
    district: str
    site: str
    crop: str
    place_vi: str
    place_en: str
    severity: Severity
    state: State
    source: str
    fired_at_ms: int
    """Device time of the reading that fired it."""
    value: float | None
    """The value the condition looked at when it fired (None when there is none, as for no-data)."""
    message_vi: str
    message_en: str
    resolved_at_ms: int | None
    resolved_value: float | None
    resolved_message_vi: str | None
    resolved_message_en: str | None
    acknowledged_by: str | None
    acknowledged_at_ms: int | None
    created_at_ms: int
    updated_at_ms: int
    lat: float | None = None
    """Where its device was when it fired, WGS84 degrees (None: unknown, or fired before schema 2)."""
    lon: float | None = None

    @property
    def active(self) -> bool:
        return self.state is State.FIRING

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_by is not None


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """An alert changing state: what :meth:`AlertStore.apply` returns and what webhooks carry."""

    id: str
    type: str
    """``alert.firing`` or ``alert.resolved``."""
    alert_id: str
    state: State
    ts_ms: int
    value: float | None
    severity: Severity
    message_vi: str
    message_en: str
    created_at_ms: int
    alert: Alert
    """The alert after the change."""
    message_sms: str = ""
    """Vietnamese without diacritics, ≤ 160 GSM-7 characters: one SMS ('' for events stored before it)."""
    message_short: str = ""
    """Vietnamese with diacritics, ≤ 70 characters: one UCS-2 SMS segment."""
    params: Mapping[str, str] = field(default_factory=dict)
    """A template message's parameters: place, value, unit, action, time ({} for events stored before them)."""
    queued_for: tuple[str, ...] = ()
    """Ids of the subscriptions an outbox row was written for."""


@dataclass(frozen=True, slots=True)
class OutboxHead:
    """A subscriber's oldest pending outbox row: when the sender may take it."""

    subscription_id: str
    seq: int
    next_attempt_at_ms: int
    lease_owner: str | None
    lease_until_ms: int | None

    def ready_at_ms(self, owner: str) -> int:
        leased = self.lease_owner not in (None, owner) and self.lease_until_ms is not None
        return max(self.next_attempt_at_ms, self.lease_until_ms if leased and self.lease_until_ms else 0)


@dataclass(frozen=True, slots=True)
class Claim:
    """An outbox row leased to one sender, with its subscription."""

    entry: OutboxEntry
    subscription: Subscription


def render_body(alert: Alert, event: AlertEvent, language: Language, template: str | None = None) -> str:
    """The webhook JSON for one event, in one subscriber's language (both texts included); with the
    ``template`` a subscriber's gateway sends (Zalo ZNS, SMS brandname), that id and its ``params``."""
    message = {"vi": event.message_vi, "en": event.message_en}
    place = {"vi": alert.place_vi, "en": alert.place_en}
    body: dict[str, Any] = {
        "type": event.type,
        "id": event.id,
        "timestamp": iso_ms(event.created_at_ms),
        "alert_id": alert.id,
        "rule_id": alert.rule_id,
        "state": event.state.value,
        "severity": event.severity.label,
        "severity_level": int(event.severity),
        "device_id": alert.device_id,
        "kind": alert.kind,
        "province": alert.province,
        "district": alert.district,
        "site": alert.site,
        "crop": alert.crop,
        "place": place[language],
        "place_vi": alert.place_vi,
        "place_en": alert.place_en,
        "value": _finite(event.value),
        "ts": iso_ms(event.ts_ms),
        "ts_ms": event.ts_ms,
        "fired_ts": iso_ms(alert.fired_at_ms),
        "language": language,
        "message": message[language],
        "message_vi": event.message_vi,
        "message_en": event.message_en,
        "message_sms": event.message_sms,
        "message_short": event.message_short,
        "source": alert.source,
    }
    if template is not None:
        body["template"] = template
        body["params"] = dict(event.params)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _default_source(device: DeviceInfo) -> str:
    return f"ioc/v1/{device.province}/{device.kind}/{device.id}"


def _alert(row: Row) -> Alert:
    return Alert(
        id=row["id"],
        rule_id=row["rule_id"],
        device_id=row["device_id"],
        kind=row["kind"],
        province=row["province"],
        district=row["district"],
        site=row["site"],
        crop=row["crop"],
        place_vi=row["place_vi"],
        place_en=row["place_en"],
        severity=Severity(row["severity"]),
        state=State(row["state"]),
        source=row["source"],
        fired_at_ms=row["fired_at_ms"],
        value=row["value"],
        message_vi=row["message_vi"],
        message_en=row["message_en"],
        resolved_at_ms=row["resolved_at_ms"],
        resolved_value=row["resolved_value"],
        resolved_message_vi=row["resolved_message_vi"],
        resolved_message_en=row["resolved_message_en"],
        acknowledged_by=row["acknowledged_by"],
        acknowledged_at_ms=row["acknowledged_at_ms"],
        created_at_ms=row["created_at_ms"],
        updated_at_ms=row["updated_at_ms"],
        lat=row["lat"],
        lon=row["lon"],
    )


def _subscription(row: Row) -> Subscription:
    def names(column: str) -> frozenset[str]:
        return frozenset(json.loads(row[column]))

    near = None
    if row["near_lat"] is not None and row["near_lon"] is not None and row["near_radius_km"] is not None:
        near = Near(row["near_lat"], row["near_lon"], row["near_radius_km"])

    return Subscription(
        id=row["id"],
        url=row["url"],
        secret=row["secret"],
        language=parse_language(row["language"]),
        filters=Filters(
            provinces=names("provinces"),
            districts=names("districts"),
            devices=names("devices"),
            kinds=names("kinds"),
            rule_ids=names("rule_ids"),
            min_severity=Severity(row["min_severity"]),
            crops=names("crops"),
            near=near,
        ),
        enabled=bool(row["enabled"]),
        description=row["description"],
        created_at_ms=row["created_at_ms"],
        updated_at_ms=row["updated_at_ms"],
        disabled_reason=row["disabled_reason"],
        template=row["template"],
    )


def _entry(row: Row) -> OutboxEntry:
    return OutboxEntry(
        seq=row["seq"],
        event_id=row["event_id"],
        subscription_id=row["subscription_id"],
        event_type=row["event_type"],
        body=row["body"],
        status=Status(row["status"]),
        attempts=row["attempts"],
        created_at_ms=row["created_at_ms"],
        queued_at_ms=row["queued_at_ms"],
        next_attempt_at_ms=row["next_attempt_at_ms"],
        last_attempt_at_ms=row["last_attempt_at_ms"],
        last_status=row["last_status"],
        last_error=row["last_error"],
        delivered_at_ms=row["delivered_at_ms"],
    )


def _event(row: Row, alert: Alert) -> AlertEvent:
    return AlertEvent(
        id=row["id"],
        type=row["type"],
        alert_id=row["alert_id"],
        state=State(row["type"].removeprefix("alert.")),
        ts_ms=row["ts_ms"],
        value=row["value"],
        severity=Severity(row["severity"]),
        message_vi=row["message_vi"],
        message_en=row["message_en"],
        created_at_ms=row["created_at_ms"],
        alert=alert,
        message_sms=row["message_sms"],
        message_short=row["message_short"],
        params=json.loads(row["params"]),
    )


def _names_json(values: Iterable[str]) -> str:
    return json.dumps(sorted(values), ensure_ascii=False)


def _near_columns(near: Near | None) -> tuple[float | None, float | None, float | None]:
    """``near_lat``, ``near_lon``, ``near_radius_km``."""
    return (None, None, None) if near is None else (near.lat, near.lon, near.radius_km)


class AlertStore:
    """Alerts, subscriptions and the webhook outbox in one SQLite or PostgreSQL database (thread-safe)."""

    def __init__(
        self,
        location: Location | str,
        *,
        policy: TargetPolicy | None = None,
        clock: Callable[[], int] = now_ms,
        busy_timeout_s: float = 30.0,
    ) -> None:
        """Open (and create or migrate) the store.

        Args:
            location: a SQLite file (its folder is created) or a ``postgresql://`` URL (see
                :func:`alerts.database.parse_location`). ``:memory:`` is refused (one connection per
                thread needs a file).
            policy: where subscription URLs may point; the default refuses private, loopback and
                link-local addresses.
            clock: epoch milliseconds, for record-keeping times (tests pass a fake one).
            busy_timeout_s: how long a write waits for another writer's lock before it fails.
        """
        try:
            self._location = parse_location(location)
        except ValueError as exc:
            raise StoreError(str(exc)) from None
        self._policy = policy or TargetPolicy()
        self._clock = clock
        self._db = open_database(self._location, StoreError, name="the alert store", busy_timeout_s=busy_timeout_s)
        try:
            with self._db.write() as conn:
                version = self._db.schema_version(conn)
                if version > SCHEMA_VERSION:
                    raise StoreError(f"{self._location} has schema {version}, newer than this code ({SCHEMA_VERSION})")
                for step in range(version + 1, SCHEMA_VERSION + 1) if version else ():  # 0: a new store
                    for statement in MIGRATIONS[step]:
                        conn.execute(statement)
                for statement in ddl(SCHEMA, self._db.dialect):
                    conn.execute(statement)
                self._db.set_schema_version(conn, SCHEMA_VERSION)
        except BaseException:
            self._db.close()
            raise

    # -- connections and transactions -------------------------------------------------------

    @property
    def location(self) -> Location:
        """The SQLite file or the PostgreSQL URL (which prints with its password hidden)."""
        return self._location

    @property
    def path(self) -> Path:
        """The SQLite file (:class:`StoreError` for a store on PostgreSQL)."""
        if isinstance(self._location, PostgresUrl):
            raise StoreError(f"the alert store {self._location} is a PostgreSQL database, not a file")
        return self._location

    @property
    def policy(self) -> TargetPolicy:
        return self._policy

    def close(self) -> None:
        """Close every thread's connection."""
        self._db.close()

    def __enter__(self) -> AlertStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- alerts -------------------------------------------------------------------------------

    def apply(
        self,
        transitions: Sequence[Transition],
        devices: Sequence[DeviceInfo],
        *,
        source_of: Callable[[str], str] | None = None,
        deliver_since_ms: int | None = None,
    ) -> builtins.list[AlertEvent]:
        """Record rule transitions and queue their webhooks, in one transaction.

        Args:
            transitions: the engine's output, in order.
            devices: the engine's device list (``Transition.device`` indexes it).
            source_of: device id → where its readings came from, carried as the alert's
                ``source`` (default ``ioc/v1/{province}/{kind}/{device_id}``).
            deliver_since_ms: events of readings older than this (device time) are recorded but
                not sent: history published late (a logger's backfill) must not page farmers.

        Returns:
            The events that changed something (a replayed transition gives none), each with the
            subscriptions it was queued for.
        """
        if not transitions:
            return []
        by_id: dict[str, DeviceInfo] | None = None
        created = self._clock()
        events: builtins.list[AlertEvent] = []
        with self._db.write() as conn:
            subscriptions = [
                _subscription(r) for r in conn.execute("SELECT * FROM subscriptions WHERE enabled = 1 ORDER BY rowid")
            ]
            for t in transitions:
                if t.state is State.FIRING:
                    device = devices[t.device] if 0 <= t.device < len(devices) else None
                    if device is None or device.id != t.device_id:
                        by_id = by_id or {d.id: d for d in devices}
                        device = by_id.get(t.device_id) or DeviceInfo(t.device_id, "", "", "", "", "", "", "")
                    source = source_of(t.device_id) if source_of else _default_source(device)
                    alert = self._fire(conn, t, device, source, created)
                else:
                    alert = self._resolve(conn, t, created)
                if alert is None:
                    continue
                event = AlertEvent(
                    id=event_id(alert.id, t.state),
                    type=f"alert.{t.state.value}",
                    alert_id=alert.id,
                    state=t.state,
                    ts_ms=t.ts_ms,
                    value=_finite(t.value),
                    severity=t.severity,
                    message_vi=t.message_vi,
                    message_en=t.message_en,
                    created_at_ms=created,
                    alert=alert,
                    message_sms=t.message_sms,
                    message_short=t.message_short,
                    params=t.params,
                )
                conn.execute(
                    "INSERT INTO events (id, alert_id, type, ts_ms, value, severity, message_vi, message_en,"
                    " created_at_ms, message_sms, message_short, params) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        event.id,
                        event.alert_id,
                        event.type,
                        event.ts_ms,
                        event.value,
                        int(event.severity),
                        event.message_vi,
                        event.message_en,
                        created,
                        event.message_sms,
                        event.message_short,
                        json.dumps(dict(event.params), ensure_ascii=False),
                    ),
                )
                fresh = deliver_since_ms is None or t.ts_ms >= deliver_since_ms
                queued = [s for s in subscriptions if fresh and s.matches(alert)]
                for sub in queued:
                    body = render_body(alert, event, sub.language, sub.template)
                    conn.execute(
                        "INSERT INTO outbox (event_id, subscription_id, event_type, body, created_at_ms,"
                        " queued_at_ms, next_attempt_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        (event.id, sub.id, event.type, body, created, created, created),
                    )
                events.append(replace(event, queued_for=tuple(s.id for s in queued)))
        return events

    def _fire(self, conn: Connection, t: Transition, device: DeviceInfo, source: str, now: int) -> Alert | None:
        seen = conn.execute(
            "SELECT 1 FROM alerts WHERE rule_id = ? AND device_id = ? AND (fired_at_ms = ? OR state = 'firing')",
            (t.rule_id, t.device_id, t.ts_ms),
        ).fetchone()
        if seen is not None:  # a replay, or the engine re-fired an alert that is still open
            return None
        alert_id = str(uuid.uuid4())
        conn.execute(
            "INSERT INTO alerts (id, rule_id, device_id, kind, province, district, site, crop, place_vi, place_en,"
            " severity, state, source, fired_at_ms, value, message_vi, message_en, created_at_ms, updated_at_ms,"
            " lat, lon) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'firing', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                alert_id,
                t.rule_id,
                t.device_id,
                device.kind,
                device.province,
                device.district,
                device.site,
                device.crop,
                device.place_vi,
                device.place_en,
                int(t.severity),
                source,
                t.ts_ms,
                _finite(t.value),
                t.message_vi,
                t.message_en,
                now,
                now,
                _finite(device.lat),
                _finite(device.lon),
            ),
        )
        return self._get(conn, alert_id)

    def _resolve(self, conn: Connection, t: Transition, now: int) -> Alert | None:
        row = conn.execute(
            "SELECT id, fired_at_ms FROM alerts WHERE rule_id = ? AND device_id = ? AND state = 'firing'",
            (t.rule_id, t.device_id),
        ).fetchone()
        if row is None or t.ts_ms < row["fired_at_ms"]:  # a replay, or a resolve of an alert we never saw
            return None
        conn.execute(
            "UPDATE alerts SET state = 'resolved', resolved_at_ms = ?, resolved_value = ?, resolved_message_vi = ?,"
            " resolved_message_en = ?, updated_at_ms = ? WHERE id = ?",
            (t.ts_ms, _finite(t.value), t.message_vi, t.message_en, now, row["id"]),
        )
        return self._get(conn, row["id"])

    @staticmethod
    def _get(conn: Connection, alert_id: str) -> Alert:
        row = conn.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        if row is None:
            raise NotFound(f"no alert {alert_id!r}")
        return _alert(row)

    def get(self, alert_id: str) -> Alert:
        """One alert by id (raises :class:`NotFound`)."""
        with self._db.read() as conn:
            return self._get(conn, alert_id)

    def acknowledge(self, alert_id: str, by: str, at_ms: int | None = None) -> Alert:
        """An operator has seen the alert. The first acknowledgement stands; later ones change nothing."""
        if not by.strip():
            raise ValueError("acknowledge needs the operator's name")
        at = self._clock() if at_ms is None else at_ms
        with self._db.write() as conn:
            conn.execute(
                "UPDATE alerts SET acknowledged_by = ?, acknowledged_at_ms = ?, updated_at_ms = ?"
                " WHERE id = ? AND acknowledged_by IS NULL",
                (by.strip(), at, self._clock(), alert_id),
            )
            return self._get(conn, alert_id)

    def active(self) -> builtins.list[Alert]:
        """Alerts firing now, most recent first."""
        return self.list(state=State.FIRING, limit=None)

    def list(
        self,
        *,
        state: State | str | None = None,
        severity_min: Severity | int | str | None = None,
        province: str | None = None,
        district: str | None = None,
        rule_id: str | None = None,
        device_id: str | None = None,
        acknowledged: bool | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int | None = 100,
    ) -> builtins.list[Alert]:
        """Alerts matching every given filter, most recently fired first.

        ``since_ms``/``until_ms`` bound the firing time (device time, ``since <= fired < until``).
        """
        where: builtins.list[str] = []
        args: builtins.list[Any] = []
        if state is not None:
            where.append("state = ?")
            args.append(State(state).value)
        if severity_min is not None:
            where.append("severity >= ?")
            args.append(int(parse_severity(severity_min)))
        for column, value in (
            ("province", province),
            ("district", district),
            ("rule_id", rule_id),
            ("device_id", device_id),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if acknowledged is not None:
            where.append("acknowledged_by IS NOT NULL" if acknowledged else "acknowledged_by IS NULL")
        if since_ms is not None:
            where.append("fired_at_ms >= ?")
            args.append(since_ms)
        if until_ms is not None:
            where.append("fired_at_ms < ?")
            args.append(until_ms)
        sql = "SELECT * FROM alerts" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY fired_at_ms DESC, created_at_ms DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(max(0, limit))
        with self._db.read() as conn:
            return [_alert(r) for r in conn.execute(sql, args)]

    def events(self, alert_id: str) -> builtins.list[AlertEvent]:
        """An alert's events, oldest first."""
        with self._db.read() as conn:
            alert = self._get(conn, alert_id)
            rows = conn.execute("SELECT * FROM events WHERE alert_id = ? ORDER BY rowid", (alert_id,)).fetchall()
            queued: dict[str, builtins.list[str]] = {}
            for r in conn.execute(
                "SELECT event_id, subscription_id FROM outbox WHERE event_id IN"
                " (SELECT id FROM events WHERE alert_id = ?) ORDER BY seq",
                (alert_id,),
            ):
                queued.setdefault(r["event_id"], []).append(r["subscription_id"])
        return [replace(_event(r, alert), queued_for=tuple(queued.get(r["id"], ()))) for r in rows]

    # -- subscriptions ------------------------------------------------------------------------

    def add_subscription(
        self,
        url: str,
        secret: str | None = None,
        *,
        provinces: Iterable[str] | None = None,
        districts: Iterable[str] | None = None,
        devices: Iterable[str] | None = None,
        kinds: Iterable[str] | None = None,
        rule_ids: Iterable[str] | None = None,
        min_severity: Severity | int | str = Severity.INFO,
        language: str = "vi",
        description: str = "",
        crops: Iterable[str] | None = None,
        near: Near | None = None,
        template: str | None = None,
    ) -> Subscription:
        """Add a webhook subscriber; its URL must pass the target policy (checked now, and at delivery).

        Args:
            url: http(s) URL the events are POSTed to.
            secret: ``whsec_<base64>``; ``None`` generates one (read it back from the result).
            provinces, districts, devices, kinds, rule_ids, crops: filters, empty = any.
            near: only alerts of devices within this circle (:meth:`Near.make` checks it).
            min_severity: ``info``, ``warning`` or ``critical`` (or a :class:`Severity`).
            language: ``vi`` or ``en`` — the ``message`` field's language (both texts are sent).
            template: the template id its gateway sends; webhooks then add it and its ``params``.

        Raises:
            TargetRefused: the URL points at a refused address.
            InvalidSubscription: a bad secret, severity or language.
        """
        url = url.strip()
        self._policy.check_url(url)
        lang = parse_language(language)
        template = parse_template(template)
        secret = validate_secret(secret) if secret is not None else generate_secret()
        filters = Filters.make(
            provinces=provinces,
            districts=districts,
            devices=devices,
            kinds=kinds,
            rule_ids=rule_ids,
            min_severity=min_severity,
            crops=crops,
            near=near,
        )
        sub_id = "sub_" + uuid.uuid4().hex[:16]
        now = self._clock()
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO subscriptions (id, url, secret, language, provinces, districts, devices, kinds, rule_ids,"
                " min_severity, enabled, description, created_at_ms, updated_at_ms, crops, near_lat, near_lon,"
                " near_radius_km, template) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sub_id,
                    url,
                    secret,
                    lang,
                    _names_json(filters.provinces),
                    _names_json(filters.districts),
                    _names_json(filters.devices),
                    _names_json(filters.kinds),
                    _names_json(filters.rule_ids),
                    int(filters.min_severity),
                    description,
                    now,
                    now,
                    _names_json(filters.crops),
                    *_near_columns(filters.near),
                    template,
                ),
            )
            return self._subscription(conn, sub_id)

    @staticmethod
    def _subscription(conn: Connection, sub_id: str) -> Subscription:
        row = conn.execute("SELECT * FROM subscriptions WHERE id = ?", (sub_id,)).fetchone()
        if row is None:
            raise NotFound(f"no subscription {sub_id!r}")
        return _subscription(row)

    def get_subscription(self, sub_id: str) -> Subscription:
        with self._db.read() as conn:
            return self._subscription(conn, sub_id)

    def list_subscriptions(self, *, enabled: bool | None = None) -> builtins.list[Subscription]:
        """Subscriptions in the order they were added."""
        sql = "SELECT * FROM subscriptions"
        if enabled is not None:
            sql += f" WHERE enabled = {int(enabled)}"
        with self._db.read() as conn:
            return [_subscription(r) for r in conn.execute(sql + " ORDER BY rowid")]

    def update_subscription(
        self,
        sub_id: str,
        *,
        url: str | None = None,
        secret: str | None = None,
        filters: Filters | None = None,
        language: str | None = None,
        enabled: bool | None = None,
        description: str | None = None,
        disabled_reason: str | None = None,
        template: str | EllipsisType | None = ...,
    ) -> Subscription:
        """Change some fields (``template``: ``...`` keeps it, None removes it). Enabling clears the
        disabled reason; new events are queued from now on.

        A changed URL or secret applies to rows still pending (they are signed at each attempt);
        a changed language or filter applies to events queued from now on.
        """
        changes: dict[str, Any] = {}
        if url is not None:
            url = url.strip()
            self._policy.check_url(url)
            changes["url"] = url
        if secret is not None:
            changes["secret"] = validate_secret(secret)
        if language is not None:
            changes["language"] = parse_language(language)
        if filters is not None:
            for name in ("provinces", "districts", "devices", "kinds", "rule_ids", "crops"):
                changes[name] = _names_json(getattr(filters, name))
            changes["min_severity"] = int(filters.min_severity)
            changes["near_lat"], changes["near_lon"], changes["near_radius_km"] = _near_columns(filters.near)
        if description is not None:
            changes["description"] = description
        if template is not ...:
            changes["template"] = parse_template(template)
        if enabled is not None:
            changes["enabled"] = int(enabled)
            changes["disabled_reason"] = None if enabled else (disabled_reason or "disabled by an operator")
        changes["updated_at_ms"] = self._clock()
        assignments = ", ".join(f"{column} = ?" for column in changes)
        with self._db.write() as conn:
            cursor = conn.execute(
                f"UPDATE subscriptions SET {assignments} WHERE id = ?",  # column names are ours
                (*changes.values(), sub_id),
            )
            if cursor.rowcount == 0:
                raise NotFound(f"no subscription {sub_id!r}")
            return self._subscription(conn, sub_id)

    def remove_subscription(self, sub_id: str) -> None:
        """Delete a subscription with its queue, delivery log and dead letters."""
        with self._db.write() as conn:
            if conn.execute("DELETE FROM subscriptions WHERE id = ?", (sub_id,)).rowcount == 0:
                raise NotFound(f"no subscription {sub_id!r}")

    # -- outbox, delivery log, dead letters ------------------------------------------------------

    def outbox(
        self, *, subscription_id: str | None = None, status: Status | str | None = None, limit: int | None = 100
    ) -> builtins.list[OutboxEntry]:
        """Outbox rows in queue order (oldest first)."""
        where: builtins.list[str] = []
        args: builtins.list[Any] = []
        if subscription_id is not None:
            where.append("subscription_id = ?")
            args.append(subscription_id)
        if status is not None:
            where.append("status = ?")
            args.append(Status(status).value)
        sql = "SELECT * FROM outbox" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(max(0, limit))
        with self._db.read() as conn:
            return [_entry(r) for r in conn.execute(sql, args)]

    def pending_count(self, subscription_id: str | None = None) -> int:
        sql = "SELECT count(*) FROM outbox WHERE status = 'pending'"
        args: tuple[str, ...] = ()
        if subscription_id is not None:
            sql += " AND subscription_id = ?"
            args = (subscription_id,)
        with self._db.read() as conn:
            return int(conn.execute(sql, args).fetchone()[0])

    def outbox_heads(self) -> builtins.list[OutboxHead]:
        """Each enabled subscriber's oldest pending row (the only one a sender may take)."""
        with self._db.read() as conn:
            rows = conn.execute(
                "SELECT o.subscription_id, o.seq, o.next_attempt_at_ms, o.lease_owner, o.lease_until_ms"
                " FROM outbox o"
                " JOIN (SELECT subscription_id, MIN(seq) AS seq FROM outbox WHERE status = 'pending'"
                "       GROUP BY subscription_id) h ON h.seq = o.seq"
                " JOIN subscriptions s ON s.id = o.subscription_id AND s.enabled = 1"
                " ORDER BY o.seq"
            ).fetchall()
        return [OutboxHead(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def claim(self, subscription_id: str, *, owner: str, now_ms: int, lease_ms: int) -> Claim | None:
        """Lease a subscriber's oldest pending row if it is due and not leased by another sender."""
        with self._db.write() as conn:
            row = conn.execute(
                "SELECT o.* FROM outbox o JOIN subscriptions s ON s.id = o.subscription_id"
                " WHERE o.subscription_id = ? AND o.status = 'pending' AND s.enabled = 1 ORDER BY o.seq LIMIT 1",
                (subscription_id,),
            ).fetchone()
            if row is None or row["next_attempt_at_ms"] > now_ms:
                return None
            if row["lease_owner"] not in (None, owner) and (row["lease_until_ms"] or 0) > now_ms:
                return None
            conn.execute(
                "UPDATE outbox SET lease_owner = ?, lease_until_ms = ? WHERE seq = ?",
                (owner, now_ms + lease_ms, row["seq"]),
            )
            return Claim(_entry(row), self._subscription(conn, subscription_id))

    def record_attempt(
        self,
        entry: OutboxEntry,
        outcome: Outcome,
        verdict: Verdict,
        *,
        at_ms: int,
        duration_ms: int,
        next_attempt_at_ms: int | None = None,
    ) -> None:
        """Record one attempt's outcome: delivered, retry later, dead letter, or subscriber gone (410).

        A row no longer pending (removed, or finished by another sender) is left alone.
        """
        attempt = entry.attempts + 1
        with self._db.write() as conn:
            common = (attempt, at_ms, outcome.status, outcome.error)
            if verdict is Verdict.DELIVERED:
                cursor = conn.execute(
                    "UPDATE outbox SET status = 'delivered', attempts = ?, last_attempt_at_ms = ?, last_status = ?,"
                    " last_error = ?, delivered_at_ms = ?, lease_owner = NULL, lease_until_ms = NULL"
                    " WHERE seq = ? AND status = 'pending'",
                    (*common, at_ms, entry.seq),
                )
            elif verdict is Verdict.RETRY:
                cursor = conn.execute(
                    "UPDATE outbox SET attempts = ?, last_attempt_at_ms = ?, last_status = ?, last_error = ?,"
                    " next_attempt_at_ms = ?, lease_owner = NULL, lease_until_ms = NULL"
                    " WHERE seq = ? AND status = 'pending'",
                    (*common, next_attempt_at_ms if next_attempt_at_ms is not None else at_ms, entry.seq),
                )
            else:
                cursor = conn.execute(
                    "UPDATE outbox SET status = 'dead', attempts = ?, last_attempt_at_ms = ?, last_status = ?,"
                    " last_error = ?, lease_owner = NULL, lease_until_ms = NULL WHERE seq = ? AND status = 'pending'",
                    (*common, entry.seq),
                )
            if cursor.rowcount == 0:
                return
            conn.execute(
                "INSERT INTO deliveries (seq, event_id, subscription_id, attempt, at_ms, duration_ms, status, error,"
                " verdict) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.seq,
                    entry.event_id,
                    entry.subscription_id,
                    attempt,
                    at_ms,
                    duration_ms,
                    outcome.status,
                    outcome.error,
                    verdict.value,
                ),
            )
            if verdict in (Verdict.DEAD, Verdict.GONE):
                self._bury(conn, [entry.seq], at_ms)
            if verdict is Verdict.GONE:
                reason = f"410 Gone from the receiver at {iso_ms(at_ms)}"
                conn.execute(
                    "UPDATE subscriptions SET enabled = 0, disabled_reason = ?, updated_at_ms = ? WHERE id = ?",
                    (reason, at_ms, entry.subscription_id),
                )
                rest = [
                    r[0]
                    for r in conn.execute(
                        "SELECT seq FROM outbox WHERE subscription_id = ? AND status = 'pending'",
                        (entry.subscription_id,),
                    )
                ]
                conn.execute(
                    "UPDATE outbox SET status = 'dead', last_error = ?, lease_owner = NULL, lease_until_ms = NULL"
                    " WHERE subscription_id = ? AND status = 'pending'",
                    (f"subscription disabled: {reason}", entry.subscription_id),
                )
                self._bury(conn, rest, at_ms)

    @staticmethod
    def _bury(conn: Connection, seqs: Sequence[int], at_ms: int) -> None:
        for seq in seqs:
            conn.execute(
                "INSERT INTO dead_letters (seq, event_id, subscription_id, event_type, attempts, last_status,"
                " last_error, dead_at_ms) SELECT seq, event_id, subscription_id, event_type, attempts, last_status,"
                " last_error, ? FROM outbox WHERE seq = ?",
                (at_ms, seq),
            )

    def release(self, owner: str) -> int:
        """Drop every lease a sender holds (on shutdown), so the next sender need not wait them out."""
        with self._db.write() as conn:
            return conn.execute(
                "UPDATE outbox SET lease_owner = NULL, lease_until_ms = NULL WHERE lease_owner = ?", (owner,)
            ).rowcount

    def deliveries(
        self, *, subscription_id: str | None = None, event_id: str | None = None, limit: int | None = 100
    ) -> builtins.list[DeliveryAttempt]:
        """The delivery log, newest first."""
        where: builtins.list[str] = []
        args: builtins.list[Any] = []
        if subscription_id is not None:
            where.append("subscription_id = ?")
            args.append(subscription_id)
        if event_id is not None:
            where.append("event_id = ?")
            args.append(event_id)
        sql = "SELECT * FROM deliveries" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(max(0, limit))
        with self._db.read() as conn:
            return [
                DeliveryAttempt(
                    id=r["id"],
                    seq=r["seq"],
                    event_id=r["event_id"],
                    subscription_id=r["subscription_id"],
                    attempt=r["attempt"],
                    at_ms=r["at_ms"],
                    duration_ms=r["duration_ms"],
                    status=r["status"],
                    error=r["error"],
                    verdict=Verdict(r["verdict"]),
                )
                for r in conn.execute(sql, args)
            ]

    def dead_letters(
        self, *, subscription_id: str | None = None, include_replayed: bool = False, limit: int | None = 100
    ) -> builtins.list[DeadLetter]:
        """Dead letters, oldest first (by default only those not replayed yet)."""
        where: builtins.list[str] = []
        args: builtins.list[Any] = []
        if subscription_id is not None:
            where.append("subscription_id = ?")
            args.append(subscription_id)
        if not include_replayed:
            where.append("replayed_at_ms IS NULL")
        sql = "SELECT * FROM dead_letters" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(max(0, limit))
        with self._db.read() as conn:
            return [
                DeadLetter(
                    id=r["id"],
                    seq=r["seq"],
                    event_id=r["event_id"],
                    subscription_id=r["subscription_id"],
                    event_type=r["event_type"],
                    attempts=r["attempts"],
                    last_status=r["last_status"],
                    last_error=r["last_error"],
                    dead_at_ms=r["dead_at_ms"],
                    replayed_at_ms=r["replayed_at_ms"],
                )
                for r in conn.execute(sql, args)
            ]

    def replay(self, ids: Iterable[int] | None = None, *, subscription_id: str | None = None) -> int:
        """Queue dead letters again (same webhook-id, fresh attempts and age); return how many.

        Args:
            ids: dead-letter ids; ``None`` means every dead letter not replayed yet (of
                ``subscription_id`` if given).

        A replayed row keeps its place in its subscriber's queue, so it goes before anything
        queued after it. Rows of a disabled subscription wait until it is enabled again.
        """
        now = self._clock()
        where = ["replayed_at_ms IS NULL"]
        args: builtins.list[Any] = []
        if ids is not None:
            wanted = builtins.list(ids)
            if not wanted:
                return 0
            where.append(f"id IN ({','.join('?' * len(wanted))})")
            args.extend(int(i) for i in wanted)
        if subscription_id is not None:
            where.append("subscription_id = ?")
            args.append(subscription_id)
        with self._db.write() as conn:
            rows = conn.execute(f"SELECT id, seq FROM dead_letters WHERE {' AND '.join(where)}", args).fetchall()
            for dead_id, seq in rows:
                conn.execute(
                    "UPDATE outbox SET status = 'pending', attempts = 0, queued_at_ms = ?, next_attempt_at_ms = ?,"
                    " lease_owner = NULL, lease_until_ms = NULL WHERE seq = ? AND status = 'dead'",
                    (now, now, seq),
                )
                conn.execute("UPDATE dead_letters SET replayed_at_ms = ? WHERE id = ?", (now, dead_id))
        return len(rows)


__all__ = [
    "Alert",
    "AlertEvent",
    "AlertStore",
    "Claim",
    "OutboxHead",
    "event_id",
    "iso_ms",
    "render_body",
]
