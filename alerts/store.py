"""The alert store: alerts, subscriptions, the outbox and its delivery log, in one database.

A SQLite file (one machine) or a PostgreSQL database (``postgresql://…``: several ingest machines
and API processes share one store), through :mod:`alerts.database`: one connection per thread,
every change in one transaction, writers one at a time (SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's
advisory lock). :meth:`AlertStore.apply` records a batch of rule transitions *and*, in the same
transaction, each matching enabled subscriber's notices (:mod:`alerts.notices`) — so an alert change
is never stored without its notifications, nor a notification queued for a change that was rolled
back. :meth:`AlertStore.dispatch` turns due notices into outbox messages by each subscriber's pacing.

The rows live in their modules, each over one connection: :mod:`alerts.alert_rows` (the alert
lifecycle and events), :mod:`alerts.notices` (what each subscriber hears, and when),
:mod:`alerts.subscription_rows`, :mod:`alerts.delivery_rows` (the outbox,
delivery log, dead letters and webhook JSON); :mod:`alerts.schema` has the tables and declares how
each row is stored. This class opens and migrates the store and runs each of them in a transaction.

Driver errors (``sqlite3``, ``psycopg``) are mapped to :class:`~alerts.errors.StoreError` in one
place each, :class:`alerts.sqlite.SQLiteFile` and :class:`alerts.postgres.PostgresDatabase`
(connections and transactions, shared with :mod:`api.keys`).
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import EllipsisType
from typing import Any, Concatenate, ParamSpec, TypeVar

from alerts import alert_rows, delivery_rows, notices, subscription_rows
from alerts.alert_rows import Alert, AlertEvent, event_id, iso_ms
from alerts.database import Connection, Location, PostgresUrl, ddl, open_database, parse_location
from alerts.delivery_rows import Claim, OutboxHead, render_body
from alerts.errors import StoreError
from alerts.notices import Dispatched, NoticeRow
from alerts.notify import Pacing
from alerts.outbox import DeadLetter, DeliveryAttempt, OutboxEntry, Outcome, Status, Verdict
from alerts.schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION
from alerts.signing import generate_secret, validate_secret
from alerts.subscriptions import Filters, Near, Subscription, parse_language, parse_template
from alerts.targets import TargetPolicy
from contract.clock import now_ms
from rules.model import DeviceInfo, Severity, State, Transition

P = ParamSpec("P")
R = TypeVar("R")


def _apply(
    conn: Connection,
    transitions: Sequence[Transition],
    devices: Sequence[DeviceInfo],
    source_of: Callable[[str], str] | None,
    deliver_since_ms: int | None,
    now: int,
) -> builtins.list[AlertEvent]:
    return notices.record(conn, transitions, devices, source_of=source_of, deliver_since_ms=deliver_since_ms, now=now)


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

    def _write(self, change: Callable[Concatenate[Connection, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
        """``change(conn, …)`` in one write transaction."""
        with self._db.write() as conn:
            return change(conn, *args, **kwargs)

    def _read(self, query: Callable[Concatenate[Connection, P], R], *args: P.args, **kwargs: P.kwargs) -> R:
        """``query(conn, …)`` on this thread's connection, outside any transaction."""
        with self._db.read() as conn:
            return query(conn, *args, **kwargs)

    # -- alerts -------------------------------------------------------------------------------

    def apply(
        self,
        transitions: Sequence[Transition],
        devices: Sequence[DeviceInfo],
        *,
        source_of: Callable[[str], str] | None = None,
        deliver_since_ms: int | None = None,
    ) -> builtins.list[AlertEvent]:
        """Record rule transitions and queue each subscriber's notices, in one transaction
        (:meth:`dispatch` makes them messages when they are due).

        Args:
            transitions: the engine's output, in order.
            devices: the engine's device list (``Transition.device`` indexes it).
            source_of: device id → where its readings came from, carried as the alert's
                ``source`` (default ``ioc/v1/{province}/{kind}/{device_id}``).
            deliver_since_ms: events of readings older than this (device time) are recorded but
                not sent: history published late (a logger's backfill) must not page farmers.

        Returns:
            The events that changed something (a replayed transition gives none), each with what
            it means to farmers (``notice``) and the subscriptions a notice was queued for.
        """
        if not transitions:
            return []
        return self._write(_apply, transitions, devices, source_of, deliver_since_ms, self._clock())

    def dispatch(self, now_ms: int | None = None) -> Dispatched:
        """Queue the messages due by now (grouping, quiet hours, rate limits: :mod:`alerts.notices`)."""
        return self._write(notices.dispatch, self._clock() if now_ms is None else now_ms)

    def notices(
        self, *, subscription_id: str | None = None, waiting: bool | None = None, limit: int | None = 100
    ) -> builtins.list[NoticeRow]:
        """Subscribers' notices, oldest first (``waiting``: only those no message carries yet, or only the others)."""
        return self._read(notices.select, subscription_id=subscription_id, waiting=waiting, limit=limit)

    def waiting_count(self, subscription_id: str | None = None) -> int:
        """Notices no message carries yet (grouping, quiet hours or the rate limit hold them)."""
        return self._read(notices.waiting_count, subscription_id)

    def get(self, alert_id: str) -> Alert:
        """One alert by id (raises :class:`NotFound`)."""
        return self._read(alert_rows.get, alert_id)

    def acknowledge(self, alert_id: str, by: str, at_ms: int | None = None) -> Alert:
        """An operator has seen the alert. The first acknowledgement stands; later ones change nothing."""
        if not by.strip():
            raise ValueError("acknowledge needs the operator's name")
        at = self._clock() if at_ms is None else at_ms
        return self._write(alert_rows.acknowledge, alert_id, by.strip(), at, self._clock)

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
        places = {"province": province, "district": district, "rule_id": rule_id, "device_id": device_id}
        conditions = alert_rows.where(
            state=state,
            severity_min=severity_min,
            places=places,
            acknowledged=acknowledged,
            since_ms=since_ms,
            until_ms=until_ms,
        )
        return self._read(alert_rows.select, conditions, limit)

    def change_cursor(self) -> int:
        """The number of the latest alert change (0: none): :meth:`changed_since` of it returns later ones."""
        return self._read(alert_rows.change_cursor)

    def changed_since(self, cursor: int, *, limit: int = 500) -> builtins.list[Alert]:
        """Alerts opened, resolved or acknowledged after ``cursor`` (a ``change_seq``), oldest change
        first, ``limit`` at most; each as it is now (an alert changed twice appears once, at its
        latest change). Its last ``change_seq`` is the next cursor."""
        return self._read(alert_rows.changed_since, cursor, limit)

    def events(self, alert_id: str) -> builtins.list[AlertEvent]:
        """An alert's events, oldest first."""
        return self._read(alert_rows.events, alert_id)

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
        pacing: Pacing | None = None,
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
            pacing: grouping, quiet hours and a rate limit (default: :class:`Pacing` ()).

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
        pacing = pacing or Pacing()
        new = Subscription(
            sub_id, url, secret, lang, filters, True, description, now, now, template=template, pacing=pacing
        )
        return self._write(subscription_rows.add, new)

    def get_subscription(self, sub_id: str) -> Subscription:
        return self._read(subscription_rows.get, sub_id)

    def list_subscriptions(self, *, enabled: bool | None = None) -> builtins.list[Subscription]:
        """Subscriptions in the order they were added."""
        return self._read(subscription_rows.select, enabled=enabled)

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
        pacing: Pacing | None = None,
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
            changes["filters"] = filters
        if description is not None:
            changes["description"] = description
        if template is not ...:
            changes["template"] = parse_template(template)
        if pacing is not None:
            changes["pacing"] = pacing
        if enabled is not None:
            changes["enabled"] = enabled
            changes["disabled_reason"] = None if enabled else (disabled_reason or "disabled by an operator")
        changes["updated_at_ms"] = self._clock()
        return self._write(subscription_rows.update, sub_id, changes)

    def remove_subscription(self, sub_id: str) -> None:
        """Delete a subscription with its queue, delivery log and dead letters."""
        self._write(subscription_rows.remove, sub_id)

    # -- outbox, delivery log, dead letters ------------------------------------------------------

    def outbox(
        self, *, subscription_id: str | None = None, status: Status | str | None = None, limit: int | None = 100
    ) -> builtins.list[OutboxEntry]:
        """Outbox rows in queue order (oldest first)."""
        wanted = None if status is None else Status(status)
        return self._read(delivery_rows.entries, subscription_id=subscription_id, status=wanted, limit=limit)

    def pending_count(self, subscription_id: str | None = None) -> int:
        return self._read(delivery_rows.pending_count, subscription_id)

    def outbox_heads(self) -> builtins.list[OutboxHead]:
        """Each enabled subscriber's oldest pending row (the only one a sender may take)."""
        return self._read(delivery_rows.heads)

    def claim(self, subscription_id: str, *, owner: str, now_ms: int, lease_ms: int) -> Claim | None:
        """Lease a subscriber's oldest pending row if it is due and not leased by another sender."""
        return self._write(delivery_rows.claim, subscription_id, owner=owner, now_ms=now_ms, lease_ms=lease_ms)

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
        self._write(
            delivery_rows.record_attempt,
            entry,
            outcome,
            verdict,
            at_ms=at_ms,
            duration_ms=duration_ms,
            next_attempt_at_ms=next_attempt_at_ms,
        )

    def release(self, owner: str) -> int:
        """Drop every lease a sender holds (on shutdown), so the next sender need not wait them out."""
        return self._write(delivery_rows.release, owner)

    def deliveries(
        self, *, subscription_id: str | None = None, event_id: str | None = None, limit: int | None = 100
    ) -> builtins.list[DeliveryAttempt]:
        """The delivery log, newest first."""
        return self._read(delivery_rows.deliveries, subscription_id=subscription_id, event_id=event_id, limit=limit)

    def dead_letters(
        self, *, subscription_id: str | None = None, include_replayed: bool = False, limit: int | None = 100
    ) -> builtins.list[DeadLetter]:
        """Dead letters, oldest first (by default only those not replayed yet)."""
        return self._read(
            delivery_rows.dead_letters, subscription_id=subscription_id, include_replayed=include_replayed, limit=limit
        )

    def replay(self, ids: Iterable[int] | None = None, *, subscription_id: str | None = None) -> int:
        """Queue dead letters again (same webhook-id, fresh attempts and age); return how many.

        Args:
            ids: dead-letter ids; ``None`` means every dead letter not replayed yet (of
                ``subscription_id`` if given).

        A replayed row keeps its place in its subscriber's queue, so it goes before anything
        queued after it. Rows of a disabled subscription wait until it is enabled again.
        """
        now = self._clock()
        wanted = None if ids is None else [int(i) for i in ids]
        if wanted == []:
            return 0
        return self._write(delivery_rows.replay, wanted, subscription_id, now)


__all__ = [
    "MIGRATIONS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "Alert",
    "AlertEvent",
    "AlertStore",
    "Claim",
    "OutboxHead",
    "event_id",
    "iso_ms",
    "render_body",
]
