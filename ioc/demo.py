"""``ioc demo``: the whole pipeline on this machine, with a live progress line.

Starts the local stack (Mosquitto and InfluxDB 1.x, data under ``var/``: :mod:`ioc.local_stack`),
or uses it when ``ioc servers start`` did, the ingest service, and a simulated fleet that first
publishes recent history fast, then runs live, while the scripted situations play on cue
(:mod:`ioc.demo_scenarios`). The API runs beside them, on loopback, over the demo's registry, alert
store and InfluxDB: its alert desk's URL is printed, with an operate key in ``var/desk.key``. With
``--duration`` it stops by itself, drains, and returns a summary whose ``stored`` is counted back
from InfluxDB. Over an earlier demo's ``var/`` it resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import shutil
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from pydantic import Field
from pydantic_settings import SettingsConfigDict
from rich.console import Console
from rich.live import Live
from rich.text import Text

from alerts.config import WebhookSettings
from alerts.database import Location
from alerts.notify import Pacing
from alerts.receiver import WebhookReceiver, carried
from alerts.signing import generate_secret
from alerts.store import AlertStore
from api.config import ApiSettings
from api.keys import KeyStore, Scope
from contract.clock import now_ms
from contract.fields import Kind
from contract.fleet import Device, Fleet, dump_fleet, load_fleet
from ingest.config import IngestSettings
from ingest.runner import IngestProcess, build, run_until_stopped
from ingest.sources.config import load_sources
from ioc.demo_broker import DemoBroker, provision_demo_broker
from ioc.demo_scenarios import ScenarioPlayer
from ioc.errors import UserError, blame
from ioc.local_stack import DB, LocalStack, StackSettings, port_or_free
from ioc.preflight import listen
from ioc.tls import write_atomic
from registry.store import DeviceRegistry
from simulators.config import SimFormat, SimulateSettings
from simulators.fleetgen import generate_fleet
from simulators.formats import connections
from simulators.formats.sources import write_sources
from simulators.publisher import FleetPublisher
from simulators.scenarios import SCENARIOS, scenario_fleet
from storage.influxql import query

if TYPE_CHECKING:
    from api.serve import ApiThread

log = logging.getLogger(__name__)


class DemoSettings(StackSettings):
    """Settings of ``ioc demo`` (env ``IOC_DEMO_*``); the local stack's are shared with ``ioc servers``."""

    model_config = SettingsConfigDict(env_prefix="IOC_DEMO_", env_file=".env", extra="ignore")

    duration: float | None = Field(None, ge=0, description="live seconds before stopping (default: until Ctrl-C)")
    devices: int = Field(200, ge=1, le=100_000, description="fleet size")
    seed: int = Field(1, ge=0, description="random seed of fleet and signals")
    backfill_hours: float = Field(
        72.0, ge=0, le=24 * 60, description="history published first, fast (resumed: only the gap since the last run)"
    )
    rate: float | None = Field(
        None, gt=0, description="live messages per second (default: one reading per device every 10 s)"
    )
    malformed_share: float = Field(
        0.005, ge=0, le=1, description="share of malformed messages (shows the dead-letter path)"
    )
    metrics_port: int = Field(9108, ge=0, le=65_535, description="ingest metrics port (a free one if taken)")
    format: SimFormat = Field(
        "mixed",
        description="payload format of the simulated fleet: mixed (stations behind ChirpStack, pond sensors "
        "behind Sparkplug edge nodes, SenML traps, the rest native), ioc_v1 or any one format",
    )
    fresh: bool = Field(
        False,
        description="delete the data of an earlier demo in the var folder first (its readings, registry, "
        "alerts, API keys, subscriptions and broker accounts); without it a demo resumes over that data",
    )
    api_port: int = Field(0, ge=0, le=65_535, description="loopback port of the API and its alert desk (0: a free one)")


DESK_KEY = "desk.key"
"""The demo's operate key for the alert desk, in ``var/`` (mode 0600)."""
DESK_KEY_NAME = "demo: alert desk"
DEMO_FILE = "demo.json"
"""What the demo in ``var/`` is (fleet size and seed): a resumed demo must be the same fleet."""
DEMO_SUBSCRIPTION = "demo: a farmer's phone (removed when the demo ends)"
DEMO_PACING = Pacing.make(group_wait_s=5, group_interval_s=15)
"""The demo's farmer: grouped as any subscriber, on the demo's clock (minutes, not days)."""
OWNED = (
    "mosquitto", "influxdb", "tls", "alerts.db", "alerts.db-wal", "alerts.db-shm", "registry.db", "registry.db-wal",
    "registry.db-shm", "fleet.yaml", "sources.yaml", "broker-admin.pw", "device-secret.key", "ingest.pw",
    "operator.pw", "servers.json", DEMO_FILE, DESK_KEY,
)  # fmt: skip
"""What a demo keeps in ``var/``: ``--fresh`` deletes these, nothing else."""


class _DemoFile(msgspec.Struct, frozen=True):
    devices: int
    seed: int


def demo_fleet(devices: int, seed: int) -> Fleet:
    """The generated fleet, with the scripted scenarios' devices in place of its last few."""
    scripted = scenario_fleet().devices
    if devices < 2 * len(scripted):
        return generate_fleet(devices, seed)
    generated = generate_fleet(devices - len(scripted), seed).devices
    return Fleet(devices=(*generated, *scripted))


def count_stored(url: str, db: str = DB) -> int:
    """Readings in InfluxDB: points of the four kind measurements (each carries ``seq``)."""
    total = 0
    for kind in Kind:
        for series in query(url, f'SELECT count("seq") FROM "{kind.value}"', db=db):
            total += int(series["values"][0][1])
    return total


def newest_reading_ms(url: str, db: str = DB, *, device: Device | None = None) -> int | None:
    """Device time of the newest stored reading, of one ``device`` or of all (None: no readings yet)."""
    newest: int | None = None
    for kind in [device.kind] if device else Kind:
        where = f" WHERE \"device_id\" = '{device.id}'" if device else ""
        for series in query(url, f'SELECT last("seq") FROM "{kind.value}"{where}', db=db):
            t = int(series["values"][0][0])
            newest = t if newest is None else max(newest, t)
    return newest


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


def _fresh(var: Path) -> list[str]:
    """``--fresh``: stop the local stack and delete what an earlier demo kept in ``var`` (only that)."""
    LocalStack(var).stop()
    deleted = []
    for name in OWNED:
        path = var / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        deleted.append(name)
    return deleted


def _resumable(var: Path, settings: DemoSettings) -> bool:
    """Whether ``var`` holds an earlier demo (to resume); refuse one of another fleet, naming ``--fresh``."""
    try:
        kept = msgspec.json.decode((var / DEMO_FILE).read_bytes(), type=_DemoFile)
    except FileNotFoundError:
        if (var / "registry.db").exists() or (var / "influxdb").exists():
            raise UserError(
                f"{var} holds data of another run (registry.db, influxdb/) but no {DEMO_FILE}: "
                "pass --fresh (IOC_DEMO_FRESH=true) to delete it and start a new demo, or --var-dir for another folder"
            ) from None
        return False
    except (OSError, msgspec.DecodeError) as exc:
        raise UserError(f"{var / DEMO_FILE}: {exc}; pass --fresh (IOC_DEMO_FRESH=true) to start anew") from None
    if (kept.devices, kept.seed) != (settings.devices, settings.seed):
        raise UserError(
            f"{var} holds the demo of {kept.devices} devices (seed {kept.seed}) with its readings, keys, "
            f"subscriptions and acknowledgements: resume it with --devices {kept.devices} --seed {kept.seed}, "
            "or pass --fresh (IOC_DEMO_FRESH=true) to delete that data and start this one"
        )
    return True


def desk_key(alerts_db: Location, key_file: Path) -> str:
    """The demo's operate key: the one in ``key_file`` while it still works (a resumed demo), else a new
    one, written there (mode 0600)."""
    keys = KeyStore(alerts_db)
    try:
        with contextlib.suppress(OSError):
            token = key_file.read_text(encoding="utf-8").strip()
            key = keys.authenticate(token)
            if key is not None and key.scope.allows(Scope.OPERATE):
                return token
        _, token = keys.create(DESK_KEY_NAME, Scope.OPERATE, created_by="ioc demo")
    finally:
        keys.close()
    write_atomic(key_file, (token + "\n").encode(), 0o600)
    return token


@contextlib.asynccontextmanager
async def desk_api(settings: ApiSettings, sock: socket.socket) -> AsyncIterator[ApiThread]:
    """``ioc api`` inside the demo, in a thread of its own on ``sock``; started and stopped off the event
    loop (each may take seconds)."""
    from api.main import create_app  # the web stack loads only when a demo runs
    from api.serve import ApiThread, ApiThreadError

    api = ApiThread(create_app(settings), sock)
    try:
        await asyncio.to_thread(api.__enter__)
    except ApiThreadError:
        raise UserError("the demo's API did not start (see the log above)") from None
    try:
        yield api
    finally:
        await asyncio.to_thread(api.__exit__)


def run_demo(settings: DemoSettings) -> dict[str, Any]:
    """Run the demo; return the summary printed as the last stdout line.

    Over an earlier demo's ``var/`` it resumes: the registry, alerts, API keys, subscriptions,
    broker accounts and readings stay; only the history since the last run is published first.
    """
    console = Console(stderr=True)
    var = settings.var_dir.resolve()
    # bound first: a taken IOC_DEMO_API_PORT is one line (exit 2) before anything starts or is deleted
    api_sock = listen("127.0.0.1", settings.api_port, host_flag="127.0.0.1", port_flag="--api-port (IOC_DEMO_API_PORT)")
    try:
        with blame("--var-dir (IOC_DEMO_VAR_DIR)"):
            if settings.fresh and var.exists():
                deleted = _fresh(var)
                if deleted:
                    console.print(f"--fresh: deleted {', '.join(deleted)} from {var}", highlight=False)
            resumed = _resumable(var, settings)
            var.mkdir(parents=True, exist_ok=True)
        return _run_demo(settings, var, resumed, api_sock, console)
    finally:
        api_sock.close()


def _run_demo(
    settings: DemoSettings, var: Path, resumed: bool, api_sock: socket.socket, console: Console
) -> dict[str, Any]:
    fleet = demo_fleet(settings.devices, settings.seed)
    fleet_file = var / "fleet.yaml"
    registry_url = f"sqlite:///{var / 'registry.db'}"
    with blame("--var-dir (IOC_DEMO_VAR_DIR)"):
        dump_fleet(fleet, fleet_file)
        with closing(DeviceRegistry(registry_url)) as registry:  # provisioned as an operator would
            known = {d.id for d in registry.all_devices()}
            registry.import_devices([d for d in fleet.devices if d.id not in known], source=str(fleet_file))
        (var / DEMO_FILE).write_bytes(msgspec.json.encode(_DemoFile(settings.devices, settings.seed)))
        sources_file = var / "sources.yaml"  # reads every format the simulator publishes
        write_sources(sources_file)
    sources = load_sources(sources_file)
    scripted = {d.id for d in scenario_fleet().devices}
    links = [
        link
        for _, _, link in connections([d for d in fleet.devices if d.id not in scripted], settings.format)
        if link is not None
    ]
    stack = LocalStack(var).start(settings)
    try:
        broker = provision_demo_broker(
            stack, device_ids=[d.id for d in fleet.devices], links=links,
            ingest_topics=[f for s in sources.sources if s.format != "ioc_v1" for f in s.filters],
            ingest_commands=["spBv1.0/+/NCMD/+"],
        )  # fmt: skip
        before = count_stored(stack.influx_url)
        newest = newest_reading_ms(stack.influx_url) if resumed else None
        scenario_newest = {
            d.id: t
            for d in scenario_fleet().devices
            if resumed and (t := newest_reading_ms(stack.influx_url, device=d))
        }
        backfill_hours = settings.backfill_hours
        if newest is not None:  # resumed: only the gap since the last run, never what is stored already
            backfill_hours = max(0.0, min(backfill_hours, (now_ms() - newest - 1_000) / 3_600_000))
        console.print(
            f"{'resumed over' if resumed else 'new demo in'} {var}: "
            f"mosquitto {broker.tls_url} (TLS, CA {broker.ca_file}) and {broker.plain_url} (loopback), "
            f"{broker.devices} device and {broker.gateways} gateway accounts, fleet as {settings.format}  "
            f"influxdb {stack.influx_url} (db {DB}, {before:,} readings stored)  "
            f"registry {registry_url} ({len(fleet.devices)} devices from {fleet_file})",
            highlight=False,
        )
        console.print(
            f"watch: mosquitto_sub -p {broker.port} -i {broker.operator.username} -u {broker.operator.username} "
            f"-P \"$(cat {var / 'operator.pw'})\" -t 'ioc/v1/#' -v",
            highlight=False,
            markup=False,
        )
        summary = asyncio.run(
            _run(settings, backfill_hours, scenario_newest, fleet_file, sources_file, registry_url, broker,
                 stack.influx_url, console, api_sock)
        )  # fmt: skip
        summary["stored"] = count_stored(stack.influx_url) - before
        summary["resumed"] = resumed
        summary["backfill_hours"] = round(backfill_hours, 3)
        return summary
    finally:
        if stack.started:
            stack.stop_started()
            console.print(
                f"servers stopped; the data stays in {var}: `ioc servers start` brings them back "
                "(for `ioc api`, `ioc devices`, `influx`), `ioc demo` resumes",
                highlight=False,
            )
        else:
            console.print("the servers keep running (started by `ioc servers start`; `ioc servers stop`)")


async def _run(
    settings: DemoSettings,
    backfill_hours: float,
    scenario_newest: dict[str, int],
    fleet_file: Path,
    sources_file: Path,
    registry_url: str,
    broker: DemoBroker,
    influx_url: str,
    console: Console,
    api_sock: socket.socket,
) -> dict[str, Any]:
    fleet = load_fleet(fleet_file)
    scripted = {d.id for d in scenario_fleet().devices}
    simulated = Fleet(devices=tuple(d for d in fleet.devices if d.id not in scripted))
    mqtt_url = broker.tls_url
    metrics_port = port_or_free(settings.metrics_port)
    ingest_settings = IngestSettings(
        mqtt_url=mqtt_url, mqtt_ca_file=broker.ca_file, mqtt_client_id=broker.ingest.username,
        mqtt_username=broker.ingest.username, mqtt_password=broker.ingest.password,
        influx_url=influx_url, influx_api="v1", influx_db=DB, registry_url=registry_url,
        metrics_port=metrics_port, rules=True, webhooks=True, sources=sources_file,
    )  # fmt: skip
    webhooks = WebhookSettings(
        alerts_db=settings.var_dir.resolve() / "alerts.db", webhook_allow_hosts=["127.0.0.0/8"],
        webhook_backoff_initial_s=0.5, webhook_backoff_max_s=5.0, webhook_poll_interval_s=0.2,
    )  # fmt: skip
    process = build(ingest_settings, webhooks)
    assert process.alerting is not None
    store = process.alerting.store
    for leftover in store.list_subscriptions():  # a demo that was killed left its subscription behind
        if leftover.description == DEMO_SUBSCRIPTION:
            store.remove_subscription(leftover.id)
    sim = SimulateSettings(
        mqtt_url=mqtt_url, mqtt_ca_file=broker.ca_file, device_secret_file=broker.device_secret_file,
        fleet=fleet_file, seed=settings.seed, rate=settings.rate or len(fleet.devices) / 10,
        duration=settings.duration, backfill_hours=backfill_hours, malformed_share=settings.malformed_share,
        format=settings.format,
    )  # fmt: skip
    publisher = FleetPublisher(simulated, sim)
    player = ScenarioPlayer(
        broker.tls_url, ca_file=str(broker.ca_file), secret=broker.device_secret_file.read_bytes().strip()
    )
    secret = generate_secret()
    key_file = settings.var_dir / DESK_KEY
    desk_key(webhooks.alerts_db, key_file)
    api_settings = ApiSettings(
        _env_file=None, influx_url=influx_url, influx_db=DB, registry_url=registry_url, fleet=None,
        alerts_db=webhooks.alerts_db, mqtt_url=broker.plain_url, api_host="127.0.0.1",
        api_port=api_sock.getsockname()[1], api_log_level="warning",
    )  # fmt: skip
    async with contextlib.AsyncExitStack() as running:
        desk = await running.enter_async_context(desk_api(api_settings, api_sock))
        receiver = running.enter_context(WebhookReceiver(secret, out=sys.stdout))
        console.print(f"alert desk: {desk.base_url}/  (key in {key_file})", highlight=False, soft_wrap=True)
        subscription = store.add_subscription(
            receiver.url, secret, language="vi", description=DEMO_SUBSCRIPTION, pacing=DEMO_PACING
        )
        run_started_ms = now_ms()
        try:
            from prometheus_client import start_http_server

            start_http_server(metrics_port, addr="127.0.0.1", registry=process.service.metrics.registry)
            console.print(
                f"ingest metrics http://127.0.0.1:{metrics_port}/metrics · farmer webhook {receiver.url} · "
                f"alerts {webhooks.alerts_db} — Ctrl-C stops",
                highlight=False,
            )
            summary = await _stream(
                settings, process, publisher, functools.partial(player.start, newest=scenario_newest), player, console
            )
            summary["webhooks_pending"] = store.pending_count() + store.waiting_count()
        finally:
            store.remove_subscription(subscription.id)  # the demo's farmer lives and dies with the demo
        transitions = process.service.metrics.registry
        summary["alerts_fired"] = int(sum(
            transitions.get_sample_value("ioc_rules_transitions_total", {"state": "firing", "severity": s}) or 0
            for s in ("info", "warning", "critical")
        ))  # fmt: skip
        summary["alerts_active"] = len(store.active())
        summary["webhooks_delivered"] = receiver.counts.get("accepted", 0)
        situations: dict[str, list[str]] = {name: [] for name in SCENARIOS}
        heard: Counter[str] = Counter()
        for message in receiver.alerts:
            names = set()
            for notice in carried(message):
                name = player.scenario_of.get(str(notice.get("device_id")))
                if name is not None:
                    names.add(name)
                    if notice.get("notice") in ("opened", "escalated"):
                        situations[name].append(str(notice["rule_id"]))
            heard.update(names)
        summary["situations"] = situations
        fresh = functools.partial(
            _fresh_events, store, since_ms=run_started_ms, max_age_ms=process.alerting.deliver_max_age_ms
        )
        summary["farmer_events"] = fresh(None)  # one message each, before families and grouping
        summary["farmer_messages"] = receiver.counts.get("accepted", 0)
        summary["situation_messages"] = {
            name: {"events": fresh(device), "messages": heard[name]}
            for device, name in player.scenario_of.items()
        }  # fmt: skip
        summary["situations_delivered"] = sum(1 for rules in situations.values() if rules)
        summary["situations_skipped"] = player.stats.skipped
        if player.stats.skipped:
            console.print(
                f"not played again: {', '.join(player.stats.skipped)} — their stations reported within the "
                "scripts' span in the last run (`ioc demo --fresh` starts anew)",
                highlight=False,
            )
    return summary


def _fresh_events(store: AlertStore, device_id: str | None, since_ms: int, max_age_ms: int) -> int:
    """Alert events of this run (of one device, or all) fresh enough to send: what a subscriber of
    everything heard, one message each, before families and grouping (docs/rules.md)."""
    return sum(
        1
        for alert in store.list(device_id=device_id, limit=None)
        for event in store.events(alert.id)
        if event.created_at_ms >= since_ms and event.created_at_ms - event.ts_ms <= max_age_ms
    )


async def _settle(condition: Callable[[], bool], *, timeout_s: float) -> None:
    """Wait until ``condition()`` holds, at most ``timeout_s`` seconds."""
    for _ in range(int(timeout_s / 0.1)):
        if condition():
            return
        await asyncio.sleep(0.1)


async def _stream(
    settings: DemoSettings,
    process: IngestProcess,
    publisher: FleetPublisher,
    play: Callable[[], None],
    player: ScenarioPlayer,
    console: Console,
) -> dict[str, Any]:
    """Run the fleet (backfill, then live) and the scenarios through ingest until it stops; drain; count."""
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
    playing = False
    with _Progress(console) as progress:

        def tick(phase: str) -> None:
            progress.update(
                phase, publisher.stats.readings_acked + player.stats.readings_acked,
                m.value("ioc_ingest_readings_stored_total"), m.rejected_total(), m.value("ioc_ingest_lag_seconds"),
            )  # fmt: skip

        while pub_thread.is_alive():
            stored = m.value("ioc_ingest_readings_stored_total")
            if backfill_published is None and publisher.live:
                backfill_published = publisher.stats.readings_sent
            if backfill_done is None and backfill_published is not None and stored >= backfill_published:
                backfill_done = (time.monotonic(), stored)
                # History is in: now the scripted field situations happen, live, for the farmers.
                await asyncio.to_thread(play)
                playing = True
            tick("live" if backfill_done else "backfill")
            await asyncio.sleep(0.25)
        if not playing:  # stopped before the history was in: the situations still happen
            await asyncio.to_thread(play)
        await asyncio.to_thread(player.wait_played_now)
        played = player.stop()  # what lies ahead in the scripts' time is not sent
        # Drain: wait until ingest has acknowledged every message the broker took.
        deadline = time.monotonic() + 120
        # What the broker took (not what it refused: a malformed message on another device's id) + the wills.
        taken = publisher.stats.messages_acked - publisher.stats.messages_refused
        expected = taken + publisher.stats.wills + played.readings_acked + played.wills
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
        await _settle(lambda: store.waiting_count() == store.pending_count() == 0, timeout_s=30)
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
        "published": stats.readings_acked + played.readings_acked,
        "stored": None,
        "rejected": int(m.rejected_total()),
        "malformed_sent": stats.malformed_acked,
        "messages": stats.messages_acked + played.readings_acked,
        "statuses": stats.statuses_acked,
        "devices": len(publisher.fleet.devices) + len(scenario_fleet().devices),
        "devices_offline": stats.devices_offline,
        "scenario_readings": played.readings_acked,
        "scenario_readings_ahead": played.due,
        "backfill_readings": backfill_published or 0,
        "backfill_seconds": round(backfill_s, 2),
        "backfill_readings_per_s": round((backfill_published or 0) / backfill_s, 1) if backfill_s > 0 else 0.0,
        "live_readings_per_s": round(live_stored / live_s, 1) if live_s > 0 else 0.0,
        "seconds": round(ended - started, 1),
        "broker_dropped": int(m.value("ioc_broker_messages_dropped")),
        "broker_refused": stats.messages_refused,  # malformed messages under another device's id
    }
