"""The last active admin key cannot be revoked — the bootstrap key included — by the API or the CLI.

Revoking it would lock every admin out (the bootstrap key comes back only with a restart). The API
runs in-process (Starlette's TestClient, lifespan included) on a real alert store, SQLite and
PostgreSQL; ``ioc api keys revoke`` runs through the ``ioc`` command's error handling.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alerts.errors import NotFound
from api.config import ApiSettings
from api.keys import BOOTSTRAP_ID, KeyStore, LastAdminKey
from api.main import create_app
from contract.fleet import dump_fleet
from ioc import cli
from ioc.servers import free_port
from simulators.fleetgen import generate_fleet

with warnings.catch_warnings():  # Starlette 1.x nudges towards httpx2; httpx is what the project has
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

BOOTSTRAP = "bootstrap-" + "b" * 40


@pytest.fixture
def client(alerts_location: Path | str, tmp_path: Path) -> Iterator[TestClient]:
    """The API with the bootstrap admin key (``IOC_API_ADMIN_KEY``) and no other key."""
    dump_fleet(generate_fleet(3, seed=1), tmp_path / "fleet.yaml")
    dead = free_port()  # the key routes need neither InfluxDB nor the broker
    settings = ApiSettings(
        _env_file=None,
        influx_url=f"http://127.0.0.1:{dead}",
        mqtt_url=f"mqtt://127.0.0.1:{dead}",
        fleet=tmp_path / "fleet.yaml",
        alerts_db=alerts_location,
        api_admin_key=BOOTSTRAP,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_bootstrap_key_cannot_revoke_itself(client: TestClient) -> None:
    r = client.delete(f"/v1/keys/{BOOTSTRAP_ID}", headers=_as(BOOTSTRAP))
    assert r.status_code == 409, r.text
    assert "last active admin key" in r.json()["error"]
    assert client.get("/v1/keys", headers=_as(BOOTSTRAP)).status_code == 200  # still an admin


def test_an_admin_key_goes_once_another_is_there(client: TestClient) -> None:
    r = client.post("/v1/keys", headers=_as(BOOTSTRAP), json={"name": "An", "scope": "admin"})
    assert r.status_code == 201, r.text
    second = r.json()
    reader = client.post("/v1/keys", headers=_as(BOOTSTRAP), json={"name": "grafana", "scope": "read"}).json()

    assert client.delete(f"/v1/keys/{BOOTSTRAP_ID}", headers=_as(second["key"])).status_code == 204
    assert client.get("/v1/keys", headers=_as(BOOTSTRAP)).status_code == 401  # revoked at once
    r = client.delete(f"/v1/keys/{second['id']}", headers=_as(second["key"]))
    assert r.status_code == 409, r.text  # now the last one
    assert client.delete(f"/v1/keys/{reader['id']}", headers=_as(second["key"])).status_code == 204
    assert client.delete(f"/v1/keys/{BOOTSTRAP_ID}", headers=_as(second["key"])).status_code == 204  # revoked: fine
    active = client.get("/v1/keys", headers=_as(second["key"])).json()
    assert [k["id"] for k in active] == [second["id"]]


def test_the_store_never_revokes_the_last_admin_key(alerts_location: Path | str) -> None:
    keys = KeyStore(alerts_location)
    try:
        keys.ensure_bootstrap(BOOTSTRAP)
        reader, _ = keys.create("grafana", "read")
        with pytest.raises(LastAdminKey, match=f"{BOOTSTRAP_ID} is the last active admin key"):
            keys.revoke(BOOTSTRAP_ID)
        assert keys.get(BOOTSTRAP_ID).active
        assert not keys.revoke(reader.id).active
        with pytest.raises(NotFound):
            keys.revoke("key_nope")
        other, _ = keys.create("An", "admin")
        assert not keys.revoke(BOOTSTRAP_ID).active
        with pytest.raises(LastAdminKey):
            keys.revoke(other.id)
        keys.ensure_bootstrap(BOOTSTRAP)  # a restart brings the bootstrap key back
        assert not keys.revoke(other.id).active
    finally:
        keys.close()


def test_two_admins_revoking_each_other_at_once_leave_one(alerts_location: Path | str) -> None:
    """Writers run one at a time, so the check and the revocation cannot interleave."""
    keys = KeyStore(alerts_location)
    try:
        first, _ = keys.create("An", "admin")
        second, _ = keys.create("Bình", "admin")
        start = threading.Barrier(2)
        refused: list[str] = []

        def revoke(key_id: str) -> None:
            start.wait()
            try:
                keys.revoke(key_id)
            except LastAdminKey:
                refused.append(key_id)

        threads = [threading.Thread(target=revoke, args=(k.id,)) for k in (first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(refused) == 1
        assert [k.scope.value for k in keys.list_keys()] == ["admin"]
    finally:
        keys.close()


def test_the_cli_refuses_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("IOC_ALERTS_DB", raising=False)
    keys = KeyStore(tmp_path / "alerts.db")
    only, _ = keys.create("An", "admin")
    keys.close()
    r = CliRunner().invoke(cli.app, ["api", "keys", "revoke", only.id, "--db", "alerts.db"])
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert lines == [
        f"error: {only.id} is the last active admin key: revoking it would lock every admin out; "
        "create another admin key first (ioc api keys create --scope admin)"
    ]
    keys = KeyStore(tmp_path / "alerts.db")
    assert keys.get(only.id).active
    keys.close()
