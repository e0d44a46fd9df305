"""InfluxDB answering 429 with Retry-After, 413, and partial writes: a small real HTTP proxy in front
of the real InfluxDB injects the first two; a real field-type conflict makes the third."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec
import pytest

from ioc.servers import InfluxServer, ServerProcess
from tests.helpers import Collector, IngestThread, count_points, ingest_settings, publish
from tests.integration.test_pipeline import small_fleet, telemetry

BASE = int(time.time() * 1000) - 3_600_000


@dataclass
class Proxy:
    """Forwards to InfluxDB; answers the next ``script`` requests itself; refuses bodies over ``max_body``."""

    target: str
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    max_body: int | None = None
    log: list[tuple[float, int, int]] = field(default_factory=list)  # (time, body bytes, status)
    url: str = ""

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        body = req.rfile.read(int(req.headers.get("content-length", 0)))
        status, headers, payload = 204, {}, b""
        if self.script:
            status, headers = self.script.pop(0)
            payload = b'{"error":"injected"}'
        elif self.max_body is not None and len(body) > self.max_body:
            status, payload = 413, b'{"error":"Request Entity Too Large"}'
        else:
            forward = urllib.request.Request(self.target + req.path, data=body, method="POST")
            try:
                with urllib.request.urlopen(forward) as resp:
                    status, payload = resp.status, resp.read()
            except urllib.error.HTTPError as exc:
                status, payload = exc.code, exc.read()
        self.log.append((time.monotonic(), len(body), status))
        req.send_response(status)
        for k, v in headers.items():
            req.send_header(k, v)
        req.send_header("Content-Length", str(len(payload)))
        req.end_headers()
        req.wfile.write(payload)


@pytest.fixture
def proxy(influxd: InfluxServer) -> Iterator[Proxy]:
    p = Proxy(influxd.url)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            p.handle(self)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    p.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield p
    server.shutdown()


def items(n: int, first: int = 0) -> list[tuple[str, bytes]]:
    return [
        (telemetry("bt-sal-1"), msgspec.json.encode({"ts": BASE + i, "seq": i, "salinity_ppt": 0.5}))
        for i in range(first, first + n)
    ]


def test_429_retry_after_is_honoured(
    mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str, proxy: Proxy
) -> None:
    proxy.script = [(429, {"Retry-After": "2"}), (503, {"Retry-After": "1"})]
    settings = ingest_settings(  # one write at a time: the log is one write's attempts
        mosquitto.port, proxy.url, influx_db, retry_initial_s=0.01, retry_max_s=0.02, write_concurrency=1
    )
    with IngestThread(settings, small_fleet()) as ingest:
        publish(mosquitto.port, items(100))
        ingest.wait_for(lambda: ingest.metric("ioc_ingest_readings_stored_total") == 100, what="stored")
        assert ingest.metric("ioc_ingest_write_retries_total") == 2
    first, second, third = proxy.log[:3]
    assert [s for _, _, s in proxy.log[:3]] == [429, 503, 204]
    assert second[0] - first[0] >= 2.0  # waited as told, not the 10 ms back-off
    assert third[0] - second[0] >= 1.0
    assert count_points(influxd.url, influx_db) == 100


def test_413_splits_the_batch_until_it_fits(
    mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str, proxy: Proxy
) -> None:
    proxy.max_body = 20_000  # about 150 lines
    settings = ingest_settings(mosquitto.port, proxy.url, influx_db, batch_max_readings=2000, batch_max_age_ms=500)
    with IngestThread(settings, small_fleet()):
        pass  # ingest's persistent session now exists at the broker
    publish(mosquitto.port, items(2000))  # queued while ingest is away: one burst, large batches
    with IngestThread(settings, small_fleet()) as ingest:
        ingest.wait_for(lambda: ingest.metric("ioc_ingest_readings_stored_total") == 2000, what="stored")
        assert ingest.service.metrics.rejected_total() == 0
    statuses = [s for _, _, s in proxy.log]
    assert 413 in statuses
    assert all(size <= 20_000 for _, size, s in proxy.log if s == 204)
    assert len(proxy.log) < 200  # split in halves, not retried in a loop
    assert count_points(influxd.url, influx_db) == 2000


def test_partial_write_lands_good_points_and_dead_letters_the_refused(
    mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str
) -> None:
    """A real field-type conflict: InfluxDB refuses only the lines carrying the conflicting field."""
    seed = f'salinity,device_id=other water_level_cm="gauge broken" {BASE}'
    urllib.request.urlopen(urllib.request.Request(
        f"{influxd.url}/write?db={influx_db}&precision=ms", data=seed.encode(), method="POST"))  # fmt: skip
    good = items(50)
    bad = [
        (telemetry("bt-sal-1"), msgspec.json.encode({"ts": BASE + 1000 + i, "seq": 1000 + i, "water_level_cm": 12.5}))
        for i in range(3)
    ]
    dlq = Collector(mosquitto.port, "ioc/v1/_dlq/#")
    try:
        with IngestThread(ingest_settings(mosquitto.port, influxd.url, influx_db), small_fleet()) as ingest:
            publish(mosquitto.port, good[:25] + bad + good[25:])
            ingest.wait_for(lambda: len(dlq.messages) >= 3, what="dead letters")
            # The dead letters go out before the batch's counters move and its acks are sent.
            ingest.wait_for(lambda: ingest.metric("ioc_ingest_messages_acked_total") >= 53, what="acks")
            assert ingest.metric("ioc_ingest_readings_stored_total") == 50
            assert ingest.metric("ioc_ingest_messages_acked_total") == 53
    finally:
        dlq.close()
    letters = dlq.json()
    assert {d["reason"] for d in letters} == {"db_rejected"}
    assert all("conflict" in d["detail"] for d in letters)
    assert all(d["topic"] == telemetry("bt-sal-1") for d in letters)
    assert count_points(influxd.url, influx_db, ["salinity"]) == 50
