"""The device registry's behaviours on both databases it runs on: a SQLite file and a real PostgreSQL.

Every test here runs twice (``registry_url`` is parametrized over ``sqlite`` and ``postgresql``);
SQLite-only details (``:memory:``, WAL, file paths, bad URLs) and the fleet files are in
``tests/unit/test_registry_store.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine, create_engine, inspect, text

from contract.fleet import Device, DeviceState
from ioc.servers import PostgresServer
from registry import migrate
from registry.errors import DeviceExists, DeviceNotFound, ImportRefused, RegistryError, RegistryUnavailable
from registry.store import DeviceRegistry, ImportResult
from simulators.fleetgen import generate_fleet

T = TypeVar("T")
REGISTRY_TABLES = {"devices", "registry_meta"}


def make_device(device_id: str = "sal-bt-0001", **changes: Any) -> Device:
    """A valid device; ``changes`` override its fields."""
    data: dict[str, Any] = {
        "id": device_id,
        "kind": "salinity",
        "province": "ben_tre",
        "district": "ba_tri",
        "site": "sluice",
        "lat": 10.04,
        "lon": 106.6,
    }
    return Device.model_validate({**data, **changes})


def eui(n: int) -> str:
    """A valid LoRaWAN DevEUI (16 lower-case hex digits)."""
    return f"{n:016x}"


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a fresh database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def registry(registry_url: str) -> Iterator[DeviceRegistry]:
    reg = DeviceRegistry(registry_url)
    yield reg
    reg.close()


@pytest.fixture
def raw_engine(registry_url: str) -> Iterator[Engine]:
    """A plain SQLAlchemy engine on the same database, to look at it without the registry."""
    engine = create_engine(registry_url.replace("postgresql://", "postgresql+psycopg://", 1))
    yield engine
    engine.dispose()


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def _ids(records: Any) -> list[str]:
    return [r.device.id for r in records]


# -- schema ------------------------------------------------------------------------------------


def test_open_migrates_to_head(registry: DeviceRegistry, raw_engine: Engine) -> None:
    assert _tables(raw_engine) == REGISTRY_TABLES | {"alembic_version"}
    with raw_engine.connect() as conn:
        assert migrate.current(conn) == migrate.head() == migrate.HEAD == "0002"
        assert conn.execute(text("SELECT id, revision FROM registry_meta")).all() == [(1, 0)]
    assert registry.revision() == 0
    assert registry.count() == 0
    assert registry.list() == []


def test_downgrade_to_base_then_upgrade(registry_url: str, raw_engine: Engine) -> None:
    first = DeviceRegistry(registry_url)
    first.add(make_device())
    first.close()
    with raw_engine.begin() as conn:
        migrate.downgrade(conn)
    assert _tables(raw_engine) == {"alembic_version"}
    with raw_engine.connect() as conn:
        assert migrate.current(conn) is None
    with raw_engine.begin() as conn:
        migrate.upgrade(conn)
    assert _tables(raw_engine) == REGISTRY_TABLES | {"alembic_version"}
    again = DeviceRegistry(registry_url)  # opening an up-to-date database is a no-op
    try:
        assert again.revision() == 0
        assert again.count() == 0
        assert again.add(make_device()).revision == 1
    finally:
        again.close()
    with raw_engine.connect() as conn:
        assert migrate.current(conn) == migrate.HEAD


def test_reopening_keeps_the_data(registry_url: str) -> None:
    first = DeviceRegistry(registry_url)
    device = make_device(external_ids={"dev_eui": eui(1)})
    first.add(device)
    first.close()
    second = DeviceRegistry(registry_url)
    try:
        assert second.revision() == 1
        assert second.get(device.id).device == device
    finally:
        second.close()


# -- single writes -----------------------------------------------------------------------------


def test_add_get_round_trip(registry: DeviceRegistry) -> None:
    device = make_device(
        "wq-bt-0007",
        kind="water_quality",
        site="pond",
        crop="shrimp",
        lat=10.123456789,
        lon=106.987654321,
        km_from_sea=12.5,
        coast="west",
        faults=["drift", "gaps"],
        model="lora_v2",
        external_ids={
            "dev_eui": "70B3D57ED0001234",  # stored lower-case
            "tts_device_id": "eui-70b3d57ed0001234",
            "sparkplug": "mekong/gw-07/wq-bt-0007",
            "thingsboard": "WQ BT 7".replace(" ", "_"),
        },
        state="suspended",
    )
    added = registry.add(device)
    assert added.device == device
    assert added.revision == 1
    assert added.created_ms == added.updated_ms > 0
    got = registry.get("wq-bt-0007")
    assert got == added
    assert got.device.external_ids.dev_eui == "70b3d57ed0001234"
    assert got.device.faults == ("drift", "gaps")
    assert got.device.lat == 10.123456789
    assert registry.revision() == 1
    assert registry.count() == 1
    assert registry.find("nope") is None
    with pytest.raises(DeviceNotFound, match="no device 'nope'"):
        registry.get("nope")


def test_add_refuses_a_taken_id_or_dev_eui(registry: DeviceRegistry) -> None:
    registry.add(make_device("a", external_ids={"dev_eui": eui(1)}))
    with pytest.raises(DeviceExists, match="device 'a' is registered already"):
        registry.add(make_device("a", district="mo_cay"))
    with pytest.raises(DeviceExists, match="dev_eui"):
        registry.add(make_device("b", external_ids={"dev_eui": eui(1)}))
    assert registry.revision() == 1
    assert registry.count() == 1
    assert registry.get("a").device.district == "ba_tri"


def test_update_validates_and_bumps_the_revision(registry: DeviceRegistry) -> None:
    added = registry.add(make_device("a"))
    registry.add(make_device("b", external_ids={"dev_eui": eui(2)}))
    with pytest.raises(RegistryError, match=r"device 'a': province: String should match pattern") as info:
        registry.update("a", {"province": "Ben Tre"})
    assert type(info.value) is RegistryError
    with pytest.raises(RegistryError, match="device 'a': lat: Input should be less than or equal to 90"):
        registry.update("a", {"lat": 91})
    with pytest.raises(RegistryError, match="device 'a': colour: Extra inputs are not permitted"):
        registry.update("a", {"colour": "red"})
    with pytest.raises(DeviceExists, match="dev_eui"):
        registry.update("a", {"external_ids": {"dev_eui": eui(2)}})
    with pytest.raises(DeviceNotFound):
        registry.update("nope", {"district": "mo_cay"})
    assert registry.revision() == 2

    updated = registry.update("a", {"district": "mo_cay", "faults": ["stuck"]})
    assert updated.revision == 3
    assert updated.device == make_device("a", district="mo_cay", faults=["stuck"])
    assert updated.created_ms == added.created_ms
    assert updated.updated_ms >= added.updated_ms
    assert registry.get("a") == updated
    assert registry.update("a", {"district": "mo_cay"}) == updated  # no change, no new revision
    assert registry.revision() == 3


def test_set_state_transitions(registry: DeviceRegistry) -> None:
    registry.add(make_device("a"))
    assert registry.set_state("a", "suspended").device.state == "suspended"
    back = registry.set_state("a", "active")
    assert (back.device.state, back.revision) == ("active", 3)
    gone = registry.set_state("a", "decommissioned")
    assert (gone.device.state, gone.revision) == ("decommissioned", 4)
    for state in ("active", "suspended"):
        with pytest.raises(RegistryError, match="device 'a' is decommissioned: it stays so"):
            registry.set_state("a", state)
    assert registry.get("a").device.state == "decommissioned"
    assert registry.revision() == 4


# -- imports -----------------------------------------------------------------------------------


def test_import_is_all_or_nothing(registry: DeviceRegistry) -> None:
    registry.import_devices([make_device("a", external_ids={"dev_eui": eui(1)}), make_device("old")])
    registry.set_state("old", "decommissioned")
    batch = [
        make_device("new-1"),
        make_device("new-2", external_ids={"dev_eui": eui(1)}),  # a's, and a keeps it
        make_device("a", external_ids={"dev_eui": eui(1)}, district="mo_cay"),
        make_device("new-1", district="mo_cay"),
        make_device("old", state="active"),
    ]
    with pytest.raises(ImportRefused) as info:
        registry.import_devices(batch, source="batch.csv")
    assert info.value.problems == [
        "row 4: device 'new-1' appears again (first at row 1)",
        "row 2: dev_eui '0000000000000001' belongs to device 'a'",
        "row 5: device 'old' is decommissioned: it stays so (register the hardware under a new id)",
    ]
    assert str(info.value).startswith("batch.csv: 3 bad row(s), nothing imported: row 4: device 'new-1'")
    assert registry.revision() == 2
    assert sorted(d.id for d in registry.all_devices()) == ["a", "old"]
    assert registry.get("a").device.district == "ba_tri"


def test_import_is_idempotent(registry: DeviceRegistry) -> None:
    fleet = list(generate_fleet(40, seed=3).devices)
    assert registry.import_devices(fleet) == ImportResult(added=40, changed=0, unchanged=0, revision=1)
    assert registry.import_devices(fleet) == ImportResult(added=0, changed=0, unchanged=40, revision=1)
    assert registry.revision() == 1
    assert registry.all_devices() == sorted(fleet, key=lambda d: d.id)
    edited = [*fleet[:39], fleet[39].model_copy(update={"district": "elsewhere"})]
    assert registry.import_devices(edited) == ImportResult(added=0, changed=1, unchanged=39, revision=2)
    assert registry.changes_since(1) == (2, [registry.get(fleet[39].id)])


def test_import_moves_external_ids_between_devices(registry: DeviceRegistry) -> None:
    registry.import_devices(
        [
            make_device("a", external_ids={"dev_eui": eui(1), "tts_device_id": "tts-a"}),
            make_device("b", external_ids={"dev_eui": eui(2)}),
            make_device("c", external_ids={"sparkplug": "g/n/c"}),
        ]
    )
    result = registry.import_devices(
        [
            make_device("a", external_ids={"dev_eui": eui(2), "tts_device_id": "tts-a"}),  # a and b swap
            make_device("b", external_ids={"dev_eui": eui(1)}),
            make_device("c"),  # c lets go of its Sparkplug id ...
            make_device("d", external_ids={"sparkplug": "g/n/c"}),  # ... and a new device takes it
        ]
    )
    assert result == ImportResult(added=1, changed=3, unchanged=0, revision=2)
    ids = {d.id: d.external_ids.model_dump(exclude_none=True) for d in registry.all_devices()}
    assert ids == {
        "a": {"dev_eui": eui(2), "tts_device_id": "tts-a"},
        "b": {"dev_eui": eui(1)},
        "c": {},
        "d": {"sparkplug": "g/n/c"},
    }


def test_import_refuses_one_released_id_claimed_twice(registry: DeviceRegistry) -> None:
    registry.import_devices([make_device("a", external_ids={"dev_eui": eui(1)})])
    with pytest.raises(ImportRefused) as info:
        registry.import_devices(
            [
                make_device("a"),
                make_device("b", external_ids={"dev_eui": eui(1)}),
                make_device("c", external_ids={"dev_eui": eui(1)}),
            ]
        )
    assert info.value.problems == ["row 3: dev_eui '0000000000000001' is given to device 'b' too (row 2)"]
    assert registry.revision() == 1


# -- reads -------------------------------------------------------------------------------------


def test_changes_since_returns_the_changed_rows_in_revision_order(registry: DeviceRegistry) -> None:
    for device_id in ("c", "a", "b"):
        registry.add(make_device(device_id))  # revisions 1, 2, 3
    registry.update("c", {"district": "mo_cay"})  # 4
    registry.import_devices([make_device("b", district="mo_cay"), make_device("d"), make_device("a")])  # 5
    now, changed = registry.changes_since(0)
    assert now == 5
    assert [(r.device.id, r.revision) for r in changed] == [("a", 2), ("c", 4), ("b", 5), ("d", 5)]
    assert changed == [registry.get(i) for i in ("a", "c", "b", "d")]
    assert [(r.device.id, r.revision) for r in registry.changes_since(3)[1]] == [("c", 4), ("b", 5), ("d", 5)]
    assert [r.device.id for r in registry.changes_since(4)[1]] == ["b", "d"]
    assert registry.changes_since(5) == (5, [])


def test_list_filters_and_pages(registry: DeviceRegistry) -> None:
    fleet = list(generate_fleet(70, seed=11).devices)
    registry.import_devices(fleet)
    every = sorted(d.id for d in fleet)
    suspended, decommissioned = every[3:8], every[10:12]
    for device_id in suspended:
        registry.set_state(device_id, "suspended")
    for device_id in decommissioned:
        registry.set_state(device_id, "decommissioned")

    def expected(keep: Callable[[Device], bool]) -> list[str]:
        return sorted(d.id for d in fleet if keep(d))

    assert _ids(registry.list()) == every
    ben_tre = _ids(registry.list(province="ben_tre"))
    assert ben_tre == expected(lambda d: d.province == "ben_tre")
    assert len(ben_tre) == 10
    assert _ids(registry.list(kind="camera")) == expected(lambda d: d.kind.value == "camera")
    assert len(registry.list(kind="camera")) == 8
    two = {"ca_mau", "long_an"}
    assert _ids(registry.list(provinces=two)) == expected(lambda d: d.province in two)
    assert _ids(registry.list(provinces=two, kind="salinity")) == expected(
        lambda d: d.province in two and d.kind.value == "salinity"
    )
    assert _ids(registry.list(states=["suspended"])) == suspended
    assert _ids(registry.list(states=["suspended", "decommissioned"])) == sorted(suspended + decommissioned)
    active = [i for i in every if i not in suspended + decommissioned]
    assert _ids(registry.list(states=["active"])) == active
    assert registry.list(province="nowhere") == []
    assert registry.list(provinces=[]) == []

    for limit in (1, 7, 70, 100):
        pages: list[list[str]] = []
        after: str | None = None
        while page := _ids(registry.list(after=after, limit=limit)):
            assert len(page) <= limit
            pages.append(page)
            after = page[-1]
        assert [i for p in pages for i in p] == every
        assert len(pages) == -(-70 // limit)
    filtered: list[str] = []
    after = None
    while page := _ids(registry.list(states=["active"], after=after, limit=9)):
        filtered += page
        after = page[-1]
    assert filtered == active


# -- several writers ---------------------------------------------------------------------------


def test_two_registries_see_each_others_writes(registry_url: str) -> None:
    one, two = DeviceRegistry(registry_url), DeviceRegistry(registry_url)
    try:
        added = one.add(make_device("a"))
        assert two.revision() == 1
        assert two.changes_since(0) == (1, [added])
        updated = two.update("a", {"district": "mo_cay"})
        assert one.revision() == 2
        assert one.get("a") == updated
        assert one.changes_since(1) == (2, [updated])
        result = two.import_devices([make_device("b"), make_device("a", district="mo_cay")])
        assert result == ImportResult(added=1, changed=0, unchanged=1, revision=3)
        assert _ids(one.changes_since(2)[1]) == ["b"]
    finally:
        one.close()
        two.close()


def _in_threads(n: int, work: Callable[[int, threading.Barrier], T]) -> list[T]:
    """Run ``work(i, barrier)`` in ``n`` threads at once; their results, or the first error raised."""
    barrier = threading.Barrier(n)
    results: list[T | None] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = work(i, barrier)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def test_concurrent_opening_migrates_once(registry_url: str, raw_engine: Engine) -> None:
    """Four "processes" open the same new database at once: one migrates, all of them work."""

    def opener(i: int, barrier: threading.Barrier) -> int:
        barrier.wait(30)
        reg = DeviceRegistry(registry_url)
        try:
            return reg.add(make_device(f"d{i}")).revision
        finally:
            reg.close()

    assert sorted(_in_threads(4, opener)) == [1, 2, 3, 4]
    with raw_engine.connect() as conn:
        assert migrate.current(conn) == migrate.HEAD
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1


def test_concurrent_imports_lose_nothing(registry_url: str) -> None:
    """Two "processes" import at once, a shared part and their own part, five rounds each."""
    fleet = list(generate_fleet(80, seed=5).devices)
    shared, own = fleet[:20], (fleet[20:50], fleet[50:])
    rounds = 5

    def importer(i: int, barrier: threading.Barrier) -> list[ImportResult]:
        reg = DeviceRegistry(registry_url)
        try:
            out = []
            for n in range(rounds):
                barrier.wait(30)
                mine = [d.model_copy(update={"district": f"round_{n}"}) for d in own[i]]
                out.append(reg.import_devices([*shared, *mine], source=f"importer {i}"))
            return out
        finally:
            reg.close()

    results = [r for rs in _in_threads(2, importer) for r in rs]
    assert sum(r.added for r in results) == 80  # the shared devices were added exactly once
    assert sum(r.changed for r in results) == 2 * 30 * (rounds - 1)
    assert sorted(r.revision for r in results) == list(range(1, 2 * rounds + 1))  # all distinct
    reg = DeviceRegistry(registry_url)
    try:
        assert reg.revision() == 2 * rounds
        assert reg.all_devices() == sorted(
            [*shared, *(d.model_copy(update={"district": f"round_{rounds - 1}"}) for d in fleet[20:])],
            key=lambda d: d.id,
        )
        now, changed = reg.changes_since(0)
        assert now == 2 * rounds
        assert sorted(_ids(changed)) == sorted(d.id for d in fleet)
    finally:
        reg.close()


def test_concurrent_updates_of_one_device_lose_nothing(registry_url: str) -> None:
    """Two writers change different fields of the same device; both last values survive."""
    setup = DeviceRegistry(registry_url)
    setup.add(make_device("a"))
    setup.close()
    field_of = ("district", "model")
    n = 25

    def updater(i: int, barrier: threading.Barrier) -> int:
        reg = DeviceRegistry(registry_url)
        try:
            barrier.wait(30)
            for k in range(n):
                reg.update("a", {field_of[i]: f"w{i}_{k}"})
            return i
        finally:
            reg.close()

    _in_threads(2, updater)
    reg = DeviceRegistry(registry_url)
    try:
        device = reg.get("a").device
        assert (device.district, device.model) == (f"w0_{n - 1}", f"w1_{n - 1}")
        assert reg.revision() == 1 + 2 * n
    finally:
        reg.close()


def test_concurrent_state_changes_are_serialised(registry_url: str) -> None:
    """Decommissioning races with suspending: whatever the order, a decommissioned device stays so."""
    setup = DeviceRegistry(registry_url)
    setup.import_devices([make_device(f"d{k:02d}") for k in range(20)])
    setup.close()
    wanted: tuple[DeviceState, DeviceState] = ("decommissioned", "suspended")

    def writer(i: int, barrier: threading.Barrier) -> int:
        reg = DeviceRegistry(registry_url)
        refused = 0
        try:
            barrier.wait(30)
            for k in range(20):
                try:
                    reg.set_state(f"d{k:02d}", wanted[i])
                except RegistryError:
                    refused += 1
            return refused
        finally:
            reg.close()

    refused = _in_threads(2, writer)
    reg = DeviceRegistry(registry_url)
    try:
        assert {d.state for d in reg.all_devices()} == {"decommissioned"}
        assert refused[0] == 0
        assert reg.revision() == 1 + 20 + (20 - refused[1])
    finally:
        reg.close()


# -- PostgreSQL only ---------------------------------------------------------------------------


def test_missing_postgres_database_is_unavailable(postgres: PostgresServer) -> None:
    url = postgres.database_url("no_such_db").replace("ioc@", "ioc:s3cret@")
    with pytest.raises(RegistryUnavailable) as info:
        DeviceRegistry(url)
    message = str(info.value)
    assert message.startswith(f"registry postgresql://ioc:***@127.0.0.1:{postgres.port}/no_such_db: ")
    assert 'database "no_such_db" does not exist' in message
    assert "s3cret" not in message
    assert "\n" not in message
