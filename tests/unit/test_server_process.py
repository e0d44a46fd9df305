"""A server that does not come up is not left running (ioc.servers.ServerProcess.start)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from ioc.servers import ServerError, ServerProcess, free_port


def test_a_server_that_never_gets_ready_is_stopped(tmp_path: Path) -> None:
    sleep = shutil.which("sleep")
    assert sleep is not None
    server = ServerProcess("never", [sleep, "60"], free_port(), tmp_path, ready_timeout_s=0.3)  # listens on nothing
    started: list[int] = []
    real_wait = server._wait_ready

    def wait_ready() -> None:
        assert server.proc is not None
        started.append(server.proc.pid)
        real_wait()

    server._wait_ready = wait_ready  # type: ignore[method-assign]
    with pytest.raises(ServerError, match="did not come up"):
        server.start()
    assert server.proc is None
    [pid] = started
    with pytest.raises(ProcessLookupError):  # gone, and reaped
        os.kill(pid, 0)
