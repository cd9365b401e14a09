"""The clock seam: the loop reads time and sleeps only through a ``Clock``."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Wall time, monotonic time and sleeping. Tests substitute ``testing.FakeClock``."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; only differences mean anything."""

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (0 or less returns at once, still yielding to the loop)."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))


class DatabaseClock:
    """The database's clock as this process sees it: the time the database last reported,
    carried forward on this host's monotonic clock. So a step or a skew of this host's wall
    clock changes nothing heatup decides; ``offset_s`` says how far the host is off.

    ``observe`` takes each reading (the node's lease renewal returns one): the database's
    ``now()`` and the monotonic times just before and after the statement that read it.
    Until the first reading, the host's clock stands in.
    """

    def __init__(self, local: Clock | None = None) -> None:
        self._local = local or SystemClock()
        self._database_at: datetime | None = None
        self._monotonic_at = 0.0
        self.offset_s = 0.0

    def observe(self, database_now: datetime, sent: float, received: float) -> None:
        middle = (sent + received) / 2
        self._database_at, self._monotonic_at = database_now, middle
        local_then = self._local.now() - timedelta(seconds=self._local.monotonic() - middle)
        self.offset_s = (local_then - database_now).total_seconds()

    def now(self) -> datetime:
        if self._database_at is None:
            return self._local.now()
        return self._database_at + timedelta(seconds=self._local.monotonic() - self._monotonic_at)

    def monotonic(self) -> float:
        return self._local.monotonic()

    async def sleep(self, seconds: float) -> None:
        await self._local.sleep(seconds)
