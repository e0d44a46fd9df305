"""When the broker sends more than ingest's client queue holds, each MQTT path keeps its promise.

Mosquitto 2.0.11 can exceed the Receive Maximum ingest announces (docs/reliability.md). To make
that happen on cue, the client queue is made smaller than the Receive Maximum (the headroom is
negative), so a broker that honours it still overfills the queue. The fast path must stop reading
(nothing dropped); the public path may drop, must count it, renew the connection once what it
delivered is acknowledged, and so get the dropped messages again. Either way: stored == published.
"""

from __future__ import annotations

import pytest

from ingest import mqtt_public
from ioc.servers import InfluxServer, ServerProcess
from tests.helpers import IngestThread, ingest_settings, publish
from tests.integration.test_pipeline import small_fleet
from tests.integration.test_reliability import distinct_seqs, readings

pytestmark = pytest.mark.integration

N = 5_000


@pytest.mark.parametrize("path", ["on", "off"])
def test_a_client_queue_smaller_than_what_the_broker_sends_loses_nothing(
    path: str,
    mosquitto: ServerProcess,
    influxd: InfluxServer,
    influx_db: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mqtt_public, "QUEUE_HEADROOM", -1_000)  # a queue of 1,000 for 2,000 in flight
    settings = ingest_settings(
        mosquitto.port, influxd.url, influx_db, mqtt_fast_path=path, mqtt_receive_maximum=2_000,
        batch_max_readings=500,
    )  # fmt: skip
    with IngestThread(settings, small_fleet()):
        pass  # ingest's persistent session now exists at the broker
    publish(mosquitto.port, readings("bt-sal-1", 0, N))  # queued in it while ingest is away
    with IngestThread(settings, small_fleet()) as ingest:  # the broker sends 2,000 at once
        ingest.wait_for(lambda: len(distinct_seqs(influxd.url, influx_db)) >= N, timeout=120, what="all stored")
        dropped = ingest.metric("ioc_ingest_messages_dropped_total")
        renewed = ingest.metric("ioc_ingest_broker_reconnects_total")
        ingest.wait_for(lambda: ingest.metric("ioc_ingest_messages_inflight") == 0, timeout=30, what="all acked")
    assert distinct_seqs(influxd.url, influx_db) == set(range(N))
    if path == "on":  # the fast path stops reading instead of dropping
        assert dropped == 0
        assert renewed == 0
    else:  # the public path drops, counts, and renews the connection to get them again
        assert dropped > 0
        assert renewed >= 1
