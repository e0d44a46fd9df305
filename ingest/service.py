"""The ingest pipeline: broker → decode into a columnar batch → InfluxDB → dead letters → ack.

Three cooperating tasks on one event loop:

* **receive**: reads messages, decodes them into the open :class:`BatchBuilder`, seals it at
  ``batch_max_readings`` or at a quarter of ``mqtt_receive_maximum`` messages (so that the
  broker's window holds several batches: while some are written the next fills);
* **sealer** (group commit): seals the open batch as soon as no sealed batch is unfinished (being
  written, or waiting for its rules and acks), so at low rates a reading waits for one write only;
  otherwise the batch grows until one is finished, it reaches ``batch_max_readings`` or a quarter
  of ``mqtt_receive_maximum`` messages (receive seals it) or its oldest message waited
  ``batch_max_age_ms``: under load, batches grow as large as the
  pipeline's time lets them, and the per-batch costs (a write, a rules call) are paid ever more
  rarely per reading; messages the broker connection already holds (the public MQTT path hands over
  one per loop turn) go into the batch before it is sealed, so batches grow with the backlog;
* **writer**: takes sealed batches in order from a bounded queue and stores them (retrying until
  InfluxDB takes them), up to ``write_concurrency`` at once; then, strictly in order, publishes a
  batch's dead letters, runs the rules on it (retried in place until its alert transitions are
  recorded), and only then acknowledges its messages (MQTT wants PUBACKs in the order the
  PUBLISHes came, and the rules want each device's readings in order).

Nothing on the loop blocks: the broker connection comes through a :data:`BrokerFactory`
(:mod:`ingest.broker`), the alert store works in a thread of its own (:mod:`ingest.alerting`), and
``ioc_ingest_loop_lag_seconds`` shows how late the loop runs.

When the writer stalls, the queue fills, receive blocks, acks stop, and the broker stops sending
(Receive Maximum): nothing is dropped anywhere. :meth:`IngestService.run` returns after ``stop`` is
set and everything received was stored and acknowledged (or ``drain_timeout_s`` passed: whatever
was not acknowledged then is redelivered by the broker to the next session).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Final

import msgspec

from contract.clock import now_ms
from contract.fleet import DeviceTags, Fleet
from contract.reasons import Reason
from contract.topics import Channel, device_topic, dlq_topic
from ingest.batch import Batch, BatchBuilder, Rejection
from ingest.broker import BrokerConnection, BrokerError, BrokerFactory, broker_factory
from ingest.config import IngestSettings
from ingest.decode import Decoder
from ingest.influx import Backoff, InfluxWriter, make_transport
from ingest.metrics import OTHER, IngestMetrics
from ingest.registry import Registry
from ingest.registry_follow import RegistryFollower
from ingest.sources.config import NATIVE_ONLY, SourcesFile
from ingest.sources.router import Router
from storage.layout import STATUS_MEASUREMENT

if TYPE_CHECKING:
    from registry.store import DeviceRegistry

log = logging.getLogger(__name__)
MAX_IGNORED_EVENTS: Final = 64
"""Distinct ``event`` labels of ``ioc_ingest_ignored_total`` at most (the rest: ``other``)."""
_STATUS_PREFIX = STATUS_MEASUREMENT + ","

_DEVICE_TAG = re.compile(r"(?:^|,)device_id=([A-Za-z0-9_-]+)")
BatchHook = Callable[[Batch], Awaitable[list[str]]]
"""Awaited with each stored batch before it is acknowledged; returns more lines to store.

It must not block the event loop (the alert store works in a thread of its own). If it raises, the
batch is not acknowledged: the hook is retried in place, with back-off, up to ``HOOK_ATTEMPTS``."""
TickHook = Callable[[], Awaitable[list[str]]]
"""Awaited every ``tick_s`` seconds on the writer task; returns lines to store (retried like a batch hook)."""
HOOK_ATTEMPTS = 5
"""A hook that raises this often on one batch is a bug (the alert store retries in place itself):
the batch is then acknowledged, counted in ``ioc_rules_hooks_abandoned``, so that one bad batch
cannot stop ingest."""
LOOP_LAG_PROBE_S = 0.1
"""How often the event loop's lag is measured (``ioc_ingest_loop_lag_seconds``)."""


_Writing = tuple[Batch, asyncio.Task[tuple[list[tuple[str, str]], float]]]
"""A batch and its write in progress (refused lines, start time)."""


async def _timed_write(writer: InfluxWriter, batch: Batch) -> tuple[list[tuple[str, str]], float]:
    """Store ``batch``'s lines (the writer empties the list): the lines InfluxDB refused, and when it began."""
    points = batch.readings + batch.statuses
    if points and not batch.lines:  # written before: writing nothing now, and acking, would lose it
        raise RuntimeError(f"a batch of {points} points holds no lines: written twice?")
    started = time.monotonic()
    return await writer.write(batch.lines), started


def dead_letter(rejection: Rejection, *, cap: int, received_ms: int) -> bytes:
    """The dead-letter payload: original topic, reason, detail and the payload (capped)."""
    raw = rejection.payload[:cap]
    doc: dict[str, object] = {
        "topic": rejection.topic,
        "reason": rejection.reason.value,
        "detail": rejection.detail,
        "truncated": len(rejection.payload) > cap,
        "received_ms": received_ms,
    }
    try:
        rejection.payload.decode("utf-8")
        doc["payload"] = raw.decode("utf-8", "ignore")  # the cap may cut a character in two
    except UnicodeDecodeError:
        import base64

        doc["payload_b64"] = base64.b64encode(raw).decode()
    return msgspec.json.encode(doc)


class IngestService:
    """Runs the pipeline with one settings object and one fleet registry."""

    def __init__(
        self,
        settings: IngestSettings,
        fleet: Fleet | Sequence[DeviceTags] | Registry,
        *,
        metrics: IngestMetrics | None = None,
        on_batch: BatchHook | None = None,
        on_tick: TickHook | None = None,
        tick_s: float = 5.0,
        broker: BrokerFactory | None = None,
        sources: SourcesFile = NATIVE_ONLY,
    ) -> None:
        self.settings = settings
        self.broker_factory = broker or broker_factory(settings)
        self.metrics = metrics or IngestMetrics()
        self._inflight = 0
        """Messages received and not yet acknowledged (the ``inflight`` gauge reads it when scraped)."""
        self.metrics.inflight.set_function(lambda: self._inflight)
        if isinstance(fleet, Registry):
            self.registry = fleet
        else:
            self.registry = Registry(fleet.devices if isinstance(fleet, Fleet) else fleet)
        self._decoder = Decoder(
            self.registry,
            max_payload_bytes=settings.max_payload_bytes,
            max_readings=settings.max_readings_per_message,
        )
        self._ignored_events: set[str] = set()
        self.router = Router(sources, self._decoder, self.registry, self._ignored)
        self._on_batch = on_batch
        self._on_tick = on_tick
        self._tick_s = tick_s
        self._builder = BatchBuilder()
        self._flush_lock = asyncio.Lock()
        self._unqueued: Batch | None = None
        window = settings.mqtt_receive_maximum
        self._batch_messages = max(1, window // 4)
        """Messages a batch holds at most: a quarter of the broker's window, so that it holds several
        batches (while some are written the next fills)."""
        self._finish_messages = min(settings.batch_max_readings, max(1, window // 2))
        """Messages of the batches finished together at most: one rules call, one burst of PUBACKs
        (half the window at most)."""
        self._unfinished = 0
        """Batches sealed and not yet finished (queued, being written, or waiting for the rules and acks)."""
        self._filled = asyncio.Event()
        """Set by receive when a message goes into an empty builder."""
        self._finished = asyncio.Event()
        self._drained = asyncio.Event()
        """Set by receive when it has taken the messages the sealer waits for (``_drain_left``)."""
        self._drain_left = 0
        self._queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=settings.write_queue_batches)
        self._broker: BrokerConnection | None = None
        self._connected = asyncio.Event()
        self.drain_timeout_s = 60.0
        self._hook_backoff = Backoff(settings.retry_initial_s, settings.retry_max_s)
        self.follower: RegistryFollower | None = None

    def _ignored(self, event: str) -> None:
        """Count a message that carries no reading; events come from topics, so past
        :data:`MAX_IGNORED_EVENTS` distinct ones the rest count as ``other`` (bounded series)."""
        if event not in self._ignored_events:
            if len(self._ignored_events) >= MAX_IGNORED_EVENTS:
                event = "other"
            self._ignored_events.add(event)
        self.metrics.ignored.labels(event).inc()

    def follow(self, source: DeviceRegistry | None, revision: int) -> RegistryFollower:
        """Follow the registry database from ``revision`` on while running (devices change live); None:
        a fleet file, which does not change (the follower only reports the devices)."""
        self.follower = RegistryFollower(
            source, self.registry, revision=revision, poll_s=self.settings.registry_poll_s,
            metrics=self.metrics.registry,
        )  # fmt: skip
        self.follower.listeners.append(lambda _registry: self._decoder.registry_changed())
        return self.follower

    def attach_rules(self, on_batch: BatchHook, on_tick: TickHook) -> None:
        """Evaluate rules on every stored batch (before its ack) and every ``tick_s`` seconds."""
        self._on_batch, self._on_tick = on_batch, on_tick

    @property
    def connected(self) -> bool:
        """True while subscribed to the broker."""
        return self._connected.is_set()

    # -- receive side ------------------------------------------------------------------------

    async def _flush(self) -> None:
        async with self._flush_lock:
            if self._builder.empty:
                return
            batch = self._builder.seal()
            self._unfinished += 1
            try:
                await self._queue.put(batch)
            except asyncio.CancelledError:
                self._unqueued = batch
                raise

    def _done_with(self, batches: int) -> None:
        """``batches`` were finished (stored, rules run, acknowledged): the sealer may seal the next."""
        self._unfinished -= batches
        self._finished.set()

    async def _receive(self, broker: BrokerConnection) -> None:
        limit, message_limit = self.settings.batch_max_readings, self._batch_messages
        received = self.metrics.received.counts
        decode = self._decoder.decode if self.router.native_only else self.router.decode
        clock = now_ms
        filled, drained = self._filled, self._drained
        async for msg in broker.messages():
            builder = self._builder
            if not builder.acks:
                filled.set()
            builder.note_message(msg.ack)
            self._inflight += 1
            channel = msg.topic.rsplit("/", 1)[-1]
            received[channel if channel in received else OTHER] += 1
            decode(msg.topic, msg.payload, retained=msg.retained, now_ms=clock(), out=builder)
            if self._drain_left:
                self._drain_left -= 1
                if not self._drain_left:
                    drained.set()
            if len(builder) >= limit or len(builder.acks) >= message_limit:
                await self._flush()
                await asyncio.sleep(0)  # let the writer and the sealer run between batches

    async def _sealer(self) -> None:
        """Group commit (see the module docstring): seal when no batch is unfinished, or at the age bound."""
        max_age = self.settings.batch_max_age_ms / 1000
        filled, finished, drained = self._filled, self._finished, self._drained
        while True:
            builder = self._builder
            if builder.empty:
                filled.clear()
                await filled.wait()
                continue
            now = time.monotonic()
            if self._unfinished <= 0:
                broker = self._broker
                here = broker.waiting() if broker is not None else 0
                if here and now < builder.opened_at + max_age:
                    # messages that already arrived go into this batch (the public MQTT path hands
                    # over one per loop turn): batches grow with the backlog, not with new arrivals
                    drained.clear()
                    self._drain_left = here
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(drained.wait(), builder.opened_at + max_age - now)
                    self._drain_left = 0
                    if builder is self._builder and not builder.empty:
                        await self._flush()
                else:
                    await self._flush()
                continue
            wait = builder.opened_at + max_age - now
            if wait <= 0:
                await self._flush()
                continue
            finished.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(finished.wait(), wait)

    # -- write side --------------------------------------------------------------------------

    async def _writer_loop(self, writer: InfluxWriter) -> None:
        """Write up to ``write_concurrency`` batches at once; finish them (rules, ack) in order.

        The batches whose writes have ended by the time the last finish did are finished together
        (up to ``batch_max_readings`` messages, and half of ``mqtt_receive_maximum``: one burst of
        PUBACKs is at most half the broker's window): one rules evaluation over all of them (what was
        stored since the rules last ran), so small group-commit batches do not each pay the engine's
        per-call cost when finishing falls behind. (Larger bursts of PUBACKs made Mosquitto 2.0.11
        send past Receive Maximum after an outage: tests/integration/test_reliability.py.)
        """
        concurrency, limit = self.settings.write_concurrency, self._finish_messages
        slots = asyncio.Semaphore(concurrency)  # writes in flight (released when a write ends)
        held = asyncio.Semaphore(concurrency + 1)  # written or being written, not finished: as many as
        # before writes overlapped finishing (``concurrency`` writing, one finishing)
        writing: deque[_Writing | None] = deque()
        arrived = asyncio.Event()
        starter = asyncio.create_task(
            self._start_writes(writer, slots, held, writing, arrived), name="ingest-write-starter"
        )
        next_tick = time.monotonic() + self._tick_s
        try:
            while True:
                if time.monotonic() >= next_tick:  # time passing, also under a steady load
                    next_tick = time.monotonic() + self._tick_s
                    await self._run_hook(writer, self._on_tick)
                    continue
                if not writing:
                    arrived.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(arrived.wait(), max(0.0, next_tick - time.monotonic()))
                    continue
                head = writing[0]
                if head is None:
                    return
                await asyncio.wait([head[1]])
                done: list[tuple[Batch, list[tuple[str, str]], float]] = []
                size = 0  # messages: one rules call, one burst of acks
                while writing and (item := writing[0]) is not None and item[1].done():
                    size += len(item[0].acks)
                    if done and size > limit:
                        break
                    writing.popleft()
                    done.append((item[0], *item[1].result()))
                try:
                    await self._finish(writer, done)
                finally:
                    for _ in done:
                        held.release()
                self._done_with(len(done))
        finally:
            starter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starter
            for left in writing:  # stopped mid-way: never acknowledged, so redelivered
                if left is not None:
                    left[1].cancel()

    async def _start_writes(
        self,
        writer: InfluxWriter,
        slots: asyncio.Semaphore,
        held: asyncio.Semaphore,
        writing: deque[_Writing | None],
        arrived: asyncio.Event,
    ) -> None:
        """Start a write for each sealed batch, in order, while a slot is free."""
        while True:
            batch = await self._queue.get()
            if batch is None:
                writing.append(None)
                arrived.set()
                return
            await held.acquire()
            await slots.acquire()
            write = asyncio.create_task(_timed_write(writer, batch))
            write.add_done_callback(lambda _w: slots.release())
            writing.append((batch, write))
            arrived.set()

    async def _run_hook(self, writer: InfluxWriter, hook: Callable[[], Awaitable[list[str]]] | None) -> None:
        """Run a rules hook and store the lines it returns; retry it in place if it raises.

        The batch behind it is acknowledged only afterwards, so a failure delays acks (and, when it
        lasts, backs up to the broker). A store that is away never gets here (the alert store
        retries in place until it takes the transitions); a hook failing ``HOOK_ATTEMPTS`` times is
        a bug, logged and counted, and its batch is acknowledged.
        """
        if hook is None:
            return
        for attempt in range(HOOK_ATTEMPTS):
            try:
                lines = await hook()
                break
            except Exception:
                log.exception("rules hook failed (attempt %d); the batch stays unacknowledged", attempt + 1)
                self.metrics.hook_errors.inc()
                if attempt + 1 < HOOK_ATTEMPTS:
                    await asyncio.sleep(self._hook_backoff.delay(attempt))
        else:  # a bug, not a store that is away (the alert store retries in place itself)
            log.error("rules hook failed %d times: acknowledging the batch without its alert points", HOOK_ATTEMPTS)
            self.metrics.hook_abandoned.inc()
            return
        if lines:
            refused = await writer.write(lines)
            for line, message in refused:
                log.error("alert point refused by InfluxDB: %s (%s)", message, line[:200])

    async def _finish(self, writer: InfluxWriter, done: list[tuple[Batch, list[tuple[str, str]], float]]) -> None:
        """After the writes of ``done`` (each batch, the lines InfluxDB refused, when its write
        started), in order: dead letters and metrics per batch, the rules hook once over them all,
        then the acknowledgements."""
        for batch, refused, started in done:
            await self._settle(batch, refused, started)
        batches = [batch for batch, _, _ in done]
        if self._on_batch is not None:
            on_batch = self._on_batch
            merged = Batch.merged(batches)
            await self._run_hook(writer, lambda: on_batch(merged))
        for batch in batches:
            self._ack(batch)

    async def _settle(self, batch: Batch, refused: list[tuple[str, str]], started: float) -> None:
        """A written batch's dead letters, commands and metrics."""
        rejections = list(batch.rejections)
        for line, message in refused:
            rejections.append(Rejection(self._topic_of(line), Reason.DB_REJECTED, message, line.encode()))
        if rejections:
            await self._publish_dead_letters(rejections)
        if batch.commands:
            await self._publish(list(batch.commands), "commands")
            self.metrics.commands.inc(len(batch.commands))
        done = time.monotonic()
        m = self.metrics
        refused_statuses = sum(1 for line, _ in refused if line.startswith(_STATUS_PREFIX))
        m.readings_stored.inc(batch.readings - (len(refused) - refused_statuses))
        m.statuses_stored.inc(batch.statuses - refused_statuses)
        for r in rejections:
            m.rejected.labels(r.reason.value).inc()
        m.batches.inc()
        m.batch_seconds.observe(done - started)
        m.lag_seconds.set(done - batch.opened_at)

    def _ack(self, batch: Batch) -> None:
        broker = self._broker
        if broker is None:
            self.metrics.ack_skipped.inc(batch.messages)
            sent = 0
        else:
            sent = broker.ack(batch.acks)
        self.metrics.acked.inc(sent)
        self._inflight -= batch.messages

    def _topic_of(self, line: str) -> str:
        match = _DEVICE_TAG.search(line.split(" ", 1)[0])
        device = self.registry.by_id.get(match.group(1)) if match else None
        if device is None:
            return ""
        channel = (
            Channel.STATUS
            if line.startswith(_STATUS_PREFIX)
            else (Channel.EVENT if ",event=" in line.split(" ", 1)[0] else Channel.TELEMETRY)
        )
        return device_topic(device.province, device.device_kind, device.id, channel)

    async def _publish_dead_letters(self, rejections: list[Rejection]) -> None:
        received_ms = now_ms()
        cap = self.settings.dlq_payload_cap
        letters = [(dlq_topic(r.reason.value), dead_letter(r, cap=cap, received_ms=received_ms)) for r in rejections]
        await self._publish(letters, "dead letters")

    async def _publish(self, letters: list[tuple[str, bytes]], what: str) -> None:
        """Publish every (topic, payload), retrying across reconnects until each is sent: confirmed by
        the broker on the public path, on the wire ahead of every later acknowledgement on the fast path
        (:meth:`ingest.mqtt_fastpath.FastPathBroker.publish`). A Sparkplug command lost with its
        connection there is asked for again by the next DATA that needs it."""
        while letters:
            await self._connected.wait()
            broker = self._broker
            assert broker is not None
            try:
                results = await asyncio.gather(*(broker.publish(t, p) for t, p in letters), return_exceptions=True)
            except asyncio.CancelledError:
                raise
            letters = [lt for lt, res in zip(letters, results, strict=True) if isinstance(res, BaseException)]
            if letters:
                log.warning("%d %s not published yet; retrying after reconnect", len(letters), what)
                await asyncio.sleep(0.5)

    # -- lifecycle ---------------------------------------------------------------------------

    async def _watch_loop_lag(self) -> None:
        """Measure how late the event loop wakes a sleeper: anything blocking it shows here.

        The gauge is read by the metrics thread: while the loop stands still it shows how long it
        has been overdue, not the last probe's value.
        """
        worst = self.metrics.loop_lag_max
        highest = last = 0.0
        woke = time.monotonic()

        def current() -> float:
            return max(last, time.monotonic() - woke - LOOP_LAG_PROBE_S)

        self.metrics.loop_lag.set_function(current)
        while True:
            started = time.monotonic()
            await asyncio.sleep(LOOP_LAG_PROBE_S)
            woke = time.monotonic()
            last = max(0.0, woke - started - LOOP_LAG_PROBE_S)
            if last > highest:
                highest = last
                worst.set(last)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then drain (see the module docstring)."""
        s = self.settings
        writer = InfluxWriter(
            make_transport(s),
            Backoff(s.retry_initial_s, s.retry_max_s),
            on_retry=lambda e, d: self.metrics.write_retries.inc(),
        )
        writer_task = asyncio.create_task(self._writer_loop(writer), name="ingest-writer")
        sealer_task = asyncio.create_task(self._sealer(), name="ingest-sealer")
        lag_task = asyncio.create_task(self._watch_loop_lag(), name="ingest-loop-lag")
        follow_task = asyncio.create_task(
            self.follower.run() if self.follower else asyncio.Event().wait(), name="ingest-registry"
        )
        reconnect = Backoff(0.5, 10.0)
        generation = 0
        attempt = 0
        try:
            while not stop.is_set():
                generation += 1
                try:
                    async with self.broker_factory(s, self.metrics, generation, self.router.filters) as broker:
                        if generation > 1:
                            self.metrics.reconnects.inc()
                            log.warning("reconnected to the broker")
                        else:
                            log.info("subscribed to %s as %s", s.mqtt_url, s.mqtt_client_id)
                        self._broker = broker
                        self._connected.set()
                        attempt = 0
                        await self._receive_until(broker, stop)
                        if stop.is_set():
                            await self._drain(writer_task)
                            return
                except BrokerError as exc:
                    self._connected.clear()
                    self._broker = None
                    log.warning("broker connection lost or refused: %s", exc)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), reconnect.delay(attempt))
                    attempt += 1
            await self._drain(writer_task)
        finally:
            for task in (follow_task, lag_task, sealer_task, writer_task):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._connected.clear()
            self._broker = None
            await writer.aclose()

    async def _receive_until(self, broker: BrokerConnection, stop: asyncio.Event) -> None:
        receive = asyncio.create_task(self._receive(broker), name="ingest-receive")
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({receive, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            if not receive.done():
                receive.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await receive
        if receive.done() and not receive.cancelled() and receive.exception() is not None:
            raise receive.exception()  # type: ignore[misc]

    async def _drain(self, writer_task: asyncio.Task[None]) -> None:
        """Queue what was received, let the writer store and ack it all, then stop the writer."""

        async def finish() -> None:
            if self._unqueued is not None:
                await self._queue.put(self._unqueued)
                self._unqueued = None
            await self._flush()
            await self._queue.put(None)
            await writer_task

        try:
            await asyncio.wait_for(finish(), self.drain_timeout_s)
        except TimeoutError:
            log.error(
                "drain did not finish in %.0f s; unacknowledged messages stay with the broker", self.drain_timeout_s
            )
