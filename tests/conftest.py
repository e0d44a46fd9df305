"""Fixtures: real Mosquitto, InfluxDB 1.x and PostgreSQL on free loopback ports, data in temp folders."""

from __future__ import annotations

import itertools
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from contract.fleet import Fleet
from ioc.servers import (
    InfluxServer,
    PostgresServer,
    ServerProcess,
    find_binary,
    free_port,
    missing_binaries,
    missing_postgres,
    start_influxd,
    start_mosquitto,
    start_postgres,
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def _servers_installed() -> None:
    missing = missing_binaries()
    if missing:
        pytest.fail(f"integration tests need Debian packages {missing}: run `make test` (installs them)")


@pytest.fixture
def mosquitto(tmp_path: Path, _servers_installed: None) -> Iterator[ServerProcess]:
    """A fresh broker for one test (its own port, persistence folder and sessions)."""
    server = start_mosquitto(tmp_path / "mosquitto")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory, _servers_installed: None) -> Iterator[InfluxServer]:
    """One InfluxDB 1.x for the session; each test gets its own database (``influx_db``)."""
    server = start_influxd(tmp_path_factory.mktemp("influxdb"))
    yield server
    server.stop()


_db_numbers = itertools.count(1)


@pytest.fixture
def influx_db(influxd: InfluxServer) -> str:
    """A new, empty database on the session's InfluxDB."""
    name = f"t{next(_db_numbers)}"
    influxd.create_database(name)
    return name


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL for the session; each test gets its own database (``postgres_url``).

    Its data lives in a ``tempfile.mkdtemp()`` folder, not under pytest's ``tmp_path``: run as root,
    PostgreSQL runs as user ``postgres``, who cannot enter pytest's private temp folders.
    """
    if missing_postgres():
        pytest.fail("the registry and alert-store tests need Debian's postgresql: run `make test` (installs it)")
    data = Path(tempfile.mkdtemp(prefix="ioc-postgres-"))
    try:
        server = start_postgres(data)
        yield server
        server.stop()
    finally:
        shutil.rmtree(data, ignore_errors=True)


_pg_numbers = itertools.count(1)


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    """The URL of a new, empty database on the session's PostgreSQL."""
    return postgres.create_database(f"t{next(_pg_numbers)}")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def alerts_location(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where an empty alert store goes: a SQLite file, or (integration) a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "var" / "alerts.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def victoria_metrics(tmp_path: Path) -> Iterator[ServerProcess]:
    """Debian's VictoriaMetrics: a real server speaking InfluxDB's ``/api/v2/write``."""
    binary = find_binary("victoria-metrics")
    if binary is None:
        pytest.fail("the v2 write test needs Debian's victoria-metrics: run `make test` (installs it)")
    port = free_port()
    data = tmp_path / "vm"
    data.mkdir()
    argv = [binary, f"-storageDataPath={data}", f"-httpListenAddr=127.0.0.1:{port}", "-retentionPeriod=100y"]
    server = ServerProcess("victoria-metrics", argv, port, data).start()
    yield server
    server.stop()


@dataclass(frozen=True)
class SimulatedData:
    """A database filled the way production fills it: a simulated fleet through ingest and rules."""

    influx_url: str
    db: str
    fleet: Fleet
    fleet_file: Path
    alerts_db: Path
    start_ms: int
    end_ms: int


@pytest.fixture(scope="session")
def simulated_data(influxd: InfluxServer, tmp_path_factory: pytest.TempPathFactory) -> SimulatedData:
    """48 h of a 40-device fleet (plus the scripted scenarios) stored by ingest with rules on.

    Shared by the API and dashboard tests: read it, never write to it.
    """
    from alerts.config import WebhookSettings
    from contract.fleet import dump_fleet
    from ioc.demo import demo_fleet
    from ioc.demo_scenarios import play_scenarios
    from simulators.config import SimulateSettings
    from simulators.publisher import FleetPublisher
    from simulators.scenarios import scenario_fleet
    from tests.helpers import PipelineThread, ingest_settings

    root = tmp_path_factory.mktemp("simulated")
    broker = start_mosquitto(root / "mosquitto")
    db = "simulated"
    influxd.create_database(db)
    fleet = demo_fleet(40, 3)
    fleet_file = root / "fleet.yaml"
    dump_fleet(fleet, fleet_file)
    scripted = {d.id for d in scenario_fleet().devices}
    simulated = Fleet(devices=tuple(d for d in fleet.devices if d.id not in scripted))
    webhooks = WebhookSettings(_env_file=None, alerts_db=root / "alerts.db")  # type: ignore[call-arg]
    settings = ingest_settings(broker.port, influxd.url, db, fleet=fleet_file, rules=True, webhooks=False)
    end = int(time.time() * 1000)
    try:
        with PipelineThread(settings, webhooks) as pipeline:
            sim = SimulateSettings(  # type: ignore[call-arg]
                _env_file=None, mqtt_url=f"mqtt://127.0.0.1:{broker.port}", fleet=fleet_file, seed=3,
                backfill_hours=48, duration=0, rate=100,
            )  # fmt: skip
            stats = FleetPublisher(simulated, sim).run()
            n = stats.readings_acked + play_scenarios(f"mqtt://127.0.0.1:{broker.port}", end)
            pipeline.wait_for(lambda: pipeline.metric("ioc_ingest_readings_stored_total") >= n, what="all stored")
    finally:
        broker.stop()
    return SimulatedData(influxd.url, db, fleet, fleet_file, root / "alerts.db", end - 48 * 3_600_000, end)
