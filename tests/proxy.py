"""A TCP proxy in front of PostgreSQL that loses the answer to a COMMIT that landed.

Armed with a marker (part of a statement's text), it watches each connection's messages
(PostgreSQL's frontend protocol: the startup messages, then typed ones); on the first
connection whose statements contained the marker, it passes that transaction's COMMIT on,
waits for the server's answer (the transaction has committed) and then, instead of passing
the answer back, cuts the connection. The client sees its commit fail; the rows are there.
Connect with ``ssl=disable``: the proxy reads the protocol in the clear.
"""

from __future__ import annotations

import socket
import struct
import threading
from typing import Final

SSL_REQUEST: Final = 80877103
GSSENC_REQUEST: Final = 80877104


class CommitCutter:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._marker: bytes | None = None
        self._lock = threading.Lock()
        self.cut = threading.Event()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, marker: bytes) -> None:
        """Lose the answer to the next COMMIT of a transaction that sent ``marker``."""
        with self._lock:
            self.cut.clear()
            self._marker = marker

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._upstream)
            _Connection(self, client, server).start()

    def _take(self, seen: bytes) -> bool:
        """Whether a connection that sent ``seen`` is the one to cut (once per arming)."""
        with self._lock:
            if self._marker is not None and self._marker in seen:
                self._marker = None
                return True
            return False


class _Connection:
    def __init__(self, proxy: CommitCutter, client: socket.socket, server: socket.socket) -> None:
        self._proxy = proxy
        self._client, self._server = client, server
        self._marked = False  # this transaction sent the armed marker
        self._swallow = threading.Event()  # the server's next answer is not passed back

    def start(self) -> None:
        threading.Thread(target=self._from_client, daemon=True).start()
        threading.Thread(target=self._from_server, daemon=True).start()

    def _from_client(self) -> None:
        try:
            self._startup()
            while True:
                kind = _exactly(self._client, 1)
                (length,) = struct.unpack("!i", head := _exactly(self._client, 4))
                body = _exactly(self._client, length - 4)
                if kind in (b"P", b"Q") and self._proxy._take(body):
                    self._marked = True
                if self._marked and kind == b"Q" and body.lstrip().upper().startswith(b"COMMIT"):
                    self._swallow.set()  # before it goes: the answer may come at once
                self._server.sendall(kind + head + body)
        except OSError:
            self._close()

    def _startup(self) -> None:
        """The untyped messages before the session: SSL or GSS requests, the startup."""
        while True:
            (length,) = struct.unpack("!i", head := _exactly(self._client, 4))
            body = _exactly(self._client, length - 4)
            self._server.sendall(head + body)
            (code,) = struct.unpack("!i", body[:4])
            if code not in (SSL_REQUEST, GSSENC_REQUEST):
                return

    def _from_server(self) -> None:
        try:
            while data := self._server.recv(65536):
                if self._swallow.is_set():  # the COMMIT's answer: it has committed
                    self._proxy.cut.set()
                    break
                self._client.sendall(data)
        except OSError:
            pass
        self._close()

    def _close(self) -> None:
        for sock in (self._client, self._server):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


def _exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionResetError("closed")
        data += chunk
    return data
