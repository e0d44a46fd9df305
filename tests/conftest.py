"""Fixtures: real Mosquitto and InfluxDB 1.x on free loopback ports, data in temp folders."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from ioc.servers import (
    InfluxServer,
    ServerProcess,
    find_binary,
    free_port,
    missing_binaries,
    start_influxd,
    start_mosquitto,
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
