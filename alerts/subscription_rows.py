"""Webhook subscriptions as rows: added, read, changed and removed over one connection (the caller's transaction)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from alerts.database import Connection
from alerts.errors import NotFound
from alerts.notify import Pacing, QuietHours
from alerts.schema import FLAG, NAMES, SEVERITY, Column, Shape
from alerts.subscriptions import Filters, Near, Subscription, parse_language

NEAR = Shape(Near, prefix="near_", nullable=True)
"""``near_lat``, ``near_lon``, ``near_radius_km``: all NULL for no circle."""
FILTERS = Shape(
    Filters,
    columns={
        **dict.fromkeys(("provinces", "districts", "devices", "kinds", "rule_ids", "crops"), NAMES),
        "min_severity": SEVERITY,
        "near": NEAR,
    },
)
PACING = Shape(Pacing, columns={"quiet": Column(str, QuietHours.parse)})
"""``group_wait_s``, ``group_interval_s``, ``quiet`` (``21:00-05:30`` or NULL), ``max_per_hour``."""
SUBSCRIPTION = Shape(
    Subscription,
    "subscriptions",
    columns={"language": Column(load=parse_language), "filters": FILTERS, "enabled": FLAG, "pacing": PACING},
)


def add(conn: Connection, subscription: Subscription) -> Subscription:
    """Store a new subscription; it as read back."""
    SUBSCRIPTION.insert(conn, SUBSCRIPTION.values(subscription))
    return get(conn, subscription.id)


def get(conn: Connection, sub_id: str) -> Subscription:
    """One subscription by id (raises :class:`NotFound`)."""
    row = conn.execute("SELECT * FROM subscriptions WHERE id = ?", (sub_id,)).fetchone()
    if row is None:
        raise NotFound(f"no subscription {sub_id!r}")
    return SUBSCRIPTION.load(row)


def select(conn: Connection, *, enabled: bool | None = None) -> list[Subscription]:
    """Subscriptions in the order they were added (only enabled or disabled ones if ``enabled`` says)."""
    where = {"enabled = ?": None if enabled is None else int(enabled)}
    return SUBSCRIPTION.select(conn, where, order_by="rowid", limit=None)


def update(conn: Connection, sub_id: str, changes: Mapping[str, Any]) -> Subscription:
    """Change some fields (field → new value); the subscription after the change."""
    if SUBSCRIPTION.update(conn, changes, "id = ?", sub_id).rowcount == 0:
        raise NotFound(f"no subscription {sub_id!r}")
    if changes.get("enabled") is False:
        _drop_waiting(conn, sub_id)
    return get(conn, sub_id)


def disable(conn: Connection, sub_id: str, reason: str, at_ms: int) -> None:
    """Stop queueing events for a subscription, saying why."""
    SUBSCRIPTION.update(conn, {"enabled": False, "disabled_reason": reason, "updated_at_ms": at_ms}, "id = ?", sub_id)
    _drop_waiting(conn, sub_id)


def _drop_waiting(conn: Connection, sub_id: str) -> None:
    """A disabled subscriber's notices no message carries yet go: enabled again, it hears what changes
    from then on, not an alert that may have ended meanwhile (no notice is queued while disabled)."""
    conn.execute("DELETE FROM notices WHERE subscription_id = ? AND message_seq IS NULL", (sub_id,))


def remove(conn: Connection, sub_id: str) -> None:
    """Delete a subscription with its queue, delivery log and dead letters."""
    if conn.execute("DELETE FROM subscriptions WHERE id = ?", (sub_id,)).rowcount == 0:
        raise NotFound(f"no subscription {sub_id!r}")
