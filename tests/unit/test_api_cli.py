"""``ioc api`` and ``ioc api keys …`` (the typer app the ``ioc`` command mounts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from api.keys import KeyStore

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env from the working tree
    for name in ("IOC_ALERTS_DB", "IOC_FLEET", "IOC_API_ADMIN_KEY", "IOC_API_PORT"):
        monkeypatch.delenv(name, raising=False)


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    db = tmp_path / "alerts.db"
    r = runner.invoke(app, ["keys", "create", "--scope", "operate", "--name", "lan", "--province", "ben_tre",
                            "--db", str(db), "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    created = json.loads(r.stdout)
    assert created["scope"] == "operate"
    assert created["provinces"] == ["ben_tre"]
    key = KeyStore(db).authenticate(created["key"])
    assert key is not None
    assert key.name == "lan"

    r = runner.invoke(app, ["keys", "list", "--db", str(db)])
    assert r.exit_code == 0
    assert created["id"] in r.stdout
    assert created["key"] not in r.stdout
    assert created["key"][:8] in r.stdout

    r = runner.invoke(app, ["keys", "revoke", created["id"], "--db", str(db)])
    assert r.exit_code == 0
    assert KeyStore(db).authenticate(created["key"]) is None
    assert runner.invoke(app, ["keys", "revoke", "key_nope", "--db", str(db)]).exit_code == 2


def test_keys_create_prints_only_the_key_on_stdout(tmp_path: Path) -> None:
    r = runner.invoke(app, ["keys", "create", "--scope", "admin", "--db", str(tmp_path / "a.db")])
    assert r.exit_code == 0
    assert r.stdout.strip().startswith("ioc_")
    assert len(r.stdout.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["keys", "create", "--scope", "root"], "--scope must be"),
        (["keys", "create", "--scope", "admin", "--province", "ben_tre"], "cannot be limited"),
    ],
)
def test_keys_create_refuses(tmp_path: Path, args: list[str], message: str) -> None:
    r = runner.invoke(app, [*args, "--db", str(tmp_path / "a.db")])
    assert r.exit_code == 2
    assert message in r.stderr


def test_serve_refuses_to_start_without_a_fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_FLEET", str(tmp_path / "missing.yaml"))
    monkeypatch.setenv("IOC_ALERTS_DB", str(tmp_path / "alerts.db"))
    r = runner.invoke(app, ["--port", "8999"])
    assert r.exit_code == 2
    assert "cannot read the fleet file" in r.stderr


def test_serve_refuses_a_short_admin_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOC_API_ADMIN_KEY", "short")
    r = runner.invoke(app, [])
    assert r.exit_code == 2
    assert "IOC_API_ADMIN_KEY" in r.stderr
    assert "at least 32" in r.stderr
