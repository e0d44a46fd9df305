"""The alerts exception tree.

    AlertsError
    ├── ConfigError          bad settings: refuse to start
    ├── StoreError           the store's database failed (locked, unreachable, corrupt, disk full)
    ├── NotFound             no such alert, subscription or dead letter
    ├── InvalidSubscription  a subscription's fields are wrong (language, severity, secret)
    ├── TargetRefused        a webhook URL points where we must not send (private address, bad scheme)
    └── SignatureError       a webhook's signature is missing, wrong or stale (receiver side)

Foreign errors are mapped into this tree in one place each: ``sqlite3`` in :mod:`alerts.sqlite`,
``psycopg`` in :mod:`alerts.postgres`, ``standardwebhooks`` in :mod:`alerts.signing`, DNS in
:mod:`alerts.targets`. HTTP outcomes of a delivery are not exceptions:
:func:`alerts.outbox.classify` turns them into an :class:`~alerts.outbox.Outcome`.
"""

from __future__ import annotations


class AlertsError(Exception):
    """Base of every error the alerts package raises."""


class ConfigError(AlertsError):
    """Settings are invalid; the message says how to fix them."""


class StoreError(AlertsError):
    """The alert store (SQLite or PostgreSQL) could not do what was asked."""


class NotFound(AlertsError):
    """The alert, subscription or dead letter does not exist."""


class InvalidSubscription(AlertsError):
    """A subscription field is invalid; the message names it."""


class TargetRefused(AlertsError):
    """A webhook URL is not allowed: bad scheme, unresolvable, or a private/loopback/link-local address."""

    def __init__(self, message: str, *, url: str, addresses: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.url = url
        self.addresses = addresses


class SignatureError(AlertsError):
    """A webhook could not be verified: missing headers, wrong signature or a stale timestamp."""
