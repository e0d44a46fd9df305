"""Messages per subscriber per situation: what farmers hear, before and after the notice policy.

Each scripted situation (the five of :data:`simulators.scenarios.SCENARIOS` and the two of
:data:`~simulators.scenarios.LADDER_SITUATIONS`) goes through the ingest decoder, the rule engine
with the default pack and a real alert store (SQLite in a temporary folder), on a clock that follows
the readings' device time (each batch arrives a second after its readings; the store dispatches at
every moment a notice falls due). *Before* is what the store queued until schema 4: one message for
every alert event a subscriber's filters match. *After* is the outbox: what the notice policy
(:mod:`alerts.notify`) sends. The messages are then delivered, signed, to a real HTTP receiver that
verifies every signature (:class:`alerts.receiver.WebhookReceiver`).

Three subscribers per situation: the farmers of the situation's district (default pacing), the
province's extension office (warning and above, default pacing) and a co-op gateway with quiet hours
21:00–05:30 and at most 3 messages an hour.

Run: ``python -m bench.alert_messages`` (a table; ``--json`` for JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from alerts.config import WebhookSettings
from alerts.notify import Pacing
from alerts.receiver import WebhookReceiver
from alerts.sender import WebhookSender
from alerts.signing import generate_secret
from alerts.store import AlertStore
from alerts.targets import TargetPolicy
from contract.fields import CAMERA_EVENTS
from contract.fleet import Fleet
from contract.topics import Channel, device_topic
from ingest.batch import BatchBuilder
from ingest.decode import Decoder
from ingest.devices import device_infos
from ingest.registry import Registry
from rules.engine import Engine
from rules.model import Transition
from rules.pack import DEFAULT_PACK, load_pack
from simulators.scenarios import LADDER_SITUATIONS, SCENARIOS, Message, ladder_fleet, scenario_fleet

END_MS = 1_773_993_600_000
"""2026-03-20 15:00 local time (UTC+7): each situation's last reading."""
ARRIVAL_MS = 1_000
"""A batch reaches the engine a second after its readings were taken."""
TAIL_MS = 3 * 3_600_000
"""Time played after the last reading of the situation whose point is silence (``quiet_rice_canal``),
so no-data rules see it; the others end with their last reading (the script ends, not the station)."""
SILENT = frozenset({"quiet_rice_canal"})
TICK_MS = 5 * 60_000


@dataclass(frozen=True, slots=True)
class Subscriber:
    name: str
    filters: Callable[[str, str], dict[str, Any]]
    """(province, district) of the situation → the subscription's filters."""
    pacing: Pacing


SUBSCRIBERS: tuple[Subscriber, ...] = (
    Subscriber("district farmers", lambda province, district: {"districts": [district]}, Pacing()),
    Subscriber(
        "province office", lambda province, district: {"provinces": [province], "min_severity": "warning"}, Pacing()
    ),
    Subscriber(
        "co-op gateway, quiet 21:00-05:30, ≤3/h",
        lambda province, district: {"provinces": [province]},
        Pacing.make(quiet="21:00-05:30", max_per_hour=3),
    ),
)


@dataclass(slots=True)
class Count:
    """One subscriber's figures in one situation."""

    situation: str
    subscriber: str
    events: int = 0
    """Messages before: one per alert event the subscriber's filters match."""
    messages: int = 0
    """Messages after: the outbox."""
    kinds: Counter[str] = field(default_factory=Counter)
    notices: int = 0
    held: int = 0
    waiting: int = 0
    """Notices no message carries at the end (must be 0: nothing lost)."""
    delivered: int = 0
    """Messages the receiver accepted with a valid signature."""
    in_order: bool = True


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def _batches(messages: Sequence[Message]) -> list[tuple[int, list[Message]]]:
    by_ts = itertools.groupby(sorted(messages, key=lambda m: int(m[2]["ts"])), key=lambda m: int(m[2]["ts"]))
    return [(ts, list(group)) for ts, group in by_ts]


def _situation(name: str) -> tuple[list[Message], Fleet]:
    if name in SCENARIOS:
        return SCENARIOS[name](END_MS), scenario_fleet()
    return LADDER_SITUATIONS[name](END_MS), ladder_fleet()


def play(name: str, *, deliver: bool = True) -> list[Count]:
    """One situation, start to end, for the three subscribers."""
    messages, fleet = _situation(name)
    by_id = fleet.by_id()
    first = by_id[messages[0][0]]
    infos = device_infos(fleet)
    registry = Registry.from_fleet(fleet)
    decoder = Decoder(registry, max_payload_bytes=262_144, max_readings=10_000)
    batches = _batches(messages)
    clock = Clock(batches[0][0])
    secret = generate_secret()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        receivers = [stack.enter_context(WebhookReceiver(secret, quiet=True)) for _ in SUBSCRIBERS]
        store = AlertStore(Path(tmp) / "alerts.db", policy=TargetPolicy(allow_private=True), clock=clock)
        subs = [
            store.add_subscription(
                rx.url, secret, pacing=s.pacing, description=s.name, **s.filters(first.province, first.district)
            )
            for rx, s in zip(receivers, SUBSCRIBERS, strict=True)
        ]
        counts = {sub.id: Count(name, sub.description) for sub in subs}
        engine = Engine(load_pack(DEFAULT_PACK), infos, event_classes=CAMERA_EVENTS, start_ms=batches[0][0])

        def advance(until: int) -> None:
            """Dispatch at every moment a notice falls due, up to ``until``."""
            while True:
                due = store.dispatch(clock.now).next_due_ms
                if due is None or due > until:
                    break
                clock.now = max(clock.now, due)
            clock.now = max(clock.now, until)

        def apply(transitions: list[Transition]) -> None:
            for event in store.apply(transitions, infos):
                for sub in subs:
                    counts[sub.id].events += sub.matches(event.alert)
            store.dispatch(clock.now)

        for ts, batch in batches:
            advance(ts + ARRIVAL_MS)
            builder = BatchBuilder()
            for device_id, channel, reading in batch:
                d = by_id[device_id]
                builder.note_message(None)
                topic = device_topic(d.province, d.kind, d.id, Channel(channel))
                decoder.decode(topic, msgspec.json.encode(reading), retained=False, now_ms=clock.now, out=builder)
            apply(engine.evaluate(builder.seal().columns(), now_ms=clock.now))
        end = batches[-1][0] + (TAIL_MS if name in SILENT else 0)
        for t in range(batches[-1][0] + TICK_MS, end + 1, TICK_MS):
            advance(t)
            apply(engine.tick(clock.now))
        advance(end + 24 * 3_600_000)  # every group's last message
        if deliver:
            settings = WebhookSettings(alerts_db=Path(tmp) / "alerts.db", webhook_allow_private=True)
            sender = WebhookSender(store, settings, clock=clock)
            asyncio.run(sender.deliver_due())
        for sub, rx in zip(subs, receivers, strict=True):
            c = counts[sub.id]
            rows = store.outbox(subscription_id=sub.id, limit=None)
            c.messages = len(rows)
            c.kinds = Counter(r.notice for r in rows)
            c.in_order = [r.seq for r in rows] == sorted(r.seq for r in rows)
            notices = store.notices(subscription_id=sub.id, limit=None)
            c.notices = len(notices)
            c.held = sum(n.held is not None for n in notices)
            c.waiting = store.waiting_count(sub.id)
            c.delivered = rx.counts.get("accepted", 0)
        store.close()
    return list(counts.values())


def run(*, deliver: bool = True) -> list[Count]:
    return [c for name in (*SCENARIOS, *LADDER_SITUATIONS) for c in play(name, deliver=deliver)]


def table(counts: Sequence[Count]) -> str:
    lines = [
        "| situation | subscriber | before: events | after: messages | what they were | held | delivered, verified |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for c in counts:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(c.kinds.items())) or "–"
        lines.append(f"| {c.situation} | {c.subscriber} | {c.events} | {c.messages} | {kinds} | {c.held} | "
                     f"{c.delivered} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    counts = run()
    if args.json:
        print(json.dumps([{**{k: getattr(c, k) for k in c.__slots__}, "kinds": dict(c.kinds)} for c in counts]))
    else:
        print(table(counts))
    lost = [c for c in counts if c.waiting or c.delivered != c.messages or not c.in_order]
    if lost:
        raise SystemExit(f"not every notice was delivered in order: {lost}")


if __name__ == "__main__":
    main()
