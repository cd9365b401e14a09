"""A scheduler job that keeps failing stops the daemon; one that recovers does not."""

from __future__ import annotations

from typing import Any

from heatup_daemon.config import SchedulerSettings
from heatup_daemon.scheduler import FATAL_AFTER_S, Scheduler
from heatup_daemon.testing import FakeClock


def scheduler(clock: FakeClock, fatal: list[BaseException]) -> Scheduler:
    none: Any = None  # the guard touches neither the repository nor the runner
    return Scheduler(SchedulerSettings(), none, none, clock, "node", on_fatal=fatal.append)


async def test_a_job_failing_for_a_minute_is_fatal() -> None:
    clock, fatal = FakeClock(), []
    sched = scheduler(clock, fatal)

    async def broken() -> None:
        raise ConnectionError("database gone")

    job = sched._guarded("dispatch", broken)
    while not fatal:
        await job()
        clock.advance(1)
    # The call at 60 s of continuous failure is the fatal one, not any earlier.
    assert len(fatal) == 1 and isinstance(fatal[0], ConnectionError)
    assert clock.monotonic() == FATAL_AFTER_S + 1
    assert sched.last_error == "dispatch: ConnectionError: database gone"


async def test_a_job_that_recovers_is_not_fatal() -> None:
    clock, fatal = FakeClock(), []
    sched = scheduler(clock, fatal)
    failing = True

    async def flaky() -> None:
        if failing:
            raise ConnectionError("blip")

    job = sched._guarded("reconcile", flaky)
    for second in range(int(FATAL_AFTER_S) * 2):
        failing = second % 30 < 20  # fails 20 s, then works 10 s, again and again
        await job()
        clock.advance(1)
    assert fatal == []
