"""TLS off the machine: a real Mosquitto with a TLS listener, real certificates from ioc/tls.py.

Ingest and the simulated fleet over ``mqtts://`` (both MQTT receive paths, the fast one also while
it pauses reading); an untrusted broker certificate, a plaintext port, a missing or foreign client
certificate refused at start-up with one line; devices that log in with their certificates
(mutual TLS, ``use_identity_as_username``) under the dynamic security plugin's ACLs — and what
Mosquitto 2.0.11 does there that docs/security.md has to warn about.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from contract.fleet import Fleet, dump_fleet
from contract.topics import device_topic
from ingest import mqtt_public
from ingest.broker import path_name
from ioc.servers import (
    INFLUXD_BIN,
    InfluxServer,
    ServerProcess,
    TlsFiles,
    find_binary,
    free_port,
    influxd_config,
    start_mosquitto,
)
from ioc.tls import CertPair, issue_client_cert, issue_device_cert, issue_server_cert, make_ca
from registry.broker_accounts import BrokerAccounts
from simulators.config import SimulateSettings
from simulators.fleetgen import generate_fleet
from simulators.publisher import FleetPublisher, PublishStats
from storage.influxql import query
from tests.helpers import IngestThread, count_points, ingest_settings, publish
from tests.integration.test_pipeline import small_fleet
from tests.integration.test_reliability import distinct_seqs, readings

pytestmark = pytest.mark.integration

ADMIN = ("ioc-admin", "admin-password-for-tests")
INGEST = "ioc-ingest"
TIMEOUT_S = 120
STORED = "ioc_ingest_readings_stored_total"


@dataclass(frozen=True)
class Pki:
    """A local CA, the broker's certificate from it, and another CA nobody here trusts."""

    folder: Path
    ca: CertPair
    server: CertPair
    other_ca: CertPair

    def device(self, device_id: str) -> CertPair:
        return issue_client_cert(self.ca, self.folder / "devices", device_id)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = make_ca(tmp_path / "pki" / "ca")
    server = issue_server_cert(ca, tmp_path / "pki" / "broker", ["localhost"], ["127.0.0.1"])
    return Pki(tmp_path / "pki", ca, server, make_ca(tmp_path / "pki" / "other-ca"))


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki, _servers_installed: None) -> Iterator[ServerProcess]:
    """Anonymous Mosquitto: the plaintext loopback listener and a TLS one (no client certificates)."""
    server = start_mosquitto(tmp_path / "mosquitto", tls=TlsFiles(pki.ca.cert, pki.server.cert, pki.server.key))
    yield server
    server.stop()


@pytest.fixture
def mutual_broker(tmp_path: Path, pki: Pki, _servers_installed: None) -> Iterator[ServerProcess]:
    """Mosquitto with the dynamic security plugin and a mutual-TLS listener: a certificate's CN is the user.

    Ingest and the test fleet's devices have dynsec clients (made through the plaintext listener
    by the admin) with their roles, and certificates from the local CA.
    """
    tls = TlsFiles(pki.ca.cert, pki.server.cert, pki.server.key, mutual=True)
    server = start_mosquitto(tmp_path / "mosquitto", dynsec_admin=ADMIN, tls=tls)
    with BrokerAccounts(f"mqtt://127.0.0.1:{server.port}", *ADMIN) as accounts:
        accounts.ensure_roles()
        accounts.create_service(INGEST, "ioc-ingest")
        accounts.create_devices([d.id for d in small_fleet().devices])
    yield server
    server.stop()


def mqtts(server: ServerProcess, host: str = "127.0.0.1") -> str:
    return f"mqtts://{host}:{server.tls_port}"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}


def ioc(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m ioc …`` as a process in ``cwd``, without the developer's IOC_* variables."""
    return subprocess.run(
        [sys.executable, "-m", "ioc", *args], cwd=cwd, env=_env(), capture_output=True, text=True,
        timeout=TIMEOUT_S, check=False,
    )  # fmt: skip


def one_line_error(out: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit code 2, no traceback, one ``error:`` line on stderr naming ``words``."""
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    assert out.returncode == 2, out.stderr[-3000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr[-3000:]
    assert lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def tls_connections(server: ServerProcess) -> int:
    """Clients the broker accepted on its TLS port (its log, complete once it stopped)."""
    return server.log_path.read_text(errors="replace").count(f"on port {server.tls_port}.")


# --- server TLS: ingest and the simulated fleet over mqtts ----------------------------------------


@pytest.mark.parametrize("path", ["on", "off"])
def test_every_reading_published_over_mqtts_is_stored(
    path: str, tls_broker: ServerProcess, pki: Pki, influxd: InfluxServer, influx_db: str, tmp_path: Path
) -> None:
    """``ioc simulate`` (a process) publishes over TLS to localhost; ingest, on 127.0.0.1, stores them all."""
    fleet = generate_fleet(20, seed=11)
    dump_fleet(fleet, tmp_path / "fleet.yaml")
    n = 2_000
    settings = ingest_settings(
        tls_broker.port, influxd.url, influx_db, mqtt_url=mqtts(tls_broker), mqtt_ca_file=pki.ca.cert,
        mqtt_fast_path=path,
    )  # fmt: skip
    with IngestThread(settings, fleet) as ingest:
        assert path_name(ingest.service.broker_factory) == {"on": "fast", "off": "public"}[path]
        out = ioc(
            [
                "simulate", f"--mqtt-url={mqtts(tls_broker, 'localhost')}", f"--mqtt-ca-file={pki.ca.cert}",
                "--fleet=fleet.yaml", "--seed=11", "--backfill-hours=48", f"--readings={n}", "--rate=2000",
            ],
            tmp_path,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-3000:]
        summary = json.loads(out.stdout.strip().splitlines()[-1])
        assert summary["published"] == n
        assert summary["refused"] == 0
        ingest.wait_for(lambda: ingest.metric(STORED) >= n, timeout=TIMEOUT_S, what=f"{n} stored")
        assert ingest.service.metrics.rejected_total() == 0
    assert count_points(influxd.url, influx_db) == n
    tls_broker.stop()
    assert tls_connections(tls_broker) >= 1 + len(fleet.devices)  # ingest and every device came over TLS


@pytest.mark.parametrize("path", ["on", "off"])
def test_over_tls_a_queue_smaller_than_what_the_broker_sends_loses_nothing(
    path: str,
    tls_broker: ServerProcess,
    pki: Pki,
    influxd: InfluxServer,
    influx_db: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """tests/integration/test_mqtt_paths.py over TLS: the fast path reads the TLS socket through paho's
    internals and pauses reading while its queue is full (decrypted bytes may wait inside the TLS
    object, where no readiness event announces them); it must still stop, resume and drop nothing."""
    monkeypatch.setattr(mqtt_public, "QUEUE_HEADROOM", -1_000)  # a queue of 1,000 for 2,000 in flight
    n = 5_000
    settings = ingest_settings(
        tls_broker.port, influxd.url, influx_db, mqtt_url=mqtts(tls_broker), mqtt_ca_file=pki.ca.cert,
        mqtt_fast_path=path, mqtt_receive_maximum=2_000, batch_max_readings=500,
    )  # fmt: skip
    with IngestThread(settings, small_fleet()):
        pass  # ingest's persistent session now exists at the broker
    publish(tls_broker.port, readings("bt-sal-1", 0, n))  # queued in it while ingest is away (loopback listener)
    with IngestThread(settings, small_fleet()) as ingest:  # the broker sends 2,000 at once, over TLS
        ingest.wait_for(lambda: len(distinct_seqs(influxd.url, influx_db)) >= n, timeout=TIMEOUT_S, what="stored")
        dropped = ingest.metric("ioc_ingest_messages_dropped_total")
        renewed = ingest.metric("ioc_ingest_broker_reconnects_total")
        ingest.wait_for(lambda: ingest.metric("ioc_ingest_messages_inflight") == 0, timeout=30, what="all acked")
    assert distinct_seqs(influxd.url, influx_db) == set(range(n))
    if path == "on":
        assert (dropped, renewed) == (0, 0)
    else:
        assert dropped > 0
        assert renewed >= 1


# --- start-up: what is wrong is one line -----------------------------------------------------------


def _simulate(broker_url: str, *flags: str) -> list[str]:
    return ["simulate", "--fleet=fleet.yaml", f"--mqtt-url={broker_url}", "--readings=5", *flags]


@pytest.mark.parametrize(
    "case",
    ["another CA", "the system's CAs", "plaintext port", "CA with mqtt://", "certificate without key"],
)
def test_simulate_refuses_a_broker_it_cannot_trust_in_one_line(
    case: str, tls_broker: ServerProcess, pki: Pki, tmp_path: Path
) -> None:
    dump_fleet(generate_fleet(3, seed=1), tmp_path / "fleet.yaml")
    tls, plain = mqtts(tls_broker), f"mqtt://127.0.0.1:{tls_broker.port}"
    device = pki.device("bt-sal-1")
    args, words = {
        "another CA": (
            _simulate(tls, f"--mqtt-ca-file={pki.other_ca.cert}"),
            ("certificate we do not trust", "--mqtt-ca-file (IOC_MQTT_CA_FILE)", tls),
        ),
        "the system's CAs": (_simulate(tls), ("certificate we do not trust", "--mqtt-ca-file")),
        "plaintext port": (
            _simulate(f"mqtts://127.0.0.1:{tls_broker.port}", f"--mqtt-ca-file={pki.ca.cert}"),
            ("mqtt:// port", "--mqtt-url (IOC_MQTT_URL)"),
        ),
        "CA with mqtt://": (
            _simulate(plain, f"--mqtt-ca-file={pki.ca.cert}"),
            ("--mqtt-ca-file (IOC_MQTT_CA_FILE)", "mqtts://host:port", "--mqtt-url"),
        ),
        "certificate without key": (
            _simulate(tls, f"--mqtt-cert-file={device.cert}"),
            ("--mqtt-cert-file (IOC_MQTT_CERT_FILE)", "--mqtt-key-file (IOC_MQTT_KEY_FILE)"),
        ),
    }[case]
    one_line_error(ioc(args, tmp_path), *words)


def test_ingest_names_an_untrusted_broker_certificate_and_keeps_trying(
    tls_broker: ServerProcess, pki: Pki, influxd: InfluxServer, influx_db: str, tmp_path: Path
) -> None:
    """Ingest waits for its servers (a warning, then retries); an untrusted certificate is named, not stored to."""
    dump_fleet(small_fleet(), tmp_path / "fleet.yaml")
    err_path = tmp_path / "ingest.err"
    argv = [
        sys.executable, "-m", "ioc", "ingest", "--fleet=fleet.yaml", "--alerts-db=a.db", "--metrics-port=0",
        f"--mqtt-url={mqtts(tls_broker)}", f"--mqtt-ca-file={pki.other_ca.cert}",
        f"--influx-url={influxd.url}", f"--influx-db={influx_db}",
    ]  # fmt: skip
    with err_path.open("w") as err:
        proc = subprocess.Popen(argv, cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL, stderr=err, text=True)
        try:
            deadline = time.monotonic() + TIMEOUT_S
            while "certificate verify failed" not in err_path.read_text().lower() and time.monotonic() < deadline:
                assert proc.poll() is None, err_path.read_text()[-3000:]
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(TIMEOUT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = err_path.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert code == 0, text[-3000:]
    [warning] = [line for line in text.splitlines() if "ingest keeps trying" in line]
    assert f"the MQTT broker at {mqtts(tls_broker)} presents a certificate we do not trust" in warning
    assert "--mqtt-ca-file (IOC_MQTT_CA_FILE)" in warning
    assert "broker connection lost or refused" in text  # the service itself refused it too, and retried


# --- https:// InfluxDB: ingest's writer trusts --influx-ca-file -------------------------------------


@pytest.fixture
def https_influxd(tmp_path: Path, pki: Pki, _servers_installed: None) -> Iterator[ServerProcess]:
    """InfluxDB 1.x serving https only, with the broker's certificate (localhost, 127.0.0.1) from our CA."""
    binary = find_binary(INFLUXD_BIN)
    assert binary is not None
    data = tmp_path / "influxdb"
    data.mkdir()
    port = free_port()
    conf = influxd_config(data, port, free_port()).replace(
        "[http]\n  enabled = true\n",
        f'[http]\n  enabled = true\n  https-enabled = true\n  https-certificate = "{pki.server.cert}"\n'
        f'  https-private-key = "{pki.server.key}"\n',
    )
    (data / "influxdb.conf").write_text(conf)
    server = ServerProcess("influxd", [binary, "run", "-config", str(data / "influxdb.conf")], port, data).start()
    yield server
    server.stop()


def test_ingest_writes_to_an_https_influxdb_it_trusts_through_its_ca(
    tls_broker: ServerProcess, https_influxd: ServerProcess, pki: Pki
) -> None:
    url = f"https://localhost:{https_influxd.port}"
    trusted = ssl.create_default_context(cafile=str(pki.ca.cert))
    with httpx.Client(base_url=url, verify=trusted, timeout=30) as influx:
        deadline = time.monotonic() + 30
        while influx.get("/ping").status_code != 204 and time.monotonic() < deadline:
            time.sleep(0.1)
        query(influx, 'CREATE DATABASE "tls"', method="POST")
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{url}/ping", timeout=5)  # the system's CAs do not know ours
        n = 300
        settings = ingest_settings(
            tls_broker.port, url, "tls", mqtt_url=mqtts(tls_broker), mqtt_ca_file=pki.ca.cert,
            influx_ca_file=pki.ca.cert,
        )  # fmt: skip
        with IngestThread(settings, small_fleet()) as ingest:
            publish(tls_broker.port, readings("bt-sal-1", 0, n))
            ingest.wait_for(lambda: ingest.metric(STORED) >= n, timeout=TIMEOUT_S, what=f"{n} stored over https")
        assert distinct_seqs_over(influx, "tls") == set(range(n))


def distinct_seqs_over(client: httpx.Client, db: str) -> set[int]:
    return {int(v[1]) for s in query(client, 'SELECT "seq" FROM "salinity"', db=db) for v in s["values"]}


def test_the_v2_writer_trusts_an_https_server_through_its_ca(
    tls_broker: ServerProcess, pki: Pki, tmp_path: Path
) -> None:
    """``--influx-api v2`` (influxdb-client, ``ssl_ca_cert``) against VictoriaMetrics serving https."""
    binary = find_binary("victoria-metrics")
    if binary is None:
        pytest.fail("the v2 write test needs Debian's victoria-metrics: run `make test` (installs it)")
    port = free_port()
    data = tmp_path / "vm"
    data.mkdir()
    argv = [
        binary, f"-storageDataPath={data}", f"-httpListenAddr=127.0.0.1:{port}", "-retentionPeriod=100y",
        "-tls", f"-tlsCertFile={pki.server.cert}", f"-tlsKeyFile={pki.server.key}",
    ]  # fmt: skip
    vm = ServerProcess("victoria-metrics", argv, port, data).start()
    try:
        url = f"https://localhost:{port}"
        n = 200
        settings = ingest_settings(
            tls_broker.port, url, "unused", influx_api="v2", influx_bucket="ioc", influx_org="mekong",
            influx_token="t0ken", influx_ca_file=pki.ca.cert,
        )  # fmt: skip
        with IngestThread(settings, small_fleet()) as ingest:
            publish(tls_broker.port, readings("bt-sal-1", 0, n))
            ingest.wait_for(lambda: ingest.metric(STORED) >= n, timeout=TIMEOUT_S, what=f"{n} stored over https")
            assert ingest.metric("ioc_ingest_write_retries_total") == 0
        verify = ssl.create_default_context(cafile=str(pki.ca.cert))
        httpx.get(f"{url}/internal/force_flush", timeout=10, verify=verify)
        resp = httpx.get(
            f"{url}/api/v1/export", params={"match[]": '{__name__="salinity_seq"}'}, timeout=30, verify=verify
        )
        values = {v for line in resp.text.splitlines() for v in json.loads(line)["values"]}
        assert values == set(range(n))
    finally:
        vm.stop()


# --- mutual TLS: a device logs in with its certificate ---------------------------------------------


def mutual_ingest(server: ServerProcess, pki: Pki, influxd: InfluxServer, db: str) -> IngestThread:
    """Ingest over mutual TLS with a certificate of its own (CN ioc-ingest: its dynsec client and role)."""
    cert = pki.device(INGEST)
    settings = ingest_settings(
        server.port, influxd.url, db, mqtt_url=mqtts(server), mqtt_ca_file=pki.ca.cert,
        mqtt_cert_file=cert.cert, mqtt_key_file=cert.key, mqtt_client_id=INGEST,
    )  # fmt: skip
    return IngestThread(settings, small_fleet())


def simulate(server: ServerProcess, pki: Pki, fleet: Fleet, cert_file: Path, key_file: Path, n: int) -> PublishStats:
    """The simulated fleet over mutual TLS, no passwords: each device presents ``cert_file``."""
    settings = SimulateSettings(  # type: ignore[call-arg]
        _env_file=None, mqtt_url=mqtts(server, "localhost"), mqtt_ca_file=pki.ca.cert,
        mqtt_cert_file=cert_file, mqtt_key_file=key_file, readings=n, rate=2_000,
    )  # fmt: skip
    return FleetPublisher(fleet, settings).run()


def test_devices_log_in_with_their_certificates_and_are_stored(
    mutual_broker: ServerProcess, pki: Pki, influxd: InfluxServer, influx_db: str, tmp_path: Path
) -> None:
    fleet = small_fleet()
    certs = tmp_path / "device-certs"
    for d in fleet.devices:  # what ``ioc devices issue-cert ID --ca-dir … --out …`` does
        issue_device_cert(d.id, ca_dir=pki.ca.cert.parent, out_dir=certs)
    n = 1_000
    with mutual_ingest(mutual_broker, pki, influxd, influx_db) as ingest:
        stats = simulate(
            mutual_broker, pki, fleet, certs / "{device_id}.crt", certs / "{device_id}.key", n
        )  # a certificate each
        assert stats.statuses_acked == len(fleet.devices), "every device connected and said so"
        assert (stats.readings_acked, stats.readings_refused) == (n, 0)
        ingest.wait_for(lambda: ingest.metric(STORED) >= n, timeout=TIMEOUT_S, what=f"{n} stored")
    assert count_points(influxd.url, influx_db) == n


def test_a_certificate_for_another_device_cannot_publish_under_this_id(
    mutual_broker: ServerProcess, pki: Pki, influxd: InfluxServer, influx_db: str, tmp_path: Path
) -> None:
    """bt-sal-1 presenting bt-sal-2's certificate is bt-sal-2 to the broker (user name and, bound to
    it, client id): the ACLs of bt-sal-2 refuse every publish under bt-sal-1. A certificate of our CA
    whose name has no dynsec client connects, and may publish nothing."""
    fleet = small_fleet()
    victim = Fleet(devices=(fleet.devices[0],))
    other = pki.device(fleet.devices[1].id)
    stranger = pki.device("not-in-the-registry")
    with mutual_ingest(mutual_broker, pki, influxd, influx_db) as ingest:
        impostor = simulate(mutual_broker, pki, victim, other.cert, other.key, 200)
        assert (impostor.readings_acked, impostor.readings_refused) == (0, 200)
        unknown = simulate(mutual_broker, pki, victim, stranger.cert, stranger.key, 200)
        assert (unknown.readings_acked, unknown.readings_refused) == (0, 200)
        honest = simulate(mutual_broker, pki, Fleet(devices=(fleet.devices[1],)), other.cert, other.key, 100)
        assert (honest.readings_acked, honest.readings_refused) == (100, 0)
        ingest.wait_for(lambda: ingest.metric(STORED) >= 100, timeout=TIMEOUT_S, what="the honest readings")
        time.sleep(0.5)
        assert ingest.metric(STORED) == 100
    mutual_broker.stop()
    log = mutual_broker.log_path.read_text(errors="replace")
    assert f"as {fleet.devices[1].id} (p5, c1, k60, u'{fleet.devices[1].id}')" in log
    assert f"as {fleet.devices[0].id} " not in log, "bt-sal-1's client id was never used: it is bound to the CN"


@pytest.mark.parametrize("case", ["no certificate", "another CA's certificate", "a device without its certificate"])
def test_simulate_without_an_accepted_client_certificate_is_one_line(
    case: str, mutual_broker: ServerProcess, pki: Pki, tmp_path: Path
) -> None:
    dump_fleet(small_fleet(), tmp_path / "fleet.yaml")
    url = mqtts(mutual_broker)
    words: tuple[str, ...]
    if case == "no certificate":
        args, words = _simulate(url, f"--mqtt-ca-file={pki.ca.cert}"), (url, "requires a client certificate")
    elif case == "another CA's certificate":
        foreign = issue_client_cert(pki.other_ca, tmp_path / "foreign", "bt-sal-1")
        flags = (f"--mqtt-ca-file={pki.ca.cert}", f"--mqtt-cert-file={foreign.cert}", f"--mqtt-key-file={foreign.key}")
        args, words = _simulate(url, *flags), (url, "refused our TLS connection", "unknown ca")
    else:  # certificates per device, and the fleet's first device has none in the folder
        (tmp_path / "certs").mkdir()
        template = ("--mqtt-cert-file=certs/{device_id}.crt", "--mqtt-key-file=certs/{device_id}.key")
        args = _simulate(url, f"--mqtt-ca-file={pki.ca.cert}", *template)
        words = ("certs/bt-sal-1.crt", "no such file")
    one_line_error(ioc(args, tmp_path), *words, "--mqtt-cert-file (IOC_MQTT_CERT_FILE)")


class CertDevice:
    """A paho client over mutual TLS that reconnects by itself (as a real device does)."""

    def __init__(self, server: ServerProcess, pki: Pki, device_id: str) -> None:
        cert = pki.device(device_id)
        self.topic = device_topic("ben_tre", "salinity", device_id, "telemetry")
        self.connects = 0
        self.disconnects = 0
        self._cond = threading.Condition()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=paho.MQTTv5)
        self.client.tls_set(ca_certs=str(pki.ca.cert), certfile=str(cert.cert), keyfile=str(cert.key))
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.connect("127.0.0.1", server.tls_port or 0)
        self.client.loop_start()
        self.wait(lambda: self.connects == 1, "the first connection")

    def _on_connect(self, *_: Any) -> None:
        with self._cond:
            self.connects += 1
            self._cond.notify_all()

    def _on_disconnect(self, *_: Any) -> None:
        with self._cond:
            self.disconnects += 1
            self._cond.notify_all()

    def wait(self, predicate: Any, what: str) -> None:
        with self._cond:
            assert self._cond.wait_for(predicate, 10), f"no {what}"

    def publish(self) -> str:
        """The reason code of the broker's PUBACK."""
        done = threading.Event()
        codes: list[str] = []

        def acked(_c: paho.Client, _u: Any, _mid: int, rc: Any, _p: Any) -> None:
            codes.append(str(rc))
            done.set()

        self.client.on_publish = acked
        self.client.publish(self.topic, b'{"ts": 1, "seq": 1, "salinity_ppt": 0.3}', qos=1)
        assert done.wait(10), "no PUBACK"
        return codes[-1]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_a_suspended_certificate_device_is_thrown_off_and_may_publish_nothing(
    mutual_broker: ServerProcess, pki: Pki
) -> None:
    """Measured on Mosquitto 2.0.11 (docs/security.md): with ``use_identity_as_username`` the plugin's
    password check — where a disabled client is refused — is skipped, so ``disableClient`` alone
    throws the device off and it is straight back in and publishing. ``set_enabled(False)`` also
    takes its role away: back in, every publish is refused; enabled again, it publishes."""
    device = CertDevice(mutual_broker, pki, "bt-sal-1")
    try:
        assert device.publish() == "No matching subscribers"  # accepted (nobody subscribes here)
        with BrokerAccounts(f"mqtt://127.0.0.1:{mutual_broker.port}", *ADMIN) as accounts:
            accounts.run([{"command": "disableClient", "username": "bt-sal-1"}])
            device.wait(lambda: device.disconnects >= 1 and device.connects >= 2, "thrown off, then back")
            assert device.publish() == "No matching subscribers"  # disabled alone: still publishing
            accounts.run([{"command": "enableClient", "username": "bt-sal-1"}])
            accounts.set_enabled(["bt-sal-1"], False)
            device.wait(lambda: device.disconnects >= 2 and device.connects >= 3, "thrown off, then back")
            assert device.publish() == "Not authorized"
            accounts.set_enabled(["bt-sal-1"], True)
            assert device.publish() == "No matching subscribers"
    finally:
        device.close()
