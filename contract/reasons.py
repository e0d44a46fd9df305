"""Why ingest refused a message: the last level of its dead-letter topic ``ioc/v1/_dlq/{reason}``."""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    """A rejection reason. Each names what the sender must fix."""

    BAD_TOPIC = "bad_topic"
    """The topic is not ``ioc/v1/{province}/{kind}/{device_id}/{channel}`` with a valid id."""
    UNKNOWN_DEVICE = "unknown_device"
    """The device id is not in the fleet registry."""
    TOPIC_MISMATCH = "topic_mismatch"
    """Province or kind in the topic disagree with the registry, or the channel is not the kind's."""
    TOO_LARGE = "too_large"
    """The payload, or its number of readings, is over the limit."""
    BAD_UTF8 = "bad_utf8"
    """The payload is not UTF-8."""
    BAD_JSON = "bad_json"
    """The payload is not JSON (NaN and Infinity literals are not JSON)."""
    BAD_SHAPE = "bad_shape"
    """JSON, but not a reading object or ``{"readings": [...]}``."""
    MISSING_FIELD = "missing_field"
    """``ts`` or ``seq`` is missing, or the reading has no measurement at all."""
    UNKNOWN_FIELD = "unknown_field"
    """A field the contract does not define for this kind and channel."""
    BAD_TYPE = "bad_type"
    """A field has the wrong JSON type (a string, a boolean or null where a number belongs)."""
    OUT_OF_RANGE = "out_of_range"
    """A value outside the field's physical range."""
    BAD_UNIT = "bad_unit"
    """A value in a unit that cannot be converted to the field's own (another format's payload)."""
    BAD_TIMESTAMP = "bad_timestamp"
    """``ts`` is before 2000, more than 5 minutes ahead, or not epoch milliseconds."""
    SPARKPLUG_REBIRTH = "sparkplug_rebirth"
    """Sparkplug B data that cannot be read without its edge node's birth (none seen since ingest
    started, a ``seq`` gap, an alias no birth declared); the node was asked to rebirth (NCMD)."""
    DB_REJECTED = "db_rejected"
    """InfluxDB refused the line (HTTP 400/422); the detail carries its message."""
