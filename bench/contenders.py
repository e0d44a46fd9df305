"""The contenders: each starts as its own process, and says how many readings it has stored.

Stored is counted where it lands: InfluxDB for the consumers that write (``count("seq")`` over
every measurement), the consumer's own counter for the receive-only limits (messages received ×
readings per message).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, ClassVar

from bench.peers import TOPICS
from bench.procstat import cpu_seconds, peak_rss_mib, tree
from storage.influxql import query

ROOT = Path(__file__).resolve().parents[1]


class ContenderError(RuntimeError):
    """A contender did not start or died."""


@dataclass(frozen=True)
class Stage:
    """Where a contender runs: the broker, the database, the fleet file and a work folder."""

    mqtt_port: int
    influx_url: str
    db: str
    fleet: Path
    workdir: Path
    broker_pid: int
    """The broker's process (for where the machine's cores went)."""


def stored_in_influx(url: str, db: str) -> int:
    """Readings stored: points with a ``seq`` field, in every measurement."""
    return sum(int(s["values"][0][1]) for s in query(url, 'SELECT count("seq") FROM /.*/', db=db))


@dataclass
class Contender:
    """A process consuming the workload; subclasses say how to start it."""

    name: ClassVar[str]
    label: ClassVar[str]
    group: ClassVar[str]
    """``limit``, ``peer`` or ``ours``."""
    writes: ClassVar[bool] = True
    """Stores into InfluxDB (else a receive-only limit, counting messages)."""

    stage: Stage | None = None
    readings_per_message: float = 1.0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log: IO[bytes] | None = field(default=None, repr=False)
    _pids: list[int] = field(default_factory=list, repr=False)

    def command(self, stage: Stage) -> list[str]:
        raise NotImplementedError

    def environment(self, stage: Stage) -> dict[str, str]:
        return dict(os.environ, PYTHONUNBUFFERED="1")

    def start(self, stage: Stage) -> None:
        self.stage = stage
        self._log = (stage.workdir / f"{self.name}.log").open("ab")
        self.proc = subprocess.Popen(
            self.command(stage), cwd=ROOT, env=self.environment(stage), stdin=subprocess.DEVNULL,
            stdout=self.stdout(stage), stderr=self._log, start_new_session=True,
        )  # fmt: skip

    def stdout(self, stage: Stage) -> IO[bytes] | int:
        return self._log if self._log is not None else subprocess.DEVNULL

    def check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise ContenderError(f"{self.name} exited ({code}); see {self.log_path}:\n{self.log_tail()}")

    @property
    def log_path(self) -> Path:
        assert self.stage is not None
        return self.stage.workdir / f"{self.name}.log"

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stored(self) -> int:
        """Readings stored (or received, for a receive-only limit) so far."""
        assert self.stage is not None
        if self.writes:
            return stored_in_influx(self.stage.influx_url, self.stage.db)
        return int(self.messages_received() * self.readings_per_message)

    def messages_received(self) -> int:
        raise NotImplementedError

    def pids(self) -> list[int]:
        """The contender's processes (remembered; one gone by the time CPU is read counts 0)."""
        if self.proc is not None and self.proc.poll() is None:
            self._pids = sorted(set(self._pids) | set(tree(self.proc.pid)))
        return self._pids

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pids())

    def peak_rss_mib(self) -> float:
        return peak_rss_mib(self.pids())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


class MosquittoSub(Contender):
    name = "mosquitto_sub"
    label = "mosquitto_sub (C ceiling)"
    group = "limit"
    writes = False
    _out: IO[bytes] | None = None

    def command(self, stage: Stage) -> list[str]:
        topics = [a for t in TOPICS for a in ("-t", t)]
        # One byte per message, no newline: the output file's size is the count.
        return ["mosquitto_sub", "-p", str(stage.mqtt_port), "-q", "1", *topics, "-F", ".", "-N"]

    def stdout(self, stage: Stage) -> IO[bytes] | int:
        self._out = (stage.workdir / "mosquitto_sub.out").open("wb")
        return self._out

    def messages_received(self) -> int:
        assert self.stage is not None
        return (self.stage.workdir / "mosquitto_sub.out").stat().st_size


class PahoCount(Contender):
    name = "paho_count"
    label = "bare paho (Python ceiling)"
    group = "limit"
    writes = False

    def command(self, stage: Stage) -> list[str]:
        count = stage.workdir / "paho_count.txt"
        count.unlink(missing_ok=True)
        return [sys.executable, "-m", "bench.peers.paho_count", "--mqtt-port", str(stage.mqtt_port),
                "--count-file", str(count)]  # fmt: skip

    def messages_received(self) -> int:
        assert self.stage is not None
        try:
            return int((self.stage.workdir / "paho_count.txt").read_text() or 0)
        except (OSError, ValueError):
            return 0


class _PythonPeer(Contender):
    """A peer in ``bench/peers/``, started as ``python -m <module>`` against the stage's broker and database."""

    module = ""

    def command(self, stage: Stage) -> list[str]:
        return [sys.executable, "-m", self.module, "--mqtt-port", str(stage.mqtt_port),
                "--influx-url", stage.influx_url, "--db", stage.db]  # fmt: skip


class PahoNaive(_PythonPeer):
    name = "paho_naive"
    label = "naive paho (1 write/message)"
    group = "peer"
    module = "bench.peers.paho_naive"


class PahoBatched(_PythonPeer):
    name = "paho_batched"
    label = "DIY batched paho (1000 msg / 1 s)"
    group = "peer"
    module = "bench.peers.paho_batched"


class NodeRed(_PythonPeer):
    name = "node_red"
    label = "Node-RED + node-red-contrib-influxdb"
    group = "peer"
    module = "bench.peers.nodered"


class Ours(Contender):
    name = "ours"
    label = "ioc ingest (ours, defaults)"
    group = "ours"

    def command(self, stage: Stage) -> list[str]:
        return [str(Path(sys.executable).parent / "ioc"), "ingest"]

    def environment(self, stage: Stage) -> dict[str, str]:
        # Defaults, but for where things are: broker, database, fleet, alert store, metrics port.
        return dict(
            os.environ,
            IOC_MQTT_URL=f"mqtt://127.0.0.1:{stage.mqtt_port}",
            IOC_MQTT_CLIENT_ID=f"ioc-ingest-{stage.workdir.name}",
            IOC_INFLUX_URL=stage.influx_url,
            IOC_INFLUX_DB=stage.db,
            IOC_FLEET=str(stage.fleet),
            IOC_ALERTS_DB=str(stage.workdir / "alerts.db"),
            IOC_METRICS_PORT="0",
        )


class OursPublic(Ours):
    """Ours on the public MQTT path (ingest/mqtt_public.py): what ingest does when the fast path
    does not load (other aiomqtt/paho versions); ours ÷ it is what the fast path buys."""

    name = "ours_public"
    label = "ioc ingest (ours, public MQTT path: IOC_MQTT_FAST_PATH=off)"

    def environment(self, stage: Stage) -> dict[str, str]:
        return dict(super().environment(stage), IOC_MQTT_FAST_PATH="off")


ALL: tuple[type[Contender], ...] = (MosquittoSub, PahoCount, PahoNaive, PahoBatched, NodeRed, Ours, OursPublic)
BY_NAME = {c.name: c for c in ALL}
