"""In-memory fakes of heatup's seams, shipped with the package for tests of one part."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2


class FakeClock:
    """A ``Clock`` whose time moves only when something sleeps (or ``advance`` is called).

    ``sleep`` yields to the event loop once, so concurrent tasks still interleave, but
    never waits real time. ``sleeps`` lists every requested wait, in order.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._elapsed = 0.0
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self._elapsed)

    def monotonic(self) -> float:
        return self._elapsed

    def advance(self, seconds: float) -> None:
        self._elapsed += max(seconds, 0.0)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float = 15) -> None:
    """Poll ``url`` until it answers 200; fail early if ``process`` exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx2.get(url, timeout=1).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"the process exited with code {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout_s} s")
        time.sleep(0.05)


@contextlib.contextmanager
def sandbox_process(*args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """``heatup sandbox ARGS`` on a free loopback port; yields its base URL."""
    heatup = Path(sys.executable).with_name("heatup")
    port = free_port()
    process = subprocess.Popen(
        [str(heatup), "sandbox", "--port", str(port), *args],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(f"{url}/healthz", process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
