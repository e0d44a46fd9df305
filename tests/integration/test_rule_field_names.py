"""A rule on a field that does not exist is refused by ``ioc rules validate`` and the API alike
(issue 11 §5): the typo ``salnity_ppt`` used to load, and its alert was silently never evaluated.

The CLI runs as a real process (the ``ioc`` console script); the API runs in-process (Starlette's
TestClient, lifespan included) on a real InfluxDB, Mosquitto and alert store.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.config import ApiSettings
from api.main import create_app
from contract.fleet import dump_fleet
from ioc.servers import InfluxServer, ServerProcess
from rules.pack import DEFAULT_PACK, load_pack
from simulators.fleetgen import generate_fleet

with warnings.catch_warnings():  # Starlette 1.x nudges towards httpx2; httpx is what the project has
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

IOC = str(Path(sys.executable).with_name("ioc"))
ADMIN = "admin-" + "k" * 40
GOOD = 'field: salinity_ppt, op: ">=", value: 0.5'
TYPO = 'field: salnity_ppt, op: ">=", value: 0.5'
REFUSAL = "rule SAL_FRUIT: condition.field: no field 'salnity_ppt' on salinity devices; did you mean salinity_ppt"


def typo_pack() -> str:
    text = DEFAULT_PACK.read_text(encoding="utf-8")
    assert text.count(GOOD) == 1
    return text.replace(GOOD, TYPO)


def test_ioc_rules_validate_refuses_the_typo(tmp_path: Path) -> None:
    pack = tmp_path / "typo.yaml"
    pack.write_text(typo_pack(), encoding="utf-8")
    out = subprocess.run([IOC, "rules", "validate", str(pack)], capture_output=True, text=True, timeout=60, check=False)
    assert (out.returncode, out.stdout) == (2, ""), out.stderr
    assert out.stderr.strip() == f"error: {pack}: {REFUSAL} or salinity_from_ec_ppt?"
    ok = subprocess.run([IOC, "rules", "validate"], capture_output=True, text=True, timeout=60, check=False)
    assert ok.returncode == 0, ok.stderr
    assert f"{len(load_pack(DEFAULT_PACK).rules)} rules" in ok.stdout


@pytest.fixture
def api(tmp_path: Path, mosquitto: ServerProcess, influxd: InfluxServer, influx_db: str) -> Iterator[httpx.Client]:
    dump_fleet(generate_fleet(8, seed=2), tmp_path / "fleet.yaml")
    pack = tmp_path / "pack.yaml"
    pack.write_text(DEFAULT_PACK.read_text(encoding="utf-8"), encoding="utf-8")
    settings = ApiSettings(
        _env_file=None,
        influx_url=influxd.url,
        influx_db=influx_db,
        fleet=tmp_path / "fleet.yaml",
        alerts_db=tmp_path / "alerts.db",
        rules_pack=pack,
        mqtt_url=f"mqtt://127.0.0.1:{mosquitto.port}",
        api_admin_key=ADMIN,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {ADMIN}"
        yield client


def test_the_api_refuses_the_typo(api: httpx.Client, tmp_path: Path) -> None:
    yaml_body = {"content-type": "application/yaml"}
    r = api.post("/v1/rules/validate", content=typo_pack().encode(), headers=yaml_body)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid rule pack"
    assert r.json()["detail"] == f"posted pack: {REFUSAL} or salinity_from_ec_ppt?"

    r = api.post("/v1/rules/backtest", json={"from": "-1h", "pack": typo_pack()})
    assert r.status_code == 422, r.text
    assert REFUSAL in r.json()["detail"]

    # A typo in the pack file on disk: the reload is refused, the loaded pack stays.
    count = api.get("/v1/rules").json()["count"]
    (tmp_path / "pack.yaml").write_text(typo_pack(), encoding="utf-8")
    r = api.post("/v1/rules/reload")
    assert r.status_code == 422, r.text
    assert REFUSAL in r.json()["detail"]
    assert api.get("/v1/rules").json()["count"] == count

    r = api.post("/v1/rules/validate", content=DEFAULT_PACK.read_bytes(), headers=yaml_body)
    assert (r.status_code, r.json()["count"]) == (200, count)
