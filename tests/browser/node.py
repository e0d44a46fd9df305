"""Run this folder's Node scripts (playwright-core, axe-core, @grafana/schema) from pytest.

Their packages come from ``scripts/ensure-browser.sh`` (``make test`` runs it; so does
:func:`ensure_tools` when they are missing). A script takes one JSON file of arguments and prints
one JSON document.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ENSURE = ROOT / "scripts" / "ensure-browser.sh"


def _ready() -> bool:
    lock = HERE / "package-lock.json"
    stamp = HERE / "node_modules" / ".installed-lock.json"
    return (
        CHROMIUM.exists()
        and shutil.which("node") is not None
        and stamp.exists()
        and stamp.read_bytes() == lock.read_bytes()
    )


def ensure_tools() -> str:
    """The path of ``node``, once Chromium and the npm packages are there (installed if need be).

    Fails the test (never skips it: a plain ``pytest`` must not drop the browser tests unnoticed)
    when they are missing and cannot be installed here; ``scripts/ensure-browser.sh`` says why.
    """
    if not _ready():
        done = subprocess.run([str(ENSURE)], capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            pytest.fail(
                f"the browser tests need Chromium, Node.js and npm packages: {done.stderr.strip()}\n"
                f"Install them with `sudo {ENSURE.relative_to(ROOT)}` or `make browser` (as root), then rerun",
                pytrace=False,
            )
    node = shutil.which("node")
    if node is None or not _ready():
        raise AssertionError("scripts/ensure-browser.sh ran but the browser tools are still missing")
    return node


def run_node_tests(test_file: str, *, timeout: float = 120) -> str:
    """Run ``node --test tests/browser/<test_file>`` (needs Node.js only); its TAP report.

    Fails the test with the report when one of its tests fails, or when Node.js is missing.
    """
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "the desk's script tests need Node.js 18 or newer: install it with `sudo apt-get install nodejs` "
            f"(or run `sudo {ENSURE.relative_to(ROOT)}`)",
            pytrace=False,
        )
    done = subprocess.run(
        [node, "--test", "--test-reporter=tap", str(HERE / test_file)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=HERE,
    )
    report = done.stdout + done.stderr
    if done.returncode != 0:
        failures, inside = [], False
        for line in report.splitlines():  # each failed test's TAP block: its "not ok" line and details
            if line.startswith(("not ok", "ok ", "# Subtest", "1..")):
                inside = line.startswith("not ok")
            if inside:
                failures.append(line)
        details = "\n".join(failures)[-6000:] or report[-6000:]
        raise AssertionError(f"node --test tests/browser/{test_file} failed ({done.returncode}):\n{details}")
    return report


def run_node(script: str, arguments: Any, *, timeout: float = 120, env: dict[str, str] | None = None) -> Any:
    """Run ``tests/browser/<script>`` with its arguments as a JSON file; its printed JSON, decoded."""
    node = ensure_tools()
    with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8", delete=False) as f:
        json.dump(arguments, f, ensure_ascii=False)
    try:
        done = subprocess.run(
            [node, str(HERE / script), f.name],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, **(env or {})},
        )
    finally:
        os.unlink(f.name)
    if done.returncode != 0:
        raise AssertionError(f"node {script} failed ({done.returncode}):\n{done.stderr[-4000:]}\n{done.stdout[-4000:]}")
    return json.loads(done.stdout)


class NodeSession:
    """A Node script of this folder spoken to line by line: one JSON command in, one JSON answer out."""

    def __init__(self, script: str, log: Path) -> None:
        node = ensure_tools()
        self._log = log.open("w", encoding="utf-8")
        self._proc = subprocess.Popen(
            [node, str(HERE / script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            encoding="utf-8",
        )
        self._answers: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.log = log

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            self._answers.put(line)
        self._answers.put(None)

    def call(self, op: str, *, timeout: float = 60, **arguments: Any) -> dict[str, Any]:
        """Run one command; its answer (AssertionError with the script's reason if it failed)."""
        assert self._proc.stdin is not None
        self._proc.stdin.write(json.dumps({"op": op, **arguments}) + "\n")
        self._proc.stdin.flush()
        try:
            line = self._answers.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{op}: no answer within {timeout} s (log: {self.log})") from None
        if line is None:
            raise AssertionError(f"{op}: the script ended: {self.log.read_text(encoding='utf-8')[-3000:]}")
        answer: dict[str, Any] = json.loads(line)
        if not answer.pop("ok"):
            raise AssertionError(f"{op} {arguments}: {answer['error']}")
        return answer

    def close(self) -> None:
        if self._proc.poll() is None and self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.write(json.dumps({"op": "close"}) + "\n")
                self._proc.stdin.close()
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._log.close()
