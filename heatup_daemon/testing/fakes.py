"""Fakes of heatup's seams for tests of one part: the clock, the gateway, run events."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from heatup_daemon.gateway import ChannelRef, HistoryRead
from heatup_daemon.planner.model import Plan
from heatup_daemon.records import ActionRecord, Run
from heatup_daemon.run.events import RunEnd


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


class FakeGateway:
    """A ``Gateway`` whose answers are scripted: ``fail[(operation, channel)]`` (or
    ``fail[operation]``) is an exception to raise, once or ``always``. ``calls`` lists every
    call as (operation, gateway session id, channel); ``members`` answers ``is_member``."""

    def __init__(self, clock: FakeClock | None = None, latency_s: float = 0.0) -> None:
        self.calls: list[tuple[str, int, str | None]] = []
        self.fail: dict[object, BaseException] = {}
        self.always: set[object] = set()
        self.members: dict[str, bool | None] = {}
        self.auth_failing = False
        self._clock = clock
        self._latency_s = latency_s

    async def aclose(self) -> None:
        pass

    async def _call(self, operation: str, gateway_session_id: int, channel: str | None) -> None:
        self.calls.append((operation, gateway_session_id, channel))
        if self._clock is not None:
            await self._clock.sleep(self._latency_s)
        else:
            await asyncio.sleep(0)
        for key in ((operation, channel), operation):
            if key in self.fail:
                error = self.fail[key] if key in self.always else self.fail.pop(key)
                raise error

    async def join_channel(self, gateway_session_id: int, username: str) -> None:
        await self._call("join_channel", gateway_session_id, username)

    async def is_member(self, gateway_session_id: int, username: str) -> bool | None:
        await self._call("is_member", gateway_session_id, username)
        return self.members.get(username)

    async def browse_dialogs(self, gateway_session_id: int, limit: int = 20) -> int:
        await self._call("browse_dialogs", gateway_session_id, None)
        return 0

    async def read_history(
        self, gateway_session_id: int, username: str, limit: int = 20
    ) -> HistoryRead:
        await self._call("read_history", gateway_session_id, username)
        return HistoryRead(ChannelRef(1, 1), 3, 3)


class RecordingObserver:
    """A ``RunObserver`` that keeps every event, for assertions."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def run_started(self, run: Run, plan: Plan) -> None:
        self.events.append(("run_started", run.id))

    def action_ended(self, run: Run, record: ActionRecord) -> None:
        self.events.append(("action_ended", record))

    def run_ended(self, run: Run, end: RunEnd) -> None:
        self.events.append(("run_ended", end.status))

    def cooldown_set(self, run: Run, until: datetime, wait_s: int) -> None:
        self.events.append(("cooldown_set", until))

    def needs_attention(self, run: Run, reason: str) -> None:
        self.events.append(("needs_attention", reason))

    def channel_flagged(self, run: Run, channel: str, reason: str) -> None:
        self.events.append(("channel_flagged", channel))

    def of(self, kind: str) -> list[object]:
        return [value for name, value in self.events if name == kind]
