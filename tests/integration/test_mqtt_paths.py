"""When the broker sends more than ingest's client queue holds, each MQTT path keeps its promise.

Mosquitto 2.0.11 can exceed the Receive Maximum ingest announces (docs/reliability.md). To make
that happen on cue, the client queue is made smaller than the Receive Maximum (the headroom is
negative), so a broker that honours it still overfills the queue. The fast path must stop reading
(nothing dropped); the public path may drop, must count it, renew the connection once what it
delivered is acknowledged, and so get the dropped messages again. Either way: stored == published.
"""

from __future__ import annotations

import asyncio

import pytest

from ingest import mqtt_public
from ioc.servers import InfluxServer, ServerProcess
from tests.helpers import IngestThread, ingest_settings, publish
from tests.integration.test_pipeline import small_fleet
from tests.integration.test_reliability import distinct_seqs, readings

pytestmark = pytest.mark.integration

N = 5_000
PUBLISH, PUBACK = 0x30, 0x40
"""MQTT packet types (the fixed header's high nibble)."""


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


@pytest.mark.parametrize("path", ["on", "off"])
def test_every_kind_of_packet_is_framed_and_handled_on_both_paths(
    path: str, mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path cuts packets from its read buffer itself: gateway messages larger than one
    256 KiB read and straddling reads, plain QoS 1 and QoS 0 PUBLISHes, PUBLISHes with MQTT 5
    properties (handed to paho), and the broker's other packets (SUBACK, PUBACK of our dead letters,
    PINGRESP over a keep-alive) — every reading is stored, once, and nothing is dropped."""
    import time

    import msgspec
    import paho.mqtt.client as paho
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from tests.integration.test_pipeline import telemetry
    from tests.integration.test_reliability import BASE

    def gateway(first: int, n: int) -> bytes:
        parts = [{"ts": BASE + i, "seq": i, "salinity_ppt": 0.3, "ec_us_cm": 612.5} for i in range(first, first + n)]
        return msgspec.json.encode({"readings": parts})

    monkeypatch.setattr(mqtt_public, "KEEPALIVE_S", 2)
    settings = ingest_settings(mosquitto.port, influxd.url, influx_db, mqtt_fast_path=path)
    with IngestThread(settings, small_fleet()):
        pass  # ingest's persistent session now exists at the broker
    big = 3_000  # ≈ 200 KB each: with the small ones between, packets straddle the 256 KiB reads
    backlog = [(telemetry("bt-sal-1"), gateway(k, big)) for k in range(0, 4 * big, big)]
    backlog += readings("bt-sal-1", 4 * big, 2_000)
    publish(mosquitto.port, backlog)  # queued while ingest is away: one burst when it comes back
    n = 4 * big + 2_000
    with IngestThread(settings, small_fleet()) as ingest:
        ingest.wait_for(lambda: len(distinct_seqs(influxd.url, influx_db)) >= n, timeout=120, what="the backlog")
        time.sleep(5)  # idle past two keep-alives: PINGREQ/PINGRESP, or the broker would drop us
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="frames", protocol=paho.MQTTv5)
        client.connect("127.0.0.1", mosquitto.port)
        client.loop_start()
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = ("gateway", "g-1")
        infos = []
        for i in range(n, n + 300):
            payload = msgspec.json.encode({"ts": BASE + i, "seq": i, "salinity_ppt": 0.3})
            qos = 0 if i % 3 == 0 else 1
            infos.append(client.publish(telemetry("bt-sal-1"), payload, qos=qos, properties=props if i % 2 else None))
        for info in infos:
            info.wait_for_publish(30)
        client.disconnect()
        client.loop_stop()
        total = n + 300
        ingest.wait_for(lambda: len(distinct_seqs(influxd.url, influx_db)) >= total, timeout=60, what="the live ones")
        dropped = ingest.metric("ioc_ingest_messages_dropped_total")
        reconnects = ingest.metric("ioc_ingest_broker_reconnects_total")
    assert distinct_seqs(influxd.url, influx_db) == set(range(total))
    assert dropped == 0
    assert reconnects == 0  # keep-alive answered: the broker never dropped us


def test_the_fast_path_queues_dead_letters_ahead_of_the_acknowledgements_that_follow(mosquitto: ServerProcess) -> None:
    """25 dead letters published on the fast path, then a message acknowledged: on the wire all 25
    come first (the broker takes a connection's packets in order, so the message is never acknowledged
    ahead of its dead letter). paho's default in-flight limit of 20 would hold the last 5 back until
    PUBACKs came, and let the acknowledgement overtake them."""
    from ingest.broker import InMessage
    from ingest.metrics import IngestMetrics
    from ingest.mqtt_fastpath import FastPathBroker
    from tests.integration.test_pipeline import telemetry

    async def scenario() -> list[int]:
        settings = ingest_settings(mosquitto.port, "http://127.0.0.1:9", "unused", mqtt_client_id="ioc-order")
        async with FastPathBroker(settings, IngestMetrics(), generation=1) as broker:
            await asyncio.to_thread(publish, mosquitto.port, [(telemetry("bt-sal-1"), b"{}")])
            message: InMessage = await anext(aiter(broker.messages()))
            for i in range(25):  # none of these awaits yields: nothing is written until the loop turns
                await broker.publish("ioc/v1/_dlq/bad_json", b"%d" % i)
            broker.ack([message.ack])
            return [packet["command"] & 0xF0 for packet in broker._paho._out_packet]

    queued = asyncio.run(scenario())
    assert [c for c in queued if c in (PUBLISH, PUBACK)] == [PUBLISH] * 25 + [PUBACK]
