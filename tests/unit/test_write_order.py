"""The writer loop: several batches written at once, finished (rules, ack) strictly in order; the
batches whose writes have ended when the last finish did are finished together (one rules call).

The seam is the transport: here a scripted one whose writes finish in reverse order (the real
transports run against real InfluxDB in tests/integration). The broker is replaced by a recorder
of the acks the service sends, which is all the writer loop uses of it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ingest.batch import Batch, BatchBuilder
from ingest.config import IngestSettings
from ingest.influx import Backoff, InfluxWriter
from ingest.service import IngestService
from simulators.fleetgen import generate_fleet

BATCHES = 6


class SlowFirstTransport:
    """Batch ``i`` takes ``(BATCHES - i) × 20 ms``: later batches are stored before earlier ones."""

    def __init__(self) -> None:
        self.active = 0
        self.most_active = 0
        self.stored: list[int] = []

    async def post(self, body: bytes) -> None:
        index = int(body.split(b" ", 1)[0].rsplit(b"=", 1)[1])
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            await asyncio.sleep((BATCHES - index) * 0.02)
        finally:
            self.active -= 1
        self.stored.append(index)

    async def aclose(self) -> None:
        pass


class AckRecorder:
    def __init__(self) -> None:
        self.acked: list[Any] = []

    def ack(self, acks: list[Any]) -> int:
        self.acked.extend(acks)
        return len(acks)


def batch(index: int) -> Batch:
    builder = BatchBuilder()
    builder.note_message(f"msg-{index}")
    row = (0.5, 25.0, 1_000.0, 10.0, 3.6, -80.0)
    builder.add_reading("salinity", 0, 1_000 + index, index, row, f"m,batch={index} v=1")
    return builder.seal()


def indexes(b: Batch) -> tuple[int, ...]:
    """The batches a (possibly merged) batch holds, by the index in their acks (the writer has let
    their lines go by the time the hook sees them)."""
    return tuple(int(str(ack).rsplit("-", 1)[1]) for ack in b.acks)


def service(
    concurrency: int, hooked: list[tuple[int, ...]], batch_max_readings: int = 10_000, receive_maximum: int = 10_000
) -> tuple[IngestService, AckRecorder]:
    settings = IngestSettings(
        _env_file=None,
        write_concurrency=concurrency,
        batch_max_readings=batch_max_readings,
        mqtt_receive_maximum=receive_maximum,
    )  # type: ignore[call-arg]

    async def on_batch(b: Batch) -> list[str]:
        hooked.append(indexes(b))
        return []

    svc = IngestService(settings, generate_fleet(8, 1), on_batch=on_batch, tick_s=60)
    recorder = AckRecorder()
    svc._broker = recorder  # type: ignore[assignment]
    return svc, recorder


@pytest.mark.parametrize("concurrency", [1, 3])
def test_writes_overlap_but_batches_finish_in_order(concurrency: int) -> None:
    async def main() -> tuple[SlowFirstTransport, list[tuple[int, ...]], AckRecorder]:
        hooked: list[tuple[int, ...]] = []
        svc, recorder = service(concurrency, hooked)
        transport = SlowFirstTransport()
        writer = InfluxWriter(transport, Backoff(0.01, 0.1))
        loop = asyncio.create_task(svc._writer_loop(writer))
        for i in range(BATCHES):
            await svc._queue.put(batch(i))
        await svc._queue.put(None)
        await asyncio.wait_for(loop, 10)
        return transport, hooked, recorder

    transport, hooked, recorder = asyncio.run(main())
    assert transport.most_active == concurrency
    if concurrency > 1:
        assert transport.stored != sorted(transport.stored)  # stored out of order…
    assert [i for group in hooked for i in group] == list(range(BATCHES))  # …yet the rules see them in order
    if concurrency > 1:  # batch 0 ends last of the first three: they are finished with one rules call
        assert hooked[0] == (0, 1, 2)
        assert len(hooked) < BATCHES
    else:
        assert hooked == [(i,) for i in range(BATCHES)]
    assert recorder.acked == [f"msg-{i}" for i in range(BATCHES)]  # and PUBACKs go out in order


@pytest.mark.parametrize(
    ("concurrency", "batch_max_readings", "receive_maximum", "cap"), [(3, 2, 10_000, 2), (8, 10_000, 10, 5)]
)
def test_batches_finished_together_hold_no_more_messages_than_one_burst_may(
    concurrency: int, batch_max_readings: int, receive_maximum: int, cap: int
) -> None:
    """One rules call and one burst of PUBACKs cover at most ``batch_max_readings`` messages, and
    half of Receive Maximum (10 // 2 = 5: all six batches end together, yet five are finished first)."""

    async def main() -> tuple[list[tuple[int, ...]], AckRecorder]:
        hooked: list[tuple[int, ...]] = []
        svc, recorder = service(concurrency, hooked, batch_max_readings, receive_maximum)
        loop = asyncio.create_task(svc._writer_loop(InfluxWriter(SlowFirstTransport(), Backoff(0.01, 0.1))))
        for i in range(BATCHES):
            await svc._queue.put(batch(i))
        await svc._queue.put(None)
        await asyncio.wait_for(loop, 10)
        return hooked, recorder

    hooked, recorder = asyncio.run(main())
    assert hooked[0] == tuple(range(cap))  # the first ones had all ended: up to the cap, then the next call
    assert max(len(group) for group in hooked) == cap
    assert [i for group in hooked for i in group] == list(range(BATCHES))
    assert recorder.acked == [f"msg-{i}" for i in range(BATCHES)]


def test_stopping_mid_write_acknowledges_nothing_unstored() -> None:
    async def main() -> tuple[SlowFirstTransport, list[tuple[int, ...]], AckRecorder, int]:
        hooked: list[tuple[int, ...]] = []
        svc, recorder = service(3, hooked)
        transport = SlowFirstTransport()
        writer = InfluxWriter(transport, Backoff(0.01, 0.1))
        loop = asyncio.create_task(svc._writer_loop(writer))
        for i in range(BATCHES):
            await svc._queue.put(batch(i))
        await asyncio.sleep(0.07)  # batches 3, 4, 5 are not written yet; 0 is still writing
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop
        await asyncio.sleep(0.2)  # a write left running would be stored by now
        return transport, hooked, recorder, transport.active

    transport, hooked, recorder, active = asyncio.run(main())
    assert active == 0  # every write in progress was cancelled with the loop
    assert hooked == []  # batch 0 was never stored, so nothing after it is finished…
    assert recorder.acked == []  # …or acknowledged
    assert transport.stored == []


async def write_with_hook(on_batch: Any, recorder: AckRecorder, batches: int) -> IngestService:
    """Run the writer loop over ``batches`` batches with a rules hook; return the service when done."""
    settings = IngestSettings(_env_file=None, retry_initial_s=0.01, retry_max_s=0.02)  # type: ignore[call-arg]
    svc = IngestService(settings, generate_fleet(8, 1), on_batch=on_batch, tick_s=60)
    svc._broker = recorder  # type: ignore[assignment]
    loop = asyncio.create_task(svc._writer_loop(InfluxWriter(SlowFirstTransport(), Backoff(0.01, 0.1))))
    for i in range(batches):
        await svc._queue.put(batch(i))
    await svc._queue.put(None)
    await asyncio.wait_for(loop, 10)
    return svc


def test_a_failing_rules_hook_holds_its_batch_and_later_ones_unacknowledged_until_it_succeeds() -> None:
    """A hook that raises is retried in place: no ack for its batch (or any after it) meanwhile."""
    failures = 3  # the rules call over batch 2 fails three times, then succeeds
    calls: list[tuple[int, ...]] = []
    acked_while_failing: list[int] = []
    recorder = AckRecorder()

    async def on_batch(b: Batch) -> list[str]:
        nonlocal failures
        group = indexes(b)
        calls.append(group)
        if 2 in group and failures > 0:
            failures -= 1
            acked_while_failing.append(len(recorder.acked))
            raise RuntimeError("alert store is locked")
        return []

    svc = asyncio.run(write_with_hook(on_batch, recorder, BATCHES))
    errors = int(svc.metrics.value("ioc_rules_errors_total"))
    failing = [group for group in calls if 2 in group]
    assert len(failing) == 4
    assert len(set(failing)) == 1
    assert [i for group in dict.fromkeys(calls) for i in group] == list(range(BATCHES))  # in order, none skipped
    assert acked_while_failing == [failing[0][0]] * 3  # while it failed, only the batches before it were acked
    assert recorder.acked == [f"msg-{i}" for i in range(BATCHES)]  # then all, in order, once
    assert errors == 3


def test_a_rules_hook_that_always_raises_is_abandoned_so_ingest_goes_on() -> None:
    """A bug (not a store that is away: the alert store retries in place itself) must not stop ingest."""
    from ingest.service import HOOK_ATTEMPTS

    calls: list[tuple[int, ...]] = []
    recorder = AckRecorder()

    async def on_batch(b: Batch) -> list[str]:
        calls.append(indexes(b))
        if 1 in indexes(b):
            raise ZeroDivisionError("a bug")
        return []

    m = asyncio.run(write_with_hook(on_batch, recorder, 3)).metrics
    errors, abandoned = m.value("ioc_rules_errors_total"), m.value("ioc_rules_hooks_abandoned_total")
    failing = [group for group in calls if 1 in group]
    assert len(failing) == HOOK_ATTEMPTS
    assert len(set(failing)) == 1
    assert [i for group in dict.fromkeys(calls) for i in group] == [0, 1, 2]
    assert recorder.acked == ["msg-0", "msg-1", "msg-2"]
    assert (errors, abandoned) == (HOOK_ATTEMPTS, 1)


def test_a_batch_written_twice_stops_the_writer_instead_of_acknowledging_nothing_stored() -> None:
    """The writer lets a batch's lines go once it has the body: a second write of the same batch
    would store nothing and acknowledge its messages. It raises instead, and nothing more is acked."""

    async def main() -> AckRecorder:
        svc, recorder = service(1, [])
        loop = asyncio.create_task(svc._writer_loop(InfluxWriter(SlowFirstTransport(), Backoff(0.01, 0.1))))
        once = batch(0)
        await svc._queue.put(once)
        await svc._queue.put(once)
        await svc._queue.put(None)
        with pytest.raises(RuntimeError, match="written twice"):
            await asyncio.wait_for(loop, 10)
        return recorder

    assert asyncio.run(main()).acked == ["msg-0"]
