"""Publish → stored latency, seen from the database: an InfluxDB subscription over UDP.

InfluxDB 1.x forwards every point it has written to its subscriptions' destinations; over UDP,
one datagram per point. The receiver notes the wall clock when each point arrives and subtracts
the time the reading was published (its ``ts``; in a gateway message of ``n`` readings, reading
``seq % n`` is stamped ``n - 1 - seq % n`` ms before the publish time). The same path for every
contender: nothing in the consumer is instrumented.
"""

from __future__ import annotations

import re
import socket
import threading
import time

import numpy as np

from storage.influxql import query

_SEQ = re.compile(rb"[ ,]seq=(\d+)")  # an integer field (1234i), or a float (Node-RED's 1234)
SUBSCRIPTION = "bench_latency"


class LatencyProbe:
    """Collects per-reading latencies (ms) from InfluxDB's UDP subscription stream."""

    def __init__(self, readings_per_message: int) -> None:
        self._n = readings_per_message
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._latencies: list[float] = []
        self._since_ms = 0
        self._thread = threading.Thread(target=self._run, name="latency-probe", daemon=True)

    def subscribe(self, influx_url: str, db: str) -> None:
        """Create the subscription (InfluxDB takes about a second to start forwarding)."""
        query(influx_url, f'CREATE SUBSCRIPTION "{SUBSCRIPTION}" ON "{db}"."autogen" DESTINATIONS ALL '
              f"'udp://127.0.0.1:{self.port}'", method="POST")  # fmt: skip
        self.start()

    def start(self) -> None:
        """Start receiving (``subscribe`` does it)."""
        self._thread.start()

    def start_counting(self) -> None:
        """Only readings published from now on count."""
        self._since_ms = int(time.time() * 1000)
        self._latencies.clear()

    def _run(self) -> None:
        n = self._n
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65_536)
            except TimeoutError:
                continue
            arrived_ms = time.time() * 1000
            for line in data.split(b"\n"):
                if not line:
                    continue
                ts_ms = int(line.rsplit(b" ", 1)[1]) // 1_000_000
                m = _SEQ.search(line)
                if m is None:
                    continue
                published_ms = ts_ms + (n - 1 - int(m.group(1)) % n)
                if published_ms >= self._since_ms:
                    self._latencies.append(arrived_ms - published_ms)

    @property
    def count(self) -> int:
        return len(self._latencies)

    def percentiles(self) -> tuple[float | None, float | None]:
        """(p50, p99) in ms of the readings seen so far (None if none was seen)."""
        if not self._latencies:
            return (None, None)
        p50, p99 = np.percentile(np.asarray(self._latencies), [50, 99])
        return (round(float(p50), 1), round(float(p99), 1))

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)
        self._sock.close()
