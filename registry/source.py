"""Open the device registry a service runs on: a database URL, or a fleet file read into memory.

The API takes either ``IOC_REGISTRY_URL`` (the registry database that ``ioc devices`` writes) or
``IOC_FLEET`` (a YAML or CSV fleet file, imported into an in-memory SQLite registry that lives as long
as the process). :func:`open_source` is that choice, made in one place. Ingest opens a database here
too, but reads a fleet file as it is (:func:`registry.files.fleet_tags`: the same devices, without a
database).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from contract.fleet import DeviceTags
from registry.errors import RegistryError
from registry.files import read_devices
from registry.store import MEMORY_URL, DeviceRecord, DeviceRegistry


@dataclass(frozen=True, slots=True)
class OpenedSource:
    """A registry just opened: the database, its revision, and every device in it at that revision."""

    registry: DeviceRegistry
    revision: int
    records: tuple[DeviceRecord, ...]
    """Decommissioned devices included, in revision order (a fleet file's: by id); empty if they
    went to ``tags_into``."""
    in_memory: bool
    """The fleet file's in-memory registry: what is written to it is lost when the process ends."""


def open_source(
    registry_url: str | None,
    fleet_file: Path,
    *,
    tags_into: Callable[[list[DeviceTags]], object] | None = None,
) -> OpenedSource:
    """The registry at ``registry_url``, or ``fleet_file`` imported into an in-memory one.

    Its devices come as records, or, given ``tags_into`` (ingest, from a database), as :class:`DeviceTags` handed to it
    a few thousand at a time.

    Raises :class:`RegistryError`: the database cannot be opened, or the fleet file cannot be read
    or has bad rows (each named). The caller knows which setting to blame: the URL when it gave one.
    """
    if registry_url:
        registry = DeviceRegistry(registry_url)
        in_memory = False
    else:
        devices = read_devices(fleet_file)
        registry = DeviceRegistry(MEMORY_URL)
        in_memory = True
        try:
            registry.import_devices(devices, source=str(fleet_file))
        except RegistryError:
            registry.close()
            raise
    try:
        if tags_into is not None:
            return OpenedSource(registry, registry.each_tags_since(0, tags_into), (), in_memory)
        revision, records = registry.changes_since(0)
    except RegistryError:
        registry.close()
        raise
    return OpenedSource(registry, revision, tuple(records), in_memory)
