"""Start real Mosquitto and InfluxDB 1.x processes on loopback, with their data in a folder.

Used by ``ioc demo`` (data under ``./var/``) and by the integration tests (temp folders, free
ports). Both servers are Debian's packages: ``mosquitto`` and ``influxdb`` (``influxd``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from ingest.influxql import query

MOSQUITTO_BIN = "mosquitto"
INFLUXD_BIN = "influxd"
_SBIN = ("/usr/sbin", "/usr/bin", "/usr/local/sbin")


class ServerError(RuntimeError):
    """A server binary is missing or did not come up."""


def find_binary(name: str) -> str | None:
    """The path of ``name`` on PATH or in the sbin folders Debian installs daemons to."""
    found = shutil.which(name)
    if found:
        return found
    for folder in _SBIN:
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def missing_binaries() -> list[str]:
    """Debian packages whose daemon is not installed (``mosquitto``, ``influxdb``)."""
    wanted = {"mosquitto": MOSQUITTO_BIN, "influxdb": INFLUXD_BIN}
    return [pkg for pkg, binary in wanted.items() if find_binary(binary) is None]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class ServerProcess:
    """A running server; :meth:`restart` brings it back on the same port with the same data."""

    name: str
    argv: list[str]
    port: int
    data_dir: Path
    ready_timeout_s: float = 30.0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    def start(self) -> ServerProcess:
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with {self.proc.returncode}; see {self.log_path}:\n{self.tail()}"
                )
            if self.ready():
                return
            time.sleep(0.05)
        raise ServerError(
            f"{self.name} did not come up on port {self.port} within {self.ready_timeout_s} s:\n{self.tail()}"
        )

    def ready(self) -> bool:
        return _port_open(self.port)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> None:
        """Stop the process (SIGTERM, then SIGKILL after ``timeout_s``)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()


def mosquitto_config(data_dir: Path, port: int, *, extra: str = "") -> str:
    """A local broker config: loopback only, persistence on, queue limits raised for ingest.

    Anonymous, unlike the compose broker (``deploy/mosquitto/``), which binds each client id to
    its account with ``use_username_as_clientid``: here there are no accounts to bind to, and that
    option would only refuse every client without a user name (ingest's default, ``mosquitto_sub``,
    the bench peers). Loopback keeps other machines out; accounts come with issue 12.
    """
    return "\n".join(
        [
            f"listener {port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {data_dir}/",
            "autosave_interval 30",
            # A slow consumer's queue must never silently overflow: the default is 1000 messages.
            "max_queued_messages 2000000",
            "max_queued_bytes 0",
            "max_inflight_messages 1000",
            "max_packet_size 1048576",
            "sys_interval 2",
            # Started as root, Mosquitto drops to user "mosquitto", who cannot write into a private temp
            # folder: its persistence file (the sessions and queues that survive a restart) would be
            # lost. These local brokers keep the caller's user; the deployed broker runs as mosquitto.
            "user root" if os.geteuid() == 0 else "",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            extra,
            "",
        ]
    )


def start_mosquitto(data_dir: Path, *, port: int | None = None, extra_config: str = "") -> ServerProcess:
    """Start Mosquitto on 127.0.0.1 with its persistence in ``data_dir``."""
    binary = find_binary(MOSQUITTO_BIN)
    if binary is None:
        raise ServerError("mosquitto is not installed: apt-get install mosquitto")
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    conf = data_dir / "mosquitto.conf"
    conf.write_text(mosquitto_config(data_dir, port, extra=extra_config))
    return ServerProcess("mosquitto", [binary, "-c", str(conf)], port, data_dir).start()


def influxd_config(data_dir: Path, port: int, rpc_port: int) -> str:
    """A local InfluxDB 1.x config: loopback only, no reporting, data in ``data_dir``."""
    return f"""reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{data_dir}/meta"

[data]
  dir = "{data_dir}/data"
  wal-dir = "{data_dir}/wal"
  query-log-enabled = false
  wal-fsync-delay = "0s"

[http]
  enabled = true
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
  max-body-size = 26214400

[monitor]
  store-enabled = false

[continuous_queries]
  enabled = false
"""


@dataclass
class InfluxServer(ServerProcess):
    """InfluxDB 1.x: ready when ``/ping`` answers 204."""

    def ready(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/ping", timeout=0.5).status_code == 204
        except httpx.HTTPError:
            return False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def create_database(self, name: str) -> None:
        query(self.url, f'CREATE DATABASE "{name}"', method="POST")


def start_influxd(data_dir: Path, *, port: int | None = None) -> InfluxServer:
    """Start InfluxDB 1.x on 127.0.0.1 with its data in ``data_dir``."""
    binary = find_binary(INFLUXD_BIN)
    if binary is None:
        raise ServerError("InfluxDB is not installed: apt-get install influxdb")
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    conf = data_dir / "influxdb.conf"
    conf.write_text(influxd_config(data_dir, port, free_port()))
    server = InfluxServer("influxd", [binary, "run", "-config", str(conf)], port, data_dir)
    server.start()
    return server
