"""The Node-RED peer: ``mqtt in`` → parsed JSON → ``function`` → ``influx batch`` (InfluxDB 1.x API).

Configured as a typical Node-RED user would: ``node-red`` with ``node-red-contrib-influxdb``
(versions pinned in ``bench/peers/nodered/package.json`` and its lock), the committed flow
``bench/peers/nodered/flows.json`` (broker and InfluxDB taken from ``${BENCH_*}`` environment
variables), an MQTT 3.1.1 clean session with a generated client id, QoS 1. Both are installed by
npm into the git-ignored ``bench/.node-red/`` and Node-RED runs headless on loopback.

The flow writes what :mod:`bench.peers.paho_naive` writes — measurement = kind, tag device_id,
every numeric field, ``seq``, timestamp ``ts`` in ms — with two honest differences:

* one MQTT message is one HTTP ``/write`` of all its readings (the contrib's "influx batch" node
  takes an array of points, each with its own measurement and timestamp; "influxdb out" would
  need one write per point or one measurement per node);
* ``seq`` is a **float** field: the contrib's 1.x configuration calls the ``influx`` library's
  ``writePoints`` without a schema, which serialises every JavaScript number as a float (its
  README: "all numbers are written as float values"; the ``"1234i"`` string convention only works
  with its 1.8-flux/2.0 configurations, i.e. ``/api/v2/write``, which InfluxDB 1.6 lacks).
  Do not share a database with a peer that writes ``seq`` as an integer (field type conflict).

Node-RED does not apply backpressure: MQTT.js acknowledges each QoS 1 message as soon as it is
handed to the flow, and every message then becomes an in-flight HTTP request. Whatever is
published while it is down (clean session) or in flight when it stops is lost.

    python -m bench.peers.nodered --mqtt-port 1883 --influx-url http://127.0.0.1:8086 --db ioc
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench.peers import TOPICS
from ioc.servers import free_port

REPO = Path(__file__).resolve().parents[2]
PEER_DIR = Path(__file__).resolve().with_name("nodered")
"""The committed package.json, package-lock.json and flows.json."""
NODE_RED_DIR = REPO / "bench" / ".node-red"
"""Where npm installs Node-RED (git-ignored)."""
FLOWS_FILE = PEER_DIR / "flows.json"
SUBSCRIPTION = ", ".join(TOPICS)
READY_TIMEOUT_S = 60.0
_CONNECTED = "Connected to broker"
_FATAL = ("Waiting for missing types", "[error]", "Error loading flows", "Failed to start server")
_STAMP = ".installed-from"


class NodeRedError(RuntimeError):
    """npm or node is missing, the install failed, or Node-RED did not come up."""


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def install(quiet: bool = True) -> Path:
    """Install the pinned Node-RED into :data:`NODE_RED_DIR` unless it is already; return ``node-red``.

    Runs ``npm ci`` (``npm install`` when no lock file is committed) only when ``node_modules`` is
    missing or the committed package files changed since the last install (a stamp file holds their
    hash). Concurrent callers wait for each other on a lock file.
    """
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise NodeRedError("npm/node not found on PATH: the Node-RED peer needs Node.js >= 18 with npm")
    sources = [PEER_DIR / "package.json"]
    lock = PEER_DIR / "package-lock.json"
    if lock.is_file():
        sources.append(lock)
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()
    executable = NODE_RED_DIR / "node_modules" / ".bin" / "node-red"
    stamp = NODE_RED_DIR / _STAMP
    NODE_RED_DIR.mkdir(parents=True, exist_ok=True)
    with (NODE_RED_DIR / ".install.lock").open("w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if executable.exists() and stamp.is_file() and stamp.read_text() == digest:
            return executable
        stamp.unlink(missing_ok=True)
        for src in sources:
            shutil.copyfile(src, NODE_RED_DIR / src.name)
        if not lock.is_file():
            (NODE_RED_DIR / lock.name).unlink(missing_ok=True)
        argv = [npm, "ci" if lock.is_file() else "install", "--no-audit", "--no-fund", "--omit=dev"]
        if quiet:
            argv.append("--loglevel=error")
        out = subprocess.PIPE if quiet else sys.stderr  # never npm's chatter on our stdout
        done = subprocess.run(
            argv, cwd=NODE_RED_DIR, stdout=out, stderr=subprocess.PIPE if quiet else None, check=False
        )
        if done.returncode != 0:
            output = (done.stdout or b"").decode(errors="replace") + (done.stderr or b"").decode(errors="replace")
            raise NodeRedError(f"{' '.join(argv[1:])} failed in {NODE_RED_DIR} ({done.returncode}):\n{output[-4000:]}")
        if not executable.exists():
            raise NodeRedError(f"npm finished but {executable} is missing")
        stamp.write_text(digest)
    return executable


def settings_js(ui_port: int, flow_file: Path) -> str:
    """A headless settings.js: loopback, no editor, no telemetry, info logging (for readiness)."""
    settings = {
        "uiHost": "127.0.0.1",
        "uiPort": ui_port,
        "disableEditor": True,
        "flowFile": str(flow_file),
        "flowFilePretty": True,
        "credentialSecret": False,
        # info, not warn: the mqtt node's "Connected to broker" line is how start() knows the flow is up.
        # Node-RED logs nothing per message at this level.
        "logging": {"console": {"level": "info", "metrics": False, "audit": False}},
        "telemetry": {"enabled": False, "updateNotification": False},
        "diagnostics": {"enabled": False, "ui": False},
        "runtimeState": {"enabled": False, "ui": False},
        "externalModules": {"autoInstall": False, "palette": {"allowInstall": False}},
        "functionExternalModules": False,
        "exportGlobalContextKeys": False,
    }
    return f"module.exports = {json.dumps(settings, indent=4)};\n"


def _environment(mqtt_port: int, influx_url: str, db: str) -> dict[str, str]:
    url = urlsplit(influx_url)
    if url.scheme != "http" or not url.hostname:
        raise NodeRedError(f"the flow writes to InfluxDB over plain http: got {influx_url!r}")
    return {
        **os.environ,
        "BENCH_MQTT_HOST": "127.0.0.1",
        "BENCH_MQTT_PORT": str(mqtt_port),
        "BENCH_INFLUX_HOST": url.hostname,
        "BENCH_INFLUX_PORT": str(url.port or 8086),
        "BENCH_INFLUX_DB": db,
    }


def start(mqtt_port: int, influx_url: str, db: str, *, user_dir: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """Start Node-RED with the committed flow; return once it is connected to the broker and subscribed.

    Installs first if needed (see :func:`install`). Node-RED's stdout/stderr are appended to
    ``log_path``; it runs in its own session (stop it with :func:`stop`). Raises
    :class:`NodeRedError` with the log's tail if it exits, reports an error, or is not connected
    within 60 s.
    """
    executable = install()
    user_dir.mkdir(parents=True, exist_ok=True)
    flow_file = user_dir / "flows.json"
    shutil.copyfile(FLOWS_FILE, flow_file)
    settings = user_dir / "settings.js"
    settings.write_text(settings_js(free_port(), flow_file))
    env = _environment(mqtt_port, influx_url, db)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    offset = log_path.stat().st_size if log_path.exists() else 0
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [str(executable), "--userDir", str(user_dir), "--settings", str(settings)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    try:
        _wait_connected(proc, log_path, offset)
    except BaseException:
        stop(proc)
        raise
    return proc


def _wait_connected(proc: subprocess.Popen[bytes], log_path: Path, offset: int) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        with log_path.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        for bad in _FATAL:
            if bad in text:
                raise NodeRedError(f"Node-RED reported {bad!r}; see {log_path}:\n{_tail(log_path)}")
        if _CONNECTED in text:
            # The mqtt node logs this on CONNACK and sends its SUBSCRIBE right after, on the same
            # connection; give the broker a moment to have registered it.
            time.sleep(0.3)
            return
        if proc.poll() is not None:
            raise NodeRedError(f"Node-RED exited with {proc.returncode}; see {log_path}:\n{_tail(log_path)}")
        time.sleep(0.1)
    raise NodeRedError(f"Node-RED did not connect to the broker within {READY_TIMEOUT_S:.0f} s:\n{_tail(log_path)}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM Node-RED (its process group), wait up to 10 s, then SIGKILL."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mqtt-port", type=int, default=1883)
    parser.add_argument("--influx-url", default="http://127.0.0.1:8086")
    parser.add_argument("--db", default="ioc")
    parser.add_argument("--user-dir", type=Path, help="Node-RED's userDir (default: a temporary folder)")
    parser.add_argument("--log", type=Path, help="Node-RED's log (default: node-red.log in the userDir)")
    args = parser.parse_args(argv)

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stopping.set())
    signal.signal(signal.SIGINT, lambda *a: stopping.set())
    with contextlib.ExitStack() as stack:
        user_dir: Path = args.user_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="node-red-")))
        log_path: Path = args.log or user_dir / "node-red.log"
        install(quiet=False)
        proc = start(args.mqtt_port, args.influx_url, args.db, user_dir=user_dir, log_path=log_path)
        print(f"subscribed to {SUBSCRIPTION} (node-red pid {proc.pid}, log {log_path})", file=sys.stderr, flush=True)
        while not stopping.wait(0.5):
            if proc.poll() is not None:
                print(f"node-red exited with {proc.returncode}:\n{_tail(log_path)}", file=sys.stderr, flush=True)
                sys.exit(1)
        stop(proc)


if __name__ == "__main__":
    main()
