"""What farmers hear (alerts.notices): inhibition within a family, grouping, quiet hours, rate limits.

A real store (SQLite, and PostgreSQL) on a fake clock; transitions as the engine makes them (family, rank, titles,
template parameters). The measured situations run the real engine and deliver to a real receiver.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from alerts.notify import HOUR_MS, MINUTE_MS, Pacing
from alerts.store import AlertStore
from alerts.targets import TargetPolicy
from bench.alert_messages import play
from rules.model import DeviceInfo, Severity, State, Transition
from tests.stores import raw
from tests.unit.test_alerts_store import AT_ONCE

URL = "https://93.184.215.14/hook"
T0 = 1_773_993_600_000  # 2026-03-20 15:00 local (UTC+7)
LADDER = {  # rule → (rank, severity, title): the salinity family of the default pack, in short
    "SAL_DOMESTIC": (1, Severity.WARNING, "nước nhiễm mặn"),
    "SAL_1PPT": (3, Severity.WARNING, "mặn vượt 1‰"),
    "SAL_RICE_3": (5, Severity.CRITICAL, "mặn vượt 3‰"),
    "SAL_4PPT": (6, Severity.CRITICAL, "mặn vượt 4‰"),
}
DEVICES = [
    DeviceInfo(f"tg-sal-{i}", "salinity", "tien_giang", "go_cong_dong", "river", "rice", "Gò Công Đông, Tiền Giang",
               "Go Cong Dong, Tien Giang")
    for i in range(4)
] + [DeviceInfo("la-sal-9", "salinity", "long_an", "can_duoc", "canal", "rice", "Cần Đước, Long An",
                "Can Duoc, Long An")]  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(alerts_location: Path | str, clock: Clock) -> Iterator[AlertStore]:
    """On a SQLite file, and (integration) on a real PostgreSQL."""
    with AlertStore(alerts_location, policy=TargetPolicy(allow_private=True), clock=clock) as s:
        yield s


def t(
    rule: str,
    state: State = State.FIRING,
    *,
    device: int = 0,
    ts: int = T0,
    value: float = 4.2,
    severity: Severity = Severity.CRITICAL,
) -> Transition:
    rank, severity, title = LADDER.get(rule, (0, severity, rule))
    d = DEVICES[device]
    shown = f"{value:.1f}".replace(".", ",")
    words = f"Mặn {shown}‰ tại {d.place_vi}" if state is State.FIRING else f"Hết cảnh báo: {title} tại {d.place_vi}"
    return Transition(
        rule, device, d.id, state, ts, value, severity, words, words, words, words,
        {"place": d.place_vi, "value": shown, "unit": "‰", "action": f"làm theo {rule}", "time": "15:00 20/03"},
        family="salinity" if rule in LADDER else "", rank=rank, title_vi=title, title_en=title,
    )  # fmt: skip


def bodies(store: AlertStore, sub_id: str) -> list[dict[str, object]]:
    return [json.loads(r.body) for r in store.outbox(subscription_id=sub_id, limit=None)]


def test_a_reading_that_jumps_the_ladder_is_one_message(store: AlertStore, clock: Clock) -> None:
    sub = store.add_subscription(URL)
    events = store.apply([t(rule) for rule in LADDER], DEVICES)
    assert [e.notice for e in events] == ["inhibited", "inhibited", "inhibited", "opened"]
    assert [e.queued_for for e in events] == [(), (), (), (sub.id,)]
    assert len(store.active()) == 4, "operators still see every rule's alert"
    assert store.dispatch(T0 + 59_000).messages == {}, "group_wait: 60 s"
    clock.now = T0 + 60_000
    assert store.dispatch().messages == {"opened": 1}
    [body] = bodies(store, sub.id)
    assert (body["type"], body["notice"], body["rule_id"], body["count"]) == ("alert.firing", "opened", "SAL_4PPT", 1)
    assert [a["rule_id"] for a in body["alerts"]] == ["SAL_4PPT"]  # type: ignore[index]
    # the same transitions again (a redelivered batch): nothing new to hear
    assert store.apply([t(rule) for rule in LADDER], DEVICES) == []
    assert store.waiting_count() == 0


def test_escalation_deescalation_and_all_clear_are_one_message_each(store: AlertStore, clock: Clock) -> None:
    sub = store.add_subscription(URL, pacing=Pacing.make(group_wait_s=0, group_interval_s=0))
    steps = [
        [t("SAL_DOMESTIC", value=0.6), t("SAL_1PPT", value=1.2, ts=T0)],
        [t("SAL_4PPT", value=4.4, ts=T0 + 10 * MINUTE_MS)],
        [t("SAL_4PPT", State.RESOLVED, value=2.1, ts=T0 + 20 * MINUTE_MS)],
        [t("SAL_1PPT", State.RESOLVED, value=0.3, ts=T0 + 30 * MINUTE_MS),
         t("SAL_DOMESTIC", State.RESOLVED, value=0.3, ts=T0 + 30 * MINUTE_MS)],
    ]  # fmt: skip
    for i, step in enumerate(steps):
        clock.now = step[0].ts_ms + 1000
        store.apply(step, DEVICES)
        assert sum(store.dispatch().messages.values()) == 1, i
    sent = bodies(store, sub.id)
    assert [(b["type"], b["notice"], b["rule_id"]) for b in sent] == [
        ("alert.firing", "opened", "SAL_1PPT"),
        ("alert.firing", "escalated", "SAL_4PPT"),
        ("alert.updated", "deescalated", "SAL_1PPT"),
        ("alert.resolved", "cleared", "SAL_DOMESTIC"),
    ]
    assert sent[2]["message_vi"] == (
        "Giảm mức: còn mặn vượt 1‰ tại Gò Công Đông, Tiền Giang, hiện 2,1‰ (lúc 15:20 20/03) – làm theo SAL_1PPT."
    )
    assert sent[2]["state"] == "firing", "its alert (1 ‰) is still on; the 4 ‰ one ended"
    assert sent[2]["alert_id"] == store.list(rule_id="SAL_1PPT")[0].id
    assert sent[2]["value"] == 2.1
    assert [r.seq for r in store.outbox(subscription_id=sub.id, limit=None)] == sorted(
        r.seq for r in store.outbox(subscription_id=sub.id, limit=None)
    )


def test_each_subscriber_hears_the_levels_it_wants(store: AlertStore, clock: Clock) -> None:
    at_once = Pacing.make(group_wait_s=0, group_interval_s=0)
    drinking = store.add_subscription(URL, rule_ids=["SAL_DOMESTIC"], pacing=at_once)
    critical = store.add_subscription(URL, min_severity="critical", pacing=at_once)
    for step in ([t("SAL_DOMESTIC"), t("SAL_1PPT")], [t("SAL_4PPT", ts=T0 + 1)],
                 [t("SAL_4PPT", State.RESOLVED, value=2.0, ts=T0 + 2)]):  # fmt: skip
        clock.now += 1
        store.apply(step, DEVICES)
        store.dispatch()
    # the water utility hears its rule, though a higher level inhibits it for everyone else
    assert [(b["notice"], b["rule_id"]) for b in bodies(store, drinking.id)] == [("opened", "SAL_DOMESTIC")]
    [domestic] = store.list(rule_id="SAL_DOMESTIC")
    assert [e.notice for e in store.events(domestic.id)] == ["opened"], "what it meant to the one who heard it"
    # a critical-only office hears critical start, and end though a warning level is still active
    assert [(b["notice"], b["rule_id"]) for b in bodies(store, critical.id)] == [
        ("opened", "SAL_4PPT"),
        ("cleared", "SAL_4PPT"),
    ]


def test_a_district_is_one_message_then_updates(store: AlertStore, clock: Clock) -> None:
    sub = store.add_subscription(URL)  # group_wait 60 s, group_interval 30 min
    for i in range(3):  # three stations of Gò Công Đông within a minute, and one of Cần Đước
        clock.now = T0 + i * 10_000
        store.apply([t("SAL_1PPT", device=i, ts=clock.now)], DEVICES)
    store.apply([t("SAL_1PPT", device=4, ts=clock.now)], DEVICES)
    done = store.dispatch(T0 + 60_000)
    assert done.messages == {"group": 1}
    assert done.next_due_ms == T0 + 20_000 + 60_000, "Cần Đước's own group waits its own minute"
    assert store.dispatch(T0 + 80_000).messages == {"opened": 1}
    group, alone = bodies(store, sub.id)
    assert group["type"] == "alert.group"
    assert group["devices"] == ["tg-sal-0", "tg-sal-1", "tg-sal-2"]
    assert str(group["message_vi"]).startswith("Cảnh báo tại 3 trạm ở Gò Công Đông, Tiền Giang: tg-sal-0 4,2‰")
    assert [a["device_id"] for a in group["alerts"]] == ["tg-sal-0", "tg-sal-1", "tg-sal-2"]  # type: ignore[index]
    assert alone["device_id"] == "la-sal-9"
    # a fourth station 5 minutes later joins the next update, half an hour after the first message
    clock.now = T0 + 5 * MINUTE_MS
    store.apply([t("SAL_1PPT", device=3, ts=clock.now)], DEVICES)
    done = store.dispatch(T0 + 10 * MINUTE_MS)
    assert done.messages == {}
    assert done.next_due_ms == T0 + 60_000 + 30 * MINUTE_MS
    # ... unless something turns critical: that waits only group_wait
    clock.now = T0 + 12 * MINUTE_MS
    store.apply([t("SAL_4PPT", device=1, ts=clock.now)], DEVICES)
    assert store.dispatch(clock.now + 60_000).messages == {"group": 1}
    update = bodies(store, sub.id)[-1]
    assert update["count"] == 2
    assert update["severity"] == "critical"
    assert "Vẫn còn cảnh báo tại 2 trạm khác." in str(update["message_vi"])
    assert store.waiting_count() == 0


def test_a_station_clearing_alone_does_not_clear_the_district(store: AlertStore, clock: Clock) -> None:
    sub = store.add_subscription(URL, pacing=Pacing.make(group_wait_s=0, group_interval_s=0))
    store.apply([t("SAL_1PPT", device=0), t("SAL_1PPT", device=1)], DEVICES)
    store.dispatch()
    clock.now += MINUTE_MS
    store.apply([t("SAL_1PPT", State.RESOLVED, device=0, ts=T0 + MINUTE_MS, value=0.8)], DEVICES)
    store.dispatch()
    last = bodies(store, sub.id)[-1]
    assert last["notice"] == "group"
    assert str(last["message_short"]) == "Hết cảnh báo 1 trạm, còn 1 trạm ở Gò Công Đông, Tiền Giang"


def test_quiet_hours_hold_all_but_critical_then_one_digest(store: AlertStore, clock: Clock) -> None:
    night = T0 + 7 * HOUR_MS  # 22:00 local
    sub = store.add_subscription(URL, pacing=Pacing.make(group_wait_s=0, quiet="21:00-05:30"))
    clock.now = night
    store.apply([t("SAL_1PPT", device=0, ts=night), t("SAL_1PPT", device=4, ts=night)], DEVICES)
    done = store.dispatch()
    assert (done.messages, done.held) == ({}, {"quiet": 2})
    morning = T0 + 14 * HOUR_MS + 30 * MINUTE_MS  # 05:30 local the next day
    assert done.next_due_ms == morning
    clock.now = night + HOUR_MS
    store.apply([t("CAM_FIRE", device=2, ts=clock.now)], DEVICES)  # critical: it goes at once
    done = store.dispatch()
    assert (done.messages, done.held) == ({"opened": 1}, {}), "held notices are counted once"
    assert store.dispatch(morning - 1).messages == {}
    assert store.dispatch(morning).messages == {"digest": 1}
    fire, digest = bodies(store, sub.id)
    assert fire["rule_id"] == "CAM_FIRE"
    assert digest["type"] == "alert.digest"
    assert digest["count"] == 2
    assert str(digest["message_vi"]).startswith("Trong giờ nghỉ: 2 cảnh báo. ")
    assert store.waiting_count() == 0


def test_the_rate_limit_summarises_what_it_held(store: AlertStore, clock: Clock) -> None:
    sub = store.add_subscription(URL, pacing=Pacing.make(group_wait_s=0, max_per_hour=2))
    done = []
    for i, rule in enumerate(["CAM_FLOOD", "CAM_FOOD", "CAM_OFFLINE", "CAM_VIDEO_LOSS", "CAM_FIRE"]):
        clock.now = T0 + i * 10 * MINUTE_MS
        severity = Severity.CRITICAL if rule == "CAM_FIRE" else Severity.WARNING
        store.apply([t(rule, device=i, ts=clock.now, severity=severity)], DEVICES)
        done.append(store.dispatch())
    assert [d.messages for d in done] == [{"opened": 1}, {"opened": 1}, {}, {}, {"opened": 1}], "critical never waits"
    assert [d.held for d in done] == [{}, {}, {"rate": 1}, {"rate": 1}, {}]
    assert done[3].next_due_ms == T0 + HOUR_MS, "when the first message leaves the hour"
    again = store.dispatch(T0 + HOUR_MS)  # the critical one counts: still two in the last hour
    assert (again.messages, again.held, again.next_due_ms) == ({}, {}, T0 + 70 * MINUTE_MS)
    assert store.dispatch(T0 + 70 * MINUTE_MS).messages == {"digest": 1}
    summary = bodies(store, sub.id)[-1]
    assert str(summary["message_vi"]).startswith("Tin gộp (giới hạn tin nhắn): 2 cảnh báo. ")
    assert [a["rule_id"] for a in summary["alerts"]] == ["CAM_OFFLINE", "CAM_VIDEO_LOSS"]  # type: ignore[index]
    assert store.waiting_count() == 0
    assert all(n.message_seq is not None for n in store.notices(subscription_id=sub.id, limit=None))
    seqs = [r.seq for r in store.outbox(subscription_id=sub.id, limit=None)]
    assert seqs == sorted(seqs)
    assert len(seqs) == 4


def test_an_alert_open_since_before_families_still_ends_with_an_all_clear(
    store: AlertStore, clock: Clock, alerts_location: Path | str
) -> None:
    sub = store.add_subscription(URL, pacing=AT_ONCE)
    store.apply([t("SAL_1PPT")], DEVICES)
    store.dispatch()
    with raw(alerts_location) as conn:  # as schema 4's migration left it: a family of its own
        conn.execute("UPDATE alerts SET family = rule_id, rank = 0")
    clock.now += MINUTE_MS
    store.apply([t("SAL_1PPT", State.RESOLVED, ts=T0 + MINUTE_MS, value=0.5)], DEVICES)
    store.dispatch()
    assert [b["notice"] for b in bodies(store, sub.id)] == ["opened", "cleared"]


def test_a_disabled_subscriber_is_not_sent_what_waited(store: AlertStore, clock: Clock) -> None:
    sub = store.add_subscription(URL)
    store.apply([t("SAL_1PPT")], DEVICES)
    assert store.waiting_count(sub.id) == 1
    store.update_subscription(sub.id, enabled=False)
    assert store.waiting_count(sub.id) == 0, "an alert that may end meanwhile is not sent on enabling"
    clock.now += HOUR_MS
    store.apply([t("SAL_1PPT", State.RESOLVED, ts=clock.now, value=0.5)], DEVICES)
    store.update_subscription(sub.id, enabled=True)
    assert store.dispatch(clock.now + HOUR_MS).messages == {}


def test_stations_still_alerting_are_counted_from_the_alerts_themselves(store: AlertStore, clock: Clock) -> None:
    sub = store.add_subscription(URL, pacing=AT_ONCE)
    store.apply([t("SAL_1PPT", device=0)], DEVICES)
    store.dispatch()
    clock.now += 3 * HOUR_MS  # its all-clear comes late, from a logger's backfill: recorded, not sent
    store.apply([t("SAL_1PPT", State.RESOLVED, device=0, ts=T0 + MINUTE_MS)], DEVICES, deliver_since_ms=clock.now)
    store.apply([t("SAL_1PPT", device=1, ts=clock.now)], DEVICES)
    store.dispatch()
    last = bodies(store, sub.id)[-1]
    assert (last["notice"], last["device_id"]) == ("opened", "tg-sal-1"), "alone: no other station alerts"


def test_critical_messages_count_against_the_rate_limit_of_the_same_pass(store: AlertStore, clock: Clock) -> None:
    sub = store.add_subscription(URL, pacing=Pacing.make(group_wait_s=0, max_per_hour=1))
    store.apply([t("CAM_FLOOD", device=0, severity=Severity.WARNING), t("CAM_FIRE", device=4)], DEVICES)
    done = store.dispatch()
    assert (done.messages, done.held) == ({"opened": 1}, {"rate": 1})
    assert bodies(store, sub.id)[0]["rule_id"] == "CAM_FIRE"
    assert done.next_due_ms == T0 + HOUR_MS


@pytest.mark.parametrize("name", ["rice_salt_intrusion", "district_salt_front"])
def test_measured_situations(name: str) -> None:
    """The issue's measures, with the real engine and pack, delivered signed to a real receiver."""
    farmers = next(c for c in play(name) if c.subscriber == "district farmers")
    assert farmers.waiting == 0
    assert farmers.delivered == farmers.messages
    assert farmers.in_order
    if name == "rice_salt_intrusion":  # 10 events before: the ladder up, and down
        assert farmers.events >= 10
        assert farmers.kinds == {"opened": 1, "escalated": 1, "deescalated": 1, "cleared": 1}
    else:  # ten stations of a district in an hour: 50 events before (25 alerts, fired and resolved)
        assert farmers.events == 50
        assert farmers.kinds["opened"] == 1
        assert farmers.messages <= 7
