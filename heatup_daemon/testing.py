"""In-memory fakes of heatup's seams, shipped with the package for tests of one part."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2

from heatup_daemon.db.runs import ActionRecord
from heatup_daemon.gateway import ChannelRef, HistoryRead, SessionInfo
from heatup_daemon.serving import free_port

__all__ = [
    "FakeClock",
    "FakeGateway",
    "FakeRecorder",
    "free_port",
    "heatup_server",
    "sandbox_process",
    "wait_until_healthy",
]


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
    with heatup_server("sandbox", *args, env=env) as url:
        yield url


@contextlib.contextmanager
def heatup_server(command: str, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """``heatup COMMAND ARGS`` (``sandbox``, ``llm-stub``) on a free loopback port; yields
    its base URL once ``/healthz`` answers, and stops it afterwards."""
    heatup = Path(sys.executable).with_name("heatup")
    port = free_port()
    process = subprocess.Popen(
        [str(heatup), command, "--port", str(port), *args],
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


class FakeGateway:
    """A ``Gateway`` whose answers are scripted: ``fail[(operation, channel)]`` (or
    ``fail[operation]``) is an exception to raise, once or ``always``. ``calls`` lists every
    call as (operation, uid, channel)."""

    def __init__(self, clock: FakeClock | None = None, latency_s: float = 0.0) -> None:
        self.calls: list[tuple[str, int, str | None]] = []
        self.fail: dict[object, BaseException] = {}
        self.always: set[object] = set()
        self._clock = clock
        self._latency_s = latency_s

    async def _call(self, operation: str, uid: int, channel: str | None = None) -> None:
        self.calls.append((operation, uid, channel))
        if self._clock is not None:
            await self._clock.sleep(self._latency_s)
        for key in ((operation, channel), operation):
            if key in self.fail:
                error = self.fail[key] if key in self.always else self.fail.pop(key)
                raise error

    async def session_info(self, uid: int) -> SessionInfo:
        await self._call("session_info", uid)
        return SessionInfo(uid, 1, False, None, False, False)

    async def join_channel(self, uid: int, username: str) -> None:
        await self._call("join_channel", uid, username)

    async def browse_dialogs(self, uid: int, limit: int = 20) -> int:
        await self._call("browse_dialogs", uid)
        return 0

    async def resolve_channel(self, uid: int, username: str) -> ChannelRef:
        await self._call("resolve_channel", uid, username)
        return ChannelRef(1, 1)

    async def read_history(self, uid: int, username: str, limit: int = 20) -> HistoryRead:
        await self._call("read_history", uid, username)
        return HistoryRead(ChannelRef(1, 1), 3, 3)

    async def set_idle(self, uid: int, idle: bool) -> None:
        await self._call("idle" if idle else "stop_idle", uid)


class FakeRecorder:
    """An in-memory ``RunRecorder`` (the executor's view of the repository)."""

    def __init__(self) -> None:
        self.actions: list[ActionRecord] = []
        self.heartbeats: list[datetime] = []
        self.cooldowns: dict[int, datetime] = {}
        self.attention: dict[int, str] = {}
        self.joins: list[tuple[int, str]] = []
        self.channel_failures: list[tuple[str, str]] = []
        self.reaped = False  # set to make the next heartbeat find the run reaped

    async def record_action(self, run_id: int, record: ActionRecord) -> None:
        self.actions.append(record)

    async def heartbeat(self, run_id: int, at: datetime) -> bool:
        self.heartbeats.append(at)
        return not self.reaped

    async def set_cooldown(self, session_id: int, until: datetime) -> None:
        self.cooldowns[session_id] = until

    async def mark_needs_attention(self, session_id: int, reason: str) -> None:
        self.attention[session_id] = reason

    async def record_join(self, session_id: int, channel: str, at: datetime) -> None:
        self.joins.append((session_id, channel))

    async def note_channel_failure(self, channel: str, code: str, at: datetime) -> bool:
        self.channel_failures.append((channel, code))
        return False
