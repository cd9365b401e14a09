"""Serving an ASGI app with uvicorn (the sandbox; the daemon's HTTP API)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn


class ReadyServer(uvicorn.Server):
    """A uvicorn server that calls ``on_ready`` once it listens. ``embedded``: it runs inside
    a program that handles SIGTERM/SIGINT itself, so it installs no signal handlers."""

    def __init__(
        self, config: uvicorn.Config, on_ready: Callable[[], None], *, embedded: bool = False
    ) -> None:
        super().__init__(config)
        self._on_ready = on_ready
        self._embedded = embedded

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if self._embedded:
            yield
            return
        with super().capture_signals():
            yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_ready()


def server_config(app: Any, host: str, port: int, **options: Any) -> uvicorn.Config:
    """uvicorn settings heatup uses: httptools, no access log, no server header."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http="httptools",
        access_log=False,
        server_header=False,
        log_level="warning",
        **options,
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
