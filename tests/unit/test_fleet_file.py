"""The fleet file (contract.fleet): load, validate, dump."""

from __future__ import annotations

from pathlib import Path

import pytest

from contract.fields import Kind
from contract.fleet import Device, Fleet, FleetError, dump_fleet, load_fleet

VALID = """\
version: 1
devices:
  - id: wq-bt-0001
    kind: water_quality
    province: ben_tre
    district: ba_tri
    site: pond
    crop: shrimp
    lat: 10.04
    lon: 106.6
    km_from_sea: 10
    faults: [drift, gaps]
  - id: CAM_01
    kind: camera
    province: ca_mau
    district: nam_can
    site: road
    lat: 8.76
    lon: 104.99
"""

_DEVICE = (
    "  - {{id: {id}, kind: {kind}, province: {province}, district: ba_tri, site: {site},"
    " lat: {lat}, lon: 106.6{extra}}}\n"
)


def _fleet_yaml(*devices: dict[str, object]) -> str:
    text = "devices:\n"
    for d in devices:
        values = {
            "id": "d-1",
            "kind": "salinity",
            "province": "ben_tre",
            "site": "sluice",
            "lat": 10.0,
            "extra": "",
            **d,
        }
        text += _DEVICE.format(**values)
    return text


def _write(tmp_path: Path, text: str, name: str = "fleet.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_load_valid(tmp_path: Path) -> None:
    fleet = load_fleet(_write(tmp_path, VALID))
    assert [d.id for d in fleet.devices] == ["wq-bt-0001", "CAM_01"]
    wq, cam = fleet.devices
    assert wq.kind is Kind.WATER_QUALITY
    assert (wq.province, wq.district, wq.site, wq.crop) == ("ben_tre", "ba_tri", "pond", "shrimp")
    assert wq.faults == ("drift", "gaps")
    assert wq.km_from_sea == 10
    assert cam.kind is Kind.CAMERA
    assert cam.crop == "none"  # defaults
    assert cam.faults == ()
    assert cam.coast == "east"
    assert fleet.by_id()["CAM_01"] is cam


@pytest.mark.parametrize(
    ("devices", "message"),
    [
        ([{"id": "a"}, {"id": "a"}], "device id 'a' appears twice"),
        ([{"id": "a"}, {"id": "b"}, {"id": "a"}], "appears twice"),
        ([{"id": '"a b"'}], "devices.0.id"),
        ([{"id": '"a,b"'}], "devices.0.id"),
        ([{"id": '"wq/1"'}], "devices.0.id"),
        ([{"id": "x" * 65}], "devices.0.id"),
        ([{"id": '""'}], "devices.0.id"),
        ([{"id": "ok"}, {"id": "ok2", "kind": "fish_pond"}], "devices.1.kind"),
        ([{"province": "Ben_Tre"}], "devices.0.province"),
        ([{"site": "ocean"}], "devices.0.site"),
        ([{"lat": 91}], "devices.0.lat"),
        ([{"extra": ", colour: red"}], "devices.0.colour"),
        ([{"extra": ", faults: [meteor]"}], "devices.0.faults"),
    ],
)
def test_invalid_devices(tmp_path: Path, devices: list[dict[str, object]], message: str) -> None:
    path = _write(tmp_path, _fleet_yaml(*devices))
    with pytest.raises(FleetError) as info:
        load_fleet(path)
    text = str(info.value)
    assert str(path) in text
    assert "invalid fleet file" in text
    assert message in text


@pytest.mark.parametrize(
    "text",
    ["", "- 1\n- 2\n", "just a string\n", "version: 2\ndevices: []\n", "devices: 5\n", "devices: []\nextra: 1\n"],
)
def test_invalid_document(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(FleetError, match="invalid fleet file") as info:
        load_fleet(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text", ["devices: [\n", "devices:\n\t- x\n", "a: b: c\n", "{unclosed"])
def test_invalid_yaml(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(FleetError, match="not valid YAML") as info:
        load_fleet(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "fleet.yaml"
    with pytest.raises(FleetError, match="cannot read the fleet file") as info:
        load_fleet(path)
    assert str(path) in str(info.value)
    assert "No such file" in str(info.value)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match="cannot read") as info:
        load_fleet(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_not_utf8_is_fleet_error(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_bytes(b"devices:\n  - id: \xff\xfe\n")
    with pytest.raises(FleetError) as info:
        load_fleet(path)
    assert str(path) in str(info.value)


def test_fleet_error_is_value_error() -> None:
    assert issubclass(FleetError, ValueError)


def test_error_lists_at_most_ten_problems(tmp_path: Path) -> None:
    path = _write(tmp_path, _fleet_yaml(*({"id": f'"bad id {i}"'} for i in range(15))))
    with pytest.raises(FleetError) as info:
        load_fleet(path)
    text = str(info.value)
    assert "devices.9.id" in text
    assert "devices.10.id" not in text


def test_dump_load_round_trip(tmp_path: Path) -> None:
    fleet = Fleet(
        devices=(
            Device(
                id="sal-cm-0031",
                kind=Kind.SALINITY,
                province="ca_mau",
                district="u_minh",
                site="sluice",
                crop="rice",
                lat=9.4,
                lon=104.97,
                km_from_sea=20,
                coast="west",
                faults=("stuck", "offline"),
            ),
            Device(
                id="trap_1",
                kind=Kind.LIGHT_TRAP,
                province="dong_thap",
                district="tam_nong",
                site="field",
                crop="rice",
                lat=10.72,
                lon=105.52,
            ),
            Device(
                id="CAM-9",
                kind=Kind.CAMERA,
                province="long_an",
                district="ben_luc",
                site="school",
                lat=10.64,
                lon=106.49,
            ),
        )
    )
    path = tmp_path / "sub" / "dir" / "fleet.yaml"  # parents are created
    dump_fleet(fleet, path)
    assert load_fleet(path) == fleet
    text = path.read_text(encoding="utf-8")
    assert text.index("sal-cm-0031") < text.index("trap_1") < text.index("CAM-9")
    assert "!!python" not in text  # plain YAML, no Python tags (safe_load reads it)
    # a second round trip is byte-identical (stable key order)
    again = tmp_path / "again.yaml"
    dump_fleet(load_fleet(path), again)
    assert again.read_text(encoding="utf-8") == text


def test_valid_file_round_trips(tmp_path: Path) -> None:
    fleet = load_fleet(_write(tmp_path, VALID))
    out = tmp_path / "out.yaml"
    dump_fleet(fleet, out)
    assert load_fleet(out) == fleet
