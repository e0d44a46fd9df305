"""The ingest exception tree.

    IngestError
    ├── ConfigError          bad settings or fleet file: refuse to start
    └── WriteError           a write to InfluxDB did not succeed
        ├── RetryableWrite   try again later (429, 5xx, connection); carries retry_after
        ├── TooLarge         413: split the batch and try the halves
        └── Rejected         400/422: the server refused the lines; carries its message

Foreign errors (httpx, urllib3, influxdb-client) are mapped into this tree in
:mod:`ingest.influx` and nowhere else.
"""

from __future__ import annotations


class IngestError(Exception):
    """Base of every error the ingest package raises."""


class ConfigError(IngestError):
    """Settings or fleet file are invalid; the message says how to fix them."""


class WriteError(IngestError):
    """A write to InfluxDB did not succeed."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RetryableWrite(WriteError):
    """Transient: the same write may succeed later."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class TooLarge(WriteError):
    """The request body was too large (413): split it."""


class Rejected(WriteError):
    """The server refused (some of) the lines (400/422): they must be dead-lettered."""
