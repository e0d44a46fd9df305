"""A user's mistake gets one line on stderr and exit code 2, never a traceback (issue 11 §6).

Every command ``ioc --help`` lists is run as a real process (the ``ioc`` console script) into the
common mistakes: a port in use (a socket this test holds), a server not there (a free port nobody
listens on), a missing or malformed file, a bad flag value or ``.env`` line. ``ioc ingest`` waits
for a broker or InfluxDB that is not there: it says so once, naming the flag, and still drains and
exits 0 on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from contract.fleet import ExternalIds, Fleet, dump_fleet
from ioc.servers import InfluxServer, ServerProcess, free_port
from simulators.fleetgen import generate_fleet

IOC = str(Path(sys.executable).with_name("ioc"))
DASHBOARDS = str(Path(__file__).resolve().parents[2] / "grafana" / "dashboards")
TIMEOUT_S = 60


@dataclass
class Place:
    """A clean working folder: a fleet, a malformed pack, a plain file to put paths under, two ports."""

    cwd: Path
    held_port: int  # something listens here (this test)
    dead_port: int  # nothing listens here

    def fill(self, arg: str) -> str:
        return arg.format(held=self.held_port, dead=self.dead_port)


@pytest.fixture
def place(tmp_path: Path) -> Iterator[Place]:
    fleet = generate_fleet(5, seed=1)
    dump_fleet(fleet, tmp_path / "fleet.yaml")
    bare = [d.model_copy(update={"external_ids": ExternalIds()}) for d in fleet.devices]  # an older fleet file
    dump_fleet(Fleet(devices=tuple(bare)), tmp_path / "no_ids.yaml")
    (tmp_path / "bad_pack.yaml").write_text("name: x\nrules:\n  - id: a\n    kind: salinity\n")
    (tmp_path / "not_yaml.yaml").write_text("rules: [\n")
    (tmp_path / "plain").write_text("a file, not a folder\n")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield Place(tmp_path, held.getsockname()[1], free_port())


def _env(**extra: str) -> dict[str, str]:
    """This environment without any setting of ours (so only the test's flags and files count)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IOC_", "GRAFANA_", "INFLUX_"))}
    return {**env, **extra}


def run_ioc(place: Place, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    argv = [IOC, *(place.fill(a) for a in args)]
    return subprocess.run(
        argv, cwd=place.cwd, env=_env(**env), capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )


def assert_one_line(out: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit code 2, no traceback, one line on stderr that starts with ``error:`` and names ``words``."""
    assert "Traceback" not in out.stderr + out.stdout, out.stderr[-3000:]
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr[-3000:]
    assert len(lines) == 1, out.stderr[-3000:]
    [line] = lines
    assert line.startswith("error: ")
    for word in words:
        assert word in line, line
    return line


# (command line, words the line must name); {held} is a port in use, {dead} one nobody listens on.
MISTAKES: dict[str, tuple[list[str], tuple[str, ...]]] = {
    # ioc ingest
    "ingest: fleet file missing": (["ingest", "--fleet", "nope.yaml"], ("nope.yaml", "fleet file")),
    "ingest: fleet not YAML": (["ingest", "--fleet", "not_yaml.yaml"], ("not_yaml.yaml", "YAML")),
    "ingest: rule pack invalid": (
        ["ingest", "--fleet", "fleet.yaml", "--rules-pack", "bad_pack.yaml"],
        ("bad_pack.yaml", "rule a"),
    ),
    "ingest: alert db not writable": (
        ["ingest", "--fleet", "fleet.yaml", "--alerts-db", "plain/alerts.db"],
        ("plain/alerts.db",),
    ),
    "ingest: port out of range": (["ingest", "--metrics-port", "99999"], ("--metrics-port", "IOC_METRICS_PORT")),
    "ingest: port not a number": (["ingest", "--metrics-port", "abc"], ("--metrics-port", "ioc ingest --help")),
    "ingest: unknown flag": (["ingest", "--mqtt-uri", "x"], ("--mqtt-uri",)),
    "ingest: bad broker URL": (["ingest", "--mqtt-url", "http://x"], ("--mqtt-url", "IOC_MQTT_URL")),
    "ingest: bad InfluxDB API": (["ingest", "--influx-api", "v3"], ("--influx-api", "IOC_INFLUX_API")),
    # ioc simulate
    "simulate: broker unreachable": (
        ["simulate", "--fleet", "fleet.yaml", "--mqtt-url", "mqtt://127.0.0.1:{dead}", "--readings", "5"],
        ("mqtt://127.0.0.1:{dead}", "unreachable", "--mqtt-url"),
    ),
    "simulate: broker host unknown": (
        ["simulate", "--fleet", "fleet.yaml", "--mqtt-url", "mqtt://no-such-host.invalid:1883"],
        ("no-such-host.invalid", "--mqtt-url"),
    ),
    "simulate: fleet file missing": (["simulate", "--fleet", "nope.yaml"], ("nope.yaml", "fleet file")),
    "simulate: a format's id missing": (
        ["simulate", "--fleet", "no_ids.yaml", "--format", "chirpstack_v4", "--mqtt-url", "mqtt://127.0.0.1:{dead}"],
        ("--format chirpstack_v4", "no external id 'dev_eui'", "external_ids"),
    ),
    "simulate: secret file missing": (
        ["simulate", "--fleet", "fleet.yaml", "--device-secret-file", "nope.key"],
        ("--device-secret-file", "nope.key"),
    ),
    "simulate: record folder missing": (
        ["simulate", "--fleet", "fleet.yaml", "--record", "plain/out.jsonl"],
        ("--record", "plain"),
    ),
    "simulate: fleet not writable": (["simulate", "--write-fleet", "plain/fleet.yaml"], ("--write-fleet", "plain")),
    "simulate: no devices": (["simulate", "--write-fleet", "f.yaml", "--devices", "0"], ("--devices (IOC_DEVICES)",)),
    "simulate: negative rate": (["simulate", "--rate", "-1"], ("--rate", "IOC_RATE")),
    # ioc demo (its own servers take free ports: a port in use is not a mistake there)
    "demo: data folder not usable": (["demo", "--var-dir", "plain/var", "--duration", "1"], ("--var-dir", "plain")),
    "demo: no devices": (["demo", "--devices", "0"], ("--devices", "IOC_DEMO_DEVICES")),
    # ioc rules
    "rules validate: pack invalid": (["rules", "validate", "bad_pack.yaml"], ("bad_pack.yaml", "severity")),
    "rules validate: pack missing": (["rules", "validate", "nope.yaml"], ("nope.yaml", "rule pack")),
    "rules backtest: InfluxDB unreachable": (
        ["rules", "backtest", "--fleet", "fleet.yaml", "--influx-url", "http://127.0.0.1:{dead}"],
        ("http://127.0.0.1:{dead}", "unreachable", "--influx-url (IOC_INFLUX_URL)"),
    ),
    "rules backtest: fleet missing": (["rules", "backtest", "--fleet", "nope.yaml"], ("nope.yaml",)),
    "rules backtest: bad time": (["rules", "backtest", "--fleet", "fleet.yaml", "--from", "yesterday"], ("--from",)),
    "rules backtest: range backwards": (
        ["rules", "backtest", "--fleet", "fleet.yaml", "--from", "now", "--to", "-1h"],
        ("--to must be after --from",),
    ),
    # ioc grafana
    "grafana push: Grafana unreachable": (
        ["grafana", "push", "--url", "http://127.0.0.1:{dead}", "--token", "t"],
        ("Grafana", "unreachable", "--url (IOC_GRAFANA_URL)"),
    ),
    "grafana push: no token": (
        ["grafana", "push", "--url", "http://127.0.0.1:{dead}"],
        ("--token (IOC_GRAFANA_TOKEN)",),
    ),
    "grafana check: InfluxDB unreachable": (
        ["grafana", "check", "--influx-url", "http://127.0.0.1:{dead}", "--dashboards-dir", DASHBOARDS],
        ("unreachable", "--influx-url"),
    ),
    "grafana check: bad range": (
        ["grafana", "check", "--influx-url", "http://x", "--last", "soon"],
        ("--last (IOC_GRAFANA_CHECK_LAST)",),
    ),
    "grafana export: folder not usable": (["grafana", "export", "--out", "plain/dash"], ("--out", "plain")),
    # ioc subscriptions
    "subscriptions: db not writable": (["subscriptions", "list", "--db", "plain/a.db"], ("--db", "plain/a.db")),
    "subscriptions: bad language": (
        ["subscriptions", "add", "https://93.184.215.14/hook", "--language", "fr", "--db", "a.db"],
        ("language",),
    ),
    "subscriptions: private target": (
        ["subscriptions", "add", "http://127.0.0.1:{dead}/hook", "--db", "a.db"],
        ("127.0.0.1",),
    ),
    "subscriptions: unknown id": (["subscriptions", "remove", "sub_nope", "--db", "a.db"], ("sub_nope",)),
    # ioc api
    "api: port in use": (["api", "--port", "{held}"], ("port {held}", "in use", "--port", "IOC_API_PORT")),
    "api: port out of range": (["api", "--port", "0"], ("--port", "IOC_API_PORT")),
    "api: bad log level": (["api", "--log-level", "loud"], ("--log-level (IOC_API_LOG_LEVEL)",)),
    "api: fleet missing": (["api", "--port", "{dead}"], ("nope.yaml", "fleet file")),
    "api: alert db not writable": (["api", "--port", "{dead}"], ("IOC_ALERTS_DB", "plain/a.db")),
    "api keys: bad scope": (["api", "keys", "create", "--scope", "root", "--db", "a.db"], ("--scope",)),
    "api keys: db not writable": (["api", "keys", "list", "--db", "plain/a.db"], ("--db", "plain/a.db")),
    "api keys: unknown id": (["api", "keys", "revoke", "key_nope", "--db", "a.db"], ("key_nope",)),
    # the root
    "ioc: unknown command": (["injest"], ("injest", "ioc --help")),
}

ENV: dict[str, dict[str, str]] = {
    "api: port in use": {"IOC_FLEET": "fleet.yaml", "IOC_ALERTS_DB": "a.db"},
    "api: port out of range": {"IOC_FLEET": "fleet.yaml", "IOC_ALERTS_DB": "a.db"},
    "api: bad log level": {"IOC_FLEET": "fleet.yaml", "IOC_ALERTS_DB": "a.db"},
    "api: fleet missing": {"IOC_FLEET": "nope.yaml", "IOC_ALERTS_DB": "a.db"},
    "api: alert db not writable": {"IOC_FLEET": "fleet.yaml", "IOC_ALERTS_DB": "plain/a.db"},
}


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_a_mistake_is_one_line_and_exit_code_2(place: Place, case: str) -> None:
    args, words = MISTAKES[case]
    out = run_ioc(place, args, **ENV.get(case, {}))
    assert_one_line(out, *(place.fill(w) for w in words))


@pytest.mark.parametrize(
    ("env_file", "args", "words"),
    [
        ("IOC_SEED=1\nthis is not a setting\n", ["subscriptions", "list", "--db", "a.db"], (".env line 2",)),
        ("IOC_METRICS_PORT=abc\n", ["ingest"], ("--metrics-port", "IOC_METRICS_PORT", ".env line 1")),
        ("IOC_DEMO_DEVICES=0\n", ["demo"], ("--devices", "IOC_DEMO_DEVICES", ".env line 1")),
    ],
)
def test_a_bad_env_file_is_one_line_naming_its_line(
    place: Place, env_file: str, args: list[str], words: tuple[str, ...]
) -> None:
    (place.cwd / ".env").write_text(env_file)
    assert_one_line(run_ioc(place, args), *words)


def test_a_bad_environment_variable_is_named(place: Place) -> None:
    out = run_ioc(place, ["ingest"], IOC_METRICS_PORT="-1")
    assert_one_line(out, "IOC_METRICS_PORT", "set in the environment")


def test_ingest_metrics_port_in_use(
    place: Place, mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str
) -> None:
    out = run_ioc(
        place,
        ["ingest", "--fleet", "fleet.yaml", "--alerts-db", "a.db", "--metrics-port", "{held}"],
        IOC_MQTT_URL=f"mqtt://127.0.0.1:{mosquitto.port}",
        IOC_INFLUX_URL=influxd.url,
        IOC_INFLUX_DB=influx_db,
    )
    assert_one_line(out, f":{place.held_port}", "in use", "--metrics-port", "IOC_METRICS_PORT")


def test_backtest_names_a_database_that_does_not_exist(place: Place, influxd: InfluxServer) -> None:
    out = run_ioc(
        place, ["rules", "backtest", "--fleet", "fleet.yaml", "--influx-url", influxd.url, "--influx-db", "nope"]
    )
    assert_one_line(out, "no database 'nope'", "--influx-db")


def test_grafana_check_names_a_database_that_does_not_exist(place: Place, influxd: InfluxServer) -> None:
    dashboards = DASHBOARDS
    out = run_ioc(
        place, ["grafana", "check", "--influx-url", influxd.url, "--db", "nope", "--dashboards-dir", dashboards]
    )
    assert_one_line(out, "no database 'nope'", "--db")


def _ingest_until(place: Place, line_has: str, **env: str) -> tuple[int, str]:
    """Start ``ioc ingest``, wait for a stderr line containing ``line_has``, SIGTERM it; (exit code, stderr)."""
    err_path = place.cwd / "ingest.err"
    with err_path.open("w") as err:
        proc = subprocess.Popen(
            [IOC, "ingest", "--fleet", "fleet.yaml", "--alerts-db", "a.db", "--metrics-port", "0"],
            cwd=place.cwd,
            env=_env(**env),
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )
        try:
            deadline = time.monotonic() + TIMEOUT_S
            while line_has not in err_path.read_text() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(TIMEOUT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return code, err_path.read_text()


def test_ingest_waits_for_a_broker_that_is_not_there(place: Place, influxd: InfluxServer, influx_db: str) -> None:
    code, err = _ingest_until(
        place,
        "ingest keeps trying",
        IOC_MQTT_URL=f"mqtt://127.0.0.1:{place.dead_port}",
        IOC_INFLUX_URL=influxd.url,
        IOC_INFLUX_DB=influx_db,
    )
    assert "Traceback" not in err, err[-3000:]
    assert code == 0, err[-3000:]
    [warning] = [line for line in err.splitlines() if "ingest keeps trying" in line]
    assert f"mqtt://127.0.0.1:{place.dead_port} is unreachable" in warning
    assert "--mqtt-url (IOC_MQTT_URL)" in warning
    assert "drained and stopped" in err


def test_ingest_waits_for_an_influxdb_that_is_not_there(place: Place, mosquitto: ServerProcess) -> None:
    code, err = _ingest_until(
        place,
        "ingest keeps trying",
        IOC_MQTT_URL=f"mqtt://127.0.0.1:{mosquitto.port}",
        IOC_INFLUX_URL=f"http://127.0.0.1:{place.dead_port}",
    )
    assert "Traceback" not in err, err[-3000:]
    assert code == 0, err[-3000:]
    [warning] = [line for line in err.splitlines() if "ingest keeps trying" in line]
    assert f"InfluxDB at http://127.0.0.1:{place.dead_port} is unreachable" in warning
    assert "--influx-url (IOC_INFLUX_URL)" in warning


def test_a_bug_keeps_its_traceback(place: Place) -> None:
    """Not every failure is the user's: an unexpected exception still shows where it came from."""
    out = subprocess.run(
        [sys.executable, "-c", "from ioc.cli import app; from ioc import rules_cli; "
         "rules_cli.load_pack = lambda p: 1 / 0; app(['rules', 'validate'])"],
        cwd=place.cwd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip
    assert out.returncode == 1
    assert "Traceback" in out.stderr
    assert "ZeroDivisionError" in out.stderr
