"""The device registry on SQLite only (no servers), and its fleet files (YAML and CSV).

The behaviours shared with PostgreSQL (revisions, imports, listing, concurrency) run on both
databases in ``tests/integration/test_registry_postgres.py``; here are SQLite's own details
(``:memory:``, WAL, file paths), URLs that cannot work, and :mod:`registry.files`.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

import pytest

from contract.fleet import Device
from ioc.servers import free_port
from registry.errors import ImportRefused, RegistryError, RegistryUnavailable
from registry.files import (
    CSV_COLUMNS,
    fleet_tags,
    format_of,
    parse_csv,
    parse_yaml,
    read_devices,
    render_csv,
    render_yaml,
    write_devices,
)
from registry.store import MEMORY_URL, DeviceRegistry, ImportResult, open_registry, redact
from simulators.fleetgen import generate_fleet
from tests.helpers import python_output

HEADER = ",".join(CSV_COLUMNS)


def _device(device_id: str, **changes: object) -> Device:
    data = {"id": device_id, "kind": "salinity", "province": "ben_tre", "district": "ba_tri", "site": "sluice"}
    return Device.model_validate({**data, "lat": 10.04, "lon": 106.6, **changes})


def _fleet_with_ids(n: int, seed: int) -> list[Device]:
    """A generated fleet where some devices have external ids, states and models of their own."""
    out = []
    for k, d in enumerate(generate_fleet(n, seed).devices):
        changes: dict[str, object] = {}
        if k % 3 == 0:
            changes["external_ids"] = {"dev_eui": f"{k:016x}", "tts_device_id": f"eui-{k:016x}"}
        if k % 5 == 0:
            changes["external_ids"] = {"sparkplug": f"mekong/gw-{k}/{d.id}", "thingsboard": f"TB_{k}"}
        if k % 7 == 0:
            changes["state"] = "suspended"
            changes["model"] = "lora_v2"
        out.append(Device.model_validate({**d.model_dump(), **changes}))
    return out


# -- SQLite ------------------------------------------------------------------------------------


def test_memory_registry_works_and_is_private() -> None:
    one, two = open_registry(None), DeviceRegistry(MEMORY_URL)
    try:
        assert one.url == "sqlite:///:memory:"
        assert one.add(_device("a")).revision == 1
        assert one.get("a").device == _device("a")
        assert (two.revision(), two.count()) == (0, 0)  # each in-memory registry is its own database
        assert one.import_devices([_device("a"), _device("b")]) == ImportResult(1, 0, 1, 2)
    finally:
        one.close()
        two.close()


def _schema(conn: sqlite3.Connection) -> dict[str, object]:
    """Tables with their columns (name, type, not null, key) and indexes with theirs, in any column order."""
    out: dict[str, object] = {}
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
        columns = sorted((c[1], c[2], c[3], c[5]) for c in conn.execute(f"PRAGMA table_info({table})"))
        indexes = sorted(
            (bool(unique), tuple(c[2] for c in conn.execute(f"PRAGMA index_info({name})")))
            for _, name, unique, *_ in conn.execute(f"PRAGMA index_list({table})")
        )
        out[table] = (columns, indexes, conn.execute(f"SELECT * FROM {table}").fetchall())
    return out


def test_memory_registry_has_the_schema_the_migrations_make(tmp_path: Path) -> None:
    """An in-memory registry is made from registry.schema without Alembic: the same tables, columns,
    indexes and rows as a database migrated to the head."""
    path = tmp_path / "registry.db"
    DeviceRegistry(f"sqlite:///{path}").close()
    memory = DeviceRegistry(MEMORY_URL)
    try:
        with memory._read() as conn:  # the one shared connection
            made = _schema(conn.connection.dbapi_connection)  # type: ignore[arg-type]
    finally:
        memory.close()
    with sqlite3.connect(path) as conn:
        assert made == _schema(conn)


def test_sqlite_file_is_created_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "var" / "deep" / "registry.db"
    reg = DeviceRegistry(f"sqlite:///{path}")
    try:
        reg.add(_device("a"))
    finally:
        reg.close()
    assert path.is_file()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT revision FROM registry_meta").fetchall() == [(1,)]
        assert conn.execute("SELECT id, faults, dev_eui FROM devices").fetchall() == [("a", "", None)]
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0002",)]


def test_sqlite_path_that_cannot_be_a_folder_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    url = f"sqlite:///{tmp_path}/file/registry.db"
    with pytest.raises(RegistryUnavailable, match=f"^cannot open the registry {url}: ") as info:
        DeviceRegistry(url)
    assert "\n" not in str(info.value)


def test_sqlite_file_that_is_not_a_database_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    path.write_bytes(b"this is not a SQLite database, just some text " * 100)
    with pytest.raises(
        RegistryUnavailable, match=f"^cannot open the registry sqlite:///{path}: file is not a database$"
    ):
        DeviceRegistry(f"sqlite:///{path}")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "mysql://root:pw@db/registry",
            "registry URL 'mysql://root:***@db/registry': only sqlite:/// and postgresql:// are supported",
        ),
        (
            "not a url",
            "registry URL 'not a url' is not a database URL: use sqlite:///path/registry.db or "
            "postgresql://user:password@host:5432/db",
        ),
        ("mysql://x", "registry URL 'mysql://x': only sqlite:/// and postgresql:// are supported"),
    ],
)
def test_bad_url_is_unavailable(url: str, message: str) -> None:
    with pytest.raises(RegistryUnavailable) as info:
        DeviceRegistry(url)
    assert str(info.value) == message


def test_unreachable_postgres_is_unavailable() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(RegistryUnavailable) as info:
        DeviceRegistry(f"postgresql://ioc:s3cret@127.0.0.1:{port}/registry")
    message = str(info.value)
    assert message.startswith(f"registry postgresql://ioc:***@127.0.0.1:{port}/registry: ")
    assert "Connection refused" in message
    assert "s3cret" not in message
    assert "\n" not in message


def test_redact() -> None:
    assert redact("postgresql://ioc:s3cret@db:5432/reg") == "postgresql://ioc:***@db:5432/reg"
    assert redact("postgresql://ioc@db/reg") == "postgresql://ioc@db/reg"
    assert redact("sqlite:///var/registry.db") == "sqlite:///var/registry.db"
    assert redact("not a url") == "not a url"


# -- fleet files -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fleet.csv", "fleet.yaml", "FLEET.YML"])
def test_fleet_file_round_trip(tmp_path: Path, name: str) -> None:
    devices = _fleet_with_ids(60, seed=4)
    path = tmp_path / "out" / name
    write_devices(devices, path)
    assert read_devices(path) == devices


def test_round_trip_through_the_registry(tmp_path: Path) -> None:
    devices = _fleet_with_ids(30, seed=9)
    reg = DeviceRegistry(f"sqlite:///{tmp_path / 'registry.db'}")
    try:
        assert reg.import_devices(parse_csv(render_csv(devices), "in.csv")) == ImportResult(30, 0, 0, 1)
        exported = reg.all_devices()
        assert exported == sorted(devices, key=lambda d: d.id)
        assert parse_yaml(render_yaml(exported), "out.yaml") == exported
        assert reg.import_devices(parse_yaml(render_yaml(exported), "out.yaml")) == ImportResult(0, 0, 30, 1)
    finally:
        reg.close()


def test_csv_layout() -> None:
    device = _device("a", faults=["drift", "gaps"], external_ids={"dev_eui": "00000000000000AB", "sparkplug": "g/n/a"})
    assert render_csv([device]).splitlines() == [
        "id,kind,province,district,site,crop,lat,lon,km_from_sea,coast,faults,model,state,"
        "dev_eui,tts_device_id,sparkplug,thingsboard,senml",
        "a,salinity,ben_tre,ba_tri,sluice,none,10.04,106.6,50.0,east,drift;gaps,ioc_v1,active,00000000000000ab,,g/n/a,,",
    ]


def test_csv_blank_cells_take_defaults_and_columns_may_be_few() -> None:
    text = "lon,id,kind,province,district,site,lat,faults,dev_eui\n106.6, a ,salinity,ben_tre,ba_tri,sluice,10.04,,\n"
    assert parse_csv(text, "x.csv") == [_device("a")]


def test_csv_bad_rows_are_all_named() -> None:
    rows = [
        "ok-1,salinity,ben_tre,ba_tri,sluice,10.0,106.0",
        "bad-2,salinity,Ben Tre,ba_tri,sluice,10.0,106.0",
        "ok-3,salinity,ben_tre,ba_tri,sluice,10.0,106.0",
        "bad-4,salinity,ben_tre,ba_tri,ocean,95,106.0",
        ",salinity,ben_tre,ba_tri,sluice,10.0,106.0",
    ]
    text = "id,kind,province,district,site,lat,lon\n" + "\n".join(rows) + "\n"
    with pytest.raises(ImportRefused) as info:
        parse_csv(text, "fleet.csv")
    assert info.value.problems == [
        "row 3 ('bad-2'): province: String should match pattern '^[a-z0-9][a-z0-9_]{0,63}$'",
        "row 5 ('bad-4'): site: Input should be 'river', 'canal', 'pond', 'field', 'sluice', 'kitchen', "
        "'road', 'market' or 'school'",
        "row 5 ('bad-4'): lat: Input should be less than or equal to 90",
        "row 6: id: Field required",
    ]
    assert str(info.value).startswith("fleet.csv: 4 bad row(s), nothing imported: row 3 ('bad-2'): province")


def test_csv_bad_faults_and_external_ids() -> None:
    text = (
        "id,kind,province,district,site,lat,lon,faults,dev_eui,thingsboard\n"
        "a,salinity,ben_tre,ba_tri,sluice,10,106,drift;meteor,,\n"
        "b,salinity,ben_tre,ba_tri,sluice,10,106,,xyz,\n"
    )
    with pytest.raises(ImportRefused) as info:
        parse_csv(text, "f.csv")
    assert [p.split(":")[:2] for p in info.value.problems] == [
        ["row 2 ('a')", " faults.1"],
        ["row 3 ('b')", " external_ids.dev_eui"],
    ]


def test_csv_row_with_too_many_cells_is_a_bad_row() -> None:
    text = "id,kind,province,district,site,lat,lon\na,salinity,ben_tre,ba_tri,sluice,10,106,extra,cells\n"
    with pytest.raises(ImportRefused) as info:
        parse_csv(text, "f.csv")
    assert info.value.problems == ["row 2 ('a'): 2 cell(s) more than the 7 columns"]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("id,kind,province,district,site,lat,lon,colour", "f.csv: unknown column(s) ['colour']"),
        ("id,kind,province,district,site,lat", "f.csv: missing column(s) ['lon']"),
        ("ID,kind,province,district,site,lat,lon", "f.csv: unknown column(s) ['ID']; missing column(s) ['id']"),
        ("id,kind,province,district,site,lat,lon,lat", "f.csv: repeated column(s) ['lat']"),
        ("", "f.csv: missing column(s) ['id', 'kind', 'province', 'district', 'site', 'lat', 'lon']"),
    ],
)
def test_csv_unknown_missing_or_repeated_columns_are_refused(header: str, message: str) -> None:
    with pytest.raises(RegistryError) as info:
        parse_csv(header + "\n", "f.csv")
    assert str(info.value) == f"{message} (columns: {', '.join(CSV_COLUMNS)})"


def test_yaml_bad_rows_are_all_named() -> None:
    text = """\
version: 1
devices:
  - {id: a, kind: salinity, province: ben_tre, district: ba_tri, site: sluice, lat: 10, lon: 106}
  - {id: b, kind: fish, province: ben_tre, district: ba_tri, site: sluice, lat: 10, lon: 106}
  - just a string
  - {id: d, kind: salinity, province: ben_tre, district: ba_tri, site: sluice, lat: 10, lon: 106, colour: red}
"""
    with pytest.raises(ImportRefused) as info:
        parse_yaml(text, "fleet.yaml")
    assert [p.split(": ")[:2] for p in info.value.problems] == [
        ["row 2 ('b')", "kind"],
        ["row 3", "device"],
        ["row 4 ('d')", "colour"],
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 2\ndevices: []\n", "y.yaml: fleet version 2; this version reads version 1"),
        ("devices: []\nextra: 1\n", "y.yaml: unknown top-level key(s) ['extra']; a fleet has version and devices"),
        ("devices: 5\n", "y.yaml: a fleet file holds a list of devices under 'devices'"),
        ("", "y.yaml: a fleet file holds a list of devices under 'devices'"),
    ],
)
def test_yaml_bad_documents_are_refused(text: str, message: str) -> None:
    with pytest.raises(RegistryError) as info:
        parse_yaml(text, "y.yaml")
    assert str(info.value) == message


def test_yaml_bare_list_and_bad_yaml() -> None:
    bare = "- {id: a, kind: salinity, province: ben_tre, district: ba_tri, site: sluice, lat: 10.04, lon: 106.6}\n"
    assert parse_yaml(bare, "y.yaml") == [_device("a")]
    with pytest.raises(RegistryError, match=r"^y\.yaml: not valid YAML"):
        parse_yaml("devices: [\n", "y.yaml")


def test_file_format_and_read_errors(tmp_path: Path) -> None:
    assert (format_of(Path("a.yml")), format_of(Path("a.YAML")), format_of(Path("a.csv"))) == ("yaml", "yaml", "csv")
    with pytest.raises(RegistryError, match=r"fleet\.txt: a fleet file ends in \.yaml, \.yml or \.csv"):
        format_of(Path("fleet.txt"))
    missing = tmp_path / "missing.csv"
    with pytest.raises(RegistryError, match="cannot read the fleet file"):
        read_devices(missing)
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"id,kind\n\xe9,x\n")
    with pytest.raises(RegistryError, match="is not UTF-8"):
        read_devices(latin)
    bom = tmp_path / "excel.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + render_csv([_device("a")]).encode())
    assert read_devices(bom) == [_device("a")]


def test_csv_the_csv_module_cannot_read_is_one_error() -> None:
    header = "id,kind,province,district,site,lat,lon\n"
    with pytest.raises(RegistryError, match=r"^x\.csv: not readable as CSV \(field larger than field limit"):
        parse_csv(header + "a," + "x" * 200_000 + "\n", "x.csv")


# Ingest reads a fleet file without a database (registry.files.fleet_tags): it must take exactly
# what importing the file into an empty registry and reading it back gives, and refuse what that refuses.


def _via_registry(path: Path) -> list[object]:
    tags: list[object] = []
    registry = DeviceRegistry(MEMORY_URL)
    try:
        registry.import_devices(read_devices(path), source=str(path))
        registry.each_tags_since(0, tags.extend)
    finally:
        registry.close()
    return tags


@pytest.mark.parametrize("suffix", [".yaml", ".csv"])
def test_fleet_tags_are_what_an_import_reads_back(tmp_path: Path, suffix: str) -> None:
    devices = _fleet_with_ids(300, seed=5)
    path = tmp_path / f"fleet{suffix}"
    write_devices(list(reversed(devices)), path)  # not in id order: both sort by id
    tags = fleet_tags(path)
    assert tags == _via_registry(path)
    assert [t.id for t in tags] == sorted(d.id for d in devices)
    assert {t.state for t in tags} > {"active"}
    assert any(t.dev_eui for t in tags)
    assert any(t.sparkplug for t in tags)
    provinces = {id(t.province) for t in tags if t.province == tags[0].province}
    assert len(provinces) == 1  # one shared text per tag value, as the registry's reads share them


@pytest.mark.skipif(sys.platform != "linux", reason="reads the process's memory from /proc")
def test_fleet_tags_leave_the_parse_behind(tmp_path: Path) -> None:
    """Reading a 1,000-device YAML fleet leaves ingest a few MiB bigger, not the parse's ~18 MiB: what
    survives it is copied out of the parser's memory, so Python can give that memory back."""
    path = tmp_path / "fleet.yaml"
    write_devices(generate_fleet(1_000, 3).devices, path)
    code = (
        "import re, sys; from pathlib import Path; from registry.files import fleet_tags\n"
        "def rss(): return int(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
        f"before = rss(); tags = fleet_tags(Path({str(path)!r})); print(len(tags), (rss() - before) // 1024)"
    )
    plain = {k: v for k, v in os.environ.items() if k not in ("PYTHONMALLOC", "PYTHONDEVMODE", "PYTHONTRACEMALLOC")}
    devices, grown_mib = map(int, python_output(code, timeout=120, env=plain).split())
    assert devices == 1_000
    assert grown_mib < 9  # 18 when the tags were the parse's own objects


def test_fleet_tags_refuse_what_an_import_refuses(tmp_path: Path) -> None:
    path = tmp_path / "fleet.csv"
    rows = [
        _device("a", external_ids={"dev_eui": "00000000000000AA"}),
        _device("b", external_ids={"dev_eui": "00000000000000AA", "senml": "urn:dev:b"}),
        _device("a"),
        _device("c", external_ids={"senml": "urn:dev:b"}),
    ]
    path.write_text(render_csv(rows), encoding="utf-8")
    with pytest.raises(ImportRefused) as by_file:
        fleet_tags(path)
    registry = DeviceRegistry(MEMORY_URL)
    try:
        with pytest.raises(ImportRefused) as by_import:
            registry.import_devices(read_devices(path), source=str(path))
    finally:
        registry.close()
    assert by_file.value.problems == by_import.value.problems
    assert by_file.value.problems == [
        "row 3: device 'a' appears again (first at row 1)",
        "row 2: dev_eui '00000000000000aa' is given to device 'a' too (row 1)",
        "row 4: senml 'urn:dev:b' is given to device 'b' too (row 2)",
    ]
    assert str(by_file.value) == str(by_import.value)
