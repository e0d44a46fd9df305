"""Run the ingest service as a process: signals, metrics endpoint, rules, webhooks."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import start_http_server

from alerts.config import WebhookSettings
from alerts.errors import AlertsError
from alerts.sender import WebhookSender
from alerts.store import AlertStore
from contract.retry import Backoff
from ingest.alerting import Alerting
from ingest.config import IngestSettings
from ingest.errors import ConfigError
from ingest.registry import EXTERNAL_SCHEMES, Registry
from ingest.service import IngestService
from ingest.sources.config import NATIVE_ONLY, load_sources
from registry.errors import RegistryError
from registry.files import fleet_tags
from rules.errors import PackError
from rules.pack import DEFAULT_PACK, load_pack

if TYPE_CHECKING:
    from registry.store import DeviceRegistry

log = logging.getLogger(__name__)


@dataclass
class IngestProcess:
    """The ingest service with its rules and its webhook sender (either may be off)."""

    service: IngestService
    alerting: Alerting | None = None
    sender: WebhookSender | None = None


def open_devices(
    settings: IngestSettings, schemes: Iterable[str] = EXTERNAL_SCHEMES
) -> tuple[DeviceRegistry | None, int, Registry]:
    """The registry database and its revision, and ingest's registry of its devices (keeping the
    external ids of ``schemes``, those the sources look up); a fleet file has no database (None, and
    revision 1, as its import into an empty registry had).

    A fleet file is read as it is (:func:`~registry.files.fleet_tags`): nothing changes it while ingest
    runs, and without a database ingest does not load SQLAlchemy (11 MiB of its memory).
    """
    devices = Registry(schemes=schemes)
    if not settings.registry_url:
        try:
            devices.apply(fleet_tags(settings.fleet_file))
        except RegistryError as exc:
            raise ConfigError(f"{exc} (the fleet file: --fleet, IOC_FLEET)") from exc
        return None, 1 if len(devices) else 0, devices
    from registry.source import open_source  # the database's (SQLAlchemy), only when there is one

    try:
        opened = open_source(settings.registry_url, settings.fleet_file, tags_into=devices.apply)
    except RegistryError as exc:
        raise ConfigError(f"{exc} (the device registry: --registry-url, IOC_REGISTRY_URL)") from exc
    return opened.registry, opened.revision, devices


@contextlib.contextmanager
def start_up() -> Iterator[None]:
    """Around :func:`build` in a process: start-up makes a few objects per registered device, a
    million at 100,000 devices, and the cyclic garbage collector would scan them again and again
    while they are made (a fifth of a second). It is paused meanwhile, and what start-up built is
    frozen out of later collections (``gc.freeze``): it lives as long as the process."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def build(settings: IngestSettings, webhooks: WebhookSettings) -> IngestProcess:
    """Everything ``ioc ingest`` runs; raises :class:`ConfigError` for a bad registry, fleet file or pack."""
    sources = load_sources(settings.sources) if settings.sources else NATIVE_ONLY
    source, revision, fleet = open_devices(settings, sources.external_schemes)
    try:
        pack = load_pack(settings.rules_pack or DEFAULT_PACK) if settings.rules else None
    except PackError as exc:
        raise ConfigError(f"{exc} (the rule pack: --rules-pack, IOC_RULES_PACK)") from exc
    if pack is None:
        service = IngestService(settings, fleet, sources=sources)
        service.follow(source, revision)
        return IngestProcess(service)
    try:
        store = AlertStore(
            webhooks.alerts_db, policy=webhooks.target_policy(), busy_timeout_s=webhooks.alerts_busy_timeout_s
        )
    except AlertsError as exc:
        raise ConfigError(f"alert store {webhooks.alerts_db}: {exc} (--alerts-db, IOC_ALERTS_DB)") from exc
    service = IngestService(settings, fleet, sources=sources)
    follower = service.follow(source, revision)
    sender = WebhookSender(store, webhooks) if settings.webhooks else None
    alerting = Alerting(
        pack, service.registry.devices, store,
        deliver_max_age_ms=int(settings.alerts_deliver_max_age_s * 1000),
        registry=service.metrics.registry,
        notify=sender.notify if sender else (lambda: None),
        retry=Backoff(settings.retry_initial_s, settings.retry_max_s),
    )  # fmt: skip
    service.attach_rules(alerting.on_batch, alerting.tick)
    follower.listeners.append(alerting.follow)
    return IngestProcess(service, alerting, sender)


async def run_until_stopped(process: IngestProcess, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set; the service drains, then the sender stops."""
    sender_stop = asyncio.Event()
    sender_task = None
    if process.sender is not None:
        sender_task = asyncio.create_task(process.sender.run(sender_stop), name="webhook-sender")
    try:
        await process.service.run(stop)
    finally:
        sender_stop.set()
        if sender_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await sender_task
        if process.alerting is not None:
            await process.alerting.close()
        follower = process.service.follower
        if follower is not None and follower.source is not None:
            follower.source.close()


async def run_until_signalled(process: IngestProcess) -> None:
    """Run until SIGTERM or SIGINT, then drain and return; :class:`ConfigError` if the metrics port is taken."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    s = process.service.settings
    if s.metrics_port:
        try:
            start_http_server(s.metrics_port, addr=s.metrics_host, registry=process.service.metrics.registry)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {s.metrics_host}:{s.metrics_port} ({exc.strerror or exc}): choose another "
                "--metrics-port (IOC_METRICS_PORT), 0 for none, or check --metrics-host (IOC_METRICS_HOST)"
            ) from exc
    rules = f"{len(process.alerting.engine.rules)} rules" if process.alerting else "rules off"
    log.info(
        "ingest: %s → %s (%s), %d devices, %s",
        s.mqtt_url,
        s.influx_url,
        s.influx_api,
        len(process.service.registry),
        rules,
    )
    await run_until_stopped(process, stop)
    log.info("ingest: drained and stopped")
