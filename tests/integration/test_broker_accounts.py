"""Per-device broker accounts through Mosquitto's dynamic security plugin, provisioned by
``ioc devices`` (real processes) against a real broker, with ingest running on its own account."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from alerts.config import WebhookSettings
from contract.fleet import dump_fleet
from ioc.servers import InfluxServer, start_mosquitto
from registry.broker_accounts import BrokerAccounts
from registry.store import DeviceRegistry
from tests.helpers import PipelineThread, ingest_settings
from tests.integration.test_broker_sessions import Broker, Device
from tests.integration.test_pipeline import small_fleet, telemetry
from tests.integration.test_reliability import distinct_seqs, readings

ADMIN = ("ioc-admin", "admin-password-for-tests")
INGEST = "ioc-ingest"
NOT_AUTHORIZED = 0x87
NO_SUBSCRIBERS = 0x10


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A local broker with the dynamic security plugin: no anonymous clients, one admin account."""
    server = start_mosquitto(tmp_path / "mosquitto", dynsec_admin=ADMIN)
    url = f"mqtt://127.0.0.1:{server.port}"
    with BrokerAccounts(url, *ADMIN) as accounts:
        accounts.ensure_roles()
        ingest = accounts.create_service(INGEST, "ioc-ingest")
    yield Broker(server, {INGEST: ingest.password})
    server.stop()


def ioc(*args: str, broker: Broker) -> str:
    env = {
        **os.environ,
        "IOC_BROKER_ADMIN_PASSWORD": ADMIN[1],
        "IOC_BROKER_ADMIN_URL": f"mqtt://127.0.0.1:{broker.port}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "ioc", *args], capture_output=True, text=True, timeout=60, check=False, env=env
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_each_device_publishes_only_as_itself_and_a_disabled_account_is_thrown_off(
    broker: Broker, influxd: InfluxServer, influx_db: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    fleet_file = tmp_path / "fleet.yaml"
    dump_fleet(small_fleet(), fleet_file)
    ioc("devices", "import", str(fleet_file), "--registry-url", url, broker=broker)
    creds_file = tmp_path / "credentials.csv"
    out = ioc("devices", "sync-broker", "--registry-url", url, "--credentials-out", str(creds_file), broker=broker)
    assert out.startswith(f"broker accounts: {len(small_fleet().devices)} created, 0 already there")
    assert oct(creds_file.stat().st_mode & 0o777) == "0o600"
    with creds_file.open() as f:
        broker.passwords.update({row["username"]: row["password"] for row in csv.DictReader(f)})
    again = ioc("devices", "sync-broker", "--registry-url", url, broker=broker)
    assert again.startswith(f"broker accounts: 0 created, {len(small_fleet().devices)} already there")

    settings = ingest_settings(
        broker.port, influxd.url, influx_db, mqtt_client_id=INGEST, mqtt_username=INGEST,
        mqtt_password=broker.passwords[INGEST], registry_url=url, registry_poll_s=0.5,
    )  # fmt: skip
    webhooks = WebhookSettings(_env_file=None, alerts_db=tmp_path / "alerts.db")  # type: ignore[call-arg]
    with PipelineThread(settings, webhooks) as ingest:
        ingest.wait_for(lambda: ingest.service.connected, what="ingest subscribed on its own account")
        honest = Device(broker, "bt-sal-1")
        try:
            assert honest.publish_all(readings("bt-sal-1", 0, 100)) == [0] * 100
            # Another device's topic, a dead letter, and reading anything: refused.
            assert honest.publish_all(readings("bt-sal-2", 0, 3)) == [NOT_AUTHORIZED] * 3
            assert honest.publish_all([("ioc/v1/_dlq/x/bt-sal-1/y", b"{}")]) == [NOT_AUTHORIZED]
            assert honest.subscribe("ioc/v1/#") == [NOT_AUTHORIZED]
        finally:
            honest.close()
        # Its own password with ingest's client id: the broker binds the id to the account.
        thief = Device(broker, "bt-sal-2", client_id=INGEST, clean_start=False)
        assert thief.connack.is_failure
        thief.close()
        ingest.wait_for(lambda: len(distinct_seqs(influxd.url, influx_db)) == 100, what="100 stored")
        assert ingest.metric("ioc_ingest_broker_reconnects_total") == 0

        # A device added while everything runs: its account and password, printed once; stored.
        added = ioc(
            "devices", "add", "--id", "bt-sal-9", "--kind", "salinity", "--province", "ben_tre", "--district",
            "ba_tri", "--site", "river", "--crop", "rice", "--lat", "10.0", "--lon", "106.5", "--registry-url", url,
            broker=broker,
        )  # fmt: skip
        record = json.loads(added)
        assert record["mqtt_username"] == "bt-sal-9"
        broker.passwords["bt-sal-9"] = record["mqtt_password"]
        newcomer = Device(broker, "bt-sal-9")
        thrown_off = threading.Event()
        newcomer.client.on_disconnect = lambda *_: thrown_off.set()
        started = time.monotonic()
        seq = 0
        while time.monotonic() - started < 5:
            assert newcomer.publish_all([(telemetry("bt-sal-9"), readings("bt-sal-9", seq, 1)[0][1])]) == [0]
            seq += 1
            if ingest.metric("ioc_ingest_readings_stored_total") > 100:
                break
            time.sleep(0.2)
        assert ingest.metric("ioc_ingest_readings_stored_total") > 100, "the new device's reading stored within 5 s"

        # Decommissioned: the broker disconnects it at once and refuses it from then on.
        ioc("devices", "decommission", "bt-sal-9", "--registry-url", url, broker=broker)
        assert thrown_off.wait(5), "the broker disconnected the decommissioned device"
        newcomer.client.loop_stop()
        again_device = Device(broker, "bt-sal-9")
        assert again_device.connack.is_failure
        again_device.close()
        assert ingest.metric("ioc_ingest_broker_reconnects_total") == 0


def test_a_broker_admin_that_cannot_log_in_is_one_line(broker: Broker, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "IOC_BROKER_ADMIN_PASSWORD": "wrong",
        "IOC_BROKER_ADMIN_URL": f"mqtt://127.0.0.1:{broker.port}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "ioc", "devices", "add", "--id", "x1", "--kind", "salinity", "--province", "ben_tre",
         "--district", "ba_tri", "--site", "river", "--lat", "10", "--lon", "106",
         "--registry-url", f"sqlite:///{tmp_path / 'r.db'}"],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "refused the admin login" in lines[0]
    assert "IOC_BROKER_ADMIN_PASSWORD" in lines[0]
    registry = DeviceRegistry(f"sqlite:///{tmp_path / 'r.db'}")
    assert registry.find("x1") is None
    registry.close()


def test_suspended_then_activated_publishes_again_and_repeats_are_harmless(broker: Broker, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    added = ioc(
        "devices", "add", "--id", "bt-sal-1", "--kind", "salinity", "--province", "ben_tre", "--district",
        "ba_tri", "--site", "river", "--lat", "10.0", "--lon", "106.5", "--registry-url", url, broker=broker,
    )  # fmt: skip
    broker.passwords["bt-sal-1"] = json.loads(added)["mqtt_password"]
    topic_reading = readings("bt-sal-1", 0, 1)
    for command in ("suspend", "suspend"):
        assert "broker account disabled" in ioc("devices", command, "bt-sal-1", "--registry-url", url, broker=broker)
    refused = Device(broker, "bt-sal-1")
    assert refused.connack.is_failure
    refused.close()
    for _ in range(2):
        assert "bt-sal-1: active" in ioc("devices", "activate", "bt-sal-1", "--registry-url", url, broker=broker)
    device = Device(broker, "bt-sal-1")
    try:
        assert device.publish_all(topic_reading) == [NO_SUBSCRIBERS]  # accepted; nobody subscribes here
    finally:
        device.close()


def test_sync_broker_derives_passwords_from_the_fleet_secret(broker: Broker, tmp_path: Path) -> None:
    """``--device-secret-file``: each account created gets the password the simulators derive
    (``simulators.publisher.device_password``), nothing to write out; existing accounts keep theirs."""
    from simulators.publisher import device_password

    url = f"sqlite:///{tmp_path / 'registry.db'}"
    fleet_file = tmp_path / "fleet.yaml"
    dump_fleet(small_fleet(), fleet_file)
    ioc("devices", "import", str(fleet_file), "--registry-url", url, broker=broker)
    secret = "s" * 40
    secret_file = tmp_path / "device_secret"
    secret_file.write_text(secret + "\n")  # surrounding whitespace is not part of the secret
    devices = [d.id for d in small_fleet().devices]
    args = ("devices", "sync-broker", "--registry-url", url, "--device-secret-file", str(secret_file))
    assert ioc(*args, broker=broker).startswith(f"broker accounts: {len(devices)} created, 0 already there")
    broker.passwords.update({d: device_password(secret.encode(), d) for d in devices})
    for device_id in devices:
        device = Device(broker, device_id)
        try:
            assert not device.connack.is_failure, device_id
            assert device.publish_all(readings(device_id, 0, 1)) == [NO_SUBSCRIBERS]
        finally:
            device.close()
    secret_file.write_text("t" * 40)
    assert ioc(*args, broker=broker).startswith(f"broker accounts: 0 created, {len(devices)} already there")
    device = Device(broker, devices[0])  # the first password still works: nothing was reset
    assert not device.connack.is_failure
    device.close()


@pytest.mark.parametrize(("content", "problem"), [("short", "too short"), (None, "cannot read it")])
def test_sync_broker_refuses_a_bad_secret_file_in_one_line(
    broker: Broker, tmp_path: Path, content: str | None, problem: str
) -> None:
    secret_file = tmp_path / "device_secret"
    if content is not None:
        secret_file.write_text(content)
    env = {
        **os.environ,
        "IOC_BROKER_ADMIN_PASSWORD": ADMIN[1],
        "IOC_BROKER_ADMIN_URL": f"mqtt://127.0.0.1:{broker.port}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "ioc", "devices", "sync-broker", "--registry-url", f"sqlite:///{tmp_path / 'r.db'}",
         "--device-secret-file", str(secret_file)],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"--device-secret-file {secret_file}: " in lines[0]
    assert problem in lines[0]


def test_the_admin_api_over_tls_trusts_only_its_ca(tmp_path: Path) -> None:
    from ioc.servers import TlsFiles
    from ioc.tls import issue_server_cert, make_ca
    from registry.broker_accounts import BrokerAccountError

    ca = make_ca(tmp_path / "ca")
    other = make_ca(tmp_path / "other-ca")
    server_pair = issue_server_cert(ca, tmp_path / "server")
    server = start_mosquitto(
        tmp_path / "mosquitto", dynsec_admin=ADMIN, tls=TlsFiles(ca.cert, server_pair.cert, server_pair.key)
    )
    try:
        url = f"mqtts://127.0.0.1:{server.tls_port}"
        with BrokerAccounts(url, *ADMIN, ca_file=ca.cert) as accounts:
            accounts.ensure_roles()
            assert accounts.create_devices(["bt-sal-1"])[0].username == "bt-sal-1"
            assert set(accounts.clients()) == {ADMIN[0], "bt-sal-1"}
        with pytest.raises(BrokerAccountError, match="failed the TLS handshake"):
            BrokerAccounts(url, *ADMIN, ca_file=other.cert).__enter__()
    finally:
        server.stop()
