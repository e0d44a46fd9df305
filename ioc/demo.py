"""``ioc demo``: the whole pipeline on this machine, with a live progress line.

Starts Mosquitto and InfluxDB 1.x (data under ``var/``), the ingest service, and a simulated fleet
that first publishes recent history fast, then runs live. With ``--duration`` it stops by itself,
drains, and returns a summary whose ``stored`` is counted back from InfluxDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.console import Console
from rich.live import Live
from rich.text import Text

from alerts.config import WebhookSettings
from alerts.receiver import WebhookReceiver
from alerts.signing import generate_secret
from contract.clock import now_ms
from contract.fields import Kind
from contract.fleet import Fleet, dump_fleet, load_fleet
from contract.topics import device_topic, mqtt_endpoint
from ingest.config import IngestSettings
from ingest.runner import IngestProcess, build, run_until_stopped
from ingest.sources.config import load_sources
from ioc.demo_broker import DemoBroker, start_demo_broker
from ioc.errors import UserError, blame
from ioc.servers import InfluxServer, free_port, missing_binaries, start_influxd
from registry.store import DeviceRegistry
from simulators.config import SimFormat, SimulateSettings
from simulators.fleetgen import generate_fleet
from simulators.formats import connections
from simulators.formats.sources import write_sources
from simulators.publisher import FleetPublisher, device_password
from simulators.scenarios import SCENARIOS, scenario_fleet
from storage.influxql import query

log = logging.getLogger(__name__)
DB = "ioc"


class DemoSettings(BaseSettings):
    """Settings of ``ioc demo`` (env ``IOC_DEMO_*``)."""

    model_config = SettingsConfigDict(env_prefix="IOC_DEMO_", env_file=".env", extra="ignore")

    duration: float | None = Field(None, ge=0, description="live seconds before stopping (default: until Ctrl-C)")
    devices: int = Field(200, ge=1, le=100_000, description="fleet size")
    seed: int = Field(1, ge=0, description="random seed of fleet and signals")
    backfill_hours: float = Field(72.0, ge=0, le=24 * 60, description="history published first, fast")
    rate: float | None = Field(
        None, gt=0, description="live messages per second (default: one reading per device every 10 s)"
    )
    malformed_share: float = Field(
        0.005, ge=0, le=1, description="share of malformed messages (shows the dead-letter path)"
    )
    var_dir: Path = Field(Path("var"), description="data folder for the servers and the fleet file")
    mqtt_port: int = Field(1883, ge=0, le=65_535, description="broker port, loopback (a free one if taken)")
    mqtts_port: int = Field(8883, ge=0, le=65_535, description="broker port over TLS (a free one if taken)")
    influx_port: int = Field(8086, ge=0, le=65_535, description="InfluxDB port (a free one if taken)")
    metrics_port: int = Field(9108, ge=0, le=65_535, description="ingest metrics port (a free one if taken)")
    format: SimFormat = Field(
        "mixed",
        description="payload format of the simulated fleet: mixed (stations behind ChirpStack, pond sensors "
        "behind Sparkplug edge nodes, SenML traps, the rest native), ioc_v1 or any one format",
    )


def _port_or_free(port: int) -> int:
    if port:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                pass
    return free_port()


def demo_fleet(devices: int, seed: int) -> Fleet:
    """The generated fleet, with the scripted scenarios' devices in place of its last few."""
    scripted = scenario_fleet().devices
    if devices < 2 * len(scripted):
        return generate_fleet(devices, seed)
    generated = generate_fleet(devices - len(scripted), seed).devices
    return Fleet(devices=(*generated, *scripted))


def play_scenarios(mqtt_url: str, end_ms: int, *, ca_file: Path | None = None, secret: bytes | None = None) -> int:
    """Publish every scripted scenario, ending now (so its alerts reach the farmers' webhooks).

    Each scenario device connects on its own, as a field device would: over TLS for ``mqtts://``
    (trusting ``ca_file``), and with its account (password derived from the fleet ``secret``) when
    there is one.
    """
    endpoint = mqtt_endpoint(mqtt_url)
    by_id = scenario_fleet().by_id()
    per_device: dict[str, list[tuple[str, bytes]]] = {}
    for script in SCENARIOS.values():
        for device_id, channel, reading in script(end_ms):
            d = by_id[device_id]
            topic = device_topic(d.province, d.kind, d.id, channel)
            per_device.setdefault(device_id, []).append((topic, msgspec.json.encode(reading)))
    published = 0
    for device_id, messages in per_device.items():
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=paho.MQTTv5)
        if secret is not None:
            client.username_pw_set(device_id, device_password(secret, device_id))
        if endpoint.tls:
            client.tls_set(ca_certs=str(ca_file) if ca_file else None)
        client.connect(endpoint.host, endpoint.port)
        client.loop_start()
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(30)
        client.disconnect()
        client.loop_stop()
        published += sum(1 for i in infos if i.is_published())
    return published


def count_stored(url: str, db: str = DB) -> int:
    """Readings in InfluxDB: points of the four kind measurements (each carries ``seq``)."""
    total = 0
    for kind in Kind:
        for series in query(url, f'SELECT count("seq") FROM "{kind.value}"', db=db):
            total += int(series["values"][0][1])
    return total


class _Progress:
    """One status line: live on a terminal, a plain line every few seconds otherwise."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._live = Live(console=console, refresh_per_second=4, transient=False) if console.is_terminal else None
        self._last_plain = 0.0
        self._last: tuple[float, float] | None = None

    def __enter__(self) -> _Progress:
        if self._live:
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live:
            self._live.__exit__(None, None, None)

    def update(self, phase: str, published: int, stored: float, rejected: float, lag_s: float) -> None:
        now = time.monotonic()
        rate = 0.0
        if self._last is not None and now > self._last[0]:
            rate = (stored - self._last[1]) / (now - self._last[0])
        self._last = (now, stored)
        line = (
            f"{phase:8} published {published:>8,} stored {int(stored):>8,} rejected {int(rejected):>5,} "
            f"rate {rate:>7,.0f}/s backlog {max(0, published - int(stored)):>6,} lag {lag_s:4.2f}s"
        )
        if self._live:
            self._live.update(Text(line))
        elif now - self._last_plain >= 5:
            self._last_plain = now
            self._console.print(line, highlight=False, soft_wrap=True)


def run_demo(settings: DemoSettings) -> dict[str, Any]:
    """Run the demo; return the summary printed as the last stdout line."""
    missing = missing_binaries()
    if missing:
        raise UserError(
            f"missing Debian packages: {' '.join(missing)} — run `make demo` as root to install "
            "them, `sudo apt-get install " + " ".join(missing) + "`, or use `docker compose up`"
        )
    var = settings.var_dir.resolve()
    fleet = demo_fleet(settings.devices, settings.seed)
    fleet_file = var / "fleet.yaml"
    with blame("--var-dir (IOC_DEMO_VAR_DIR)"):
        for sub in ("mosquitto", "influxdb"):
            shutil.rmtree(var / sub, ignore_errors=True)  # a demo starts from empty servers
        for name in ("alerts.db", "registry.db"):
            for suffix in ("", "-wal", "-shm"):
                (var / (name + suffix)).unlink(missing_ok=True)
        dump_fleet(fleet, fleet_file)
    registry_url = f"sqlite:///{var / 'registry.db'}"
    with closing(DeviceRegistry(registry_url)) as registry:  # provisioned as an operator would
        registry.import_devices(fleet.devices, source=str(fleet_file))
    sources_file = var / "sources.yaml"  # reads every format the simulator publishes
    with blame("--var-dir (IOC_DEMO_VAR_DIR)"):
        write_sources(sources_file)
    sources = load_sources(sources_file)
    scripted = {d.id for d in scenario_fleet().devices}
    links = [
        link
        for _, _, link in connections([d for d in fleet.devices if d.id not in scripted], settings.format)
        if link is not None
    ]
    console = Console(stderr=True)
    broker: DemoBroker | None = None
    influx: InfluxServer | None = None
    try:
        broker = start_demo_broker(
            var, port=_port_or_free(settings.mqtt_port), tls_port=_port_or_free(settings.mqtts_port),
            device_ids=[d.id for d in fleet.devices], links=links,
            ingest_topics=[f for s in sources.sources if s.format != "ioc_v1" for f in s.filters],
            ingest_commands=["spBv1.0/+/NCMD/+"],
        )  # fmt: skip
        influx = start_influxd(var / "influxdb", port=_port_or_free(settings.influx_port))
        influx.create_database(DB)
        console.print(
            f"mosquitto {broker.tls_url} (TLS, CA {broker.ca_file}) and {broker.plain_url} (loopback), "
            f"{broker.devices} device and {broker.gateways} gateway accounts, fleet as {settings.format}  "
            f"influxdb {influx.url} (db {DB})  "
            f"registry {registry_url} ({len(fleet.devices)} devices from {fleet_file})",
            highlight=False,
        )
        console.print(
            f"watch: mosquitto_sub -p {broker.server.port} -u {broker.operator.username} "
            f"-P \"$(cat {var / 'operator.pw'})\" -t 'ioc/v1/#' -v",
            highlight=False,
            markup=False,
        )
        return asyncio.run(_run(settings, fleet_file, sources_file, registry_url, broker, influx, console))
    finally:
        for server in (broker, influx):
            if server is not None:
                server.stop()


async def _run(
    settings: DemoSettings,
    fleet_file: Path,
    sources_file: Path,
    registry_url: str,
    broker: DemoBroker,
    influx: InfluxServer,
    console: Console,
) -> dict[str, Any]:
    fleet = load_fleet(fleet_file)
    scripted = {d.id for d in scenario_fleet().devices}
    simulated = Fleet(devices=tuple(d for d in fleet.devices if d.id not in scripted))
    mqtt_url = broker.tls_url
    metrics_port = _port_or_free(settings.metrics_port)
    ingest_settings = IngestSettings(
        mqtt_url=mqtt_url, mqtt_ca_file=broker.ca_file, mqtt_client_id=broker.ingest.username,
        mqtt_username=broker.ingest.username, mqtt_password=broker.ingest.password,
        influx_url=influx.url, influx_api="v1", influx_db=DB, registry_url=registry_url,
        metrics_port=metrics_port, rules=True, webhooks=True, sources=sources_file,
    )  # fmt: skip
    webhooks = WebhookSettings(
        alerts_db=settings.var_dir.resolve() / "alerts.db", webhook_allow_hosts=["127.0.0.0/8"],
        webhook_backoff_initial_s=0.5, webhook_backoff_max_s=5.0, webhook_poll_interval_s=0.2,
    )  # fmt: skip
    process = build(ingest_settings, webhooks)
    assert process.alerting is not None
    store = process.alerting.store
    sim = SimulateSettings(
        mqtt_url=mqtt_url, mqtt_ca_file=broker.ca_file, device_secret_file=broker.device_secret_file,
        fleet=fleet_file, seed=settings.seed, rate=settings.rate or len(fleet.devices) / 10,
        duration=settings.duration, backfill_hours=settings.backfill_hours, malformed_share=settings.malformed_share,
        format=settings.format,
    )  # fmt: skip
    publisher = FleetPublisher(simulated, sim)
    secret = generate_secret()
    with WebhookReceiver(secret, out=sys.stdout) as receiver:
        store.add_subscription(receiver.url, secret, language="vi", description="demo: a farmer's phone")
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1", registry=process.service.metrics.registry)
        console.print(
            f"ingest metrics http://127.0.0.1:{metrics_port}/metrics · farmer webhook {receiver.url} · "
            f"alerts {webhooks.alerts_db} — Ctrl-C stops",
            highlight=False,
        )
        summary = await _stream(settings, process, publisher, broker, console)
        summary["stored"] = count_stored(influx.url)
        transitions = process.service.metrics.registry
        summary["alerts_fired"] = int(sum(
            transitions.get_sample_value("ioc_rules_transitions_total", {"state": "firing", "severity": s}) or 0
            for s in ("info", "warning", "critical")
        ))  # fmt: skip
        summary["alerts_active"] = len(store.active())
        summary["webhooks_delivered"] = receiver.counts.get("accepted", 0)
        summary["webhooks_pending"] = store.pending_count()
    return summary


async def _settle(condition: Callable[[], bool], *, timeout_s: float) -> None:
    """Wait until ``condition()`` holds, at most ``timeout_s`` seconds."""
    for _ in range(int(timeout_s / 0.1)):
        if condition():
            return
        await asyncio.sleep(0.1)


async def _stream(
    settings: DemoSettings, process: IngestProcess, publisher: FleetPublisher, broker: DemoBroker, console: Console
) -> dict[str, Any]:
    """Run the fleet (backfill, then live) through ingest until it stops; drain; count."""
    stop_ingest = asyncio.Event()
    ingest_task = asyncio.create_task(run_until_stopped(process, stop_ingest))
    await _settle(lambda: process.service.connected, timeout_s=30)  # subscribed before anyone publishes
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, publisher.stop.set)
    loop.add_signal_handler(signal.SIGTERM, publisher.stop.set)
    started = time.monotonic()
    pub_thread = threading.Thread(target=publisher.run, name="simulator", daemon=True)
    pub_thread.start()
    m = process.service.metrics
    backfill_published: int | None = None  # readings the backfill published (known once live)
    backfill_done: tuple[float, float] | None = None  # (time, stored) when ingest caught up with it
    scripted = 0
    with _Progress(console) as progress:

        def tick(phase: str) -> None:
            progress.update(
                phase, publisher.stats.readings_acked + scripted, m.value("ioc_ingest_readings_stored_total"),
                m.rejected_total(), m.value("ioc_ingest_lag_seconds"),
            )  # fmt: skip

        while pub_thread.is_alive():
            stored = m.value("ioc_ingest_readings_stored_total")
            if backfill_published is None and publisher.live:
                backfill_published = publisher.stats.readings_sent
            if backfill_done is None and backfill_published is not None and stored >= backfill_published:
                backfill_done = (time.monotonic(), stored)
                # History is in: now the scripted field situations happen, live, for the farmers.
                scripted = await asyncio.to_thread(
                    play_scenarios, broker.tls_url, now_ms(), ca_file=broker.ca_file,
                    secret=broker.device_secret_file.read_bytes().strip(),
                )  # fmt: skip
            tick("live" if backfill_done else "backfill")
            await asyncio.sleep(0.25)
        # Drain: wait until ingest has acknowledged every message the broker took.
        deadline = time.monotonic() + 120
        # What the broker took (not what it refused: a malformed message on another device's id) + the wills.
        taken = publisher.stats.messages_acked - publisher.stats.messages_refused
        expected = taken + publisher.stats.wills + scripted
        while (
            m.value("ioc_ingest_messages_acked_total") < expected
            and time.monotonic() < deadline
            and not ingest_task.done()
        ):
            tick("draining")
            await asyncio.sleep(0.1)
        tick("done")
    if process.alerting is not None:  # the last webhooks go out before the sender stops
        store = process.alerting.store
        await _settle(lambda: store.pending_count() == 0, timeout_s=30)
    stop_ingest.set()
    await ingest_task
    ended = time.monotonic()
    stats = publisher.stats
    with contextlib.suppress(Exception):
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
    backfill_s = backfill_done[0] - started if backfill_done else 0.0
    live_s = ended - backfill_done[0] if backfill_done else 0.0
    live_stored = m.value("ioc_ingest_readings_stored_total") - (backfill_done[1] if backfill_done else 0.0)
    return {
        "published": stats.readings_acked + scripted,
        "stored": None,
        "rejected": int(m.rejected_total()),
        "malformed_sent": stats.malformed_acked,
        "messages": stats.messages_acked + scripted,
        "statuses": stats.statuses_acked,
        "devices": len(publisher.fleet.devices) + len(scenario_fleet().devices),
        "devices_offline": stats.devices_offline,
        "scenario_readings": scripted,
        "backfill_readings": backfill_published or 0,
        "backfill_seconds": round(backfill_s, 2),
        "backfill_readings_per_s": round((backfill_published or 0) / backfill_s, 1) if backfill_s > 0 else 0.0,
        "live_readings_per_s": round(live_stored / live_s, 1) if live_s > 0 else 0.0,
        "seconds": round(ended - started, 1),
        "broker_dropped": int(m.value("ioc_broker_messages_dropped")),
        "broker_refused": stats.messages_refused,  # malformed messages under another device's id
    }
