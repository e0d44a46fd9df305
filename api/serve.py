"""``ioc api``'s server in a thread of its own, on a socket bound beforehand: the demo serves the desk
beside ingest with it, and the tests run a real server with it.

::

    with ApiThread(create_app(settings), listen("127.0.0.1", 0, host_flag=…, port_flag=…)) as api:
        httpx.get(api.base_url + "/v1/health")
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Final

import uvicorn
from fastapi import FastAPI

from api.feed import StreamingServer

START_TIMEOUT_S: Final = 30.0
"""How long the server may take to accept connections."""
GRACEFUL_SHUTDOWN_S: Final = 5
"""How long a stopping server waits for open connections (a client that stopped reading) before it closes them."""


class ApiThreadError(RuntimeError):
    """The API did not start (uvicorn logged why)."""


class ApiThread:
    """An app served by uvicorn (under StreamingServer, as `ioc api` serves it) in a thread of its own."""

    def __init__(self, app: FastAPI, sock: socket.socket, *, log_level: str = "warning") -> None:
        config = uvicorn.Config(
            app,
            log_level=log_level,
            access_log=False,
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        self.server = StreamingServer(config)
        self.sock = sock
        host, port = sock.getsockname()[:2]
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        self.base_url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, name="api", daemon=True)

    def __enter__(self) -> ApiThread:
        """Start serving; return once the server accepts connections (:class:`ApiThreadError` if it did
        not within :data:`START_TIMEOUT_S`, or stopped)."""
        self.thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.server.started:
            if not self.thread.is_alive():
                self.__exit__()
                raise ApiThreadError(f"the API on {self.base_url} stopped while starting (see its log)")
            if time.monotonic() >= deadline:
                self.__exit__()
                raise ApiThreadError(f"the API on {self.base_url} did not start within {START_TIMEOUT_S:.0f} s")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop: end the live streams, let open requests finish (:data:`GRACEFUL_SHUTDOWN_S`), close the socket."""
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(GRACEFUL_SHUTDOWN_S + 5)
        self.sock.close()
