"""The README's tour after the demo, run as written: its commands, in order, in a copy of this
clone, on a fresh ``var/`` — the demo with a duration, the servers brought back, and the API tour
(keys, devices, readings as CSV, alerts, acknowledge, a subscription's test delivery, backtest,
GeoJSON)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README_PORTS = (1883, 8883, 8086, 9108, 8000, 8765)
"""The ports the README's commands use: the demo's defaults, the API's and the receiver's."""


def tour_commands(readme: str) -> str:
    """The shell block of the README's "After the demo" section."""
    section = readme.split("## After the demo", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "README.md: the 'After the demo' section has no ```sh block"
    return match.group(1)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def clone(tmp_path: Path) -> Iterator[Path]:
    """The repository's files in a temp folder (modification times kept, so make installs nothing),
    with this clone's ``.venv``."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    dest = tmp_path / "clone"
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    (dest / ".venv").symlink_to(Path(sys.prefix))
    yield dest
    subprocess.run([str(Path(sys.prefix) / "bin" / "ioc"), "servers", "stop"], cwd=dest, capture_output=True)


@pytest.mark.timeout(900)
def test_the_readme_tour_works_as_written(clone: Path) -> None:
    taken = [p for p in README_PORTS if _listening(p)]
    if taken:
        pytest.skip(f"the README's ports {taken} are in use on this machine (a demo running?)")
    script = "\n".join([
        "set -euo pipefail",
        # make must not reinstall into the shared .venv: its stamp counts as up to date
        'make() { command make -o .venv/.installed-stamp "$@"; }',
        tour_commands((ROOT / "README.md").read_text()),
    ])  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IOC_", "VIRTUAL_ENV")) and k != "PYTHONPATH"}
    env["IOC_DEMO_BACKFILL_HOURS"] = "6"  # a documented setting: a shorter history than the default 72 h
    stdout, stderr = clone / "tour.out", clone / "tour.err"
    with stdout.open("wb") as out_f, stderr.open("wb") as err_f:  # files: what it leaves running may hold a pipe
        proc = subprocess.Popen(
            ["bash", "-c", script], cwd=clone, env=env, stdout=out_f, stderr=err_f, start_new_session=True
        )
        try:
            proc.wait(timeout=600)
        finally:
            with contextlib.suppress(ProcessLookupError):  # the API and the receiver, if the script stopped early
                os.killpg(proc.pid, signal.SIGKILL)
    out, err = stdout.read_text(), stderr.read_text()
    assert proc.returncode == 0, f"{err[-4000:]}\n--- stdout ---\n{out[-3000:]}"
    lines = out.splitlines()
    demo = json.loads(next(line for line in lines if line.startswith('{"published"')))
    assert demo["stored"] == demo["published"] > 0
    assert demo["situations_delivered"] == 5  # all five situations reached the demo's farmer
    assert "mosquitto running" in out  # ioc servers start
    assert "name: salinity" in out  # influx, straight from InfluxDB
    assert re.search(r"^ioc/v1/\w+/\w+/[\w-]+/status \{", out, re.M)  # mosquitto_sub as the operator
    assert "bt-sal-0201" in out  # a station registered, with its broker account
    assert "time,time_ms,mean,min,max,count\n" in out  # a station's readings as CSV
    assert '"acknowledged_by":"duty desk"' in out  # the acknowledgement names the key
    assert '"delivered":true,"status":200' in out  # the subscription's test delivery
    assert "[TIN THỬ / TEST] Tin thử từ Mekong IOC" in out  # … printed by the receiver, signature verified
    assert '"firings":' in out  # the backtest
    assert '{"type":"FeatureCollection","features":[{' in out
    assert "stopped mosquitto, influxd" in out
    assert "Traceback" not in err
