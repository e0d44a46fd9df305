"""The storage layout: which measurements, tags and fields Mekong IOC keeps in InfluxDB.

Declared here once. Ingest writes these names (line protocol, :mod:`storage.lineprotocol`); the
API, the dashboards, the backtest and the benchmarks read them back (InfluxQL,
:mod:`storage.influxql`). ``tests/unit/test_storage_layout.py`` fails if a measurement name is
spelt out anywhere else.

    measurement       tags                                       fields
    <kind>            crop, device_id, district, province, site  seq, the kind's TELEMETRY_FIELDS
    camera (events)   crop, device_id, district, event, ...      seq, EVENT_FIELDS
    device_status     crop, device_id, district, province, site  online, STATUS_FIELDS
    alerts            the device's, rule_id, severity, state     level, value, message_vi, message_en

Every point is timestamped with its device's (or the transition's) time, in milliseconds.
"""

from __future__ import annotations

from typing import Final

from contract.fields import Kind

# --- measurements ------------------------------------------------------------------------------

KIND_MEASUREMENTS: Final[dict[Kind, str]] = {kind: kind.value for kind in Kind}
"""Each device kind's measurement, named by its :class:`~contract.fields.Kind` value: its telemetry
goes there, and a camera's events too (with an :data:`EVENT` tag that telemetry points lack)."""

TELEMETRY_MEASUREMENTS: Final[tuple[str, ...]] = tuple(KIND_MEASUREMENTS.values())
"""The kind measurements in :class:`~contract.fields.Kind` order, e.g. for a ``FROM`` list."""

STATUS_MEASUREMENT: Final = "device_status"
"""Status reports of every kind: one point per report on a device's status channel, and one
(``online=0``) when the broker sends its will. Same tags as the device's readings."""

ALERTS_MEASUREMENT: Final = "alerts"
"""Alert transitions (firing, resolved) as ingest's rule engine makes them, for Grafana's
annotations and the overview; the alert store (SQL) is the record, this is a copy to chart."""

# --- tags every reading and status carries -----------------------------------------------------

CROP: Final = "crop"
"""What the site grows or farms (``rice``, ``shrimp``, ...)."""
DEVICE_ID: Final = "device_id"
"""The registry's device id."""
DISTRICT: Final = "district"
"""District slug (unique within its province)."""
PROVINCE: Final = "province"
"""Province slug."""
SITE: Final = "site"
"""Kind of site (``river``, ``canal``, ``pond``, ``field``, ...)."""

DEVICE_TAGS: Final = (CROP, DEVICE_ID, DISTRICT, PROVINCE, SITE)
"""The tag keys every reading and status point carries, in the order series keys sort them.

A device's tags come from the registry, never from a payload: a device can not file itself under
another province, and a registry change retags its next points. A tag is left out when empty."""

EVENT: Final = "event"
"""The event class of a camera event point (one of :data:`~contract.fields.CAMERA_EVENTS`); it sorts
between :data:`DISTRICT` and :data:`PROVINCE` in the series key. A camera's telemetry points have no
such tag (in InfluxQL: ``"event" = ''``)."""

# --- fields of device_status ----------------------------------------------------------------------

STATUS_ONLINE: Final = "online"
"""Integer field of :data:`STATUS_MEASUREMENT`: 1 the device said online, 0 offline (or its will).
The status channel's other fields (:data:`~contract.fields.STATUS_FIELDS`) follow it."""

# --- the alerts measurement -----------------------------------------------------------------------

RULE_ID: Final = "rule_id"
"""The rule pack's id of the rule that fired or resolved."""
SEVERITY: Final = "severity"
"""The rule's severity label (``info``, ``warning``, ``critical``)."""
STATE: Final = "state"
"""The transition: ``firing`` or ``resolved``."""

ALERT_TAGS: Final = (CROP, DEVICE_ID, DISTRICT, PROVINCE, RULE_ID, SEVERITY, SITE, STATE)
"""The tag keys of an :data:`ALERTS_MEASUREMENT` point, in the order ingest writes them (sorted): the
device's tags, as the registry said when the transition was made, and the rule's."""

LEVEL: Final = "level"
"""Integer field: the severity as a number (1 info, 2 warning, 3 critical), to compare and count."""
VALUE: Final = "value"
"""Float field: the value that met (or no longer met) the condition; absent for no-data rules."""
MESSAGE_VI: Final = "message_vi"
"""String field: the alert's message in Vietnamese."""
MESSAGE_EN: Final = "message_en"
"""String field: the alert's message in English."""

ALERT_FIELDS: Final = (LEVEL, VALUE, MESSAGE_VI, MESSAGE_EN)
"""The field keys of an :data:`ALERTS_MEASUREMENT` point, in the order ingest writes them."""
