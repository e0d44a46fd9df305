"""Notices and messages: what each subscriber hears of the alert events, and when.

:func:`record` runs in the transaction that records rule transitions. It judges each device's
family at each reading time (:func:`alerts.notify.family_notice`) and, for each subscriber, against
the alerts that subscriber wants — so a subscriber of one rule still hears it when a higher level of
its family is active. Each change that matters becomes one *notice* row per subscriber.

:func:`dispatch` turns due notices into *messages* — outbox rows the webhook sender delivers — by
the subscriber's :class:`~alerts.notify.Pacing`: a group's notices as one message, what waited in
quiet hours or beyond the rate limit as one digest. Every notice ends in exactly one message (its
``message_seq``), and every message lists its notices in ``alerts``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from alerts import alert_rows, subscription_rows
from alerts.alert_rows import Alert, AlertEvent, finite, iso_ms
from alerts.compose import Item, Texts, deescalated, digest, group
from alerts.database import Connection
from alerts.delivery_rows import render_body
from alerts.notify import HOUR_MS, Level, Notice, family_notice, rate_block
from alerts.schema import JSON, SEVERITY, Shape, text_enum
from alerts.subscriptions import Subscription
from rules.model import DeviceInfo, Severity, State, Transition

MESSAGE_TYPES: Mapping[str, str] = {
    Notice.OPENED: "alert.firing",
    Notice.ESCALATED: "alert.firing",
    Notice.DEESCALATED: "alert.updated",
    Notice.CLEARED: "alert.resolved",
    "group": "alert.group",
    "digest": "alert.digest",
}
"""A message's webhook ``type``, by what it is."""


@dataclass(frozen=True, slots=True)
class NoticeRow:
    """One change a subscriber is to hear of, until a message carries it."""

    id: int
    subscription_id: str
    event_id: str
    """The alert event it stands for (for a de-escalation, the higher level's resolve)."""
    alert_id: str
    rule_id: str
    device_id: str
    group_key: str
    """``family|province|district``: notices with the same key go as one message."""
    notice: Notice
    severity: Severity
    rank: int
    ts_ms: int
    value: float | None
    place_vi: str
    place_en: str
    title_vi: str
    title_en: str
    message_vi: str
    message_en: str
    message_sms: str
    message_short: str
    params: Mapping[str, str]
    created_at_ms: int
    held: str | None
    """``quiet`` or ``rate`` once held back, else None."""
    message_seq: int | None
    """The outbox row that carried it (None: still waiting)."""

    def item(self) -> Item:
        return Item.of(self.params, notice=self.notice, device_id=self.device_id, severity=self.severity,
                       rank=self.rank, place_vi=self.place_vi, place_en=self.place_en, value=self.value,
                       title_vi=self.title_vi, title_en=self.title_en, ts_ms=self.ts_ms)  # fmt: skip

    def texts(self) -> Texts:
        return Texts(self.message_vi, self.message_en, self.message_sms, self.message_short, self.params)


NOTICE = Shape(NoticeRow, "notices", columns={"notice": text_enum(Notice), "severity": SEVERITY, "params": JSON})


@dataclass(slots=True)
class Dispatched:
    """What one :func:`dispatch` pass did."""

    messages: Counter[str] = field(default_factory=Counter)
    """Messages queued, by what they are (``opened`` … ``group``, ``digest``)."""
    held: Counter[str] = field(default_factory=Counter)
    """Notices newly held back, by reason (``quiet``, ``rate``)."""
    next_due_ms: int | None = None
    """When the next waiting notice falls due (None: nothing waits)."""

    def due(self, at_ms: int) -> None:
        self.next_due_ms = at_ms if self.next_due_ms is None else min(self.next_due_ms, at_ms)


# -- recording ---------------------------------------------------------------------------------


def _top(alerts: Sequence[Alert], wanted: Callable[[Alert], bool]) -> Alert | None:
    chosen = [a for a in alerts if wanted(a)]
    return max(chosen, key=lambda a: (a.rank, a.fired_at_ms)) if chosen else None


def _level(alert: Alert | None) -> Level | None:
    return None if alert is None else Level(alert.id, alert.rank)


@dataclass(frozen=True, slots=True)
class _Decision:
    notice: Notice
    carrier: AlertEvent
    remaining: Alert | None = None
    """For a de-escalation: the level still active."""


def _decide(
    before: Sequence[Alert], after: Sequence[Alert], events: Sequence[AlertEvent], wanted: Callable[[Alert], bool]
) -> _Decision | None:
    """What the change means to one who wants the alerts ``wanted`` accepts, and the event that says it."""
    was, now = _top(before, wanted), _top(after, wanted)
    notice = family_notice(_level(was), _level(now))
    if notice is None or notice is Notice.INHIBITED:
        return None
    if notice in (Notice.OPENED, Notice.ESCALATED):
        assert now is not None
        carrier = next((e for e in events if e.alert_id == now.id and e.state is State.FIRING), None)
        return None if carrier is None else _Decision(notice, carrier)
    resolved = [e for e in events if e.state is State.RESOLVED and wanted(e.alert)]
    if not resolved:
        return None
    if notice is Notice.CLEARED:  # the lowest level's all-clear says the value is below them all
        return _Decision(notice, min(resolved, key=lambda e: e.alert.rank))
    return _Decision(notice, max(resolved, key=lambda e: e.alert.rank), now)


def _event_item(event: AlertEvent, notice: Notice) -> Item:
    a = event.alert
    return Item.of(event.params, notice=notice, device_id=a.device_id, severity=event.severity, rank=a.rank,
                   place_vi=a.place_vi, place_en=a.place_en, value=event.value, title_vi=a.title_vi,
                   title_en=a.title_en, ts_ms=event.ts_ms)  # fmt: skip


def _texts(conn: Connection, decision: _Decision) -> Texts:
    event = decision.carrier
    if decision.remaining is None:
        return Texts(event.message_vi, event.message_en, event.message_sms, event.message_short, event.params)
    remaining = alert_rows.event(conn, alert_rows.event_id(decision.remaining.id, State.FIRING))
    return deescalated(_event_item(event, Notice.DEESCALATED), _event_item(remaining, Notice.OPENED))


def _queue_notice(conn: Connection, sub: Subscription, decision: _Decision, now: int) -> None:
    event, texts = decision.carrier, _texts(conn, decision)
    a = event.alert if decision.remaining is None else decision.remaining
    values = {
        "subscription_id": sub.id,
        "event_id": event.id,
        "alert_id": a.id,
        "rule_id": a.rule_id,
        "device_id": a.device_id,
        "group_key": f"{a.family}|{a.province}|{a.district}",
        "notice": decision.notice,
        "severity": a.severity if decision.remaining is not None else event.severity,
        "rank": a.rank,
        "ts_ms": event.ts_ms,
        "value": finite(event.value),
        "place_vi": a.place_vi,
        "place_en": a.place_en,
        "title_vi": a.title_vi,
        "title_en": a.title_en,
        "message_vi": texts.vi,
        "message_en": texts.en,
        "message_sms": texts.sms,
        "message_short": texts.short,
        "params": texts.params,
        "created_at_ms": now,
    }
    NOTICE.insert(conn, values, or_ignore=True)


def record(
    conn: Connection,
    transitions: Sequence[Transition],
    devices: Sequence[DeviceInfo],
    *,
    source_of: Callable[[str], str] | None,
    deliver_since_ms: int | None,
    now: int,
) -> list[AlertEvent]:
    """Record transitions (:func:`alerts.alert_rows.record`) and queue each subscriber's notices.

    Transitions of one device and family at one reading time are judged together, in time order.
    """
    subscriptions = subscription_rows.select(conn, enabled=True)
    moments: dict[tuple[int, str, str], list[Transition]] = {}
    for t in transitions:
        moments.setdefault((t.ts_ms, t.device_id, t.family or t.rule_id), []).append(t)
    out: list[AlertEvent] = []
    for (ts, device_id, family), moment in sorted(moments.items(), key=lambda kv: kv[0][0]):
        alert_rows.restamp(conn, moment)
        before = alert_rows.active_in_family(conn, device_id, family)
        events = alert_rows.record(conn, moment, devices, source_of=source_of, now=now)
        if not events:
            continue
        after = alert_rows.active_in_family(conn, device_id, family)
        overall = _decide(before, after, events, lambda _: True)
        queued: dict[str, list[str]] = {}
        meant = {} if overall is None else {overall.carrier.id: overall.notice}
        if deliver_since_ms is None or ts >= deliver_since_ms:
            for sub in subscriptions:
                decision = _decide(before, after, events, sub.matches)
                if decision is not None:
                    _queue_notice(conn, sub, decision, now)
                    queued.setdefault(decision.carrier.id, []).append(sub.id)
                    meant.setdefault(decision.carrier.id, decision.notice)  # a lower level a filter wants
        for e in events:
            meaning = meant.get(e.id, Notice.INHIBITED)
            conn.execute("UPDATE events SET notice = ? WHERE id = ?", (meaning.value, e.id))
            out.append(replace(e, notice=meaning.value, queued_for=tuple(queued.get(e.id, ()))))
    return out


# -- messages --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Group:
    key: str
    notices: list[NoticeRow]

    @property
    def urgent(self) -> bool:
        """A critical alert opens or escalates: it waits for no interval, quiet hours or rate limit."""
        return any(n.severity is Severity.CRITICAL and n.notice in (Notice.OPENED, Notice.ESCALATED)
                   for n in self.notices)  # fmt: skip


def _alert_entry(n: NoticeRow) -> dict[str, Any]:
    return {
        "alert_id": n.alert_id,
        "event_id": n.event_id,
        "rule_id": n.rule_id,
        "device_id": n.device_id,
        "notice": n.notice.value,
        "severity": n.severity.label,
        "place_vi": n.place_vi,
        "place_en": n.place_en,
        "value": n.value,
        "ts": iso_ms(n.ts_ms),
        "message_vi": n.message_vi,
        "message_en": n.message_en,
    }


def _body(conn: Connection, sub: Subscription, kind: str, texts: Texts, notices: Sequence[NoticeRow], now: int) -> str:
    """The webhook JSON of a message: its texts, what it is, and every notice it carries."""
    lead = notices[-1]
    body: dict[str, Any]
    if len({n.device_id for n in notices}) == 1:  # one device: its alert's and event's fields, as before
        event = alert_rows.event(conn, lead.event_id)  # a de-escalation's: the higher level's resolve
        body = json.loads(render_body(alert_rows.get(conn, lead.alert_id), event, sub.language, sub.template))
        body["state"] = State.RESOLVED.value if kind == Notice.CLEARED else State.FIRING.value
    else:
        places = list(dict.fromkeys((n.place_vi, n.place_en) for n in notices))
        body = {
            "language": sub.language,
            "place": "; ".join(p[0] if sub.language == "vi" else p[1] for p in places),
            "place_vi": "; ".join(p[0] for p in places),
            "place_en": "; ".join(p[1] for p in places),
            "devices": list(dict.fromkeys(n.device_id for n in notices)),
        }
    top = max(n.severity for n in notices)
    message = {"vi": texts.vi, "en": texts.en}
    body.update({
        "type": MESSAGE_TYPES[kind],
        "id": notices[0].event_id,
        "timestamp": iso_ms(now),
        "notice": kind,
        "severity": top.label,
        "severity_level": int(top),
        "message": message[sub.language],
        "message_vi": texts.vi,
        "message_en": texts.en,
        "message_sms": texts.sms,
        "message_short": texts.short,
        "count": len(notices),
        "alerts": [_alert_entry(n) for n in notices],
    })  # fmt: skip
    if sub.template is not None:
        body["template"] = sub.template
        body["params"] = dict(texts.params)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _alerting(conn: Connection, sub: Subscription, key: str) -> set[str]:
    """The devices of a subscriber's group (``family|province|district``) with an alert active now that
    the subscriber wants."""
    family, province, district = key.split("|")
    where = {"family = ?": family, "province = ?": province, "district = ?": district, "state = 'firing'": True}
    active = alert_rows.ALERT.select(conn, where, order_by="fired_at_ms", limit=None)
    return {a.device_id for a in active if sub.matches(a)}


def _group_message(conn: Connection, sub: Subscription, g: _Group) -> tuple[str, Texts]:
    devices = {n.device_id for n in g.notices}
    others = len(_alerting(conn, sub, g.key) - devices)
    if len(devices) == 1 and not others:  # one device, alone in its group: its latest word
        return g.notices[-1].notice.value, g.notices[-1].texts()
    return "group", group([n.item() for n in g.notices], others=others)


def _queue_message(
    conn: Connection, sub: Subscription, kind: str, texts: Texts, notices: Sequence[NoticeRow], now: int
) -> int:
    row = conn.execute(
        "INSERT INTO outbox (event_id, subscription_id, event_type, body, created_at_ms, queued_at_ms,"
        " next_attempt_at_ms, notice, notices) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
        (notices[0].event_id, sub.id, MESSAGE_TYPES[kind], _body(conn, sub, kind, texts, notices, now), now, now,
         now, kind, len(notices)),
    ).fetchone()  # fmt: skip
    seq = int(row[0])
    conn.execute(
        f"UPDATE notices SET message_seq = ? WHERE id IN ({','.join('?' * len(notices))})",
        (seq, *(n.id for n in notices)),
    )
    return seq


def _close(conn: Connection, sub: Subscription, key: str, now: int) -> None:
    """Remember a group's last message, and whether a device of it is still alerting."""
    sub_id, live = sub.id, bool(_alerting(conn, sub, key))
    conn.execute(
        "INSERT INTO notice_groups (subscription_id, group_key, last_sent_at_ms, live) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (subscription_id, group_key) DO UPDATE SET last_sent_at_ms = excluded.last_sent_at_ms,"
        " live = excluded.live",
        (sub_id, key, now, int(live)),
    )


def _hold(conn: Connection, groups: Sequence[_Group], reason: str, out: Dispatched) -> None:
    fresh = [n.id for g in groups for n in g.notices if n.held is None]
    if fresh:
        conn.execute(f"UPDATE notices SET held = ? WHERE id IN ({','.join('?' * len(fresh))})", (reason, *fresh))
        out.held[reason] += len(fresh)


def _due_groups(
    conn: Connection, sub: Subscription, waiting: Sequence[NoticeRow], now: int, out: Dispatched
) -> list[_Group]:
    groups: dict[str, list[NoticeRow]] = {}
    for n in waiting:
        groups.setdefault(n.group_key, []).append(n)
    due: list[_Group] = []
    for key, notices in groups.items():
        g = _Group(key, notices)
        state = conn.execute(
            "SELECT last_sent_at_ms, live FROM notice_groups WHERE subscription_id = ? AND group_key = ?", (sub.id, key)
        ).fetchone()
        at = sub.pacing.due_ms(
            first_pending_ms=notices[0].created_at_ms,
            last_sent_ms=None if state is None else int(state[0]),
            live=state is not None and bool(state[1]),
            urgent=g.urgent,
        )
        if at <= now or any(n.held is not None for n in notices):  # what was held goes when the hold ends
            due.append(g)
        else:
            out.due(at)
    return due


def _dispatch_one(conn: Connection, sub: Subscription, waiting: Sequence[NoticeRow], now: int, out: Dispatched) -> None:
    due = _due_groups(conn, sub, waiting, now, out)
    calm = [g for g in due if not g.urgent]
    pacing, hold, summary = sub.pacing, None, False
    if calm and pacing.quiet is not None and pacing.quiet.contains(now):
        hold = "quiet"
        out.due(pacing.quiet.end_after(now))
    elif calm and pacing.max_per_hour is not None:
        sent = [int(r[0]) for r in conn.execute(
            "SELECT created_at_ms FROM outbox WHERE subscription_id = ? AND created_at_ms > ? ORDER BY created_at_ms",
            (sub.id, now - HOUR_MS),
        )]  # fmt: skip
        sent += [now] * (len(due) - len(calm))  # the critical ones go now, and count
        blocked = rate_block(sent, now, pacing.max_per_hour)
        if blocked is not None:
            hold = "rate"
            out.due(blocked)
        elif len(calm) > pacing.max_per_hour - len(sent):  # more groups than the hour has room for
            _hold(conn, calm, "rate", out)
            summary = True
    if hold is not None:  # the calm ones wait; critical ones go now
        _hold(conn, calm, hold, out)
        calm, due = [], [g for g in due if g.urgent]
    waited = calm if summary else [g for g in calm if any(n.held is not None for n in g.notices)]
    if waited:
        notices = [n for g in waited for n in g.notices]
        reason = "quiet" if any(n.held == "quiet" for n in notices) else "rate"
        texts = digest([_group_message(conn, sub, g)[1] for g in waited], held_by=reason, count=len(notices))
        _queue_message(conn, sub, "digest", texts, notices, now)
        out.messages["digest"] += 1
    for g in due:
        if g not in waited:
            kind, texts = _group_message(conn, sub, g)
            _queue_message(conn, sub, kind, texts, g.notices, now)
            out.messages[kind] += 1
        _close(conn, sub, g.key, now)


def dispatch(conn: Connection, now: int) -> Dispatched:
    """Queue every message that is due now; say what was queued, held, and when the next falls due."""
    out = Dispatched()
    waiting = NOTICE.select(conn, {"message_seq IS NULL": True}, order_by="id", limit=None)
    if not waiting:
        return out
    by_sub: dict[str, list[NoticeRow]] = {}
    for n in waiting:
        by_sub.setdefault(n.subscription_id, []).append(n)
    for sub in subscription_rows.select(conn, enabled=True):
        if sub.id in by_sub:
            _dispatch_one(conn, sub, by_sub[sub.id], now, out)
    return out


def select(
    conn: Connection, *, subscription_id: str | None, waiting: bool | None, limit: int | None
) -> list[NoticeRow]:
    """Notices in the order they were queued."""
    where = {
        "subscription_id = ?": subscription_id,
        ("message_seq IS NULL" if waiting else "message_seq IS NOT NULL"): waiting,
    }
    return NOTICE.select(conn, where, order_by="id", limit=limit)


def waiting_count(conn: Connection, subscription_id: str | None) -> int:
    return NOTICE.count(conn, {"message_seq IS NULL": True, "subscription_id = ?": subscription_id})


__all__ = ["MESSAGE_TYPES", "NOTICE", "Dispatched", "NoticeRow", "dispatch", "record", "select", "waiting_count"]
