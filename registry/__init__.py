"""The device registry: a database of devices (SQLite by default, PostgreSQL for several machines).

Every write bumps one revision counter, so a running ingest or API follows changes by polling it
(:meth:`registry.store.DeviceRegistry.changes_since`). The fleet YAML and CSV stay as import and
export formats (:mod:`registry.files`).
"""
