"""``ioc ingest`` starts without importing the other commands' modules; ``ioc --help`` lists them all."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ioc.cli import _runs_own_command
from registry.files import write_devices
from simulators.fleetgen import generate_fleet
from tests.helpers import python_output


def _imported(module: str, importtime: str) -> bool:
    return re.search(rf"^import time:.*\|\s+{re.escape(module)}$", importtime, re.MULTILINE) is not None


def _imports(*args: str) -> tuple[str, str]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ioc", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


@pytest.mark.parametrize("command", ["ingest", "simulate", "demo"])
def test_an_own_command_leaves_the_mounted_ones_unimported(command: str) -> None:
    out, imported = _imports(command, "--help")
    assert "Usage:" in out
    for module in ("registry.cli", "alerts.cli", "api.cli", "dashboards.cli"):
        assert not _imported(module, imported)


def test_a_mounted_command_and_the_top_level_help_have_them_all() -> None:
    out, imported = _imports("devices", "--help")
    assert "import" in out
    assert _imported("registry.cli", imported)
    out, _ = _imports("--help")
    for command in ("ingest", "simulate", "demo", "devices", "api", "grafana", "rules", "subscriptions"):
        assert command in out


def test_only_the_console_script_or_python_m_skips_mounting() -> None:
    assert _runs_own_command(["/x/.venv/bin/ioc", "ingest", "--fleet", "f.yaml"])
    assert _runs_own_command(["/x/ioc/__main__.py", "demo"])
    assert not _runs_own_command(["/x/.venv/bin/ioc", "devices", "list"])
    assert not _runs_own_command(["/x/.venv/bin/ioc"])
    assert not _runs_own_command(["/x/bin/pytest", "ingest"])


def test_ingest_leaves_httpx_cli_and_alembic_unimported() -> None:
    """Memory a long-running ingest would keep for nothing: httpx's command line (click, rich, Pygments)
    and, for a fleet file's in-memory registry, Alembic with Mako."""
    code = (
        "import sys; sys.argv = ['ioc', 'ingest']; from ioc.cli import _without_httpx_cli; _without_httpx_cli(); "
        "import ingest.runner, httpx; from registry.store import MEMORY_URL, DeviceRegistry; "
        "DeviceRegistry(MEMORY_URL).close(); unused = ('httpx._main', 'click', 'rich', 'pygments', 'alembic', 'mako'); "
        "print(sorted(m for m in unused if sys.modules.get(m)))"
    )
    assert python_output(code).strip() == "[]"


def test_ingest_reads_a_fleet_file_without_sqlalchemy(tmp_path: Path) -> None:
    """A fleet file is read as it is (registry.files.fleet_tags): the database layer (SQLAlchemy, 11 MiB
    of a long-running ingest) stays unimported; a registry URL still loads it."""
    fleet = tmp_path / "fleet.yaml"
    write_devices(generate_fleet(30, 1).devices, fleet)
    code = (
        "import sys; sys.argv = ['ioc', 'ingest']; import ioc.cli; "
        "from ingest.runner import open_devices; from tests.helpers import ingest_settings; "
        f"settings = ingest_settings(1, 'http://127.0.0.1:1', 'ioc', fleet={str(fleet)!r}); "
        "source, revision, devices = open_devices(settings); "
        "print(source, revision, len(devices), 'sqlalchemy' in sys.modules)"
    )
    assert python_output(code).split() == ["None", "1", "30", "False"]
