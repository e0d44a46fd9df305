"""Run the ingest service as a process: signals, metrics endpoint, settings and fleet checks."""

from __future__ import annotations

import asyncio
import logging
import signal

from prometheus_client import start_http_server

from contract.fleet import FleetError, load_fleet
from ingest.config import IngestSettings
from ingest.errors import ConfigError
from ingest.service import IngestService

log = logging.getLogger(__name__)


def build_service(settings: IngestSettings) -> IngestService:
    """The service for ``settings``; raises :class:`ConfigError` when the fleet file is bad."""
    try:
        fleet = load_fleet(settings.fleet)
    except FleetError as exc:
        raise ConfigError(str(exc)) from exc
    return IngestService(settings, fleet)


async def run_until_signalled(service: IngestService) -> None:
    """Run until SIGTERM or SIGINT, then drain and return."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    s = service.settings
    if s.metrics_port:
        start_http_server(s.metrics_port, addr=s.metrics_host, registry=service.metrics.registry)
    log.info("ingest: %s → %s (%s), %d devices", s.mqtt_url, s.influx_url, s.influx_api, len(service.registry))
    await service.run(stop)
    log.info("ingest: drained and stopped")
