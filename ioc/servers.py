"""Start real Mosquitto, InfluxDB 1.x and PostgreSQL processes on loopback, with their data in a folder.

Used by ``ioc demo`` (data under ``./var/``) and by the integration tests (temp folders, free
ports). The servers are Debian's packages: ``mosquitto``, ``influxdb`` (``influxd``) and, for the
device registry's tests only, ``postgresql`` (``initdb`` and ``postgres`` under
``/usr/lib/postgresql/<version>/bin``).
"""

from __future__ import annotations

import contextlib
import glob
import grp
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from storage.influxql import query

MOSQUITTO_BIN = "mosquitto"
INFLUXD_BIN = "influxd"
_SBIN = ("/usr/sbin", "/usr/bin", "/usr/local/sbin")
POSTGRES_LIB = Path("/usr/lib/postgresql")
POSTGRES_USER = "postgres"
"""The system user PostgreSQL runs as when we are root (it refuses to run as root); Debian creates it."""


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


def _version_key(folder: Path) -> tuple[int, ...]:
    """``/usr/lib/postgresql/15`` → (15,); ``9.6`` → (9, 6); anything else sorts first."""
    try:
        return tuple(int(part) for part in folder.name.split("."))
    except ValueError:
        return ()


def find_postgres_binary(name: str) -> str | None:
    """``initdb`` or ``postgres`` of the newest PostgreSQL under ``/usr/lib/postgresql/*/bin``.

    Debian keeps them off PATH (one folder per major version); elsewhere PATH is searched.
    """
    versions = sorted(POSTGRES_LIB.glob("*/bin"), key=lambda b: _version_key(b.parent), reverse=True)
    for folder in versions:
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def missing_postgres() -> list[str]:
    """``["postgresql"]`` when its ``initdb`` or ``postgres`` is not installed (only the registry needs it)."""
    return [] if all(find_postgres_binary(b) for b in ("initdb", "postgres")) else ["postgresql"]


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
    run_as: str | None = None
    """A system user to run the process as (we must be root); None: our own user."""
    tls_port: int | None = None
    """A second port that speaks TLS (Mosquitto started with ``tls=``); ready when it listens too."""
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
            **_as_user(self.run_as),
        )
        try:
            self._wait_ready()
        except ServerError:  # not left running: it was started in a session of its own
            self.stop()
            raise
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
        return _port_open(self.port) and (self.tls_port is None or _port_open(self.tls_port))

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


def _as_user(user: str | None) -> dict[str, Any]:
    """``subprocess`` keyword arguments that run a child as ``user`` (uid, gid, no extra groups)."""
    if user is None:
        return {}
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A Mosquitto TLS listener's files (made by :mod:`ioc.tls`, say) and whether clients need certificates."""

    ca_file: Path
    """Client certificates must come from this CA (and clients trust the broker's through it)."""
    cert_file: Path
    """The broker's certificate: its subject alternative names are what clients check."""
    key_file: Path
    mutual: bool = False
    """Mutual TLS: ``require_certificate true``, ``use_identity_as_username true`` — a client logs in
    with its certificate, whose common name becomes its user name (a password is ignored) — and
    ``use_username_as_clientid true``, so that name is its client id too (one device cannot take
    over another's session). What Mosquitto 2.0.11 does with this and dynsec: docs/security.md."""

    def listener(self, port: int, host: str) -> str:
        """The ``listener`` block for ``mosquitto.conf``."""
        lines = [
            f"listener {port} {host}",
            f"cafile {self.ca_file}",
            f"certfile {self.cert_file}",
            f"keyfile {self.key_file}",
            f"require_certificate {'true' if self.mutual else 'false'}",
        ]
        if self.mutual:
            lines += ["use_identity_as_username true", "use_username_as_clientid true"]
        return "\n".join(lines)


def mosquitto_config(
    data_dir: Path,
    port: int,
    *,
    extra: str = "",
    tls: TlsFiles | None = None,
    tls_port: int | None = None,
    tls_host: str = "127.0.0.1",
) -> str:
    """A local broker config: loopback only, persistence on, queue limits raised for ingest.

    Anonymous, unlike the compose broker (``deploy/mosquitto/``), which binds each client id to
    its account with ``use_username_as_clientid``: here there are no accounts to bind to, and that
    option would only refuse every client without a user name (ingest's default, ``mosquitto_sub``,
    the bench peers). Loopback keeps other machines out; accounts come with issue 12.

    With ``tls`` a second listener on ``tls_host:tls_port`` speaks TLS (its block comes last, so
    listener options in ``extra`` still belong to the plaintext listener). Every other setting is
    global (``per_listener_settings false``): both listeners share the security settings.
    """
    if (tls is None) != (tls_port is None):
        raise ValueError("a TLS listener needs both tls and tls_port")
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
            tls.listener(tls_port, tls_host) if tls is not None and tls_port is not None else "",
            "",
        ]
    )


def dynsec_plugin() -> str | None:
    """Mosquitto's dynamic security plugin as Debian installs it, if it is there."""
    found = sorted(glob.glob("/usr/lib/*/mosquitto_dynamic_security.so")) + sorted(
        glob.glob("/usr/lib/mosquitto_dynamic_security.so")
    )
    return found[0] if found else None


def dynsec_config(data_dir: Path, admin_user: str, admin_password: str) -> str:
    """Config lines that load the dynamic security plugin, its file made with ``mosquitto_ctrl dynsec init``.

    The file starts with one admin account; every other account and role is created through the
    plugin's MQTT API (:mod:`registry.broker_accounts`). Anonymous clients are refused.
    """
    plugin = dynsec_plugin()
    ctrl = find_binary("mosquitto_ctrl")
    if plugin is None or ctrl is None:
        raise ServerError(
            "the dynamic security plugin needs Debian's mosquitto and mosquitto-clients (mosquitto_ctrl): "
            "apt-get install mosquitto mosquitto-clients"
        )
    state = data_dir / "dynamic-security.json"
    if not state.exists():
        done = subprocess.run(
            [ctrl, "dynsec", "init", str(state), admin_user, admin_password],
            capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if done.returncode != 0 or not state.exists():
            raise ServerError(f"mosquitto_ctrl dynsec init failed: {done.stderr.strip() or done.stdout.strip()}")
    return "\n".join(["allow_anonymous false", f"plugin {plugin}", f"plugin_opt_config_file {state}"])


def start_mosquitto(
    data_dir: Path,
    *,
    port: int | None = None,
    extra_config: str = "",
    dynsec_admin: tuple[str, str] | None = None,
    tls: TlsFiles | None = None,
    tls_port: int | None = None,
    tls_host: str = "127.0.0.1",
) -> ServerProcess:
    """Start Mosquitto on 127.0.0.1 with its persistence in ``data_dir``.

    With ``dynsec_admin`` (user, password) the broker authenticates every client through the dynamic
    security plugin, starting with that one admin account; otherwise it is anonymous. With ``tls``
    it also listens with TLS on ``tls_port`` (a free one if not given; the returned server's
    ``tls_port``), next to the plaintext loopback listener; see docs/security.md.
    """
    binary = find_binary(MOSQUITTO_BIN)
    if binary is None:
        raise ServerError("mosquitto is not installed: apt-get install mosquitto")
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    if tls is not None:
        tls_port = tls_port or free_port()
        for path in (tls.ca_file, tls.cert_file, tls.key_file):
            if not path.is_file():
                raise ServerError(f"the broker's TLS listener needs {path}, which is not a file")
    else:
        tls_port = None
    conf = data_dir / "mosquitto.conf"
    security = dynsec_config(data_dir, *dynsec_admin) if dynsec_admin else ""
    extra = "\n".join(x for x in (security, extra_config) if x)
    conf.write_text(mosquitto_config(data_dir, port, extra=extra, tls=tls, tls_port=tls_port, tls_host=tls_host))
    return ServerProcess("mosquitto", [binary, "-c", str(conf)], port, data_dir, tls_port=tls_port).start()


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


@dataclass
class PostgresServer(ServerProcess):
    """PostgreSQL: ready when it accepts a login (it listens a moment before it accepts one)."""

    def ready(self) -> bool:
        import psycopg  # only the registry's tests need PostgreSQL; the demo runs without psycopg

        if not _port_open(self.port):
            return False
        try:
            with psycopg.connect(self.url, connect_timeout=2):
                return True
        except psycopg.Error:
            return False

    @property
    def url(self) -> str:
        """The ``postgres`` database as the superuser ``ioc`` (no password: trust on loopback)."""
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql://ioc@127.0.0.1:{self.port}/{name}"

    def create_database(self, name: str) -> str:
        """Create an empty database ``name``; return its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.database_url(name)

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 15.0) -> None:
        """Stop PostgreSQL; SIGINT is its fast shutdown (SIGTERM waits for every client to leave)."""
        super().stop(sig, timeout_s)


def _unreachable_ancestor(path: Path, user: str) -> Path | None:
    """The first folder above ``path`` that ``user`` cannot enter (None: all can be entered)."""
    entry = pwd.getpwnam(user)
    groups = {entry.pw_gid, *(g.gr_gid for g in grp.getgrall() if user in g.gr_mem)}
    for folder in reversed(path.resolve().parents):
        st = folder.stat()
        if st.st_uid == entry.pw_uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid in groups:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            return folder
    return None


def start_postgres(data_dir: Path, *, port: int | None = None) -> PostgresServer:
    """Start PostgreSQL on 127.0.0.1 with its cluster in ``data_dir`` (``initdb`` the first time).

    Trust authentication, superuser ``ioc``, UTF8, fsync off: a throwaway server for tests. As root
    it runs as the ``postgres`` system user, so ``data_dir`` is handed to that user and every folder
    above it must let that user through (``/tmp/...`` does; pytest's ``tmp_path`` does not).
    """
    initdb, postgres = find_postgres_binary("initdb"), find_postgres_binary("postgres")
    if initdb is None or postgres is None:
        raise ServerError("PostgreSQL is not installed: apt-get install postgresql")
    run_as = POSTGRES_USER if os.geteuid() == 0 else None
    data_dir.mkdir(parents=True, exist_ok=True)
    if run_as is not None:
        try:
            entry = pwd.getpwnam(run_as)
        except KeyError:
            raise ServerError(
                f"PostgreSQL refuses to run as root and there is no {run_as!r} user: apt-get install postgresql"
            ) from None
        blocked = _unreachable_ancestor(data_dir, run_as)
        if blocked is not None:
            raise ServerError(
                f"PostgreSQL runs as user {run_as!r}, who cannot enter {blocked}: "
                f"give it a data folder it can reach (tempfile.mkdtemp(), say) instead of {data_dir}"
            )
        os.chown(data_dir, entry.pw_uid, entry.pw_gid)
    if not (data_dir / "PG_VERSION").exists():
        argv = [initdb, "-D", str(data_dir), "-U", "ioc", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"]
        done = subprocess.run(
            argv, cwd=data_dir, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
            **_as_user(run_as),
        )  # fmt: skip
        if done.returncode != 0:
            raise ServerError(f"initdb {data_dir} failed with {done.returncode}:\n{done.stdout}{done.stderr}")
    port = port or free_port()
    argv = [
        postgres, "-D", str(data_dir), "-p", str(port), "-k", str(data_dir),
        "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200",
    ]  # fmt: skip
    server = PostgresServer("postgres", argv, port, data_dir, run_as=run_as)
    server.start()
    return server
