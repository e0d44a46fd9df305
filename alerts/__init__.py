"""Alerts: the store of alert lifecycles, webhook subscriptions, a durable outbox and its sender.

The rule engine (:mod:`rules`) says *what changed*; this package remembers it and tells people:

- :class:`~alerts.store.AlertStore` — SQLite (WAL) or PostgreSQL (:mod:`alerts.database`): alerts
  (firing → resolved, acknowledged), subscriptions, and the outbox rows written in the same
  transaction as the alert change;
- :class:`~alerts.sender.WebhookSender` — delivers the outbox with Standard Webhooks signatures,
  per subscriber in order, retrying with back-off; dead letters can be replayed;
- :class:`~alerts.receiver.WebhookReceiver` — a small verifying receiver for the demo and tests.
"""
