"""Prometheus counters of the ingest service (one registry per service instance)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from contract.topics import Channel


class CountsByLabel(Collector):
    """A counter with one label whose values are plain ints, added to on the event loop per message
    (prometheus-client's :class:`~prometheus_client.Counter` takes a lock on every ``inc``: a few
    per cent of ingest at 60k messages/s) and read when ``/metrics`` is scraped. Its label values are
    fixed at start, so a scrape from another thread reads a dict that does not change size."""

    def __init__(self, name: str, documentation: str, label: str, values: Iterable[str], registry: CollectorRegistry):
        self.name, self.documentation, self.label = name, documentation, label
        self.counts: dict[str, int] = dict.fromkeys(values, 0)
        """Label value → count: add to it (``counts[v] += 1``)."""
        self._created = time.time()
        registry.register(self)

    def describe(self) -> list[CounterMetricFamily]:
        """The metric's name and type, without values (the registry checks names with it)."""
        return [CounterMetricFamily(self.name, self.documentation, labels=[self.label])]

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, count in list(self.counts.items()):
            family.add_metric([value], count, created=self._created)  # ``_created``, as a Counter has
        yield family


OTHER = "other"
"""The channel of a message on a topic whose last level is none of :class:`~contract.topics.Channel`."""


class IngestMetrics:
    """Every number the service keeps; served at ``/metrics`` when a port is set."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = CountsByLabel(
            "ioc_ingest_messages_received", "MQTT messages received", "channel", [*map(str, Channel), OTHER], r
        )
        self.readings_stored = Counter("ioc_ingest_readings_stored", "readings written to InfluxDB", registry=r)
        self.statuses_stored = Counter("ioc_ingest_statuses_stored", "device status points written", registry=r)
        self.rejected = Counter("ioc_ingest_rejected", "messages or readings dead-lettered", ["reason"], registry=r)
        self.acked = Counter("ioc_ingest_messages_acked", "messages acknowledged to the broker", registry=r)
        self.ack_skipped = Counter(
            "ioc_ingest_acks_skipped", "acks not sent because the connection changed (redelivered)", registry=r
        )
        self.dropped = Counter(
            "ioc_ingest_messages_dropped", "messages dropped by the client queue (QoS 0 only can)", registry=r
        )
        self.write_retries = Counter("ioc_ingest_write_retries", "InfluxDB write attempts retried", registry=r)
        self.batches = Counter("ioc_ingest_batches_written", "batches written", registry=r)
        self.batch_seconds = Histogram(
            "ioc_ingest_batch_write_seconds",
            "time to store one batch, retries included",
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.lag_seconds = Gauge(
            "ioc_ingest_lag_seconds", "receive → stored time of the last batch's oldest message", registry=r
        )
        self.inflight = Gauge("ioc_ingest_messages_inflight", "messages received, not yet acknowledged", registry=r)
        """Set to a function of the service's own count (:meth:`Gauge.set_function`): read when scraped."""
        self.unacked = Gauge(
            "ioc_ingest_messages_unacked",
            "messages taken from the broker on this connection and not acknowledged yet (QoS 1), plus those"
            " still in the client queue (the broker's in-flight window as ingest sees it)",
            registry=r,
        )
        self.loop_lag = Gauge(
            "ioc_ingest_loop_lag_seconds",
            "how late the event loop woke the last 100 ms probe, or is overdue now if later",
            registry=r,
        )
        self.loop_lag_max = Gauge(
            "ioc_ingest_loop_lag_max_seconds", "the largest event-loop lag seen since start", registry=r
        )
        self.hook_errors = Counter(
            "ioc_rules_errors",
            "rule hook attempts that failed (logged; the batch stays unacknowledged and is retried)",
            registry=r,
        )
        self.hook_abandoned = Counter(
            "ioc_rules_hooks_abandoned",
            "batches acknowledged after their rules hook failed every attempt (a bug: see the log)",
            registry=r,
        )
        self.reconnects = Counter("ioc_ingest_broker_reconnects", "broker connections re-established", registry=r)
        self.ignored = Counter(
            "ioc_ingest_ignored",
            "messages of other formats that carry no reading (joins, logs, acks), acknowledged",
            ["event"],
            registry=r,
        )
        self.commands = Counter(
            "ioc_ingest_commands",
            "messages ingest published to devices once their batch was stored (Sparkplug rebirth requests)",
            registry=r,
        )
        self.broker_dropped = Gauge(
            "ioc_broker_messages_dropped",
            "the broker's own $SYS/broker/publish/messages/dropped counter (messages it discarded)",
            registry=r,
        )

    def value(self, name: str, **labels: str) -> float:
        """Current value of a sample (for progress lines and tests)."""
        v = self.registry.get_sample_value(name, labels or None)
        return float(v) if v is not None else 0.0

    def rejected_total(self) -> float:
        return sum(s.value for m in self.rejected.collect() for s in m.samples if s.name.endswith("_total"))
