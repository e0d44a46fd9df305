"""The database's ceiling on this machine: pre-formed line protocol posted in large batches.

No MQTT and no decoding: the lines of workload (b)'s readings (the lines ingest writes for them,
formed by its decoder) are formed before the clock starts, then posted to ``/write`` in batches
of ``batch`` lines from ``writers`` keep-alive connections (one per core).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from bench.workload import DeviceStream
from contract.fleet import Fleet
from ingest.batch import BatchBuilder
from ingest.decode import Decoder
from ingest.registry import Registry

BATCH_LINES = 10_000
WRITERS = 2


def lines_for(streams: list[DeviceStream], readings: int, t0_ms: int, fleet: Fleet) -> list[bytes]:
    """``readings`` lines, round-robin over the devices, 1 ms apart per device: the very lines ingest
    writes for them (its decoder forms them here, before the clock: series with the registry's tags,
    integer fields as integers), so ``ours ÷ store-only`` is what MQTT, decoding and forming cost.
    (Formed from one-reading messages: ingest formats a gateway message's floats with msgspec, the
    same values in at most a few bytes' different text, ``2.5e-7`` for ``2.5e-07``.)"""
    decoder = Decoder(Registry.from_fleet(fleet), max_payload_bytes=1 << 30, max_readings=1 << 30)
    builder = BatchBuilder()
    n = len(streams)
    now_ms = int(time.time() * 1000)
    for i in range(readings):
        s = streams[i % n]
        k = i // n
        payload = b'{"ts":%d,"seq":%d,%s}' % (t0_ms + k, k, s.fields[k % len(s.fields)])
        decoder.decode(s.topic, payload, retained=False, now_ms=now_ms, out=builder)
    batch = builder.seal()
    if batch.rejections or len(batch.lines) != readings:
        raise RuntimeError(f"store-only: ingest's decoder refused {batch.rejections[:1]}")
    return [line.encode() for line in batch.lines]


def run(url: str, db: str, streams: list[DeviceStream], readings: int, fleet: Fleet) -> dict[str, Any]:
    """Post ``readings`` pre-formed lines; readings/s from the first request to the last answer."""
    lines = lines_for(streams, readings, int(time.time() * 1000) - 3_600_000, fleet)
    bodies = [b"\n".join(lines[i : i + BATCH_LINES]) for i in range(0, len(lines), BATCH_LINES)]
    errors: list[str] = []
    lock = threading.Lock()
    todo = list(reversed(bodies))

    def writer() -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            while True:
                with lock:
                    if not todo:
                        return
                    body = todo.pop()
                resp = client.post("/write", params={"db": db, "precision": "ms"}, content=body)
                if resp.status_code != 204:
                    errors.append(f"{resp.status_code} {resp.text[:200]}")

    threads = [threading.Thread(target=writer) for _ in range(WRITERS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"store-only writes failed: {errors[:3]}")
    return {"readings": readings, "seconds": round(seconds, 3), "readings_per_s": round(readings / seconds, 1)}
