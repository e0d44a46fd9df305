"""The generated Grafana dashboards against Grafana's own published schema: npm's ``@grafana/schema``
at the version ``docker compose`` runs (11.6; tests/browser/package-lock.json), checked by the
TypeScript compiler (tests/browser/grafana-schema.mjs), since the package ships TypeScript types
generated from Grafana's CUE schemas and no JSON Schema.

Covered: the whole dashboard model as the package's ``Dashboard`` — its keys (an unknown key
fails), types and enum values: templating variables, annotations, time, links, panels (``Panel`` or
``RowPanel``: grid position, field config with thresholds, mappings, overrides, transformations,
links); and for each panel whose plugin the package describes (timeseries, barchart, bargauge,
stat, table, geomap …) its ``options`` and ``fieldConfig.defaults.custom`` as that plugin's
``Options`` / ``FieldConfig``, every key optional there because Grafana fills in the plugin's
defaults.

Not covered: queries (``targets`` and annotation targets are the data source's; the package has no
InfluxDB query type: only DataQuery's own keys are typed), values inside free-form maps (overrides'
property values, transformation options, geomap layer configs), plugins the package does not
describe, and what only a running Grafana checks (panel ids unique, datasource uids existing,
queries valid: tests/integration/test_dashboard_queries.py runs them against InfluxDB).

One allowance: grafana-foundation-sdk writes the interval variable's ``auto``, ``auto_min`` and
``auto_count`` on every variable, which the package's ``VariableModel`` does not declare; they are
removed from non-interval variables before the check (Grafana ignores them there).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dashboards.export import dashboards
from tests.browser.node import run_node

INTERVAL_ONLY = ("auto", "auto_min", "auto_count")


def _without_sdk_extras(model: dict[str, Any]) -> dict[str, Any]:
    model = copy.deepcopy(model)
    for variable in model.get("templating", {}).get("list", []):
        if variable.get("type") != "interval":
            for key in INTERVAL_ONLY:
                variable.pop(key, None)
    return model


def _check(models: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    items = [{"name": name, "dashboard": _without_sdk_extras(m)} for name, m in models.items()]
    return {r["name"]: r for r in run_node("grafana-schema.mjs", items)}


def _errors(result: dict[str, Any]) -> str:
    return "\n".join(f"line {e['line']}: {e['source'][:120]}\n    {e['message'][:800]}" for e in result["errors"])


@pytest.fixture(scope="module")
def generated() -> dict[str, dict[str, Any]]:
    return {d["uid"]: d for d in dashboards()}


def test_generated_dashboards_match_grafanas_schema(generated: dict[str, dict[str, Any]]) -> None:
    results = _check(generated)
    assert sorted(results) == sorted(generated)
    for name, result in results.items():
        assert result["errors"] == [], f"{name}:\n{_errors(result)}"
    checked: dict[str, int] = {}
    for result in results.values():
        for kind, n in result["panels_checked"].items():
            checked[kind] = checked.get(kind, 0) + n
    # every plugin the dashboards use has its options checked (rows are checked as RowPanel)
    used = {p["type"] for m in generated.values() for p in m["panels"]} - {"row"}
    assert set(checked) == used, (checked, used)


def _panel(model: dict[str, Any], kind: str) -> dict[str, Any]:
    panel: dict[str, Any] = next(p for p in model["panels"] if p["type"] == kind)
    return panel


WRONG: dict[str, tuple[Any, str]] = {
    "grid height as text": (lambda m: _panel(m, "timeseries")["gridPos"].update(h="8"), "string"),
    "unknown panel key": (lambda m: _panel(m, "timeseries").update(colour="red"), "colour"),
    "legend mode outside its enum": (
        lambda m: _panel(m, "timeseries")["options"]["legend"].update(displayMode="sideways"),
        "sideways",
    ),
    "line width as text": (
        lambda m: _panel(m, "timeseries")["fieldConfig"]["defaults"]["custom"].update(lineWidth="thick"),
        "string",
    ),
    "threshold mode unknown": (
        lambda m: _panel(m, "timeseries")["fieldConfig"]["defaults"].update(thresholds={"mode": "relative"}),
        "relative",
    ),
    "time range as a number": (lambda m: m.update(time={"from": 0, "to": "now"}), "number"),
    "variable refresh unknown": (lambda m: m["templating"]["list"][0].update(refresh="hourly"), "hourly"),
}


@pytest.fixture(scope="module")
def wrong(generated: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each wrong change applied to a copy of the salinity dashboard, all checked in one run."""
    models = {}
    for what, (change, _) in WRONG.items():
        model = copy.deepcopy(generated["ioc-salinity"])
        change(model)
        models[what] = model
    return _check(models)


@pytest.mark.parametrize("what", list(WRONG))
def test_the_check_rejects_a_wrong_dashboard(wrong: dict[str, dict[str, Any]], what: str) -> None:
    result = wrong[what]
    expected = WRONG[what][1]
    assert result["errors"], f"{what}: accepted"
    assert any(expected in e["message"] or expected in e["source"] for e in result["errors"]), _errors(result)
