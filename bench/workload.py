"""The benchmark workloads: the bench fleet and the payloads each contender receives.

(a) one reading per message and (b) gateway messages of 100 readings carry real simulated
readings (field values from :class:`~simulators.model.FleetModel`, each device its own kind),
re-stamped at publish time: ``ts`` is the wall clock when the message is published (the newest
reading of a gateway message), ``seq`` counts up per device. (c) is ``ioc simulate`` itself.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec

from contract.fleet import Fleet, dump_fleet
from contract.topics import Channel, device_topic
from simulators.fleetgen import generate_fleet
from simulators.model import FleetModel

FLEET_DEVICES = 1_000
"""The bench fleet: a provincial deployment of every kind (the demo runs 200)."""

FLEET_SEED = 1


class Workload(enum.StrEnum):
    """What the publisher sends."""

    SINGLE = "a"
    """One reading per message, QoS 1."""
    GATEWAY = "b"
    """Gateway messages of 100 readings, QoS 1."""
    SIMULATE = "c"
    """The realistic mix of ``ioc simulate`` over the full fleet."""

    @property
    def readings_per_message(self) -> int:
        return GATEWAY_READINGS if self is Workload.GATEWAY else 1

    @property
    def description(self) -> str:
        return _TITLES[self]


GATEWAY_READINGS = 100

_TITLES = {
    Workload.SINGLE: "(a) one reading per message",
    Workload.GATEWAY: "(b) gateway, 100 readings per message",
    Workload.SIMULATE: "(c) ioc simulate, full fleet",
}


def bench_fleet() -> Fleet:
    """The fleet every contender's allow-list and every workload's topics come from."""
    return generate_fleet(FLEET_DEVICES, FLEET_SEED)


def write_bench_fleet(path: Path) -> Fleet:
    fleet = bench_fleet()
    dump_fleet(fleet, path)
    return fleet


@dataclass(frozen=True, slots=True)
class DeviceStream:
    """One device's topic and a pool of its readings' field parts (JSON without ts and seq)."""

    topic: str
    fields: tuple[bytes, ...]


def device_streams(fleet: Fleet, *, hours: float = 6.0) -> list[DeviceStream]:
    """Every device with telemetry, with ``hours`` of its simulated readings as a value pool."""
    model = FleetModel(fleet, seed=FLEET_SEED, interval_s=600.0, offline_within_s=1e12)
    now_ms = int(time.time() * 1000)
    pools: dict[str, list[bytes]] = {}
    for msg in model.between(now_ms - int(hours * 3_600_000), now_ms):
        if msg.channel is not Channel.TELEMETRY:
            continue
        body = {k: v for k, v in msg.reading.items() if k not in ("ts", "seq")}
        pools.setdefault(msg.device.id, []).append(msgspec.json.encode(body)[1:-1])
    return [
        DeviceStream(device_topic(d.province, d.kind, d.id, Channel.TELEMETRY), tuple(pools[d.id]))
        for d in fleet.devices
        if pools.get(d.id)
    ]


def single_payload(ts_ms: int, seq: int, fields: bytes) -> bytes:
    """A one-reading message."""
    return b'{"ts":%d,"seq":%d,%s}' % (ts_ms, seq, fields)


def gateway_payload(ts_ms: int, first_seq: int, pool: tuple[bytes, ...], start: int, n: int) -> bytes:
    """A gateway message of ``n`` readings 1 ms apart, the newest at ``ts_ms``; seq ``first_seq``…"""
    size = len(pool)
    parts = [
        b'{"ts":%d,"seq":%d,%s}' % (ts_ms - (n - 1 - i), first_seq + i, pool[(start + i) % size]) for i in range(n)
    ]
    return b'{"readings":[' + b",".join(parts) + b"]}"


def save_streams(streams: list[DeviceStream], path: Path) -> None:
    """Save the streams for the publisher processes (building them takes seconds)."""
    path.write_bytes(msgspec.msgpack.encode([(s.topic, list(s.fields)) for s in streams]))


def load_streams(path: Path) -> list[DeviceStream]:
    raw = msgspec.msgpack.decode(path.read_bytes(), type=list[tuple[str, list[bytes]]])
    return [DeviceStream(topic, tuple(fields)) for topic, fields in raw]
