"""Alerts and their events: the rows, and their lifecycle over one connection (the caller's transaction).

Lifecycle: a ``firing`` transition opens an alert (one active alert per rule and device, enforced
by a unique partial index), a ``resolved`` one closes it; an operator may acknowledge it at any
time (who, when; the first acknowledgement stands). Each of these changes gives the alert the next
``change_seq`` of the store (writers run one at a time, so the numbers follow the commits), which
:func:`changed_since` reads back: what changed since a cursor, cheaply, on both databases.
Applying the same transitions again (ingest redelivers a batch after a crash, or two ingest machines
apply the same one) changes nothing: a firing with the same device time is the alert already stored,
and a resolve with no open alert, or older than the open one, is a replay.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from alerts.database import Connection
from alerts.errors import NotFound
from alerts.schema import JSON, SEVERITY, STATE, Shape
from alerts.subscriptions import parse_severity
from rules.model import DeviceInfo, Severity, State, Transition


def iso_ms(ms: int) -> str:
    """Epoch milliseconds → ISO 8601 UTC with milliseconds, e.g. ``2024-03-01T05:30:00.123Z``."""
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_id(alert_id: str, state: State | str) -> str:
    """The deterministic id of an alert event: the ``webhook-id`` of every attempt and replay."""
    return f"evt_{alert_id}_{State(state).value}"


def finite(value: float | None) -> float | None:
    """``value``, or None for a NaN or an infinity (stored as NULL, sent as ``null``)."""
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
    family: str = ""
    """Its rule's family (levels of one danger), or the rule id for a rule of its own (:mod:`alerts.notify`)."""
    rank: int = 0
    """Its rule's level in the family (1 = lowest; 0 for a rule of its own)."""
    title_vi: str = ""
    """What it is about, for farmers ("mặn vượt 4‰"); '' for alerts fired before schema 4."""
    title_en: str = ""
    change_seq: int = 0
    """The store's number of its latest change (opened, resolved, acknowledged); 0 before schema 5."""

    @property
    def active(self) -> bool:
        return self.state is State.FIRING

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_by is not None


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """An alert changing state: what :meth:`~alerts.store.AlertStore.apply` returns and what webhooks carry."""

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
    """Ids of the subscriptions a notice was queued for (:mod:`alerts.notices`)."""
    notice: str = ""
    """What it means to farmers (:class:`alerts.notify.Notice`): ``opened``, ``escalated``,
    ``deescalated``, ``cleared``, or ``inhibited`` (a level below the highest: sent to no one)."""


ALERT = Shape(Alert, "alerts", columns={"severity": SEVERITY, "state": STATE})
EVENT = Shape(
    AlertEvent,
    "events",
    columns={"severity": SEVERITY, "params": JSON},
    given=("state", "alert", "queued_for"),  # state from its type; the notices have the subscriptions
)
_FROM_DEVICE = ("kind", "province", "district", "site", "crop", "place_vi", "place_en")
"""The alert's fields copied from its device when it fires."""


def _default_source(device: DeviceInfo) -> str:
    return f"ioc/v1/{device.province}/{device.kind}/{device.id}"


def record(
    conn: Connection,
    transitions: Sequence[Transition],
    devices: Sequence[DeviceInfo],
    *,
    source_of: Callable[[str], str] | None,
    now: int,
) -> list[AlertEvent]:
    """Fire and resolve alerts, and store an event for each transition that changed one."""
    by_id: dict[str, DeviceInfo] | None = None
    events: list[AlertEvent] = []
    for t in transitions:
        if t.state is State.FIRING:
            device = devices[t.device] if 0 <= t.device < len(devices) else None
            if device is None or device.id != t.device_id:
                by_id = by_id or {d.id: d for d in devices}
                device = by_id.get(t.device_id) or DeviceInfo(t.device_id, "", "", "", "", "", "", "")
            source = source_of(t.device_id) if source_of else _default_source(device)
            alert = fire(conn, t, device, source, now)
        else:
            alert = resolve(conn, t, now)
        if alert is None:
            continue
        event = AlertEvent(
            id=event_id(alert.id, t.state),
            type=f"alert.{t.state.value}",
            alert_id=alert.id,
            state=t.state,
            ts_ms=t.ts_ms,
            value=finite(t.value),
            severity=t.severity,
            message_vi=t.message_vi,
            message_en=t.message_en,
            created_at_ms=now,
            alert=alert,
            message_sms=t.message_sms,
            message_short=t.message_short,
            params=t.params,
        )
        EVENT.insert(conn, EVENT.values(event))
        events.append(event)
    return events


def fire(conn: Connection, t: Transition, device: DeviceInfo, source: str, now: int) -> Alert | None:
    """Open the alert of a firing transition (None for a replay, or one still open)."""
    seen = conn.execute(
        "SELECT 1 FROM alerts WHERE rule_id = ? AND device_id = ? AND (fired_at_ms = ? OR state = 'firing')",
        (t.rule_id, t.device_id, t.ts_ms),
    ).fetchone()
    if seen is not None:  # a replay, or the engine re-fired an alert that is still open
        return None
    alert_id = str(uuid.uuid4())
    ALERT.insert(
        conn,
        {
            "id": alert_id,
            "rule_id": t.rule_id,
            "device_id": t.device_id,
            **{name: getattr(device, name) for name in _FROM_DEVICE},
            "severity": t.severity,
            "state": State.FIRING,
            "source": source,
            "fired_at_ms": t.ts_ms,
            "value": finite(t.value),
            "message_vi": t.message_vi,
            "message_en": t.message_en,
            "created_at_ms": now,
            "updated_at_ms": now,
            "lat": finite(device.lat),
            "lon": finite(device.lon),
            "family": t.family or t.rule_id,
            "rank": t.rank,
            "title_vi": t.title_vi,
            "title_en": t.title_en,
            "change_seq": next_change(conn),
        },
    )
    return get(conn, alert_id)


def resolve(conn: Connection, t: Transition, now: int) -> Alert | None:
    """Close the open alert of a resolved transition (None for a replay, or an alert never seen)."""
    row = conn.execute(
        "SELECT id, fired_at_ms FROM alerts WHERE rule_id = ? AND device_id = ? AND state = 'firing'",
        (t.rule_id, t.device_id),
    ).fetchone()
    if row is None or t.ts_ms < row["fired_at_ms"]:  # a replay, or a resolve of an alert we never saw
        return None
    resolved = {
        "state": State.RESOLVED,
        "resolved_at_ms": t.ts_ms,
        "resolved_value": finite(t.value),
        "resolved_message_vi": t.message_vi,
        "resolved_message_en": t.message_en,
        "updated_at_ms": now,
        "change_seq": next_change(conn),
    }
    ALERT.update(conn, resolved, "id = ?", row["id"])
    return get(conn, row["id"])


def event(conn: Connection, event_id: str) -> AlertEvent:
    """One event by id, with its alert (raises :class:`NotFound`)."""
    row = conn.execute("SELECT * FROM events WHERE id = ?", (event_id,)).fetchone()
    if row is None:
        raise NotFound(f"no event {event_id!r}")
    return EVENT.load(row, state=State(row["type"].removeprefix("alert.")), alert=get(conn, row["alert_id"]))


def restamp(conn: Connection, transitions: Sequence[Transition]) -> None:
    """Give the open alerts of these transitions' rules their rules' family, rank and titles now (an
    alert open since before schema 4, or before the pack moved a rule, joins its family)."""
    for t in transitions:
        conn.execute(
            "UPDATE alerts SET family = ?, rank = ?, title_vi = ?, title_en = ? WHERE rule_id = ? AND device_id = ?"
            " AND state = 'firing' AND (family != ? OR rank != ?)",
            (t.family or t.rule_id, t.rank, t.title_vi, t.title_en, t.rule_id, t.device_id, t.family or t.rule_id,
             t.rank),
        )  # fmt: skip


def active_in_family(conn: Connection, device_id: str, family: str) -> list[Alert]:
    """A device's active alerts of one family."""
    return ALERT.select(conn, {"device_id = ?": device_id, "family = ?": family, "state = 'firing'": True},
                        order_by="rank", limit=None)  # fmt: skip


def change_cursor(conn: Connection) -> int:
    """The number of the store's latest alert change (0: none yet)."""
    return int(conn.execute("SELECT coalesce(max(change_seq), 0) FROM alerts").fetchone()[0])


def next_change(conn: Connection) -> int:
    """The number of the change being written (call inside the write transaction: writers run in turn)."""
    return change_cursor(conn) + 1


def changed_since(conn: Connection, cursor: int, limit: int) -> list[Alert]:
    """Alerts whose latest change is after ``cursor``, in change order, each as it is now."""
    return ALERT.select(conn, {"change_seq > ?": cursor}, order_by="change_seq", limit=limit)


def get(conn: Connection, alert_id: str) -> Alert:
    """One alert by id (raises :class:`NotFound`)."""
    row = conn.execute("SELECT * FROM alerts WHERE id = ?", (alert_id,)).fetchone()
    if row is None:
        raise NotFound(f"no alert {alert_id!r}")
    return ALERT.load(row)


def acknowledge(conn: Connection, alert_id: str, by: str, at_ms: int, clock: Callable[[], int]) -> Alert:
    """Record who saw the alert and when, unless someone already did."""
    seen = {"acknowledged_by": by, "acknowledged_at_ms": at_ms, "updated_at_ms": clock()}
    seen["change_seq"] = next_change(conn)
    ALERT.update(conn, seen, "id = ? AND acknowledged_by IS NULL", alert_id)
    return get(conn, alert_id)


def where(
    *,
    state: State | str | None,
    severity_min: Severity | int | str | None,
    places: Mapping[str, str | None],
    acknowledged: bool | None,
    since_ms: int | None,
    until_ms: int | None,
) -> dict[str, Any]:
    """The conditions (:func:`alerts.schema.where_clause`) of the given filters; ``places``: column → value."""
    return {
        "state = ?": None if state is None else State(state).value,
        "severity >= ?": None if severity_min is None else int(parse_severity(severity_min)),
        **{f"{column} = ?": value for column, value in places.items()},
        "acknowledged_by IS NOT NULL" if acknowledged else "acknowledged_by IS NULL": acknowledged,
        "fired_at_ms >= ?": since_ms,
        "fired_at_ms < ?": until_ms,
    }


def select(conn: Connection, conditions: Mapping[str, Any], limit: int | None) -> list[Alert]:
    """Alerts meeting the conditions of :func:`where`, most recently fired first."""
    return ALERT.select(conn, conditions, order_by="fired_at_ms DESC, created_at_ms DESC", limit=limit)


def events(conn: Connection, alert_id: str) -> list[AlertEvent]:
    """An alert's events, oldest first, each with the subscriptions it was queued for."""
    alert = get(conn, alert_id)
    rows = conn.execute("SELECT * FROM events WHERE alert_id = ? ORDER BY rowid", (alert_id,)).fetchall()
    queued: dict[str, list[str]] = {}
    for r in conn.execute(
        "SELECT event_id, subscription_id FROM notices WHERE event_id IN"
        " (SELECT id FROM events WHERE alert_id = ?) ORDER BY id",
        (alert_id,),
    ):
        queued.setdefault(r["event_id"], []).append(r["subscription_id"])
    return [
        EVENT.load(
            r, state=State(r["type"].removeprefix("alert.")), alert=alert, queued_for=tuple(queued.get(r["id"], ()))
        )
        for r in rows
    ]
