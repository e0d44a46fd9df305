"""The benchmark publisher: one process, the same for every contender.

Workloads (a) and (b) publish at an offered rate of readings/s for a number of seconds from
``--clients`` MQTT 3.1.1 connections (QoS 1, every device's own topic), stamping each message
with the wall clock and keeping the connections between runs; workload (c) runs ``ioc
simulate``'s :class:`FleetPublisher` over the full fleet at the offered message rate.

    echo '{"rate": 20000, "seconds": 5}' | python -m bench.publish --port 1883 --workload a --fleet fleet.yaml

It reads one JSON command per line from stdin and answers each with one JSON line on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import selectors
import socket
import struct
import sys
import time
from pathlib import Path

import msgspec

from bench.workload import (
    DeviceStream,
    Workload,
    device_streams,
    gateway_payload,
    load_streams,
    single_payload,
)
from contract.fleet import load_fleet

MAX_OUTSTANDING = 20_000
"""Messages published but not yet acknowledged by the broker, at most (all clients)."""


class PublishResult(msgspec.Struct):
    """What one publishing run achieved (counts are broker-acknowledged)."""

    workload: str
    offered_readings_per_s: float
    messages: int
    readings: int
    seconds: float
    """From the first publish to the last one."""
    achieved_readings_per_s: float
    first_seq: int


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


class _Connection:
    """A minimal MQTT 3.1.1 publisher on a raw socket: QoS 1 PUBLISH out, PUBACKs counted.

    A load generator must stay far above what it measures: paho's ``publish`` costs ~30 µs of
    Python per message (about 25k messages/s here); packets encoded by hand and sent in bursts
    cost a few µs. After CONNACK the broker sends us nothing but 4-byte PUBACKs (no keepalive).
    """

    def __init__(self, port: int, client_id: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cid = client_id.encode()
        body = b"\x00\x04MQTT\x04\x02\x00\x00" + struct.pack("!H", len(cid)) + cid  # clean session, no keepalive
        self.sock.sendall(b"\x10" + _remaining_length(len(body)) + body)
        connack = self.sock.recv(4)
        if len(connack) != 4 or connack[0] != 0x20 or connack[3] != 0:
            raise ConnectionError(f"broker refused the bench publisher: {connack!r}")
        self.sock.setblocking(False)
        self.acked = 0
        self._partial = 0
        self._next_id = 0
        self._out = bytearray()

    def queue(self, topic: bytes, payload: bytes) -> None:
        self._next_id = self._next_id % 65_535 + 1
        var = topic + struct.pack("!H", self._next_id)
        self._out += b"\x32" + _remaining_length(len(var) + len(payload)) + var + payload

    def flush(self) -> None:
        while self._out:
            try:
                sent = self.sock.send(self._out)
            except BlockingIOError:
                return
            del self._out[:sent]

    @property
    def pending_bytes(self) -> int:
        return len(self._out)

    def read_acks(self) -> None:
        while True:
            try:
                data = self.sock.recv(262_144)
            except BlockingIOError:
                return
            if not data:
                raise ConnectionError("the broker closed the bench publisher's connection")
            total = self._partial + len(data)
            self.acked += total // 4
            self._partial = total % 4

    def close(self) -> None:
        self.flush()
        with contextlib.suppress(OSError):
            self.sock.sendall(b"\xe0\x00")
        self.sock.close()


class RatePublisher:
    """Publishes workload (a) or (b) at a steady offered rate."""

    def __init__(self, port: int, streams: list[DeviceStream], readings_per_message: int, *, clients: int) -> None:
        self._streams = streams
        self._topics = [_topic_field(s.topic) for s in streams]
        self._n = readings_per_message
        self._conns = [_Connection(port, f"bench-pub-{i}") for i in range(clients)]
        self._selector = selectors.DefaultSelector()
        for conn in self._conns:
            self._selector.register(conn.sock, selectors.EVENT_READ, conn)

    @property
    def _acked(self) -> int:
        return sum(c.acked for c in self._conns)

    def _pump(self, timeout: float) -> None:
        for conn in self._conns:
            conn.flush()
        for key, _ in self._selector.select(timeout):
            key.data.read_acks()

    def run(self, rate: float, seconds: float, first_seq: int) -> tuple[int, float]:
        """Publish for ``seconds`` at ``rate`` readings/s; returns (messages acked, seconds taken)."""
        n = self._n
        per_s = rate / n
        streams, topics, conns = self._streams, self._topics, self._conns
        n_streams, n_conns = len(streams), len(conns)
        seqs = [first_seq] * n_streams
        last_ts = [0] * n_streams
        acked_before = self._acked
        total = int(per_s * seconds)
        sent = 0
        started = time.monotonic()
        last_publish = started
        while sent < total:
            elapsed = time.monotonic() - started
            if elapsed >= seconds:
                break
            due = min(int(per_s * (elapsed + 0.002)) + 1, total)
            room = MAX_OUTSTANDING - (sent - (self._acked - acked_before))
            burst = min(due - sent, room, 2_000)
            now_ms = int(time.time() * 1000)
            for _ in range(burst):
                i = sent % n_streams
                ts = now_ms if now_ms >= last_ts[i] + n else last_ts[i] + n
                last_ts[i] = ts
                seq = seqs[i]
                pool = streams[i].fields
                if n == 1:
                    payload = single_payload(ts, seq, pool[seq % len(pool)])
                else:
                    payload = gateway_payload(ts, seq, pool, seq // n, n)
                seqs[i] = seq + n
                conns[i % n_conns].queue(topics[i], payload)
                sent += 1
            if burst > 0:
                last_publish = time.monotonic()
            self._pump(0.0 if sent < due else 0.001)
        deadline = time.monotonic() + 30
        while self._acked - acked_before < sent and time.monotonic() < deadline:
            self._pump(0.01)
        return self._acked - acked_before, last_publish - started

    def close(self) -> None:
        for conn in self._conns:
            conn.close()
        self._selector.close()


def _topic_field(topic: str) -> bytes:
    raw = topic.encode()
    return struct.pack("!H", len(raw)) + raw


def run_simulate(port: int, fleet_path: Path, rate: float, seconds: float, seed: int) -> PublishResult:
    """Workload (c): ``ioc simulate``'s publisher, live, at ``rate`` messages/s."""
    import threading

    from simulators.config import SimulateSettings
    from simulators.publisher import FleetPublisher

    settings = SimulateSettings(
        mqtt_url=f"mqtt://127.0.0.1:{port}", fleet=fleet_path, seed=seed, rate=rate, duration=seconds,
        max_outstanding=MAX_OUTSTANDING, _env_file=None,
    )  # fmt: skip
    publisher = FleetPublisher(load_fleet(fleet_path), settings, stop=threading.Event())
    stats = publisher.run()
    taken = seconds  # live publishing runs for exactly ``duration`` once the fleet is connected
    return PublishResult(
        "c", rate, stats.messages_acked - stats.statuses_acked, stats.readings_acked, round(taken, 3),
        round(stats.readings_acked / taken, 1) if taken else 0.0, 0,
    )  # fmt: skip


class Command(msgspec.Struct):
    """One publishing run, read as a JSON line from stdin."""

    rate: float
    seconds: float
    first_seq: int = 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workload", choices=[w.value for w in Workload], required=True)
    parser.add_argument("--fleet", type=Path, required=True)
    parser.add_argument("--streams", type=Path, help="device streams saved by bench.workload (a, b)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    workload = Workload(args.workload)
    publisher = None
    if workload is not Workload.SIMULATE:
        streams = load_streams(args.streams) if args.streams else device_streams(load_fleet(args.fleet))
        publisher = RatePublisher(args.port, streams, workload.readings_per_message, clients=args.clients)
    out = sys.stdout.buffer
    out.write(b'"ready"\n')
    out.flush()
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        cmd = msgspec.json.decode(line, type=Command)
        if publisher is None:
            result = run_simulate(args.port, args.fleet, cmd.rate, cmd.seconds, args.seed)
        else:
            messages, taken = publisher.run(cmd.rate, cmd.seconds, cmd.first_seq)
            readings = messages * workload.readings_per_message
            result = PublishResult(
                workload.value, cmd.rate, messages, readings, round(taken, 3),
                round(readings / taken, 1) if taken else 0.0, cmd.first_seq,
            )  # fmt: skip
        out.write(msgspec.json.encode(result) + b"\n")
        out.flush()
    if publisher is not None:
        publisher.close()


if __name__ == "__main__":
    main()
