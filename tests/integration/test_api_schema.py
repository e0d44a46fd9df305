"""The API does what its OpenAPI document says: schemathesis, every phase and every check, over real HTTP.

The app is served by uvicorn on a free loopback port, over the InfluxDB and the alert store of
``simulated_data`` (a copy of the store, since the run creates, changes and deletes things); the
schemathesis command line runs against ``/openapi.json`` with an admin key: the examples,
coverage, fuzzing and stateful phases, all checks, and any failure fails the test.

Two things the schema cannot say are told to schemathesis here, in its configuration file:

- which device and alert ids exist (a dictionary it draws path parameters from, half of the time),
  so the history and alert routes are reached, not only their 404;
- the operations whose schema-valid requests may still be refused with 422 because of what JSON
  Schema cannot express (their OpenAPI 422 answer says which): a rule pack's own rules, `to` after
  `from` and at most IOC_API_MAX_POINTS buckets or IOC_API_BACKTEST_MAX_HOURS, and a webhook URL
  that must resolve to an address the target policy allows, and a device import whose body (any
  string, to JSON Schema) must be a valid fleet file. Everywhere else a 422 for a request the
  schema allows is a failure.

``IOC_SCHEMATHESIS_EXAMPLES`` (default 15) sets the examples per operation and phase; a big run
(``IOC_SCHEMATHESIS_EXAMPLES=300``) is the same test.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from api.keys import KeyStore
from api.main import create_app
from ioc.servers import ServerProcess, free_port
from rules.pack import DEFAULT_PACK
from tests.conftest import SimulatedData
from tests.integration.test_api import ADMIN, api_settings, broker, copy_store  # noqa: F401  (broker: a fixture)

EXAMPLES = int(os.environ.get("IOC_SCHEMATHESIS_EXAMPLES", "15"))
SEMANTIC_422 = (
    "POST /v1/rules/validate",
    "POST /v1/rules/backtest",
    "GET /v1/readings/{device_id}/{field}",
    "POST /v1/subscriptions",
    "PATCH /v1/subscriptions/{sub_id}",
    "POST /v1/devices/import",
)
"""Operations whose schema-valid requests can be refused for reasons JSON Schema cannot express."""


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def write_config(path: Path, device_ids: list[str], alert_ids: list[str]) -> Path:
    """schemathesis.toml: real ids to draw from, and the operations where 422 is a valid answer."""
    accepted = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
    lines = [
        "[dictionaries.devices]",
        f"values = {_toml_list(device_ids)}",
        "[dictionaries.alerts]",
        f"values = {_toml_list(alert_ids)}",
        "[parameters]",
        '"path.device_id" = { dictionary = "devices", probability = 0.5 }',
        '"query.device_id" = { dictionary = "devices", probability = 0.5 }',
        '"path.alert_id" = { dictionary = "alerts", probability = 0.5 }',
    ]
    for name in SEMANTIC_422:
        lines += [
            "[[operations]]",
            f"include-name = {json.dumps(name)}",
            f"checks.positive_data_acceptance.expected-statuses = {_toml_list([*accepted, '422'])}",
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class Served:
    """The app under uvicorn in a thread, on a free loopback port."""

    def __init__(self, app: FastAPI) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="api-under-test", daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the API did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def served(
    simulated_data: SimulatedData,
    broker: ServerProcess,  # noqa: F811
    tmp_path: Path,
) -> Iterator[tuple[Served, str]]:
    db = copy_store(simulated_data.alerts_db, tmp_path / "alerts.db")
    pack = tmp_path / "pack.yaml"
    pack.write_text(DEFAULT_PACK.read_text(encoding="utf-8"), encoding="utf-8")
    settings = api_settings(
        simulated_data, db, pack, broker.port, webhook_allow_private=True, api_backtest_max_hours=2.0
    )
    keys = KeyStore(db)
    token = keys.create("schemathesis", "admin")[1]
    keys.close()
    with Served(create_app(settings)) as server:
        yield server, token


def test_the_api_does_what_its_openapi_says(
    served: tuple[Served, str], simulated_data: SimulatedData, tmp_path: Path
) -> None:
    server, token = served
    with sqlite3.connect(tmp_path / "alerts.db") as conn:
        alert_ids = [r[0] for r in conn.execute("SELECT id FROM alerts ORDER BY fired_at_ms DESC LIMIT 20")]
    assert alert_ids
    config = write_config(tmp_path / "schemathesis.toml", [d.id for d in simulated_data.fleet.devices], alert_ids)
    report = tmp_path / "report.json"
    argv = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run", f"{server.url}/openapi.json",
        "--phases", "examples,coverage,fuzzing,stateful", "--checks", "all", "--max-examples", str(EXAMPLES),
        "--seed", "1", "--workers", "1", "--header", f"Authorization: Bearer {token}", "--no-color",
        "--report", "json", "--report-json-path", str(report), "--request-timeout", "30",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=tmp_path, check=False)
    summary = json.loads(report.read_text(encoding="utf-8"))
    cases = summary["test_cases"]
    print(f"schemathesis: {cases['generated']} cases, {cases['with_failures']} with failures, "
          f"{summary['running_time']:.0f} s")  # fmt: skip
    assert done.returncode == 0, done.stdout[-20_000:] + done.stderr[-5_000:]
    assert summary["failures"] == []
    assert summary["errors"] == []
    assert cases["with_failures"] == 0
    assert summary["operations"]["tested"] == summary["operations"]["total"] >= 28
    assert {k: v["status"] for k, v in summary["phases"].items() if k != "examples"} == {
        "coverage": "success", "fuzzing": "success", "stateful": "success",
    }  # fmt: skip
    assert cases["generated"] >= 20 * EXAMPLES
