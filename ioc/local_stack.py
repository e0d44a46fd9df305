"""The local stack under ``var/``: Mosquitto and InfluxDB 1.x with their data, as ``ioc demo`` runs them.

``ioc demo`` starts it (or uses it, when ``ioc servers start`` already did) and provisions its
fleet into it; ``ioc servers start|stop|status`` brings the same servers back after a timed demo,
so that ``ioc api``, ``ioc devices``, ``ioc rules backtest`` and ``influx`` work over its data.
What runs is recorded in ``var/servers.json`` (process ids and ports): a server started by one
command is found, and stopped, by the next.

The broker is the demo's: the dynamic security plugin (no anonymous clients; the admin password
in ``var/broker-admin.pw``), MQTT over TLS with a local CA (``var/tls/``), plaintext on loopback.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.settings import Folder
from ioc.errors import UserError
from ioc.servers import (
    InfluxServer,
    ServerError,
    ServerProcess,
    TlsFiles,
    _port_open,
    free_port,
    missing_binaries,
    start_influxd,
    start_mosquitto,
)
from ioc.tls import issue_server_cert, make_ca, write_atomic

DB = "ioc"
ADMIN_USER = "ioc-admin"
STATE_FILE = "servers.json"
NAMES = ("mosquitto", "influxd")


class StackSettings(BaseSettings):
    """Where the local stack keeps its data and the ports it asks for (env ``IOC_DEMO_*``, shared with ``ioc demo``)."""

    model_config = SettingsConfigDict(env_prefix="IOC_DEMO_", env_file=".env", extra="ignore")

    var_dir: Folder = Field(Path("var"), description="data folder for the servers and the fleet file")
    mqtt_port: int = Field(1883, ge=0, le=65_535, description="broker port, loopback (a free one if taken)")
    mqtts_port: int = Field(8883, ge=0, le=65_535, description="broker port over TLS (a free one if taken)")
    influx_port: int = Field(8086, ge=0, le=65_535, description="InfluxDB port (a free one if taken)")


def port_or_free(port: int) -> int:
    """``port`` if nothing listens on it (0: any), else a free one."""
    if port and not _port_open(port):
        return port
    return free_port()


class _Record(msgspec.Struct, frozen=True):
    pid: int
    """0: stopped (the ports are kept for the next start)."""
    port: int
    tls_port: int | None = None


@dataclass(frozen=True)
class ServerState:
    """One server of the stack: running (with its process id and ports) or stopped."""

    name: str
    pid: int | None
    port: int | None
    tls_port: int | None = None

    @property
    def running(self) -> bool:
        return self.pid is not None


@dataclass
class Stack:
    """The running stack: its URLs and files, and which servers this process started."""

    var: Path
    broker: ServerState
    influx: ServerState
    admin_password: str
    started: list[ServerProcess] = field(default_factory=list)

    @property
    def plain_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.broker.port}"

    @property
    def tls_url(self) -> str:
        return f"mqtts://127.0.0.1:{self.broker.tls_port}"

    @property
    def influx_url(self) -> str:
        return f"http://127.0.0.1:{self.influx.port}"

    @property
    def ca_file(self) -> Path:
        return self.var / "tls" / "ca.crt"

    def stop_started(self) -> None:
        """Stop the servers this process started (those it found running stay up)."""
        for server in reversed(self.started):
            server.stop()
        LocalStack(self.var).forget({s.name for s in self.started})
        self.started.clear()


def keep_secret(path: Path, make: Callable[[], str]) -> str:
    """The secret kept in ``path`` (mode 0600), written with ``make()`` the first time."""
    try:
        kept = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        kept = ""
    if not kept:
        kept = make()
        write_atomic(path, (kept + "\n").encode(), 0o600)
    return kept


def _alive(pid: int, config: Path) -> bool:
    """Whether ``pid`` is a live process started with ``config`` (not a recycled process id)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    zombie = stat.rsplit(")", 1)[-1].split()[:1] == ["Z"]
    return not zombie and str(config).encode() in cmdline


class LocalStack:
    """Mosquitto and InfluxDB over one ``var/`` folder."""

    def __init__(self, var: Path) -> None:
        self.var = var.resolve()

    @property
    def state_file(self) -> Path:
        return self.var / STATE_FILE

    def _config(self, name: str) -> Path:
        return self.var / ("mosquitto/mosquitto.conf" if name == "mosquitto" else "influxdb/influxdb.conf")

    def _records(self) -> dict[str, _Record]:
        try:
            return msgspec.json.decode(self.state_file.read_bytes(), type=dict[str, _Record])
        except (OSError, msgspec.DecodeError):
            return {}

    def _write(self, records: dict[str, _Record]) -> None:
        self.var.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_bytes(msgspec.json.format(msgspec.json.encode(records)))
        tmp.replace(self.state_file)

    def forget(self, names: set[str]) -> None:
        """These servers were stopped: ``servers.json`` keeps only their ports (for the next start)."""
        records = self._records()
        for name in names & records.keys():
            records[name] = _Record(0, records[name].port, records[name].tls_port)
        if records:
            self._write(records)

    def status(self) -> dict[str, ServerState]:
        """Each server of the stack, running or not (a recorded process that is gone counts as stopped)."""
        records = self._records()
        out: dict[str, ServerState] = {}
        for name in NAMES:
            r = records.get(name)
            if r is not None and r.pid and _alive(r.pid, self._config(name)):
                out[name] = ServerState(name, r.pid, r.port, r.tls_port)
            else:
                out[name] = ServerState(name, None, r.port if r else None, r.tls_port if r else None)
        return out

    def start(self, settings: StackSettings) -> Stack:
        """Start what is not running: on the ports of its last start if free, else the settings' (or free ones)."""
        missing = missing_binaries()
        if missing:
            raise UserError(
                f"missing Debian packages: {' '.join(missing)} — run `make demo` as root to install "
                "them, `sudo apt-get install " + " ".join(missing) + "`, or use `docker compose up`"
            )
        try:
            self.var.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--var-dir (IOC_DEMO_VAR_DIR): cannot create {self.var}: {exc.strerror}") from None
        states = self.status()
        started: list[ServerProcess] = []
        admin_password = self._admin_password()
        try:
            broker = states["mosquitto"]
            if not broker.running:
                server = self._start_broker(
                    admin_password,
                    port_or_free(broker.port or settings.mqtt_port),
                    port_or_free(broker.tls_port or settings.mqtts_port),
                )
                started.append(server)
                broker = ServerState("mosquitto", _pid(server), server.port, server.tls_port)
                self._record(broker)
            influx = states["influxd"]
            if not influx.running:
                db = start_influxd(self.var / "influxdb", port=port_or_free(influx.port or settings.influx_port))
                started.append(db)
                influx = ServerState("influxd", _pid(db), db.port)
                self._record(influx)
            InfluxServer("influxd", [], influx.port or 0, self.var / "influxdb").create_database(DB)
        except ServerError as exc:
            for server in reversed(started):
                server.stop()
            self.forget({s.name for s in started})
            raise UserError(f"{exc} (data in --var-dir {self.var})") from None
        return Stack(self.var, broker, influx, admin_password, started)

    def _record(self, state: ServerState) -> None:
        records = self._records()
        assert state.pid is not None
        assert state.port is not None
        records[state.name] = _Record(state.pid, state.port, state.tls_port)
        self._write(records)

    def _admin_password(self) -> str:
        """The broker's admin password: the one its account database was made with, or a new one."""
        file = self.var / "broker-admin.pw"
        if (self.var / "mosquitto" / "dynamic-security.json").exists():
            try:
                return file.read_text().strip()
            except OSError:
                raise UserError(
                    f"{file} is missing but {self.var / 'mosquitto'} has broker accounts: restore the file, "
                    "or start afresh with `ioc demo --fresh`"
                ) from None
        password = secrets.token_urlsafe(24)  # a new account database: a new admin password
        write_atomic(file, (password + "\n").encode(), 0o600)
        return password

    def _start_broker(self, admin_password: str, port: int, tls_port: int) -> ServerProcess:
        ca = make_ca(self.var / "tls")
        pair = issue_server_cert(ca, self.var / "tls", hostnames=("localhost",), ips=("127.0.0.1",))
        return start_mosquitto(
            self.var / "mosquitto", port=port, dynsec_admin=(ADMIN_USER, admin_password),
            tls=TlsFiles(ca.cert, pair.cert, pair.key), tls_port=tls_port,
        )  # fmt: skip

    def stop(self, timeout_s: float = 30.0) -> list[str]:
        """Stop every running server of the stack (SIGTERM, SIGKILL after ``timeout_s``); their names."""
        stopped: list[str] = []
        for name, state in self.status().items():
            if state.pid is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(state.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while _alive(state.pid, self._config(name)) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(state.pid, self._config(name)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(state.pid, signal.SIGKILL)
            stopped.append(name)
        self.forget(set(NAMES))
        return stopped


def _pid(server: ServerProcess) -> int:
    assert server.proc is not None
    return int(server.proc.pid)


def describe(stack_var: Path, states: dict[str, ServerState]) -> list[str]:
    """One line per server, as ``ioc servers status`` prints them."""
    lines = []
    b, i = states["mosquitto"], states["influxd"]
    if b.running:
        ca = stack_var / "tls" / "ca.crt"
        lines.append(
            f"mosquitto running (pid {b.pid}): mqtts://127.0.0.1:{b.tls_port} (TLS, CA {ca}), "
            f"mqtt://127.0.0.1:{b.port} (loopback)"
        )
    else:
        lines.append("mosquitto stopped")
    if i.running:
        lines.append(f"influxd   running (pid {i.pid}): http://127.0.0.1:{i.port} (database {DB})")
    else:
        lines.append("influxd   stopped")
    return lines


def env_hints(states: dict[str, ServerState]) -> list[str]:
    """``export`` lines for what differs from the defaults the other commands assume."""
    influx = states["influxd"]
    if influx.running and influx.port != 8086:
        return [f"export IOC_INFLUX_URL=http://127.0.0.1:{influx.port}"]
    return []
