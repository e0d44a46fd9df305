"""A source's ``device`` option (:class:`~ingest.sources.config.DeviceRef`): the registered device a
message names by a topic level or a value of its payload, in the registry's name ``scheme``."""

from __future__ import annotations

from ingest.registry import RegisteredDevice, Registry
from ingest.sources.config import DeviceRef


class DeviceLookup:
    """Finds the active registered device a name (or a topic level) gives, as ``ref`` says."""

    __slots__ = ("_registry", "_scheme", "level", "path")

    def __init__(self, ref: DeviceRef, registry: Registry) -> None:
        self._registry = registry
        self._scheme = ref.scheme
        self.level = ref.topic_level
        """The topic level naming the device (None: ``path`` does)."""
        self.path = ref.path
        """The payload's key naming the device (None: ``level`` does)."""

    def named(self, name: str) -> RegisteredDevice | None:
        """The active device ``name`` is in the scheme; None for an empty or unknown name."""
        if not name:
            return None
        scheme = self._scheme
        if scheme == "id":
            return self._registry.active(name)
        return self._registry.external(scheme, name.lower() if scheme == "dev_eui" else name)

    def in_topic(self, topic: str) -> RegisteredDevice | None:
        """The active device the topic's level names (None: none, or no such level)."""
        return self.named(self._level_name(topic))

    def not_in_topic(self, topic: str) -> str:
        """The ``unknown_device`` detail of a topic whose level names no active device."""
        return f"topic level {self.level} ({self._level_name(topic)!r}) is not an active registered device"

    def _level_name(self, topic: str) -> str:
        level = self.level
        levels = topic.split("/")
        return levels[level] if level is not None and level < len(levels) else ""
