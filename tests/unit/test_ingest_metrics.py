"""Ingest's counters kept as plain numbers on the event loop: served as Prometheus reads them."""

from __future__ import annotations

from prometheus_client import generate_latest

from contract.topics import Channel
from ingest.metrics import OTHER, IngestMetrics


def test_messages_received_by_channel_are_a_counter_from_zero() -> None:
    metrics = IngestMetrics()
    for channel in [*map(str, Channel), OTHER]:
        assert metrics.registry.get_sample_value("ioc_ingest_messages_received_total", {"channel": channel}) == 0
    metrics.received.counts["telemetry"] += 3
    metrics.received.counts[OTHER] += 1
    assert metrics.value("ioc_ingest_messages_received_total", channel="telemetry") == 3
    assert metrics.value("ioc_ingest_messages_received_total", channel=OTHER) == 1
    text = generate_latest(metrics.registry).decode()
    assert "# TYPE ioc_ingest_messages_received_total counter" in text  # as a Counter writes it
    assert 'ioc_ingest_messages_received_total{channel="telemetry"} 3.0' in text
    assert 'ioc_ingest_messages_received_created{channel="telemetry"}' in text
    named = generate_latest(metrics.registry.restricted_registry(["ioc_ingest_messages_received_total"])).decode()
    assert 'ioc_ingest_messages_received_total{channel="telemetry"} 3.0' in named  # found by name (describe)


def test_inflight_is_read_from_its_function_when_scraped() -> None:
    metrics = IngestMetrics()
    held = [5]
    metrics.inflight.set_function(lambda: held[0])
    assert metrics.value("ioc_ingest_messages_inflight") == 5
    held[0] = 2
    assert metrics.value("ioc_ingest_messages_inflight") == 2
