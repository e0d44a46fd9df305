"""Each scripted scenario's cue is the message at which its first alert fires (the demo plays the
cue at "now", so that alert reaches the farmer live); the silent station fires nothing on readings."""

from __future__ import annotations

import itertools
import time

import msgspec
import pytest

from contract.fields import CAMERA_EVENTS
from contract.topics import Channel, device_topic
from ingest.batch import Batch, BatchBuilder
from ingest.decode import Decoder
from ingest.devices import device_infos
from ingest.registry import Registry
from rules.engine import Engine
from rules.model import State
from rules.pack import DEFAULT_PACK, load_pack
from simulators.scenarios import (
    CUES,
    DAY,
    LOCAL,
    MIN,
    SALINITY_INTRUSION_SPAN_MS,
    SCENARIOS,
    Message,
    cued,
    scenario_fleet,
    within_one_day,
)  # fmt: skip

FLEET = scenario_fleet()


def _batch(messages: list[Message], now: int) -> Batch:
    by_id = FLEET.by_id()
    decoder = Decoder(Registry.from_fleet(FLEET), max_payload_bytes=262_144, max_readings=10_000)
    builder = BatchBuilder()
    for device_id, channel, reading in messages:
        d = by_id[device_id]
        builder.note_message(None)
        topic = device_topic(d.province, d.kind, d.id, Channel(channel))
        decoder.decode(topic, msgspec.json.encode(reading), retained=False, now_ms=now, out=builder)
    batch = builder.seal()
    assert batch.readings == len(messages), "every message decoded"
    return batch


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_first_alert_fires_at_the_cue(name: str) -> None:
    now = int(time.time() * 1000)
    messages = cued(name, now)
    cue = CUES[name]
    assert messages[cue][2]["ts"] == now
    assert all(int(m[2]["ts"]) <= now for m in messages[: cue + 1])
    assert all(int(m[2]["ts"]) > now for m in messages[cue + 1 :]), "the rest lies ahead"
    engine = Engine(load_pack(DEFAULT_PACK), device_infos(FLEET), event_classes=CAMERA_EVENTS, start_ms=now)
    before = engine.evaluate(_batch(messages[:cue], now).columns(), now_ms=now)
    assert [t for t in before if t.state is State.FIRING] == []
    at = engine.evaluate(_batch(messages[cue : cue + 1], now).columns(), now_ms=now)
    fired = [t for t in at if t.state is State.FIRING]
    if name == "quiet_rice_canal":  # it fires when it falls silent: its will, or an hour without data
        assert fired == []
    else:
        assert fired
        assert all(t.ts_ms == now for t in fired), fired


def test_cued_keeps_the_script_spacing() -> None:
    for name, script in SCENARIOS.items():
        original = [int(m[2]["ts"]) for m in script(10**12)]
        shifted = [int(m[2]["ts"]) for m in cued(name, 10**12)]
        assert [b - a for a, b in itertools.pairwise(original)] == [b - a for a, b in itertools.pairwise(shifted)]


def test_within_one_day_keeps_the_salinity_script_off_yesterday() -> None:
    """Played with its first reading at 23:55, SAL_RISE rightly compares today's 1.32 ‰ peak with
    yesterday's 0.30 ‰; ``within_one_day`` moves the script to where it lies in one local day."""
    span = SALINITY_INTRUSION_SPAN_MS
    midnight = 1_800_000_000_000 // DAY * DAY - LOCAL

    def fired(end: int) -> set[str]:
        engine = Engine(load_pack(DEFAULT_PACK), device_infos(FLEET), event_classes=CAMERA_EVENTS, start_ms=end - span)
        transitions = engine.evaluate(_batch(SCENARIOS["salinity_intrusion"](end), end).columns(), now_ms=end)
        return {t.rule_id for t in transitions if t.state is State.FIRING and t.device_id == "tg-sal-durian"}

    straddling = midnight - 5 * MIN + span
    assert "SAL_RISE" in fired(straddling)
    ladder = {"SAL_DOMESTIC", "SAL_FRUIT", "SAL_1PPT"}
    assert fired(within_one_day(straddling, span)) == fired(midnight + DAY - MIN) == ladder
    for end in range(midnight, midnight + DAY, 5 * MIN):
        played = within_one_day(end, span)
        stamps = [int(m[2]["ts"]) for m in SCENARIOS["salinity_intrusion"](played)]
        assert played <= end
        assert (stamps[0] + LOCAL) // DAY == (stamps[-1] + LOCAL) // DAY == (played + LOCAL) // DAY, end
