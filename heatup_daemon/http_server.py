"""Serving an ASGI app with uvicorn (the daemon's HTTP API; the sandbox; the LLM stub).

Requests are bounded before any application code sees them: the request line and headers
together at ``MAX_HEAD_BYTES`` (431 beyond), at most ``MAX_HEADERS`` header fields, and a
declared body at ``MAX_BODY_BYTES`` (413 beyond; uvicorn stops reading a body nobody reads),
or at ``LARGE_BODIES``' limit on the few paths that take a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import Any, Final

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES: Final = 16 * 1024
MAX_HEADERS: Final = 100
MAX_BODY_BYTES: Final = 64 * 1024
# Paths that take a file, and their limit: the console's session import.
LARGE_BODIES: Final = {"/ui/sessions/import": 32 * 1024 * 1024}

_TOO_LARGE: Final = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\ncontent-length: 33\r\nconnection: close\r\n\r\n"
    b"request line or headers too large"
)


class _HeadTooLarge(Exception):
    pass


class BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with limits on the request line and the headers
    (httptools has none: a client could grow the server's memory without end)."""

    _head_bytes = 0
    _header_count = 0

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = self._header_count = 0

    def _grow(self, size: int, fields: int = 0) -> None:
        self._head_bytes += size
        self._header_count += fields
        if self._head_bytes > MAX_HEAD_BYTES or self._header_count > MAX_HEADERS:
            raise _HeadTooLarge

    def on_url(self, url: bytes) -> None:
        self._grow(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._grow(len(name) + len(value), 1)
        super().on_header(name, value)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as exc:
            # A callback's exception arrives wrapped; either way the parser is spent: answer
            # and close (without a log line per bad request: a flood must not fill the log).
            if isinstance(exc.__cause__ or exc.__context__, _HeadTooLarge):
                self.transport.write(_TOO_LARGE)
                self.transport.close()
            else:
                self.send_400_response("Invalid HTTP request received.")


class BodyLimit:
    """ASGI middleware: a request declaring a body over ``MAX_BODY_BYTES`` gets 413, and a
    streamed body is cut off there."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = LARGE_BODIES.get(scope.get("path", ""), MAX_BODY_BYTES)
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and (not value.isdigit() or int(value) > limit):
                await _refuse(send, 413, b"request body too large")
                return
        received = 0

        async def bounded_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    return {"type": "http.disconnect"}
            return message

        await self.app(scope, bounded_receive, send)


async def _refuse(send: Any, status: int, text: bytes) -> None:
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"%d" % len(text)),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text})


class ReadyServer(uvicorn.Server):
    """A uvicorn server that says when it listens. ``embedded``: it runs inside a program
    that handles SIGTERM/SIGINT itself, so it installs no signal handlers."""

    def __init__(
        self,
        config: uvicorn.Config,
        on_ready: Callable[[], None] = lambda: None,
        *,
        embedded: bool = False,
    ) -> None:
        super().__init__(config)
        self._on_ready = on_ready
        self._embedded = embedded
        self._listening = asyncio.Event()

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
            self._listening.set()
            self._on_ready()

    async def wait_listening(self, serving: asyncio.Task[None]) -> bool:
        """Until the server listens (``True``) or its task ``serving`` ends (``False``)."""
        waiting = asyncio.create_task(self._listening.wait())
        await asyncio.wait([waiting, serving], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        return self.started


def server_config(app: Any, host: str, port: int, **options: Any) -> uvicorn.Config:
    """uvicorn settings heatup uses: bounded httptools, no access log, no server header.
    ``options`` override uvicorn's (the daemon passes ``log_config=None`` so that uvicorn's
    lines go through its own JSON logging)."""
    settings: dict[str, Any] = {
        "http": BoundedHttpTools,
        "access_log": False,
        "server_header": False,
        "log_level": "warning",
        **options,
    }
    return uvicorn.Config(BodyLimit(app), host=host, port=port, **settings)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
