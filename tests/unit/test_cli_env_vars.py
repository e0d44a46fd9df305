"""Every option of every ``ioc`` command has its ``IOC_*`` variable, listed in ``.env.example`` and read.

The whole command tree is walked (``ioc.cli``'s app, its sub-apps mounted), so an option added
anywhere is checked. For each option: its help names exactly one variable, ``[IOC_…]``;
``.env.example`` lists it; and with the variable set to :data:`PROBE` — a value no setting takes:
not a number, a switch, a choice, a URL, a duration, a file or a folder, and with a control
character in it — the command refuses with one line and exit code 2 naming the flag and the
variable (``--devices (IOC_DEVICES): …``): it read the variable and runs on what it says. The
options that are no settings are :data:`NOT_SETTINGS`; they must name no variable.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
import yaml
from typer._click import Command  # the click typer vendors (typer.Context's base)
from typer.testing import CliRunner

from contract.fleet import dump_fleet
from ioc import cli
from ioc.envfile import SETTINGS
from ioc.servers import free_port
from simulators.fleetgen import generate_fleet

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"
DASHBOARDS = str(Path(__file__).resolve().parents[2] / "grafana" / "dashboards")
VARIABLE = re.compile(r"\[(IOC_[A-Z0-9_]+)\]")
PROBE = "plain/bad\tvalue"
"""A file, ``plain``, stands where this path needs a folder; the tab is a control character."""

ANY_COMMAND = frozenset({"--verbose", "--json"})
"""Logging and the output's format: how this run talks, not how the centre is set up."""
NOT_SETTINGS: dict[str, frozenset[str]] = {
    path: frozenset(flags.split())
    for path, flags in {
        # A mode: what this run does instead of its work (a variable would turn every run into it),
        # or what else it prints (as --json).
        "simulate": "--write-fleet --write-sources",
        "grafana export": "--check",
        "devices issue-cert": "--new-ca",
        "rules backtest": "--details",
        # What one action creates or acts on, or which rows a listing shows: the request, not the
        # setup (IOC_PROVINCE would limit every key created, IOC_KIND every device added).
        "subscriptions add": "--secret --province --district --device --kind --rule --crop --near --radius "
        "--min-severity --language --description --template --group-wait --group-interval --quiet --max-per-hour",
        "subscriptions dead-letters": "--subscription --all --limit",
        "subscriptions replay": "--subscription --all",
        "api keys create": "--scope --name --province",
        "api keys list": "--all",
        "devices import": "--format",  # the format of the file given
        "devices export": "--format --state",
        "devices add": "--id --kind --province --district --site --lat --lon --crop --model --dev-eui "
        "--tts-device-id --sparkplug --thingsboard --senml",
        "devices list": "--province --kind --state",
        "devices sync-broker": "--credentials-out",  # this run's new passwords, written once
    }.items()
}

DEVICE = ["--id", "x-1", "--kind", "salinity", "--province", "ben_tre", "--district", "ba_tri", "--site", "river",
          "--lat", "10", "--lon", "106"]  # fmt: skip
REQUIRED: dict[str, list[str]] = {
    "subscriptions add": ["https://93.184.215.14/hook"],
    "subscriptions remove": ["sub_x"],
    "subscriptions enable": ["sub_x"],
    "subscriptions disable": ["sub_x"],
    "subscriptions replay": ["--all"],
    "api keys create": ["--scope", "read"],
    "api keys revoke": ["key_x"],
    "devices import": ["fleet.yaml"],
    "devices add": DEVICE,
    "devices show": ["x-1"],
    "devices suspend": ["x-1"],
    "devices activate": ["x-1"],
    "devices decommission": ["x-1"],
    "devices issue-cert": ["x-1"],
}
"""What a command needs to get as far as its settings: its arguments and required options."""
USED_WITH: dict[tuple[str, str], list[str]] = {("simulate", "--devices"): ["--write-fleet", "f.yaml"]}
"""An option that counts only with another."""

runner = CliRunner()


def _tree(command: Command, path: str = "") -> Iterator[tuple[str, Command]]:
    yield path, command
    for name, sub in sorted((getattr(command, "commands", None) or {}).items()):
        yield from _tree(sub, f"{path} {name}".strip())


def _options() -> list[tuple[str, str, str]]:
    """(command path, flag, help) of every option of every command."""
    found = []
    for path, command in _tree(typer.main.get_command(cli.app)):
        for param in command.params:
            if param.param_type_name == "option" and not getattr(param, "hidden", False):
                flag = max(param.opts, key=len)
                found.append((path, flag, getattr(param, "help", None) or ""))
    return found


OPTIONS = _options()
WITH_VARIABLE = [(path, flag, VARIABLE.findall(text)[0]) for path, flag, text in OPTIONS if VARIABLE.search(text)]


def _not_a_setting(path: str, flag: str) -> bool:
    return flag in ANY_COMMAND or flag in NOT_SETTINGS.get(path, frozenset())


def _example_variables() -> set[str]:
    line = re.compile(r"^(?:# )?(IOC_[A-Z0-9_]+)=")
    return {m.group(1) for text in ENV_EXAMPLE.read_text().splitlines() if (m := line.match(text))}


def test_the_whole_tree_is_walked() -> None:
    paths = {path for path, _, _ in OPTIONS}
    assert {"ingest", "simulate", "demo", "rules backtest", "subscriptions add", "grafana check", "api",
            "api keys create", "devices sync-broker"} <= paths  # fmt: skip
    assert len(OPTIONS) > 100


@pytest.mark.parametrize(("path", "flag", "text"), OPTIONS, ids=[f"{p} {f}" for p, f, _ in OPTIONS])
def test_every_option_names_its_variable(path: str, flag: str, text: str) -> None:
    named = VARIABLE.findall(text)
    if _not_a_setting(path, flag):
        assert not named, f"ioc {path} {flag} has a variable now: take it off NOT_SETTINGS"
        return
    assert len(named) == 1, f"ioc {path} {flag}: its help must name its IOC_* variable as [IOC_…]: {text!r}"
    assert named[0] in _example_variables(), f"{named[0]} is not in .env.example: add its settings class to SETTINGS"


def test_the_exceptions_are_options_there_are() -> None:
    options = {(path, flag) for path, flag, _ in OPTIONS}
    stale = {(path, flag) for path, flags in NOT_SETTINGS.items() for flag in flags} - options
    assert not stale


def test_every_variable_is_a_setting_field() -> None:
    fields = {str(c.model_config.get("env_prefix", "")) + name.upper() for _, c in SETTINGS for name in c.model_fields}
    assert {variable for _, _, variable in WITH_VARIABLE} <= fields


REAL_WORK = ("ingest.runner.build", "ioc.demo.run_demo", "ioc.local_stack.LocalStack.start")
"""Where a command that took its settings starts servers: never in these tests (the others stop
earlier in an empty folder: no fleet file, no Grafana, no broker admin)."""


def _real_work(*args: object, **kwargs: object) -> None:
    raise AssertionError("the command went on to its real work: the variable was not read")


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder (no ``.env``), no ``IOC_*`` variable set; a file ``plain``, a fleet."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("IOC_")]:
        monkeypatch.delenv(name)
    for target in REAL_WORK:
        monkeypatch.setattr(target, _real_work)
    (tmp_path / "plain").write_text("a file, not a folder\n")
    dump_fleet(generate_fleet(3, seed=1), tmp_path / "fleet.yaml")
    return tmp_path


def _error_line(result: typer.testing.Result) -> str:
    """The one line a refused command prints (exit code 2, no traceback)."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("path", "flag", "variable"), WITH_VARIABLE, ids=[f"{p} {v}" for p, _, v in WITH_VARIABLE])
def test_every_variable_is_read(place: Path, path: str, flag: str, variable: str) -> None:
    args = [*path.split(), *REQUIRED.get(path, []), *USED_WITH.get((path, flag), [])]
    line = _error_line(runner.invoke(cli.app, args, env={variable: PROBE}))
    assert flag in line
    assert variable in line


def test_a_bad_devices_count_is_one_line(place: Path) -> None:
    """``ioc simulate --write-fleet f.yaml --devices 0`` (issue: a traceback)."""
    result = runner.invoke(cli.app, ["simulate", "--write-fleet", "f.yaml", "--devices", "0"])
    assert "--devices (IOC_DEVICES): Input should be greater than or equal to 1" in _error_line(result)
    assert not (place / "f.yaml").exists()


def _written_devices(path: Path) -> int:
    return len(yaml.safe_load(path.read_text())["devices"])


def test_a_flag_overrides_its_variable(place: Path) -> None:
    result = runner.invoke(cli.app, ["simulate", "--write-fleet", "f.yaml"], env={"IOC_DEVICES": "4"})
    assert result.exit_code == 0, result.output
    assert _written_devices(place / "f.yaml") == 4
    result = runner.invoke(cli.app, ["simulate", "--write-fleet", "g.yaml", "--devices", "3"], env={"IOC_DEVICES": "0"})
    assert result.exit_code == 0, result.output
    assert _written_devices(place / "g.yaml") == 3


@pytest.mark.parametrize(
    ("args", "variable", "flag", "named"),
    [
        (["rules", "backtest", "--fleet", "fleet.yaml"], "IOC_INFLUX_URL", "--influx-url", "InfluxDB at {url}"),
        (["grafana", "check", "--dashboards-dir", DASHBOARDS], "IOC_INFLUX_URL", "--influx-url", "InfluxDB at {url}"),
        (["grafana", "push", "--token", "t"], "IOC_GRAFANA_URL", "--url", "Grafana at {url}"),
    ],
)
def test_a_server_is_where_the_variable_says_unless_a_flag_says_otherwise(
    place: Path, args: list[str], variable: str, flag: str, named: str
) -> None:
    """The issue's cases: ``rules backtest`` ignored IOC_INFLUX_URL; ``grafana check`` required --influx-url."""
    by_variable, by_flag = (f"http://127.0.0.1:{free_port()}" for _ in range(2))
    line = _error_line(runner.invoke(cli.app, args, env={variable: by_variable}))
    assert named.format(url=by_variable) in line
    assert f"{flag} ({variable})" in line
    line = _error_line(runner.invoke(cli.app, [*args, flag, by_flag], env={variable: by_variable}))
    assert named.format(url=by_flag) in line


def test_rules_validate_reads_the_pack_ingest_uses(place: Path) -> None:
    (place / "pack.yaml").write_text("name: x\nrules:\n  - id: a\n    kind: salinity\n")
    line = _error_line(runner.invoke(cli.app, ["rules", "validate"], env={"IOC_RULES_PACK": "pack.yaml"}))
    assert "pack.yaml" in line
    line = _error_line(runner.invoke(cli.app, ["rules", "validate"], env={"IOC_RULES_PACK": "nope.yaml"}))
    assert "PACK (IOC_RULES_PACK): nope.yaml: no such file" in line
    assert runner.invoke(cli.app, ["rules", "validate"]).exit_code == 0  # the built-in pack
