"""The registry's exceptions: one base class, caught at the edges (CLI, API, ingest start-up)."""

from __future__ import annotations


class RegistryError(Exception):
    """The registry cannot do what was asked; the message says why and what to fix."""


class RegistryUnavailable(RegistryError):
    """The registry database cannot be opened or reached (a bad URL, a server that is down)."""


class DeviceNotFound(RegistryError):
    """No device with that id."""


class DeviceExists(RegistryError):
    """A device with that id (or one of its external ids) is registered already."""


class ImportRefused(RegistryError):
    """An import with bad rows: nothing was imported; ``problems`` names each row and field."""

    def __init__(self, source: str, problems: list[str]) -> None:
        shown = "; ".join(problems[:10]) + (f"; … {len(problems) - 10} more" if len(problems) > 10 else "")
        super().__init__(f"{source}: {len(problems)} bad row(s), nothing imported: {shown}")
        self.problems = problems
