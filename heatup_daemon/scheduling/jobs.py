"""How the scheduler's jobs (dispatch and the housekeeping) are run and how their ends are
judged, in one place:

- a pass still running when the next one is due is counted (``heatup_job_overruns_total``)
  and skipped, so that APScheduler never sees an overlap;
- ``DatabaseUnavailable`` means the database is out: the first such failure begins an
  outage (logged once; ``on_outage`` is told), the first pass that succeeds ends it;
- any other failure is logged with its traceback, counted, and held to the fatal rule
  (``fatal.FatalRule``): a failure of heatup's own that lasts a minute stops the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from heatup_daemon.enums import Job
from heatup_daemon.errors import DatabaseUnavailable
from heatup_daemon.fatal import FatalRule
from heatup_daemon.timing.clock import Clock

log = logging.getLogger(__name__)


class JobMetrics(Protocol):
    def job_failed(self, job: Job) -> None: ...
    def job_overran(self, job: Job) -> None: ...


class Jobs:
    def __init__(
        self,
        clock: Clock,
        metrics: JobMetrics,
        fatal: FatalRule,
        on_outage: Callable[[], None] = lambda: None,
    ) -> None:
        self._clock = clock
        self._metrics = metrics
        self._fatal = fatal
        self._on_outage = on_outage
        self._busy: set[Job] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._lost_at: float | None = None
        self._back_at: float | None = None
        self.last_error: str | None = None

    @property
    def in_outage(self) -> bool:
        """The database was out at the last pass that reached it."""
        return self._lost_at is not None

    @property
    def database_error(self) -> str | None:
        """Why the database is unavailable, while the jobs find it so."""
        return self.last_error if self.in_outage else None

    def guarded(
        self, name: Job, job: Callable[[], Awaitable[Any]]
    ) -> Callable[[], Awaitable[bool]]:
        """``job`` as a pass that never raises: whether it succeeded."""

        async def run() -> bool:
            if name in self._busy:
                self._metrics.job_overran(name)
                return False
            self._busy.add(name)
            self._idle.clear()
            try:
                await job()
            except DatabaseUnavailable as exc:
                self._unavailable(name, exc)
                return False
            except Exception as exc:
                self._failed(name, exc)
                return False
            finally:
                self._busy.discard(name)
                if not self._busy:
                    self._idle.set()
            self._fatal.recovered(name)
            self.answered()
            return True

        return run

    async def finished(self, timeout_s: float) -> None:
        """Until no pass is in progress, for at most ``timeout_s``."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):  # not wait_for: see ``Dispatcher._sleep``
                await self._idle.wait()

    def answered(self) -> None:
        """The database answered: an outage, if one was going on, is over."""
        if self._lost_at is None:
            return
        down_s = self._clock.monotonic() - self._lost_at
        self._lost_at = None
        self._back_at = self._clock.monotonic()
        self.last_error = None
        log.warning("the database answers again after %.0f s; dispatch resumes", down_s)

    def back_within(self, seconds: float) -> bool:
        """Whether an outage ended less than ``seconds`` ago."""
        if self._back_at is None:
            return False
        if self._clock.monotonic() - self._back_at < seconds:
            return True
        self._back_at = None
        return False

    def _failed(self, name: Job, exc: Exception) -> None:
        self.last_error = f"{name}: {type(exc).__name__}: {str(exc)[:200]}"
        self._metrics.job_failed(name)
        log.exception("the %s job failed", name)
        self._fatal.failed(name, exc)

    def _unavailable(self, name: Job, exc: DatabaseUnavailable) -> None:
        self._metrics.job_failed(name)
        self.last_error = str(exc)
        if self._lost_at is None:
            self._lost_at = self._clock.monotonic()
            self._on_outage()
            log.error("%s; dispatch pauses and resumes when it answers again", exc)
