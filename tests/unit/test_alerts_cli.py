"""``ioc subscriptions add|list|remove|enable|disable|dead-letters|replay``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alerts.cli import app
from alerts.outbox import Outcome, Verdict
from alerts.store import AlertStore
from tests.unit.test_alerts_store import DEVICES, fire

runner = CliRunner()
URL = "https://93.184.215.14/hook"


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("IOC_WEBHOOK_ALLOW_HOSTS", raising=False)
    monkeypatch.delenv("IOC_WEBHOOK_ALLOW_PRIVATE", raising=False)
    path = tmp_path / "alerts.db"
    monkeypatch.setenv("IOC_ALERTS_DB", str(path))
    return path


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_add_list_remove(db: Path) -> None:
    code, out = invoke(
        "add", URL, "--province", "ben_tre", "--province", "tra_vinh", "--kind", "salinity",
        "--min-severity", "warning", "--language", "en", "--description", "Ba Tri co-op", "--json",
    )  # fmt: skip
    assert code == 0, out
    added = json.loads(out)
    assert added["secret"].startswith("whsec_")
    assert added["language"] == "en"
    assert added["filters"]["provinces"] == ["ben_tre", "tra_vinh"]
    assert added["filters"]["min_severity"] == "warning"

    code, out = invoke("list", "--json")
    [listed] = json.loads(out)
    assert listed["id"] == added["id"]
    assert listed["pending"] == 0
    assert listed["secret"] != added["secret"]
    code, out = invoke("list")
    assert added["id"] in out
    assert "province=ben_tre,tra_vinh" in out
    assert "Ba Tri co-op" in out

    code, out = invoke("disable", added["id"])
    assert code == 0
    assert "DISABLED" in invoke("list")[1]
    code, out = invoke("enable", added["id"])
    assert code == 0
    assert "enabled" in invoke("list")[1]

    code, out = invoke("remove", added["id"])
    assert code == 0
    assert json.loads(invoke("list", "--json")[1]) == []
    code, out = invoke("remove", added["id"])
    assert code == 2
    assert "no subscription" in out


def test_add_prints_the_secret(db: Path) -> None:
    code, out = invoke("add", URL)
    assert code == 0
    assert "secret: whsec_" in out
    assert "all alerts" in out


def test_add_refuses_inside_targets_and_bad_values(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for url in ("http://127.0.0.1:8080/hook", "http://169.254.169.254/", "http://[::1]/", "ftp://x/"):
        code, out = invoke("add", url)
        assert code == 2, url
        assert "error" in out, url
    assert invoke("add", URL, "--language", "fr")[0] == 2
    assert invoke("add", URL, "--secret", "hunter2")[0] == 2
    monkeypatch.setenv("IOC_WEBHOOK_ALLOW_HOSTS", "127.0.0.0/8")
    assert invoke("add", "http://127.0.0.1:8080/hook")[0] == 0
    monkeypatch.setenv("IOC_WEBHOOK_ALLOW_HOSTS", "not a host!")
    code, out = invoke("list")
    assert code == 2
    assert "IOC_WEBHOOK_ALLOW_HOSTS" in out


def test_dead_letters_and_replay(db: Path) -> None:
    code, out = invoke("add", URL, "--json", "--group-wait", "0")
    sub_id = json.loads(out)["id"]
    assert json.loads(out)["pacing"] == {"group_wait_s": 0, "group_interval_s": 1800, "quiet_hours": None,
                                         "max_per_hour": None}  # fmt: skip
    store = AlertStore(db)
    store.apply([fire(device=0), fire(device=1)], DEVICES)
    store.dispatch()
    for _ in range(2):
        claim = store.claim(sub_id, owner="t", now_ms=2**62, lease_ms=1)
        assert claim is not None
        store.record_attempt(claim.entry, Outcome(Verdict.RETRY, 500, "HTTP 500"), Verdict.DEAD, at_ms=1, duration_ms=1)

    code, out = invoke("dead-letters", "--json")
    dead = json.loads(out)
    assert [d["last_status"] for d in dead] == [500, 500]
    assert "HTTP 500" in invoke("dead-letters")[1]

    assert invoke("replay")[0] == 2, "replay needs ids, --subscription or --all"
    code, out = invoke("replay", str(dead[0]["id"]))
    assert code == 0
    assert "replayed 1 dead letter" in out
    code, out = invoke("replay", "--all")
    assert "replayed 1 dead letter" in out
    assert json.loads(invoke("dead-letters", "--json")[1]) == []
    assert len(json.loads(invoke("dead-letters", "--all", "--json")[1])) == 2
    assert store.pending_count(sub_id) == 2
    store.close()


def test_add_by_crop_and_point_and_radius(db: Path) -> None:
    code, out = invoke("add", URL, "--crop", "durian", "--crop", "Rice", "--near", "10.04,106.60", "--radius", "15")
    assert code == 0, out
    assert "crop=durian,rice near=10.04,106.6 r=15km" in out
    assert "near=10.04,106.6 r=15km" in invoke("list")[1]
    [listed] = json.loads(invoke("list", "--json")[1])
    assert listed["filters"]["crops"] == ["durian", "rice"]
    assert listed["filters"]["near"] == {"lat": 10.04, "lon": 106.6, "radius_km": 15.0}
    with AlertStore(db) as store:
        assert store.list_subscriptions()[0].filters.near is not None


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--near", "10.04,106.60"], "--near LAT,LON and --radius KM go together"),
        (["--radius", "15"], "--near LAT,LON and --radius KM go together"),
        (["--near", "10.04", "--radius", "15"], "--near '10.04': give LAT,LON"),
        (["--near", "north,east", "--radius", "15"], "--near 'north,east': give LAT,LON"),
        (["--near", "91,106", "--radius", "15"], "--near '91,106': give LAT,LON"),
        (["--near", "10,106", "--radius", "0"], "--radius 0: give km"),
        (["--near", "10,106", "--radius", "501"], "--radius 501: give km"),
        (["--crop", "durain"], "unknown crop 'durain'"),
        (["--quiet", "21:00"], "--quiet: quiet hours must be START-END"),
        (["--quiet", "21:00-29:00"], "--quiet: quiet hours: end must be HH:MM"),
        (["--group-wait", "-1"], "--group-wait: group_wait_s must be between 0 and 21600"),
        (["--max-per-hour", "0"], "--max-per-hour: max_per_hour must be between 1 and 3600"),
    ],
)
def test_add_refuses_a_bad_circle_or_crop(db: Path, args: list[str], says: str) -> None:
    code, out = invoke("add", URL, *args)
    assert code == 2, out
    assert says in out
    assert len(out.strip().splitlines()) == 1, out
    if db.exists():
        with AlertStore(db) as store:
            assert store.list_subscriptions() == []


def test_add_with_a_template(db: Path) -> None:
    code, out = invoke("add", URL, "--template", "ioc_alert_v1", "--json")
    assert code == 0, out
    assert json.loads(out)["template"] == "ioc_alert_v1"
    code, out = invoke("add", URL, "--template", "có dấu")
    assert code == 2
    assert "template id" in out
    assert "Traceback" not in out
