"""The alert store: lifecycle, one active alert per rule and device, idempotent replay, outbox.

Tests taking ``alerts_location`` run twice: on a SQLite file, and (marked integration) on a real
PostgreSQL (``tests/conftest.py``). Two stores sharing one PostgreSQL, the webhook senders on it,
the API and ingest on it: ``tests/integration/test_alert_store_postgres.py``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from alerts.database import PostgresUrl
from alerts.errors import InvalidSubscription, NotFound, StoreError, TargetRefused
from alerts.notify import Pacing
from alerts.outbox import Outcome, Status, Verdict
from alerts.sqlite import SQLiteFile
from alerts.store import AlertStore, event_id
from alerts.subscriptions import Filters, Near
from alerts.targets import TargetPolicy
from ioc.servers import free_port
from rules.model import DeviceInfo, Severity, State, Transition
from tests.stores import on_postgres, raw

DEVICES = (
    DeviceInfo(
        "wq-bt-001", "water_quality", "ben_tre", "ba_tri", "pond", "shrimp", "Ba Tri, Bến Tre", "Ba Tri, Ben Tre"
    ),
    DeviceInfo(
        "sal-tg-001",
        "salinity",
        "tien_giang",
        "go_cong_dong",
        "canal",
        "rice",
        "Gò Công Đông, Tiền Giang",
        "Go Cong Dong, Tien Giang",
    ),
    DeviceInfo("trap-ct-001", "light_trap", "can_tho", "co_do", "field", "rice", "Cờ Đỏ, Cần Thơ", "Co Do, Can Tho"),
)
PUBLIC = TargetPolicy.parse(resolver=lambda host, port: ["93.184.215.14"])
URL = "https://hooks.example.org/alerts"
T0 = 1_709_251_200_000  # 2024-03-01T00:00:00Z
NOW = T0 + 60_000  # the store's clock in these tests
AT_ONCE = Pacing.make(group_wait_s=0, group_interval_s=0)
"""Each notice its own message at once: these tests are about the outbox (pacing: test_alerts_notices.py)."""


def transition(
    state: State,
    rule: str = "salinity_high",
    device: int = 1,
    ts: int = T0,
    value: float = 4.2,
    severity: Severity = Severity.WARNING,
) -> Transition:
    word = "cao" if state is State.FIRING else "đã giảm"
    return Transition(
        rule_id=rule,
        device=device,
        device_id=DEVICES[device].id,
        state=state,
        ts_ms=ts,
        value=value,
        severity=severity,
        message_vi=f"Độ mặn {word}: {value:g}‰ tại {DEVICES[device].place_vi}",
        message_en=f"Salinity {'high' if state is State.FIRING else 'back down'}: {value:g} ppt",
    )


def fire(**kw: object) -> Transition:
    return transition(State.FIRING, **kw)  # type: ignore[arg-type]


def resolve(**kw: object) -> Transition:
    return transition(State.RESOLVED, **kw)  # type: ignore[arg-type]


class Clock:
    def __init__(self, t: int = NOW) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


def open_store(path: Path, **kw: object) -> AlertStore:
    kw.setdefault("policy", PUBLIC)
    return AlertStore(path / "var" / "alerts.db", **kw)  # type: ignore[arg-type]


def open_at(location: Path | str, **kw: object) -> AlertStore:
    kw.setdefault("policy", PUBLIC)
    return AlertStore(location, **kw)  # type: ignore[arg-type]


@pytest.fixture
def store(alerts_location: Path | str) -> Iterator[AlertStore]:
    s = open_at(alerts_location, clock=Clock())
    yield s
    s.close()


# -- lifecycle -------------------------------------------------------------------------------


def test_fire_acknowledge_resolve(store: AlertStore) -> None:
    [fired] = store.apply([fire()], DEVICES)
    assert fired.type == "alert.firing"
    alert = fired.alert
    assert alert.state is State.FIRING
    assert alert.active
    assert not alert.acknowledged
    assert (alert.province, alert.district, alert.kind, alert.site) == (
        "tien_giang",
        "go_cong_dong",
        "salinity",
        "canal",
    )
    assert alert.fired_at_ms == T0
    assert alert.value == 4.2
    assert alert.source == "ioc/v1/tien_giang/salinity/sal-tg-001"
    assert fired.id == event_id(alert.id, "firing") == f"evt_{alert.id}_firing"
    assert store.active() == [alert]

    acked = store.acknowledge(alert.id, "chị Lan (trực ban)", at_ms=T0 + 120_000)
    assert acked.acknowledged_by == "chị Lan (trực ban)"
    assert acked.acknowledged_at_ms == T0 + 120_000
    assert acked.state is State.FIRING
    again = store.acknowledge(alert.id, "someone else")
    assert again.acknowledged_by == "chị Lan (trực ban)", "the first acknowledgement stands"

    [resolved] = store.apply([resolve(ts=T0 + 3_600_000, value=1.1)], DEVICES)
    assert resolved.type == "alert.resolved"
    assert resolved.alert_id == alert.id
    assert resolved.id == f"evt_{alert.id}_resolved"
    done = store.get(alert.id)
    assert done.state is State.RESOLVED
    assert done.resolved_at_ms == T0 + 3_600_000
    assert done.resolved_value == 1.1
    assert done.acknowledged_by == "chị Lan (trực ban)"
    assert store.active() == []
    assert [e.type for e in store.events(alert.id)] == ["alert.firing", "alert.resolved"]


def test_acknowledge_unknown_alert(store: AlertStore) -> None:
    with pytest.raises(NotFound):
        store.acknowledge("no-such-id", "op")
    [e] = store.apply([fire()], DEVICES)
    with pytest.raises(ValueError, match="name"):
        store.acknowledge(e.alert_id, "  ")


def test_a_new_alert_after_resolution(store: AlertStore) -> None:
    store.apply([fire(ts=T0), resolve(ts=T0 + 1000)], DEVICES)
    [again] = store.apply([fire(ts=T0 + 5000)], DEVICES)
    assert len(store.list(limit=None)) == 2
    assert [a.id for a in store.active()] == [again.alert_id]


def test_one_active_alert_per_rule_and_device(store: AlertStore) -> None:
    first = store.apply([fire(ts=T0)], DEVICES)
    second = store.apply([fire(ts=T0 + 1000, value=5.0)], DEVICES)
    assert len(first) == 1
    assert second == [], "a second firing while one is open changes nothing"
    assert len(store.active()) == 1
    others = store.apply([fire(rule="do_low", ts=T0), fire(device=0, ts=T0)], DEVICES)
    assert len(others) == 2, "another rule or another device is another alert"
    assert len(store.active()) == 3


def test_the_change_counter_numbers_concurrent_writers_changes_one_to_n(alerts_location: Path | str) -> None:
    """Two stores (ingest, the API) writing at once: every change gets its own number, with no gap."""
    open_at(alerts_location).close()  # created (and migrated) once, before the writers race
    per_writer = 15
    seqs: list[int] = []
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def writer(device: int, acknowledge: bool) -> None:
        try:
            with open_at(alerts_location, clock=Clock()) as mine:
                start.wait(10)
                for i in range(per_writer):
                    [event] = mine.apply([fire(rule=f"r{i}", device=device)], DEVICES)
                    seqs.append(event.alert.change_seq)
                    if acknowledge:
                        seqs.append(mine.acknowledge(event.alert_id, f"op-{device}").change_seq)
        except BaseException as exc:  # reported below, on the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(0, False)), threading.Thread(target=writer, args=(1, True))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []
    assert sorted(seqs) == list(range(1, 3 * per_writer + 1)), "each change its own number, none skipped"
    with open_at(alerts_location) as reader:
        assert reader.change_cursor() == 3 * per_writer
        latest = [a.change_seq for a in reader.changed_since(0, limit=1000)]
    assert len(latest) == 2 * per_writer, "each alert once, at its latest change"
    assert latest == sorted(set(latest))


def test_the_database_itself_enforces_one_active_alert(store: AlertStore, alerts_location: Path | str) -> None:
    store.apply([fire()], DEVICES)
    with (
        raw(alerts_location) as conn,
        pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError), match=r"(?i)unique"),
    ):
        conn.execute(
            "INSERT INTO alerts SELECT 'x', rule_id, device_id, kind, province, district, site, crop, place_vi,"
            " place_en, severity, 'firing', source, fired_at_ms + 1, value, message_vi, message_en, NULL, NULL,"
            " NULL, NULL, NULL, NULL, created_at_ms, updated_at_ms, lat, lon, family, rank, title_vi,"
            " title_en, change_seq FROM alerts"
        )


def test_replaying_the_same_transitions_is_idempotent(store: AlertStore) -> None:
    store.add_subscription(URL, pacing=AT_ONCE)
    batch = [fire(ts=T0), fire(rule="do_low", device=0, ts=T0 + 10), resolve(ts=T0 + 5000)]
    first = store.apply(batch, DEVICES)
    assert [e.type for e in first] == ["alert.firing", "alert.firing", "alert.resolved"]
    before = (store.list(limit=None), store.outbox(limit=None))
    assert store.apply(batch, DEVICES) == []
    assert store.apply(batch[:1], DEVICES) == []
    assert store.apply(batch[2:], DEVICES) == []
    assert (store.list(limit=None), store.outbox(limit=None)) == before


def test_replay_of_an_old_batch_after_a_new_firing(store: AlertStore) -> None:
    store.apply([fire(ts=T0), resolve(ts=T0 + 1000)], DEVICES)
    [new] = store.apply([fire(ts=T0 + 9000)], DEVICES)
    assert store.apply([fire(ts=T0), resolve(ts=T0 + 1000)], DEVICES) == []
    assert [a.id for a in store.active()] == [new.alert_id], "an old resolve does not close a newer alert"


def test_a_resolve_without_an_open_alert_is_ignored(store: AlertStore) -> None:
    assert store.apply([resolve()], DEVICES) == []
    assert store.list() == []


def test_no_data_alert_has_no_value(store: AlertStore) -> None:
    [e] = store.apply([fire(rule="silent", value=float("nan"))], DEVICES)
    assert e.value is None
    assert e.alert.value is None


def test_source_of_and_device_lookup_by_id(store: AlertStore) -> None:
    t = fire(device=0)
    shifted = (DEVICES[2], DEVICES[0])  # index 0 is now another device: found by id instead
    [e] = store.apply([t], shifted, source_of=lambda device_id: f"simulator:{device_id}")
    assert e.alert.source == "simulator:wq-bt-001"
    assert e.alert.province == "ben_tre"


def test_list_filters(store: AlertStore) -> None:
    store.apply(
        [
            fire(rule="salinity_high", device=1, ts=T0, severity=Severity.CRITICAL),
            fire(rule="do_low", device=0, ts=T0 + 1000, severity=Severity.WARNING),
            fire(rule="trap_surge", device=2, ts=T0 + 2000, severity=Severity.INFO),
            resolve(rule="do_low", device=0, ts=T0 + 3000),
        ],
        DEVICES,
    )
    ids = lambda alerts: [a.rule_id for a in alerts]  # noqa: E731
    assert ids(store.list()) == ["trap_surge", "do_low", "salinity_high"]
    assert ids(store.list(state="firing")) == ["trap_surge", "salinity_high"]
    assert ids(store.list(state=State.RESOLVED)) == ["do_low"]
    assert ids(store.list(severity_min="warning")) == ["do_low", "salinity_high"]
    assert ids(store.list(severity_min=Severity.CRITICAL)) == ["salinity_high"]
    assert ids(store.list(province="ben_tre")) == ["do_low"]
    assert ids(store.list(district="co_do")) == ["trap_surge"]
    assert ids(store.list(rule_id="salinity_high")) == ["salinity_high"]
    assert ids(store.list(device_id="trap-ct-001")) == ["trap_surge"]
    assert ids(store.list(since_ms=T0 + 1000)) == ["trap_surge", "do_low"]
    assert ids(store.list(until_ms=T0 + 1000)) == ["salinity_high"]
    assert ids(store.list(since_ms=T0, until_ms=T0 + 2000, state="firing")) == ["salinity_high"]
    assert ids(store.list(limit=1)) == ["trap_surge"]
    first = store.list(rule_id="salinity_high")[0]
    store.acknowledge(first.id, "op")
    assert ids(store.list(acknowledged=True)) == ["salinity_high"]
    assert ids(store.list(acknowledged=False)) == ["trap_surge", "do_low"]


# -- subscriptions ----------------------------------------------------------------------------


def test_subscription_crud(store: AlertStore) -> None:
    sub = store.add_subscription(URL, provinces=["Bến Tre"], min_severity="warning", language="en", pacing=AT_ONCE)
    assert sub.id.startswith("sub_")
    assert sub.secret.startswith("whsec_")
    assert sub.enabled
    assert sub.language == "en"
    assert sub.filters.min_severity is Severity.WARNING
    assert store.get_subscription(sub.id) == sub
    assert store.list_subscriptions() == [sub]
    changed = store.update_subscription(sub.id, enabled=False)
    assert not changed.enabled
    assert changed.disabled_reason
    assert store.list_subscriptions(enabled=True) == []
    back = store.update_subscription(sub.id, enabled=True, filters=Filters.make(kinds=["salinity"]), language="vi")
    assert back.enabled
    assert back.disabled_reason is None
    assert back.filters.kinds == {"salinity"}
    store.remove_subscription(sub.id)
    with pytest.raises(NotFound):
        store.get_subscription(sub.id)
    with pytest.raises(NotFound):
        store.remove_subscription(sub.id)


def test_subscription_checks(store: AlertStore) -> None:
    given = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="
    assert store.add_subscription(URL, given, pacing=AT_ONCE).secret == given
    with pytest.raises(InvalidSubscription):
        store.add_subscription(URL, "hunter2", pacing=AT_ONCE)
    with pytest.raises(InvalidSubscription):
        store.add_subscription(URL, language="fr", pacing=AT_ONCE)
    with pytest.raises(InvalidSubscription):
        store.add_subscription(URL, min_severity="urgent", pacing=AT_ONCE)


def test_subscription_url_must_pass_the_target_policy(alerts_location: Path | str) -> None:
    strict = open_at(alerts_location, policy=TargetPolicy.parse(resolver=lambda h, p: ["10.0.0.7"]))
    with pytest.raises(TargetRefused):
        strict.add_subscription("http://127.0.0.1:8080/hook", pacing=AT_ONCE)
    with pytest.raises(TargetRefused):
        strict.add_subscription("https://looks-public.example.org/hook", pacing=AT_ONCE)
    assert strict.list_subscriptions() == []
    strict.close()
    default = AlertStore(alerts_location)  # default policy: private refused
    with pytest.raises(TargetRefused):
        default.add_subscription("http://169.254.169.254/latest", pacing=AT_ONCE)
    default.close()


# -- outbox -------------------------------------------------------------------------------


def test_outbox_rows_for_matching_enabled_subscriptions(store: AlertStore) -> None:
    all_vi = store.add_subscription(URL + "/all", pacing=AT_ONCE)
    ben_tre_en = store.add_subscription(URL + "/bt", provinces=["ben_tre"], language="en", pacing=AT_ONCE)
    critical = store.add_subscription(URL + "/crit", min_severity="critical", pacing=AT_ONCE)
    off = store.add_subscription(URL + "/off", pacing=AT_ONCE)
    store.update_subscription(off.id, enabled=False)

    events = store.apply([fire(device=0, rule="do_low"), fire(device=1, severity=Severity.CRITICAL)], DEVICES)
    store.dispatch()
    assert events[0].queued_for == (all_vi.id, ben_tre_en.id)
    assert events[1].queued_for == (all_vi.id, critical.id)
    rows = store.outbox(limit=None)
    assert [(r.event_id, r.subscription_id) for r in rows] == [  # queued subscriber by subscriber
        (events[0].id, all_vi.id),
        (events[1].id, all_vi.id),
        (events[0].id, ben_tre_en.id),
        (events[1].id, critical.id),
    ]
    assert all(r.status is Status.PENDING and r.attempts == 0 for r in rows)
    assert store.outbox(subscription_id=off.id) == []

    body_vi = json.loads(rows[0].body)
    body_en = json.loads(rows[2].body)
    assert body_vi["type"] == "alert.firing"
    assert body_vi["id"] == events[0].id
    assert body_vi["alert_id"] == events[0].alert_id
    assert body_vi["rule_id"] == "do_low"
    assert body_vi["severity"] == "warning"
    assert body_vi["device_id"] == "wq-bt-001"
    assert (body_vi["kind"], body_vi["province"], body_vi["district"], body_vi["site"]) == (
        "water_quality",
        "ben_tre",
        "ba_tri",
        "pond",
    )
    assert body_vi["value"] == 4.2
    assert body_vi["ts"] == "2024-03-01T00:00:00.000Z"
    assert body_vi["ts_ms"] == T0
    assert body_vi["language"] == "vi"
    assert body_vi["message"] == body_vi["message_vi"].strip() != ""
    assert body_en["language"] == "en"
    assert body_en["message"] == body_en["message_en"]
    assert body_vi["message_en"] == body_en["message_en"]
    assert body_vi["message_vi"] == body_en["message_vi"]
    assert body_vi["source"] == "ioc/v1/ben_tre/water_quality/wq-bt-001"
    assert "Độ mặn" in rows[0].body, "UTF-8 on the wire, not \\u escapes"


FAIL_SECOND_NOTICE = {
    "sqlite": [
        "CREATE TRIGGER fail_second AFTER INSERT ON notices WHEN (SELECT count(*) FROM notices) > 1"
        " BEGIN SELECT RAISE(ABORT, 'disk full (simulated)'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION fail_second() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF (SELECT count(*) FROM notices) > 1 THEN RAISE EXCEPTION 'disk full (simulated)'; END IF;"
        " RETURN NEW; END $$",
        "CREATE TRIGGER fail_second AFTER INSERT ON notices FOR EACH ROW EXECUTE FUNCTION fail_second()",
    ],
}


def test_notices_are_written_in_the_same_transaction_as_the_alert(alerts_location: Path | str) -> None:
    """If queueing a notice fails half-way, the alert change is rolled back with it: both or neither."""
    store = open_at(alerts_location)
    store.add_subscription(URL, pacing=AT_ONCE)
    with raw(alerts_location) as conn:
        for statement in FAIL_SECOND_NOTICE["postgresql" if on_postgres(alerts_location) else "sqlite"]:
            conn.execute(statement)
    with pytest.raises(StoreError, match="simulated"):
        store.apply([fire(device=0), fire(device=1)], DEVICES)
    assert store.list() == [], "nothing half-written"
    assert store.notices() == [], "nothing half-written"
    with raw(alerts_location) as conn:
        conn.execute("DROP TRIGGER fail_second" + (" ON notices" if on_postgres(alerts_location) else ""))
    events = store.apply([fire(device=0), fire(device=1)], DEVICES)
    assert len(events) == 2
    assert len(store.notices()) == 2
    assert store.dispatch().messages == {"opened": 2}
    assert len(store.outbox()) == 2
    store.close()


def test_a_reader_never_sees_an_alert_without_its_notices(alerts_location: Path | str) -> None:
    """Another connection sees the alert and its notices appear together (one commit)."""
    store = open_at(alerts_location)
    store.add_subscription(URL, pacing=AT_ONCE)
    seen: list[tuple[int, int]] = []
    stop = threading.Event()
    # one snapshot for both counts: SQLite's read transaction, PostgreSQL's REPEATABLE READ
    begin = "BEGIN ISOLATION LEVEL REPEATABLE READ" if on_postgres(alerts_location) else "BEGIN"

    def watch() -> None:
        with raw(alerts_location) as conn:
            while not stop.is_set():
                conn.execute(begin)
                a = conn.execute("SELECT count(*) FROM alerts").fetchone()[0]
                o = conn.execute("SELECT count(*) FROM notices").fetchone()[0]
                conn.execute("COMMIT")
                seen.append((a, o))

    watcher = threading.Thread(target=watch)
    watcher.start()
    for i in range(50):
        store.apply([fire(rule=f"r{i}", ts=T0 + i)], DEVICES)
    stop.set()
    watcher.join()
    assert seen
    assert all(a == o for a, o in seen)
    store.close()


def test_store_survives_reopen_and_threads(alerts_location: Path | str) -> None:
    store = open_at(alerts_location)
    sub = store.add_subscription(URL, pacing=AT_ONCE)
    results: list[int] = []

    def worker(n: int) -> None:
        results.append(len(store.apply([fire(rule=f"rule{n}", ts=T0 + n)], DEVICES)))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 8
    store.close()
    again = open_at(alerts_location)
    assert len(again.active()) == 8
    assert again.waiting_count(sub.id) == 8
    assert again.dispatch().messages == {"opened": 8}
    assert again.pending_count(sub.id) == 8
    again.close()
    with pytest.raises(StoreError, match="closed"):
        again.active()


def test_a_sqlite_store_is_a_wal_file_in_its_folder(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    assert store.path == store.location == tmp_path / "var" / "alerts.db"
    assert sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_a_store_newer_than_the_code_is_refused(alerts_location: Path | str) -> None:
    open_at(alerts_location).close()
    newer = "UPDATE alert_store_schema SET version = 99" if on_postgres(alerts_location) else "PRAGMA user_version = 99"
    with raw(alerts_location) as conn:
        conn.execute(newer)
    with pytest.raises(StoreError, match="schema 99, newer than this code"):
        open_at(alerts_location)


def test_where_a_store_cannot_be() -> None:
    with pytest.raises(StoreError, match="needs a file path"):
        AlertStore(":memory:")
    with pytest.raises(StoreError, match="postgresql://user:password@host"):
        AlertStore("mysql://ioc:s3cret@db/alerts")
    url = f"postgresql://ioc:s3cret@127.0.0.1:{free_port()}/alerts"  # nobody listens there
    with pytest.raises(StoreError, match="cannot open") as refused:
        AlertStore(url)
    assert "s3cret" not in str(refused.value)
    assert f"postgresql://ioc:***@127.0.0.1:{url.split(':')[-1]}" in str(refused.value)


def test_a_postgresql_url_never_shows_its_password() -> None:
    url = PostgresUrl("postgresql://ioc:s3cret@db:5432/alerts?sslmode=require&password=other")
    assert "s3cret" not in f"{url} {url!r}"
    assert "other" not in str(url)
    assert str(url) == "postgresql://ioc:***@db:5432/alerts?sslmode=require&password=***"


def test_claim_record_dead_letter_and_replay(store: AlertStore) -> None:
    sub = store.add_subscription(URL, pacing=AT_ONCE)
    [e1, e2] = store.apply([fire(device=0), fire(device=1)], DEVICES)
    store.dispatch()
    now = NOW
    claim = store.claim(sub.id, owner="a", now_ms=now, lease_ms=5000)
    assert claim is not None
    assert claim.entry.event_id == e1.id
    assert claim.subscription.id == sub.id
    assert store.claim(sub.id, owner="b", now_ms=now, lease_ms=5000) is None, "leased by a"
    assert store.outbox_heads()[0].ready_at_ms("b") == now + 5000
    retry = Outcome(Verdict.RETRY, 500, "HTTP 500")
    store.record_attempt(claim.entry, retry, Verdict.RETRY, at_ms=now, duration_ms=3, next_attempt_at_ms=now + 1000)
    head = store.outbox(limit=1)[0]
    assert (head.attempts, head.last_status, head.last_error, head.next_attempt_at_ms) == (
        1,
        500,
        "HTTP 500",
        now + 1000,
    )
    assert store.claim(sub.id, owner="b", now_ms=now + 999, lease_ms=5000) is None, "not due yet"
    claim = store.claim(sub.id, owner="b", now_ms=now + 1000, lease_ms=5000)
    assert claim is not None
    assert claim.entry.event_id == e1.id, "order: the failed head comes first"
    store.record_attempt(claim.entry, retry, Verdict.DEAD, at_ms=now + 1000, duration_ms=3)
    [dead] = store.dead_letters()
    assert (dead.event_id, dead.subscription_id, dead.attempts, dead.last_status) == (e1.id, sub.id, 2, 500)
    claim = store.claim(sub.id, owner="b", now_ms=now + 1000, lease_ms=5000)
    assert claim is not None
    assert claim.entry.event_id == e2.id, "dead-lettered head no longer blocks"
    store.record_attempt(claim.entry, Outcome(Verdict.DELIVERED, 200), Verdict.DELIVERED, at_ms=now, duration_ms=1)
    assert store.pending_count() == 0

    assert store.replay([dead.id]) == 1
    assert store.dead_letters() == []
    assert store.dead_letters(include_replayed=True)[0].replayed_at_ms is not None
    [again] = store.outbox(status="pending")
    assert again.event_id == e1.id
    assert again.attempts == 0
    assert store.replay([dead.id]) == 0, "a dead letter is replayed once"
    log = store.deliveries(subscription_id=sub.id)
    assert [(d.attempt, d.verdict) for d in reversed(log)] == [
        (1, Verdict.RETRY),
        (2, Verdict.DEAD),
        (1, Verdict.DELIVERED),
    ]
    assert len(store.deliveries(event_id=e1.id)) == 2


def test_gone_disables_the_subscription_and_dead_letters_its_queue(store: AlertStore) -> None:
    sub = store.add_subscription(URL, pacing=AT_ONCE)
    other = store.add_subscription(URL + "/2", pacing=AT_ONCE)
    store.apply([fire(device=0), fire(device=1), fire(device=2)], DEVICES)
    store.dispatch()
    claim = store.claim(sub.id, owner="a", now_ms=NOW, lease_ms=1000)
    assert claim is not None
    store.record_attempt(claim.entry, Outcome(Verdict.GONE, 410, "HTTP 410"), Verdict.GONE, at_ms=NOW, duration_ms=1)
    gone = store.get_subscription(sub.id)
    assert not gone.enabled
    assert "410" in (gone.disabled_reason or "")
    assert store.pending_count(sub.id) == 0
    assert len(store.dead_letters(subscription_id=sub.id)) == 3
    assert store.pending_count(other.id) == 3
    assert [h.subscription_id for h in store.outbox_heads()] == [other.id]
    store.apply([fire(rule="later")], DEVICES)
    store.dispatch()
    assert store.pending_count(sub.id) == 0, "no new rows for a disabled subscription"


def test_remove_subscription_removes_its_queue(store: AlertStore) -> None:
    sub = store.add_subscription(URL, pacing=AT_ONCE)
    store.apply([fire()], DEVICES)
    store.remove_subscription(sub.id)
    assert store.outbox() == []
    assert store.active() != []


def test_release_drops_a_dead_senders_leases(store: AlertStore) -> None:
    sub = store.add_subscription(URL, pacing=AT_ONCE)
    store.apply([fire()], DEVICES)
    store.dispatch()
    assert store.claim(sub.id, owner="a", now_ms=NOW, lease_ms=60_000) is not None
    assert store.claim(sub.id, owner="b", now_ms=NOW, lease_ms=60_000) is None
    assert store.claim(sub.id, owner="b", now_ms=NOW + 60_001, lease_ms=60_000) is not None, "leases expire"
    assert store.release("b") == 1
    assert store.claim(sub.id, owner="c", now_ms=NOW, lease_ms=60_000) is not None


def test_sqlite_closes_the_connections_of_threads_that_ended(tmp_path: Path) -> None:
    """Short-lived threads (a pool's, replaced) must not leave their connections open until close."""
    db = SQLiteFile(tmp_path / "x.db", RuntimeError)
    opened: list[sqlite3.Connection] = []
    for _ in range(5):
        worker = threading.Thread(target=lambda: opened.append(db.connection()))
        worker.start()
        worker.join()
    db.connection()  # this thread's: the five ended threads' connections are closed now
    for conn in opened:
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            conn.execute("SELECT 1")
    db.close()


# -- location and crop targeting -----------------------------------------------------------------

BA_TRI = Near.make(10.04, 106.60, 10)
PLACED = (  # the first ~2.5 km from Ba Tri town, the second ~72 km away, the third without coordinates
    replace(DEVICES[0], lat=10.05, lon=106.62),
    replace(DEVICES[1], lat=9.52, lon=106.2),
    DEVICES[2],
)


def test_subscription_crops_and_near_round_trip(store: AlertStore) -> None:
    sub = store.add_subscription(URL, crops=["Shrimp", "rice"], near=BA_TRI, pacing=AT_ONCE)
    assert sub.filters.crops == {"shrimp", "rice"}
    assert sub.filters.near == Near(10.04, 106.60, 10.0)
    assert store.get_subscription(sub.id) == sub
    assert store.list_subscriptions() == [sub]
    moved = store.update_subscription(sub.id, filters=Filters.make(crops=["durian"], near=Near.make(9.9, 106.3, 25)))
    assert moved.filters.crops == {"durian"}
    assert moved.filters.near == Near(9.9, 106.3, 25.0)
    cleared = store.update_subscription(sub.id, filters=Filters.make())
    assert cleared.filters.crops == frozenset()
    assert cleared.filters.near is None
    assert store.get_subscription(sub.id) == cleared
    with pytest.raises(InvalidSubscription, match="crop"):
        store.add_subscription(URL, crops=["durain"], pacing=AT_ONCE)


def test_alerts_carry_their_devices_coordinates(store: AlertStore) -> None:
    [near_event, far_event, unplaced_event] = store.apply(
        [fire(device=0, rule="do_low"), fire(device=1), fire(device=2, rule="pest_high")], PLACED
    )
    assert (near_event.alert.lat, near_event.alert.lon) == (10.05, 106.62)
    assert (far_event.alert.lat, far_event.alert.lon) == (9.52, 106.2)
    assert (unplaced_event.alert.lat, unplaced_event.alert.lon) == (None, None)
    assert store.get(near_event.alert_id).lat == 10.05
    resolved = store.apply([resolve(device=0, rule="do_low", ts=T0 + 1)], PLACED)[0].alert
    assert (resolved.lat, resolved.lon) == (10.05, 106.62), "a resolve keeps where it fired"


def test_outbox_rows_by_point_radius_and_crop(store: AlertStore) -> None:
    ba_tri = store.add_subscription(URL + "/ba-tri", near=BA_TRI, pacing=AT_ONCE)
    wide = store.add_subscription(URL + "/wide", near=Near.make(10.04, 106.60, 100), pacing=AT_ONCE)
    rice = store.add_subscription(URL + "/rice", crops=["rice"], pacing=AT_ONCE)
    shrimp_near = store.add_subscription(URL + "/shrimp", crops=["shrimp"], near=BA_TRI, pacing=AT_ONCE)

    events = store.apply([fire(device=0, rule="do_low"), fire(device=1), fire(device=2, rule="pest_high")], PLACED)
    store.dispatch()
    assert events[0].queued_for == (ba_tri.id, wide.id, shrimp_near.id)  # 10.05,106.62: within 10 km
    assert events[1].queued_for == (wide.id, rice.id)  # 9.52,106.2: ~72 km
    assert events[2].queued_for == (rice.id,)  # no coordinates: never near
    body = json.loads(store.outbox(subscription_id=ba_tri.id)[0].body)
    assert body["device_id"] == "wq-bt-001"
