"""The database's ceiling on this machine: pre-formed line protocol posted in large batches.

No MQTT and no decoding: the lines of workload (b)'s readings (the same series and fields a
consumer would write) are formed before the clock starts, then posted to ``/write`` in batches
of ``batch`` lines from ``writers`` keep-alive connections (one per core).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from bench.workload import DeviceStream

BATCH_LINES = 10_000
WRITERS = 2


def lines_for(streams: list[DeviceStream], readings: int, t0_ms: int) -> list[bytes]:
    """``readings`` lines, round-robin over the devices, 1 ms apart per device."""
    out: list[bytes] = []
    n = len(streams)
    for i in range(readings):
        s = streams[i % n]
        kind, device = s.topic.split("/")[3:5]
        fields = s.fields[(i // n) % len(s.fields)].replace(b'"', b"").replace(b":", b"=")
        out.append(b"%s,device_id=%s %s,seq=%di %d" % (kind.encode(), device.encode(), fields, i // n, t0_ms + i // n))
    return out


def run(url: str, db: str, streams: list[DeviceStream], readings: int) -> dict[str, Any]:
    """Post ``readings`` pre-formed lines; readings/s from the first request to the last answer."""
    lines = lines_for(streams, readings, int(time.time() * 1000) - 3_600_000)
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
