"""Benchmark peers: what users of this field write or run instead of ``ioc ingest``."""

from typing import Final

TOPICS: Final = ("ioc/v1/+/+/+/telemetry", "ioc/v1/+/+/+/event")
"""What every peer subscribes to: device readings and camera events (statuses carry none)."""
