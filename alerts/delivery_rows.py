"""The outbox, its delivery log and dead letters as rows, over one connection (the caller's transaction).

Each message for a subscriber (:mod:`alerts.notices`) is queued as one outbox row, its webhook JSON
rendered once (:func:`render_body` gives a single event's fields). A sender leases a subscriber's
oldest pending row (:func:`claim`), and :func:`record_attempt` logs the outcome: delivered, retry
later, dead letter, or subscriber gone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from alerts import subscription_rows
from alerts.alert_rows import Alert, AlertEvent, finite, iso_ms
from alerts.database import Connection
from alerts.outbox import DeadLetter, DeliveryAttempt, OutboxEntry, Outcome, Status, Verdict
from alerts.schema import Shape, text_enum, where_clause
from alerts.subscriptions import Language, Subscription


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


OUTBOX = Shape(OutboxEntry, "outbox", columns={"status": text_enum(Status)})
HEAD = Shape(OutboxHead, "outbox")
DELIVERY = Shape(DeliveryAttempt, "deliveries", columns={"verdict": text_enum(Verdict)})
DEAD_LETTER = Shape(DeadLetter, "dead_letters")
_UNLEASED = "lease_owner = NULL, lease_until_ms = NULL"
_FINISH = {  # what an attempt's verdict sets besides the attempt's own columns, and its arguments
    Verdict.DELIVERED: "status = 'delivered', delivered_at_ms = ?",
    Verdict.RETRY: "next_attempt_at_ms = ?",
    Verdict.DEAD: "status = 'dead'",
    Verdict.GONE: "status = 'dead'",
}


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
        "value": finite(event.value),
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


def entries(
    conn: Connection, *, subscription_id: str | None, status: Status | None, limit: int | None
) -> list[OutboxEntry]:
    """Outbox rows in queue order (oldest first)."""
    where = {"subscription_id = ?": subscription_id, "status = ?": None if status is None else status.value}
    return OUTBOX.select(conn, where, order_by="seq", limit=limit)


def pending_count(conn: Connection, subscription_id: str | None) -> int:
    return OUTBOX.count(conn, {"status = 'pending'": True, "subscription_id = ?": subscription_id})


def heads(conn: Connection) -> list[OutboxHead]:
    """Each enabled subscriber's oldest pending row (the only one a sender may take)."""
    rows = conn.execute(
        f"SELECT {', '.join('o.' + column for column in HEAD.columns)}"
        " FROM outbox o"
        " JOIN (SELECT subscription_id, MIN(seq) AS seq FROM outbox WHERE status = 'pending'"
        "       GROUP BY subscription_id) h ON h.seq = o.seq"
        " JOIN subscriptions s ON s.id = o.subscription_id AND s.enabled = 1"
        " ORDER BY o.seq"
    ).fetchall()
    return [HEAD.load(r) for r in rows]


def claim(conn: Connection, subscription_id: str, *, owner: str, now_ms: int, lease_ms: int) -> Claim | None:
    """Lease a subscriber's oldest pending row if it is due and not leased by another sender."""
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
    return Claim(OUTBOX.load(row), subscription_rows.get(conn, subscription_id))


def record_attempt(
    conn: Connection,
    entry: OutboxEntry,
    outcome: Outcome,
    verdict: Verdict,
    *,
    at_ms: int,
    duration_ms: int,
    next_attempt_at_ms: int | None,
) -> None:
    """Record one attempt's outcome (a row no longer pending is left alone); on 410 Gone, disable the
    subscription and dead-letter the rest of its queue."""
    attempt = entry.attempts + 1
    finish_args = {
        Verdict.DELIVERED: (at_ms,),
        Verdict.RETRY: (next_attempt_at_ms if next_attempt_at_ms is not None else at_ms,),
    }.get(verdict, ())
    cursor = conn.execute(
        f"UPDATE outbox SET {_FINISH[verdict]}, attempts = ?, last_attempt_at_ms = ?, last_status = ?,"
        f" last_error = ?, {_UNLEASED} WHERE seq = ? AND status = 'pending'",
        (*finish_args, attempt, at_ms, outcome.status, outcome.error, entry.seq),
    )
    if cursor.rowcount == 0:
        return
    logged = {
        "seq": entry.seq,
        "event_id": entry.event_id,
        "subscription_id": entry.subscription_id,
        "attempt": attempt,
        "at_ms": at_ms,
        "duration_ms": duration_ms,
        "status": outcome.status,
        "error": outcome.error,
        "verdict": verdict,
    }
    DELIVERY.insert(conn, logged)
    if verdict in (Verdict.DEAD, Verdict.GONE):
        bury(conn, [entry.seq], at_ms)
    if verdict is Verdict.GONE:
        reason = f"410 Gone from the receiver at {iso_ms(at_ms)}"
        subscription_rows.disable(conn, entry.subscription_id, reason, at_ms)
        rest = [
            r[0]
            for r in conn.execute(
                "SELECT seq FROM outbox WHERE subscription_id = ? AND status = 'pending'", (entry.subscription_id,)
            )
        ]
        conn.execute(
            f"UPDATE outbox SET status = 'dead', last_error = ?, {_UNLEASED}"
            " WHERE subscription_id = ? AND status = 'pending'",
            (f"subscription disabled: {reason}", entry.subscription_id),
        )
        bury(conn, rest, at_ms)


def bury(conn: Connection, seqs: Sequence[int], at_ms: int) -> None:
    """A dead letter for each of these (dead) outbox rows."""
    for seq in seqs:
        conn.execute(
            "INSERT INTO dead_letters (seq, event_id, subscription_id, event_type, attempts, last_status,"
            " last_error, dead_at_ms) SELECT seq, event_id, subscription_id, event_type, attempts, last_status,"
            " last_error, ? FROM outbox WHERE seq = ?",
            (at_ms, seq),
        )


def release(conn: Connection, owner: str) -> int:
    """Drop every lease a sender holds; how many."""
    return conn.execute(f"UPDATE outbox SET {_UNLEASED} WHERE lease_owner = ?", (owner,)).rowcount


def deliveries(
    conn: Connection, *, subscription_id: str | None, event_id: str | None, limit: int | None
) -> list[DeliveryAttempt]:
    """The delivery log, newest first."""
    where = {"subscription_id = ?": subscription_id, "event_id = ?": event_id}
    return DELIVERY.select(conn, where, order_by="id DESC", limit=limit)


def dead_letters(
    conn: Connection, *, subscription_id: str | None, include_replayed: bool, limit: int | None
) -> list[DeadLetter]:
    """Dead letters, oldest first (only those not replayed yet unless ``include_replayed``)."""
    where = {"subscription_id = ?": subscription_id, "replayed_at_ms IS NULL": None if include_replayed else True}
    return DEAD_LETTER.select(conn, where, order_by="id", limit=limit)


def replay(conn: Connection, ids: Sequence[int] | None, subscription_id: str | None, now: int) -> int:
    """Queue dead letters again (all not replayed yet, of ``ids`` and ``subscription_id`` if given); how many."""
    clause, args = where_clause(
        {
            "replayed_at_ms IS NULL": True,
            f"id IN ({','.join('?' * len(ids or ()))})": None if ids is None else tuple(ids),
            "subscription_id = ?": subscription_id,
        }
    )
    rows = conn.execute(f"SELECT id, seq FROM dead_letters{clause}", args).fetchall()
    for dead_id, seq in rows:
        conn.execute(
            "UPDATE outbox SET status = 'pending', attempts = 0, queued_at_ms = ?, next_attempt_at_ms = ?,"
            f" {_UNLEASED} WHERE seq = ? AND status = 'dead'",
            (now, now, seq),
        )
        conn.execute("UPDATE dead_letters SET replayed_at_ms = ? WHERE id = ?", (now, dead_id))
    return len(rows)
