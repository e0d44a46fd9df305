"""Provisioning end to end through the API, as a duty desk would: a device registered with
``POST /v1/devices`` gets its broker account and password; a running ingest stores its first
reading within 5 s; ``DELETE`` decommissions it, and the broker throws it off and refuses it.
Real Mosquitto (dynamic security plugin), InfluxDB, the registry's SQLite file, ingest and the API
under uvicorn, all on loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from alerts.config import WebhookSettings
from api.config import ApiSettings
from api.main import create_app
from ioc.servers import InfluxServer, start_mosquitto
from registry.broker_accounts import BrokerAccounts
from registry.store import DeviceRegistry
from tests.helpers import PipelineThread, ingest_settings
from tests.integration.test_api_schema import Served
from tests.integration.test_broker_sessions import Broker, Device
from tests.integration.test_pipeline import small_fleet
from tests.integration.test_reliability import distinct_seqs, readings

BROKER_ADMIN = ("ioc-admin", "admin-password-for-the-api-test")
API_KEY = "an-admin-key-for-the-provisioning-test-0123456789"
FOLLOW_S = 5.0


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    server = start_mosquitto(tmp_path / "mosquitto", dynsec_admin=BROKER_ADMIN)
    with BrokerAccounts(f"mqtt://127.0.0.1:{server.port}", *BROKER_ADMIN) as accounts:
        accounts.ensure_roles()
        ingest = accounts.create_service("ioc-ingest", "ioc-ingest")
    yield Broker(server, {"ioc-ingest": ingest.password})
    server.stop()


def test_a_device_registered_through_the_api_is_stored_then_decommissioned_and_refused(
    broker: Broker, influxd: InfluxServer, influx_db: str, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    registry = DeviceRegistry(url)
    registry.import_devices(small_fleet().devices)
    registry.close()
    settings = ingest_settings(
        broker.port, influxd.url, influx_db, mqtt_client_id="ioc-ingest", mqtt_username="ioc-ingest",
        mqtt_password=broker.passwords["ioc-ingest"], registry_url=url, registry_poll_s=0.5,
    )  # fmt: skip
    webhooks = WebhookSettings(_env_file=None, alerts_db=tmp_path / "alerts.db")  # type: ignore[call-arg]
    api_settings = ApiSettings(
        _env_file=None, influx_url=influxd.url, influx_db=influx_db, registry_url=url,  # type: ignore[call-arg]
        alerts_db=tmp_path / "api-alerts.db", mqtt_url=f"mqtt://127.0.0.1:{broker.port}", api_admin_key=API_KEY,
        broker_admin_url=f"mqtt://127.0.0.1:{broker.port}", broker_admin_password=BROKER_ADMIN[1],
    )  # fmt: skip
    headers = {"Authorization": f"Bearer {API_KEY}"}
    new = {
        "id": "bt-sal-api", "kind": "salinity", "province": "ben_tre", "district": "ba_tri", "site": "river",
        "crop": "rice", "lat": 10.04, "lon": 106.6,
    }  # fmt: skip
    with (
        PipelineThread(settings, webhooks) as ingest,
        Served(create_app(api_settings)) as api,
        httpx.Client(base_url=api.url, headers=headers, timeout=30) as http,
    ):
        ingest.wait_for(lambda: ingest.service.connected, what="ingest subscribed on its account")
        created = http.post("/v1/devices", json=new)
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["mqtt_username"] == "bt-sal-api"
        assert body["mqtt_password"]
        assert http.get("/v1/devices/bt-sal-api").json().get("mqtt_password") is None, "shown once"
        broker.passwords["bt-sal-api"] = body["mqtt_password"]

        device = Device(broker, "bt-sal-api")
        thrown_off = threading.Event()
        device.client.on_disconnect = lambda *_: thrown_off.set()
        registered_at = time.monotonic()
        seq = 0
        while not distinct_seqs(influxd.url, influx_db) and time.monotonic() - registered_at < FOLLOW_S:
            assert device.publish_all(readings("bt-sal-api", seq, 1)) == [0]
            seq += 1
            time.sleep(0.1)
        assert distinct_seqs(influxd.url, influx_db), f"the first reading stored within {FOLLOW_S} s"
        print(f"\nfirst reading stored {time.monotonic() - registered_at:.2f} s after POST /v1/devices")

        gone = http.delete("/v1/devices/bt-sal-api")
        assert gone.status_code == 200, gone.text
        assert gone.json()["state"] == "decommissioned"
        assert thrown_off.wait(5), "the broker disconnected the decommissioned device"
        device.client.loop_stop()
        again = Device(broker, "bt-sal-api")
        assert again.connack.is_failure, "the broker refuses it from now on"
        again.close()
        # Readings it sent before are kept; ingest never lost its connection.
        assert ingest.metric("ioc_ingest_broker_reconnects_total") == 0
