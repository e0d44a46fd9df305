"""One alert store on a real PostgreSQL, shared by several stores, senders, the API and ingest.

The store's own behaviours run on PostgreSQL too (``tests/unit/test_alerts_store.py`` and
``tests/unit/test_api_keys.py``, parametrized). Here is what only a shared database shows: two
ingest machines applying the same transitions at once record each alert, event and outbox row
once; two webhook senders never hold one lease together and every webhook reaches a real HTTP
receiver once; the API and ingest run on ``IOC_ALERTS_DB=postgresql://…``, passwords never shown.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from alerts.config import WebhookSettings
from alerts.database import PostgresUrl
from alerts.delivery import post_webhook, webhook_client
from alerts.outbox import Verdict
from alerts.receiver import WebhookReceiver
from alerts.signing import generate_secret
from alerts.store import SCHEMA_VERSION, AlertEvent, AlertStore
from alerts.targets import TargetPolicy
from api.config import ApiSettings
from api.keys import KeyStore
from api.main import create_app
from api.routes.health import check_store
from contract.clock import now_ms
from contract.fleet import dump_fleet
from ingest.config import IngestSettings
from ingest.errors import ConfigError
from ingest.runner import build
from ioc.demo import demo_fleet
from ioc.servers import free_port
from rules.model import State, Transition
from tests.helpers import ingest_settings
from tests.integration.test_webhooks import wait_until
from tests.unit.test_alerts_store import AT_ONCE, DEVICES, T0, fire, resolve

with warnings.catch_warnings():  # Starlette 1.x nudges towards httpx2; httpx is what the project has
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = TargetPolicy.parse(["127.0.0.0/8"])
PUBLIC = TargetPolicy.parse(resolver=lambda host, port: ["93.184.215.14"])
ADMIN = "admin-" + "k" * 40


def with_password(url: str) -> str:
    """The URL with a password in it (the test server trusts loopback, so any password logs in)."""
    return url.replace("ioc@", "ioc:s3cret@", 1)


def in_threads(n: int, work: Callable[[int], Any]) -> list[Any]:
    """``work(i)`` in ``n`` threads at once; their results, or the first error raised."""
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]
    return results


def test_the_schema_is_wide_enough(postgres_url: str) -> None:
    """Milliseconds are BIGINT (INTEGER is 4 bytes), values DOUBLE PRECISION (REAL is 4 bytes)."""
    AlertStore(postgres_url).close()
    KeyStore(postgres_url).close()
    with psycopg.connect(postgres_url) as conn:
        types = {
            (r[0], r[1]): r[2]
            for r in conn.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns"
                " WHERE table_schema = 'public'"
            )
        }
        version = conn.execute("SELECT version FROM alert_store_schema").fetchall()
    ms = {k: v for k, v in types.items() if k[1].endswith("_ms")}
    assert len(ms) > 20
    assert set(ms.values()) == {"bigint"}
    doubles = [("alerts", "value"), ("alerts", "resolved_value"), ("events", "value"), ("alerts", "lat")]
    doubles += [("alerts", "lon"), ("subscriptions", "near_lat"), ("subscriptions", "near_lon")]
    assert {types[c] for c in [*doubles, ("subscriptions", "near_radius_km")]} == {"double precision"}
    assert types[("outbox", "seq")] == types[("deliveries", "seq")] == "bigint"
    assert version == [(SCHEMA_VERSION,)]


def backends(url: str) -> int:
    """Other clients' connections to the database at ``url`` (autovacuum's are not counted)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'"
        ).fetchone()
    return int(row[0]) if row else 0


def test_a_connection_per_live_thread(postgres_url: str) -> None:
    """Threads that used the store and ended (a thread pool's turnover) do not keep server connections."""
    store = AlertStore(postgres_url)
    all_in = threading.Barrier(7)

    def use() -> None:
        store.list()
        all_in.wait(30)

    threads = [threading.Thread(target=use) for _ in range(6)]
    for t in threads:
        t.start()
    all_in.wait(30)
    assert backends(postgres_url) == 7, "the opening thread's, and one per thread using it"
    for t in threads:
        t.join()
    in_threads(1, lambda i: store.list())  # a new thread's connection closes those of the ended ones
    wait_until(lambda: backends(postgres_url) == 2, what="the ended threads' connections closed")
    store.close()
    wait_until(lambda: backends(postgres_url) == 0, what="close() closes the rest")


def test_two_stores_apply_the_same_transitions_once(postgres_url: str) -> None:
    """Two ingest machines, each with its own store and connections, apply the same batches at once."""
    setup = AlertStore(postgres_url, policy=PUBLIC)
    everyone = setup.add_subscription("https://hooks.example.org/all")
    ben_tre = setup.add_subscription("https://hooks.example.org/bt", provinces=["ben_tre"])
    pairs = [(rule, device) for rule in ("r0", "r1", "r2", "r3") for device in range(3)]
    batches: list[list[Transition]] = [
        [(fire if k % 2 == 0 else resolve)(rule=rule, device=device, ts=T0 + k * 1000) for rule, device in pairs]
        for k in range(30)
    ]
    start = threading.Barrier(2)

    def machine(i: int) -> list[AlertEvent]:
        store = AlertStore(postgres_url, policy=PUBLIC)
        got: list[AlertEvent] = []
        for batch in batches:
            start.wait(30)
            got += store.apply(batch, DEVICES)
        store.close()
        return got

    first, second = in_threads(2, machine)
    recorded = Counter(e.id for e in first + second)
    assert all(n == 1 for n in recorded.values()), "each event is recorded by one machine, a replay for the other"
    alerts = setup.list(limit=None)
    assert len(alerts) == len(pairs) * 15
    assert set(recorded) == {e.id for a in alerts for e in setup.events(a.id)}
    assert len(recorded) == len(pairs) * 30
    notices = setup.notices(limit=None)
    assert len(notices) == len({(n.event_id, n.subscription_id) for n in notices}), "each notice once"
    assert Counter(n.subscription_id for n in notices) == {everyone.id: len(pairs) * 30, ben_tre.id: 4 * 30}
    assert setup.active() == [], "the last batch resolved every alert"
    setup.close()


def test_two_senders_never_hold_one_lease_and_deliver_each_webhook_once(postgres_url: str) -> None:
    """Two senders (own stores, own owners) drain one subscriber's queue to a real receiver."""
    secret = generate_secret()
    holder: list[str] = []  # who holds the lease, by the senders' own account
    overlaps: list[tuple[str, str]] = []
    book = threading.Lock()
    with WebhookReceiver(secret, quiet=True) as rx:
        setup = AlertStore(postgres_url, policy=LOOPBACK)
        sub = setup.add_subscription(rx.url, secret, pacing=AT_ONCE)
        events = setup.apply([fire(rule=f"r{i}", device=i % 3, ts=T0 + i) for i in range(40)], DEVICES)
        assert setup.dispatch().messages == {"opened": 40}, "each rule a family of its own: a message each"

        async def drain(owner: str) -> int:
            store = AlertStore(postgres_url, policy=LOOPBACK)
            delivered = 0
            async with webhook_client(LOOPBACK, 5.0) as client:
                while store.pending_count(sub.id):
                    claim = store.claim(sub.id, owner=owner, now_ms=now_ms(), lease_ms=60_000)
                    if claim is None:
                        await asyncio.sleep(0.001)
                        continue
                    with book:
                        if holder:
                            overlaps.append((holder[0], owner))
                        holder[:] = [owner]
                    entry = claim.entry
                    outcome = await post_webhook(
                        client, LOOPBACK, url=claim.subscription.url, secret=secret, webhook_id=entry.event_id,
                        body=entry.body, timeout_s=5.0,
                    )  # fmt: skip
                    with book:  # given up before the lease is: the account never outlasts the lease
                        holder.clear()
                    store.record_attempt(entry, outcome, outcome.verdict, at_ms=now_ms(), duration_ms=1)
                    delivered += 1
                    await asyncio.sleep(0.002)  # the other sender's turn to try
            store.close()
            return delivered

        counts = in_threads(2, lambda i: asyncio.run(drain(f"sender-{i}")))
    assert overlaps == [], "a lease held by two senders at once"
    assert all(n > 0 for n in counts), f"both senders delivered some: {counts}"
    assert sum(counts) == len(events)
    assert rx.counts.get("duplicates", 0) == 0
    assert [r.webhook_id for r in rx.requests] == [e.id for e in events], "each once, in the queue's order"
    log = setup.deliveries(subscription_id=sub.id, limit=None)
    assert sorted(d.event_id for d in log) == sorted(e.id for e in events)
    assert {(d.attempt, d.verdict) for d in log} == {(1, Verdict.DELIVERED)}
    setup.close()


def polling_senders(url: str) -> int:
    """Connections whose latest statement is the senders' outbox poll (:meth:`AlertStore.outbox_heads`)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND query LIKE '%GROUP BY subscription_id%'"
        ).fetchone()
    return int(row[0]) if row else 0


def test_two_sender_processes_share_one_outbox(postgres_url: str) -> None:
    """``python -m alerts.sender`` twice on one PostgreSQL store: every webhook arrives once, in order."""
    secret = generate_secret()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "IOC_ALERTS_DB": postgres_url,
        "IOC_WEBHOOK_ALLOW_HOSTS": "127.0.0.0/8",
        "IOC_WEBHOOK_TIMEOUT_S": "2",
        "IOC_WEBHOOK_POLL_INTERVAL_S": "0.05",
    }
    store = AlertStore(postgres_url, policy=LOOPBACK)
    with WebhookReceiver(secret, quiet=True) as rx:
        sub = store.add_subscription(rx.url, secret, pacing=AT_ONCE)
        argv = [sys.executable, "-m", "alerts.sender"]
        senders = [
            subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in "ab"
        ]
        try:
            wait_until(lambda: polling_senders(postgres_url) >= 2, timeout=30, what="both senders polling the outbox")
            events: list[AlertEvent] = []
            for wave in range(5):  # while both senders run
                events += store.apply([fire(rule=f"w{wave}", device=i, ts=T0 + wave) for i in range(3)], DEVICES)
                time.sleep(0.1)
            assert rx.wait_for(len(events), timeout=30)
            wait_until(lambda: store.pending_count(sub.id) == 0, what="every row recorded as delivered")
        finally:
            for p in senders:
                p.send_signal(signal.SIGTERM)
            errs = [p.communicate(timeout=15)[1].decode() for p in senders]
    assert [p.returncode for p in senders] == [0, 0], errs
    assert rx.counts.get("duplicates", 0) == 0
    assert [r.webhook_id for r in rx.requests] == [e.id for e in events], "each once, in the queue's order"
    log = store.deliveries(subscription_id=sub.id, limit=None)
    assert sorted(d.event_id for d in log) == sorted(e.id for e in events)
    assert {(d.attempt, d.verdict) for d in log} == {(1, Verdict.DELIVERED)}
    store.close()


@pytest.fixture
def fleet_file(tmp_path: Path) -> Path:
    path = tmp_path / "fleet.yaml"
    dump_fleet(demo_fleet(6, 1), path)
    return path


def test_the_api_runs_on_a_postgresql_alert_store(
    postgres_url: str, fleet_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = with_password(postgres_url)
    monkeypatch.setenv("IOC_ALERTS_DB", url)
    settings = ApiSettings(  # type: ignore[call-arg]
        _env_file=None, fleet=fleet_file, api_admin_key=ADMIN, webhook_allow_hosts=["127.0.0.1"],
        influx_url=f"http://127.0.0.1:{free_port()}", mqtt_url=f"mqtt://127.0.0.1:{free_port()}",
        api_ready_timeout_s=1.0,
    )  # fmt: skip
    assert isinstance(settings.alerts_db, PostgresUrl)
    headers = {"Authorization": f"Bearer {ADMIN}"}
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        created = client.post(
            "/v1/subscriptions", headers=headers, json={"url": "http://127.0.0.1:9/hook", "language": "en"}
        )
        assert created.status_code == 201, created.text
        listed = client.get("/v1/subscriptions", headers=headers)
        assert listed.status_code == 200, listed.text
        assert [s["id"] for s in listed.json()] == [created.json()["id"]]
        ready = client.get("/readyz")
    store = ready.json()["detail"]["checks"]["alert_store"]
    assert store["ok"], store
    assert "s3cret" not in ready.text
    assert store["detail"] == f"{url.replace('s3cret', '***')} is readable"
    # the same truth for every process on the database
    other = AlertStore(postgres_url)
    assert [s.id for s in other.list_subscriptions()] == [created.json()["id"]]
    other.close()
    keys = KeyStore(postgres_url)
    assert keys.authenticate(ADMIN) is not None, "the bootstrap key is in PostgreSQL"
    keys.close()


def test_readiness_of_a_postgresql_store_that_is_not_there(postgres_url: str) -> None:
    gone = PostgresUrl(with_password(postgres_url).rsplit("/", 1)[0] + "/no_such_db")
    check = check_store(gone, 1.0)
    assert not check.ok
    assert "no_such_db" in check.detail
    assert "s3cret" not in check.detail
    dead = PostgresUrl(f"postgresql://ioc:s3cret@127.0.0.1:{free_port()}/alerts")
    check = check_store(dead, 1.0)
    assert not check.ok
    assert "s3cret" not in check.detail


@pytest.fixture
def ingest_config(fleet_file: Path) -> IngestSettings:
    """``ioc ingest`` with rules and webhooks on (nothing listens at its broker and InfluxDB: it never runs)."""
    return ingest_settings(
        free_port(), f"http://127.0.0.1:{free_port()}", "ioc", fleet=fleet_file, rules=True, webhooks=True
    )


def test_ingest_opens_a_postgresql_alert_store(postgres_url: str, ingest_config: IngestSettings) -> None:
    webhooks = WebhookSettings(_env_file=None, alerts_db=with_password(postgres_url))  # type: ignore[call-arg]
    process = build(ingest_config, webhooks)
    try:
        assert process.alerting is not None
        assert process.sender is not None
        assert isinstance(process.alerting.store.location, PostgresUrl)
        [event] = process.alerting.store.apply([fire()], DEVICES)
    finally:
        if process.alerting is not None:
            asyncio.run(process.alerting.close())
            process.alerting.store.close()
        follower = process.service.follower
        if follower is not None and follower.source is not None:
            follower.source.close()
    other = AlertStore(postgres_url)
    assert [a.id for a in other.active()] == [event.alert_id]
    assert event.state is State.FIRING
    other.close()


def test_ingest_names_an_unreachable_postgresql_store_without_its_password(ingest_config: IngestSettings) -> None:
    url = f"postgresql://ioc:s3cret@127.0.0.1:{free_port()}/alerts"
    webhooks = WebhookSettings(_env_file=None, alerts_db=url, alerts_busy_timeout_s=1.0)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="IOC_ALERTS_DB") as refused:
        build(ingest_config, webhooks)
    assert "s3cret" not in str(refused.value)
    assert "postgresql://ioc:***@127.0.0.1" in str(refused.value)
