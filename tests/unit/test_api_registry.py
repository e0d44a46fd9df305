"""The API's view of the device registry: its settings, its snapshot, and how registry errors answer."""

from __future__ import annotations

import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from api.config import ApiSettings
from api.errors import registry_error
from api.services import Registry
from contract.fleet import Device, dump_fleet
from ioc.demo import demo_fleet
from registry.errors import DeviceExists, DeviceNotFound, ImportRefused, RegistryError, RegistryUnavailable
from registry.source import open_source
from registry.store import DeviceRegistry


def _settings(**kw: Any) -> ApiSettings:
    return ApiSettings(_env_file=None, **kw)  # type: ignore[arg-type]


def device(device_id: str, **overrides: Any) -> Device:
    raw = {"id": device_id, "kind": "salinity", "province": "ben_tre", "district": "ba_tri", "site": "river",
           "lat": 10.0, "lon": 106.5, **overrides}  # fmt: skip
    return Device.model_validate(raw)


def test_settings_take_a_registry_url_or_a_fleet_file_not_both(tmp_path: Path) -> None:
    assert _settings().fleet_file == Path("var/fleet.yaml")
    assert _settings(fleet=tmp_path / "f.csv").fleet_file == tmp_path / "f.csv"
    assert _settings(registry_url="sqlite:///r.db").registry_url == "sqlite:///r.db"
    with pytest.raises(ValidationError, match=r"--registry-url \(IOC_REGISTRY_URL\) or --fleet \(IOC_FLEET\)"):
        _settings(registry_url="sqlite:///r.db", fleet=tmp_path / "f.yaml")


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        (DeviceNotFound("no device 'x' in the registry sqlite:///secret/path.db"), 404, "no such device"),
        (DeviceExists("device 'x' is registered already"), 409, "device 'x' is registered already"),
        (ImportRefused("body", ["row 2 ('x'): lat: too big"]), 422, "1 bad row(s), nothing imported"),
        (RegistryUnavailable("cannot open the registry postgresql://u:***@db/x"), 503, "unavailable"),
        (RegistryError("device 'x': lat: Input should be less than or equal to 90"), 422, "lat"),
    ],
)
def test_registry_errors_have_one_answer_each(error: RegistryError, status: int, message: str) -> None:
    answer = registry_error(error)
    assert answer.status == status
    assert message in answer.message
    assert "secret" not in answer.message
    assert "postgresql" not in answer.message
    if isinstance(error, ImportRefused):
        assert answer.detail == {"problems": ["row 2 ('x'): lat: too big"]}


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    with closing(DeviceRegistry(url)) as registry:
        registry.import_devices([device("b-2"), device("a-1"), device("c-3", state="decommissioned")])
    return url


def opened(url: str | None, fleet: Path, check_every_s: float = 0.2) -> Registry:
    source = open_source(url, fleet)
    return Registry(
        source.registry,
        revision=source.revision,
        records=source.records,
        in_memory=source.in_memory,
        check_every_s=check_every_s,
    )


def test_the_snapshot_is_in_id_order_with_every_state(url: str, tmp_path: Path) -> None:
    with closing(opened(url, tmp_path / "unused.yaml")) as registry:
        assert [d.id for d in registry.devices] == ["a-1", "b-2", "c-3"]
        assert registry.snapshot().ids == ("a-1", "b-2", "c-3")
        assert registry.get("c-3") is not None
        assert registry.fleet is registry.fleet  # one Fleet per snapshot


def test_the_snapshot_follows_the_database_at_most_once_per_interval(url: str, tmp_path: Path) -> None:
    with (
        closing(opened(url, tmp_path / "unused.yaml", check_every_s=0.3)) as registry,
        closing(DeviceRegistry(url)) as other,
    ):
        other.add(device("d-4"))
        other.set_state("a-1", "suspended")
        assert registry.get("d-4") is None  # not asked yet: the last check was just now
        deadline = time.monotonic() + 2
        while registry.get("d-4") is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert registry.get("d-4") == device("d-4")
        assert registry.get("a-1") == device("a-1", state="suspended")
        assert registry.revision == other.revision()


def test_writes_through_the_api_show_at_once(url: str, tmp_path: Path) -> None:
    with closing(opened(url, tmp_path / "unused.yaml", check_every_s=3600)) as registry:
        registry.add(device("e-5"))
        assert registry.get("e-5") == device("e-5")
        registry.update("b-2", {"crop": "durian"})
        assert registry.get("b-2") == device("b-2", crop="durian")
        result = registry.import_devices([device("f-6"), device("b-2", crop="durian")], source="test")
        assert (result.added, result.changed, result.unchanged) == (1, 0, 1)
        assert [d.id for d in registry.devices] == ["a-1", "b-2", "c-3", "e-5", "f-6"]
        with pytest.raises(DeviceExists):
            registry.add(device("a-1"))


def test_a_fleet_file_is_an_in_memory_registry_that_takes_writes(tmp_path: Path) -> None:
    fleet = demo_fleet(12, 1)
    path = tmp_path / "fleet.yaml"
    dump_fleet(fleet, path)
    with closing(opened(None, path)) as registry:
        assert registry.in_memory
        assert [d.id for d in registry.devices] == sorted(d.id for d in fleet.devices)
        registry.add(device("zz-new"))
        assert registry.refresh().by_id["zz-new"] == device("zz-new")
    with pytest.raises(RegistryError, match="cannot read the fleet file"):
        opened(None, tmp_path / "missing.yaml")


def test_a_registry_that_fails_keeps_the_snapshot(url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with closing(opened(url, tmp_path / "unused.yaml", check_every_s=0.01)) as registry:
        registry.source.close()  # its connections go; the next one opens a new, empty file
        for path in tmp_path.glob("registry.db*"):
            path.unlink()
        time.sleep(0.02)
        assert [d.id for d in registry.devices] == ["a-1", "b-2", "c-3"]
        assert "device registry unreachable, serving the devices known" in caplog.text
        with pytest.raises(RegistryUnavailable):
            registry.add(device("g-7"))
