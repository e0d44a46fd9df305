"""Rules inside ingest: a hook retried on the same batch records the first evaluation's transitions,
and the engine does not see the batch twice (its state has moved on)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from alerts.store import AlertStore
from contract.fleet import Fleet
from contract.topics import Channel, device_topic
from ingest.alerting import Alerting
from ingest.batch import Batch, BatchBuilder
from ingest.decode import Decoder
from ingest.devices import device_infos
from ingest.registry import Registry
from rules.pack import DEFAULT_PACK, load_pack
from simulators.scenarios import SCENARIOS, scenario_fleet


def salty_batch(fleet: Fleet) -> Batch:
    """The salinity-intrusion scenario: fires (and resolves) the salinity ladder."""
    by_id = fleet.by_id()
    decoder = Decoder(Registry.from_fleet(fleet), max_payload_bytes=262_144, max_readings=10_000)
    builder = BatchBuilder()
    now = int(time.time() * 1000)
    for device_id, channel, reading in SCENARIOS["salinity_intrusion"](now):
        d = by_id[device_id]
        builder.note_message(None)
        topic = device_topic(d.province, d.kind, d.id, Channel(channel))
        decoder.decode(topic, msgspec.json.encode(reading), retained=False, now_ms=now, out=builder)
    return builder.seal()


def test_a_retried_hook_records_the_first_evaluation_and_evaluates_once(tmp_path: Path) -> None:
    fleet = scenario_fleet()
    store = AlertStore(tmp_path / "alerts.db")
    alerting = Alerting(
        load_pack(DEFAULT_PACK), device_infos(fleet), store, deliver_max_age_ms=3_600_000, registry=CollectorRegistry()
    )
    evaluations = 0
    evaluate = alerting.engine.evaluate

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal evaluations
        evaluations += 1
        return evaluate(*args, **kwargs)

    alerting.engine.evaluate = counting  # type: ignore[method-assign]
    record = alerting._record
    failures = [RuntimeError("after the engine, before the store")]

    async def flaky_record(*args: Any) -> list[str]:
        if failures:
            raise failures.pop()
        return await record(*args)

    alerting._record = flaky_record  # type: ignore[method-assign]
    batch = salty_batch(fleet)

    async def main() -> list[str]:
        with pytest.raises(RuntimeError):
            await alerting.on_batch(batch)
        lines = await alerting.on_batch(batch)  # the service's retry, same batch
        await alerting.close()
        return lines

    lines = asyncio.run(main())
    assert evaluations == 1
    alerts = store.list(limit=None)
    assert {"SAL_FRUIT", "SAL_1PPT"} <= {a.rule_id for a in alerts}  # the first evaluation's transitions
    assert len(lines) == sum(len(store.events(a.id)) for a in alerts) > 0  # each recorded once
    store.close()
