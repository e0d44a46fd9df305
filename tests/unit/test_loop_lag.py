"""ioc_ingest_loop_lag_seconds shows a stall while it lasts (read from the metrics thread)."""

from __future__ import annotations

import asyncio
import threading
import time

from ingest.config import IngestSettings
from ingest.service import IngestService
from simulators.fleetgen import generate_fleet


def stall(seconds: float) -> None:
    time.sleep(seconds)


def test_the_loop_lag_gauge_shows_a_stall_while_the_loop_stands_still() -> None:
    svc = IngestService(IngestSettings(_env_file=None), generate_fleet(4, 1))  # type: ignore[call-arg]
    seen_during: list[float] = []

    def read_during_the_stall() -> None:
        time.sleep(0.5)  # the loop is blocked from 0.3 s to 1.3 s
        seen_during.append(svc.metrics.value("ioc_ingest_loop_lag_seconds"))

    async def main() -> float:
        watcher = asyncio.create_task(svc._watch_loop_lag())
        await asyncio.sleep(0.3)
        reader = threading.Thread(target=read_during_the_stall)
        reader.start()
        stall(1.0)  # something blocking the event loop (what the alert store used to do)
        await asyncio.sleep(0.3)
        reader.join()
        watcher.cancel()
        return svc.metrics.value("ioc_ingest_loop_lag_max_seconds")

    worst = asyncio.run(main())
    assert seen_during[0] > 0.1  # visible while it happens, not only afterwards
    assert 0.8 < worst < 5  # and the largest lag seen is kept
    assert svc.metrics.value("ioc_ingest_loop_lag_seconds") < 0.5  # gone once the loop runs again
