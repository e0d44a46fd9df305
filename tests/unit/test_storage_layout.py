"""The storage layout has one home (storage/layout.py): what ingest writes is what it declares, no
other module spells out a measurement name again, and api/ reads InfluxDB through storage/, not
through ingest's internals."""

from __future__ import annotations

import ast
import math
import re
import tomllib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from contract.fields import CAMERA_EVENTS, Kind
from ingest.alerting import alert_line
from ingest.registry import Registry, registry_tags
from rules.model import DeviceInfo, Severity, State, Transition
from simulators.fleetgen import generate_fleet
from storage.layout import (
    ALERT_FIELDS,
    ALERT_TAGS,
    ALERTS_MEASUREMENT,
    DEVICE_TAGS,
    EVENT,
    KIND_MEASUREMENTS,
    STATUS_MEASUREMENT,
    TELEMETRY_MEASUREMENTS,
)

ROOT: Final = Path(__file__).resolve().parents[2]
PACKAGES: Final[list[str]] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"][
    "packages"
]
"""Our code, as mypy checks it (tests/ is scanned out: it pins the layout's values on purpose)."""

# --- what ingest writes is what the layout says ---------------------------------------------------


def _tag_keys(series: str) -> list[str]:
    return [part.split("=", 1)[0] for part in series.split(",")[1:]]


def test_kind_measurements_are_the_kinds_in_order() -> None:
    assert list(KIND_MEASUREMENTS) == list(Kind)
    assert tuple(k.value for k in Kind) == TELEMETRY_MEASUREMENTS
    assert len({*TELEMETRY_MEASUREMENTS, STATUS_MEASUREMENT, ALERTS_MEASUREMENT}) == len(Kind) + 2


def test_series_keys_carry_the_device_tags_sorted_and_events_their_event_tag() -> None:
    assert list(DEVICE_TAGS) == sorted(DEVICE_TAGS)
    registry = Registry(generate_fleet(60, 3).devices)
    assert {d.device_kind for d in registry.devices} == set(Kind)
    for device in registry.devices:
        assert sorted(registry_tags(device.tags())) == list(DEVICE_TAGS)
        assert device.series.split(",", 1)[0] == KIND_MEASUREMENTS[device.device_kind]
        assert _tag_keys(device.series) == list(DEVICE_TAGS)
        assert device.status_series.split(",", 1)[0] == STATUS_MEASUREMENT
        assert _tag_keys(device.status_series) == list(DEVICE_TAGS)
        assert _tag_keys(device.event_series(CAMERA_EVENTS[0])) == sorted([*DEVICE_TAGS, EVENT])


def test_alert_points_carry_the_alert_tags_and_fields_in_order() -> None:
    device = DeviceInfo("wq-1", "water_quality", "ben_tre", "ba_tri", "pond", "shrimp", "Ba Tri", "Ba Tri")
    fired = Transition("do_low", 0, "wq-1", State.FIRING, 1_700_000_000_000, 2.5, Severity.WARNING, "thấp", "low")
    head, fields, ts = alert_line(fired, device).split(" ")
    assert head.split(",", 1)[0] == ALERTS_MEASUREMENT
    assert tuple(_tag_keys(head)) == ALERT_TAGS == tuple(sorted(ALERT_TAGS))
    assert tuple(f.split("=", 1)[0] for f in fields.split(",")) == ALERT_FIELDS
    assert ts == "1700000000000"
    no_data = Transition("silent", 0, "wq-1", State.FIRING, 1, math.nan, Severity.INFO, "im", "silent")
    assert "value=" not in alert_line(no_data, device)  # the one optional field


# --- the layout is declared once -------------------------------------------------------------------


def _project_files() -> Iterator[Path]:
    """Every module of ours but the layout's own package."""
    for package in PACKAGES:
        if package != "storage":
            yield from sorted((ROOT / package).rglob("*.py"))


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _docstrings(tree: ast.AST) -> set[ast.AST]:
    """String statements (module, class, function and attribute docstrings): prose, not layout."""
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
    }


def _is_openapi_tag(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """A FastAPI tag: an item of a ``tags=[...]`` argument (``APIRouter(tags=["alerts"])``), or the
    ``"name"`` of an OpenAPI tag object (``{"name": "alerts", "description": ...}``, api/main.py)."""
    parent = parents.get(node)
    if isinstance(parent, ast.List):
        keyword = parents.get(parent)
        return isinstance(keyword, ast.keyword) and keyword.arg == "tags"
    if isinstance(parent, ast.Dict) and node in parent.values:
        keys = [k.value for k in parent.keys if isinstance(k, ast.Constant)]
        return keys[parent.values.index(node)] == "name" and "description" in keys
    return False


def _uses(name: str, text: str) -> bool:
    """``text`` names measurement ``name``: it is the name, or InfluxQL quotes it (``FROM "alerts"``),
    or line protocol starts a point or series key with it (``device_status,device_id=…``).

    Text that merely contains the word is not a use: URL paths (``/v1/alerts``), prose, metric names,
    ``alerts.db``. An unquoted ``FROM alerts`` is SQL of the alert store (alerts/, scanned out for
    that name below), so InfluxQL identifiers are only recognised quoted, which is how we write them.
    """
    return text == name or f'"{name}"' in text or re.search(rf"(?:^|\n){name},", text) is not None


PENDING: Final[dict[tuple[str, str], int]] = {}
"""Known uses not replaced yet, with their count (none now)."""


def _measurement_literals() -> list[tuple[str, int, str]]:
    """(file, line, measurement) of every string that names a measurement, outside storage/ and tests/."""
    found = []
    for path in _project_files():
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
        parents, prose = _parents(tree), _docstrings(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Constant) or not isinstance(node.value, str) or node in prose:
                continue
            for name in (STATUS_MEASUREMENT, ALERTS_MEASUREMENT):
                if not _uses(name, node.value):
                    continue
                if name == ALERTS_MEASUREMENT and (rel.startswith("alerts/") or _is_openapi_tag(node, parents)):
                    continue  # the alert store's SQL table and the API's "alerts" tag share the word
                found.append((rel, node.lineno, name))
    return found


def test_measurement_names_are_spelt_out_only_in_the_layout() -> None:
    found = _measurement_literals()
    per_file = Counter((rel, name) for rel, _, name in found)
    unexpected = [
        f"{rel}:{line} {name!r}" for rel, line, name in found if per_file[rel, name] > PENDING.get((rel, name), 0)
    ]
    assert not unexpected, (
        "a measurement name spelt out outside storage/layout.py (import it from storage.layout): "
        + ", ".join(unexpected)
    )
    stale = {key: n for key, n in PENDING.items() if per_file[key] < n}
    assert not stale, f"fewer uses than PENDING allows (replaced? then lower or remove the entry): {stale}"


def test_the_scan_sees_what_it_must_and_not_what_it_must_not() -> None:
    """The checker itself: uses of a measurement name, and the look-alikes it must let pass."""
    assert _uses("alerts", "alerts")
    assert _uses("alerts", 'SELECT "level" FROM "alerts" WHERE $timeFilter')
    assert _uses("device_status", "device_status,device_id=a online=1i 1")
    assert _uses("device_status", "salinity,device_id=a seq=1i 1\ndevice_status,device_id=a online=1i 1")
    assert not _uses("alerts", "/v1/alerts")
    assert not _uses("alerts", "SELECT * FROM alerts WHERE id = ?")  # the alert store's SQL
    assert not _uses("alerts", "ioc_alerts_webhooks_queued")
    assert not _uses("device_status", "status")
    tree = ast.parse('r = APIRouter(prefix="/v1/alerts", tags=["alerts"])\nT = [{"name": "alerts", "description": ""}]')
    parents = _parents(tree)
    tags = [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value == "alerts"]
    assert len(tags) == 2
    assert all(_is_openapi_tag(n, parents) for n in tags)
    other = ast.parse('batch = {"alerts": columns}\nwrite("alerts")')
    parents = _parents(other)
    assert not any(
        _is_openapi_tag(n, parents) for n in ast.walk(other) if isinstance(n, ast.Constant) and n.value == "alerts"
    )


# --- who imports whom ------------------------------------------------------------------------------


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
    return out


API_READS_INGEST: Final = {("api/routes/rules.py", "ingest.backtest")}
"""What api/ may still import from ingest/: the backtest (``POST /v1/rules/backtest``) replays stored
readings through the engine as ingest does, with ingest's batch columns; it reads InfluxDB through
storage/ itself. Moving it (next to the rule engine, say) is a change of its own."""


def test_api_imports_nothing_from_ingest_but_the_backtest() -> None:
    found = {
        (path.relative_to(ROOT).as_posix(), module)
        for path in sorted((ROOT / "api").rglob("*.py"))
        for module in _imports(path)
        if module == "ingest" or module.startswith("ingest.")
    }
    assert found == API_READS_INGEST


def test_storage_imports_nothing_of_ours_but_the_contract() -> None:
    for path in sorted((ROOT / "storage").rglob("*.py")):
        ours = {m for m in _imports(path) if m.split(".")[0] in {*PACKAGES, "tests"}}
        assert {m.split(".")[0] for m in ours} <= {"contract", "storage"}, (path.name, ours)


def test_the_package_is_installed_and_type_checked() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "storage*" in project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert "storage" in PACKAGES


def test_rules_take_only_the_layout_from_storage() -> None:
    """rules/ is a pure library: the layout's names, never the InfluxDB client code."""
    storage = {m for path in (ROOT / "rules").rglob("*.py") for m in _imports(path) if m.split(".")[0] == "storage"}
    assert storage <= {"storage.layout"}
