"""Group commit: the open batch is sealed as soon as no batch is unfinished, and grows while one is."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import numpy as np

from ingest.batch import Batch, BatchBuilder
from ingest.broker import InMessage
from ingest.config import IngestSettings
from ingest.service import IngestService
from simulators.fleetgen import generate_fleet


def service(**settings: object) -> IngestService:
    config = IngestSettings(_env_file=None, **settings)  # type: ignore[call-arg,arg-type]
    return IngestService(config, generate_fleet(8, 1))


def receive(svc: IngestService, index: int) -> None:
    """What receive does with one message: into the open builder, waking the sealer."""
    builder = svc._builder
    if not builder.acks:
        svc._filled.set()
    builder.note_message(f"msg-{index}")
    builder.add_reading("salinity", 0, 1_000 + index, index, (900.0, 0.5, 25.0, 10.0, 3.6, -80.0), f"m,i={index} v=1")


async def sealed_within(svc: IngestService, seconds: float) -> Batch | None:
    try:
        batch = await asyncio.wait_for(svc._queue.get(), seconds)
    except TimeoutError:
        return None
    assert batch is not None
    return batch


def test_with_no_batch_unfinished_a_message_is_sealed_at_once() -> None:
    async def main() -> tuple[Batch | None, float]:
        svc = service(batch_max_age_ms=60_000)  # only group commit can seal within the test
        sealer = asyncio.create_task(svc._sealer())
        await asyncio.sleep(0.01)
        started = time.monotonic()
        receive(svc, 0)
        batch = await sealed_within(svc, 5)
        sealer.cancel()
        return batch, time.monotonic() - started

    batch, waited = asyncio.run(main())
    assert batch is not None
    assert batch.acks == ["msg-0"]
    assert waited < 5  # sealed long before the 60 s age bound


def test_while_a_batch_is_unfinished_the_next_grows_until_it_is_finished() -> None:
    async def main() -> tuple[Batch | None, Batch | None, int]:
        svc = service(batch_max_age_ms=60_000)
        svc._unfinished = 1  # a batch is being written (or waits for its rules and acks)
        sealer = asyncio.create_task(svc._sealer())
        receive(svc, 0)
        early = await sealed_within(svc, 0.1)
        receive(svc, 1)
        receive(svc, 2)
        svc._done_with(1)  # it is finished
        batch = await sealed_within(svc, 5)
        sealer.cancel()
        return early, batch, svc._unfinished

    early, batch, open_writes = asyncio.run(main())
    assert early is None  # not sealed while the other batch was unfinished
    assert batch is not None
    assert batch.acks == ["msg-0", "msg-1", "msg-2"]
    assert open_writes == 1  # the finished batch is gone, the new one is unfinished


def test_a_batch_that_never_finishes_still_lets_the_next_go_at_the_age_bound() -> None:
    async def main() -> tuple[Batch | None, float]:
        svc = service(batch_max_age_ms=100)
        svc._unfinished = 1
        sealer = asyncio.create_task(svc._sealer())
        started = time.monotonic()
        receive(svc, 0)
        batch = await sealed_within(svc, 5)
        sealer.cancel()
        return batch, time.monotonic() - started

    batch, waited = asyncio.run(main())
    assert batch is not None
    assert batch.acks == ["msg-0"]
    assert waited >= 0.09  # it waited (the age bound), not sealed at once


def test_merged_batches_hold_every_batch_in_order() -> None:
    batches = []
    for i in range(3):
        builder = BatchBuilder()
        builder.note_message(f"msg-{i}")
        builder.add_reading("salinity", i, 1_000 + i, i, (900.0, 0.5 + i, 25.0, 10.0, 3.6, -80.0), f"line-{i}")
        builder.add_status(i, 2_000 + i, True, f"status-{i}")
        batches.append(builder.seal())
    merged = Batch.merged(batches)
    assert merged.lines == [], "written already: the rules read columns"
    assert merged.acks == ["msg-0", "msg-1", "msg-2"]
    assert (merged.readings, merged.statuses) == (3, 3)
    assert merged.opened_at == batches[0].opened_at
    salinity = merged.columns()["salinity"]
    assert salinity.device.tolist() == [0, 1, 2]
    assert salinity.ts_ms.tolist() == [1_000, 1_001, 1_002]
    np.testing.assert_array_equal(salinity.fields["salinity_ppt"], [0.5, 1.5, 2.5])
    assert Batch.merged(batches[:1]) is batches[0]


class Backlog:
    """The receive side of a broker connection holding ``count`` messages, handed over one per loop
    turn (as the public MQTT path does); ``waiting`` says how many it still holds."""

    generation = 1

    def __init__(self, count: int) -> None:
        self.left = count

    def waiting(self) -> int:
        return self.left

    async def messages(self) -> AsyncIterator[InMessage]:
        index = 0
        while self.left:
            self.left -= 1
            yield InMessage("ioc/v1/devices/nobody/telemetry", b"{}", False, f"msg-{index}")  # type: ignore[arg-type]
            index += 1
            await asyncio.sleep(0)  # one message per loop turn
        await asyncio.Event().wait()  # connected, nothing more


def test_messages_already_at_the_broker_go_into_the_batch_before_it_is_sealed() -> None:
    """Nothing is unfinished when the first message comes, but four more are already waiting: the
    sealer lets receive take them first (else each message of a backlog would be a batch of its own)."""

    async def main() -> tuple[Batch | None, Batch | None]:
        svc = service(batch_max_age_ms=60_000)
        backlog = Backlog(5)
        svc._broker = backlog  # type: ignore[assignment]
        sealer = asyncio.create_task(svc._sealer())
        receiver = asyncio.create_task(svc._receive(backlog))  # type: ignore[arg-type]
        batch = await sealed_within(svc, 5)
        more = await sealed_within(svc, 0.2)
        sealer.cancel()
        receiver.cancel()
        return batch, more

    batch, more = asyncio.run(main())
    assert batch is not None
    assert batch.acks == [f"msg-{i}" for i in range(5)]
    assert more is None


def test_a_batch_holds_a_quarter_of_the_receive_window_at_most() -> None:
    """Readings per batch are not the only bound: a batch of single-reading messages as large as the
    broker's window would stop the broker until it is stored. Receive seals at a quarter of the
    window (Receive Maximum 40 → 10 messages), however few readings that is."""

    async def main() -> list[Batch]:
        svc = service(mqtt_receive_maximum=40, batch_max_readings=10_000, batch_max_age_ms=60_000)
        backlog = Backlog(25)
        receiver = asyncio.create_task(svc._receive(backlog))  # type: ignore[arg-type]
        batches = [b for b in [await sealed_within(svc, 5), await sealed_within(svc, 5)] if b is not None]
        receiver.cancel()
        return batches

    batches = asyncio.run(main())
    assert [b.acks for b in batches] == [[f"msg-{i}" for i in range(k, k + 10)] for k in (0, 10)]
