"""The desk's pure parts: which files may be served, the page's security policy, the stream and desk
settings, and which thresholds of a pack apply to a device."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from api.config import ApiSettings
from api.desk import DESK_DIR, content_security_policy, desk_file
from api.errors import NotFoundError
from api.routes.station import thresholds
from contract.fields import Kind
from contract.fleet import Device
from rules.pack import parse_pack


def _settings(**kw: object) -> ApiSettings:
    return ApiSettings(_env_file=None, **kw)  # type: ignore[arg-type]


# -- desk files ------------------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    desk = tmp_path / "desk"
    (desk / "img").mkdir(parents=True)
    (desk / "index.html").write_text("<html></html>")
    (desk / "img" / "logo.svg").write_text("<svg/>")
    (desk / "notes.py").write_text("secret = 1")
    (desk / ".env").write_text("IOC_API_ADMIN_KEY=x")
    (tmp_path / "outside.js").write_text("alert(1)")
    os.symlink(tmp_path / "outside.js", desk / "link.js")
    return desk


def test_desk_files_of_known_types_inside_the_folder_are_served(root: Path) -> None:
    assert desk_file("index.html", root) == (root / "index.html").resolve()
    assert desk_file("img/logo.svg", root) == (root / "img" / "logo.svg").resolve()


@pytest.mark.parametrize(
    "path",
    ["", "/etc/passwd", "../outside.js", "img/../../outside.js", "img/../index.html", "./index.html", "img//logo.svg",
     "img", "img/", "notes.py", ".env", "link.js", "missing.js", "index.html\x00.js", "img\\logo.svg"],
)  # fmt: skip
def test_anything_else_is_not_found(root: Path, path: str) -> None:
    with pytest.raises(NotFoundError):
        desk_file(path, root)


def test_the_shipped_desk_has_its_page() -> None:
    assert desk_file("index.html") == (DESK_DIR / "index.html").resolve()


def test_the_page_may_load_only_its_own_code_and_tiles_from_the_tile_server() -> None:
    plain = content_security_policy(None)
    assert "script-src 'self';" in plain
    assert "connect-src 'self';" in plain
    assert "img-src 'self' data:;" in plain
    assert "style-src 'self';" in plain, "no inline styles"
    tiles = content_security_policy("https://tile.example.org/{z}/{x}/{y}.png")
    assert "img-src 'self' data: https://tile.example.org;" in tiles
    # {s}: the page loads subdomain "a" (api/desk/lib.js tileUrl); the policy must allow that very host
    sub = content_security_policy("https://{s}.tile.example.org:8443/{z}/{x}/{y}.png")
    assert "img-src 'self' data: https://a.tile.example.org:8443;" in sub


# -- settings --------------------------------------------------------------------------------------


def test_stream_and_desk_settings_have_safe_defaults() -> None:
    s = _settings()
    assert (s.api_stream_poll_s, s.api_desk_tile_url) == (1.0, None)
    assert _settings(api_desk_tile_url="  ").api_desk_tile_url is None
    for url in ("https://tile.example.org/{z}/{x}/{y}.png", "https://{s}.tile.example.org/{z}/{x}/{y}.png"):
        assert _settings(api_desk_tile_url=url).api_desk_tile_url == url


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("api_stream_poll_s", 0, "greater than or equal to 0.05"),
        ("api_stream_poll_s", 61, "less than or equal to 60"),
        ("api_desk_tile_url", "https://tile.example.org/{z}/{x}.png", r"\{z\}, \{x\} and \{y\}"),
        ("api_desk_tile_url", "ftp://tile.example.org/{z}/{x}/{y}.png", "http"),
        ("api_desk_tile_url", "https://a.example/{z}/{x}/{y}.png; script-src *", "http"),
        ("api_desk_tile_url", "https://bản-đồ.example/{z}/{x}/{y}.png", "ASCII"),  # a header is Latin-1
        ("api_desk_tile_url", "https://{z}.example/{x}/{y}.png", "in its path"),  # a host per tile: no policy
        ("api_desk_tile_url", "https:///{z}/{x}/{y}.png", "http"),
    ],
)
def test_bad_stream_and_desk_settings_are_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _settings(**{field: value})


# -- thresholds ------------------------------------------------------------------------------------

MESSAGE = {"vi": "x {value}", "en": "x {value}"}
PACK = parse_pack(
    {
        "name": "t",
        "rules": [
            {"id": "SAL_HIGH", "kind": "salinity", "condition": {"type": "threshold", "field": "salinity_ppt",
             "op": ">=", "value": 4.0}, "severity": "warning", "critical_above": 8.0, "message": MESSAGE,
             "source": "t", "title": {"vi": "mặn cao", "en": "salinity high"}},
            {"id": "SAL_BT", "kind": "salinity", "select": {"province": ["ben_tre"]}, "condition": {"type": "threshold",
             "field": "salinity_ppt", "op": ">", "value": 1.0}, "severity": "info", "message": MESSAGE, "source": "t"},
            {"id": "SAL_CT", "kind": "salinity", "select": {"province": ["can_tho"]}, "condition": {"type": "threshold",
             "field": "salinity_ppt", "op": ">", "value": 2.0}, "severity": "info", "message": MESSAGE, "source": "t"},
            {"id": "SAL_OFF", "kind": "salinity", "enabled": False, "condition": {"type": "threshold",
             "field": "salinity_ppt", "op": ">", "value": 3.0}, "severity": "info", "message": MESSAGE, "source": "t"},
            {"id": "SAL_MEAN", "kind": "salinity", "condition": {"type": "window", "field": "salinity_ppt",
             "stat": "mean", "window": "1h", "op": ">", "value": 5.0}, "severity": "info", "message": MESSAGE,
             "source": "t"},
            {"id": "PH_RANGE", "kind": "water_quality", "condition": {"type": "range", "field": "ph", "low": 6.5,
             "high": 9.0}, "severity": "warning", "message": MESSAGE, "source": "t"},
            {"id": "DO_ONE", "kind": "water_quality", "select": {"devices": ["wq-1"]}, "condition": {"type":
             "threshold", "field": "do_mg_l", "op": "<", "value": 3.0}, "severity": "critical", "message": MESSAGE,
             "source": "t"},
            {"id": "TURB", "kind": "water_quality", "select": {"devices": ["wq-1"]}, "condition": {"type":
             "threshold", "field": "turbidity_ntu", "op": ">", "value": 50.0}, "severity": "info",
             "critical_above": 200.0, "message": MESSAGE, "source": "t"},
            {"id": "DO_LOW", "kind": "water_quality", "select": {"devices": ["wq-1"]}, "condition": {"type":
             "threshold", "field": "do_mg_l", "op": "<", "value": 4.0}, "severity": "warning",
             "critical_above": 2.0, "message": MESSAGE, "source": "t"},
        ],
    },
    "test pack",
)  # fmt: skip


def device(id: str, kind: Kind, province: str = "ben_tre") -> Device:
    return Device(id=id, kind=kind, province=province, district="ba_tri", site="river", lat=10.0, lon=106.5)


def test_thresholds_are_the_fixed_levels_of_the_rules_that_select_the_device() -> None:
    got = [(t.rule_id, t.field, t.op, t.value, t.severity) for t in thresholds(PACK, device("sal-1", Kind.SALINITY))]
    assert got == [
        ("SAL_BT", "salinity_ppt", ">", 1.0, "info"),
        ("SAL_HIGH", "salinity_ppt", ">=", 4.0, "warning"),
        ("SAL_HIGH", "salinity_ppt", ">=", 8.0, "critical"),  # critical_above
    ], "not Cần Thơ's rule, not a disabled one, not a window"
    [high] = [t for t in thresholds(PACK, device("sal-1", Kind.SALINITY)) if t.value == 4.0]
    assert (high.name_vi, high.name_en) == ("mặn cao", "salinity high")
    [bt] = [t for t in thresholds(PACK, device("sal-1", Kind.SALINITY)) if t.rule_id == "SAL_BT"]
    assert (bt.name_vi, bt.name_en) == ("SAL_BT", "SAL_BT"), "a rule without a title: its id"


def test_a_range_gives_both_ends_and_a_device_list_selects_by_id() -> None:
    wq = [(t.rule_id, t.field, t.op, t.value) for t in thresholds(PACK, device("wq-1", Kind.WATER_QUALITY))]
    assert wq == [
        ("DO_LOW", "do_mg_l", "<=", 2.0),  # critical_above on a falling rule: critical at or below it
        ("DO_ONE", "do_mg_l", "<", 3.0),
        ("DO_LOW", "do_mg_l", "<", 4.0),
        ("PH_RANGE", "ph", "<", 6.5),
        ("PH_RANGE", "ph", ">", 9.0),
        ("TURB", "turbidity_ntu", ">", 50.0),
        ("TURB", "turbidity_ntu", ">=", 200.0),  # as the engine escalates: at the level itself
    ]
    other = [t.rule_id for t in thresholds(PACK, device("wq-2", Kind.WATER_QUALITY))]
    assert other == ["PH_RANGE", "PH_RANGE"]
    assert thresholds(PACK, device("cam-1", Kind.CAMERA)) == []
