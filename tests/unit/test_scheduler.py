"""The scheduler on fakes: the in-memory store, a scripted gateway, a fake clock. Slots,
misfires, the concurrency bound, cancellation, reaping, and how it rides out an outage."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from heatup_daemon.config import (
    ExecutorSettings,
    HistorySettings,
    PlannerSettings,
    SchedulerSettings,
    Settings,
)
from heatup_daemon.enums import RunStatus, Trigger
from heatup_daemon.events import Observers
from heatup_daemon.executor import Executor
from heatup_daemon.metrics import Metrics
from heatup_daemon.planner.fallback import FallbackPlanner
from heatup_daemon.runner import Runner, RunPool
from heatup_daemon.scheduler import FATAL_AFTER_S, Scheduler
from heatup_daemon.testing import FakeClock, FakeGateway, InMemoryStore
from heatup_daemon.validation import validate_channel
from tests.builders import session_spec

START = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


class World:
    def __init__(self, gateway: FakeGateway | None = None, **settings: Any) -> None:
        self.clock = FakeClock(START)
        self.store = InMemoryStore(self.clock)
        self.gateway = gateway or FakeGateway()
        self.metrics = Metrics()
        self.fatal: list[BaseException] = []
        self.settings = SchedulerSettings(**settings)
        executor = Executor(
            self.gateway,
            self.store,
            ExecutorSettings(time_scale=0),
            self.metrics,
            clock=self.clock,
            heartbeat_s=self.settings.heartbeat_seconds,
        )
        planner = FallbackPlanner(PlannerSettings(), random.Random(1))
        runner = Runner(
            self.store,
            planner,
            executor,
            Observers(self.metrics),
            self.clock,
            "n1",
            joins=Settings().join_policy,
            bounds=PlannerSettings(),
        )
        self.pool = RunPool(runner)
        self.scheduler = Scheduler(
            self.settings,
            HistorySettings(),
            self.store,
            self.pool,
            self.metrics,
            self.clock,
            "n1",
            rng=random.Random(7),
            on_fatal=self.fatal.append,
        )

    async def add(self, gateway_id: int, schedule: str = "1h", jitter: int = 0) -> int:
        if not self.store.channels:
            await self.store.add_channel(
                validate_channel(username="chan_a", title=None, category="news", description=None)
            )
        spec = session_spec(gateway_id, schedule, jitter_seconds=jitter)
        return (await self.store.add_session(spec)).id

    async def tick(self) -> int:
        started = await self.scheduler.dispatch()
        await self.pool.wait_all()
        return started

    def rows(self, gateway_id: int) -> list[tuple[str, datetime | None, datetime | None]]:
        """The session's slot rows (scheduled runs), in slot order."""
        runs = sorted(
            (
                r
                for r in self.store.runs.values()
                if r.gateway_session_id == gateway_id and r.trigger is Trigger.SCHEDULE
            ),
            key=lambda r: (r.scheduled_for, r.id),
        )
        return [(r.status.value, r.scheduled_for, r.next_slot_at) for r in runs]

    def errors(self, gateway_id: int) -> list[str | None]:
        return [r.error for r in self.store.runs.values() if r.gateway_session_id == gateway_id]

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


def hours(n: float) -> datetime:
    return START + timedelta(hours=n)


async def test_a_due_session_runs_once_per_slot_and_the_rows_chain() -> None:
    w = World()
    await w.add(1)
    await w.scheduler.prepare()
    assert await w.tick() == 1 and await w.tick() == 0
    w.clock.advance(3600)
    assert await w.tick() == 1
    assert w.rows(1) == [("succeeded", hours(0), hours(1)), ("succeeded", hours(1), hours(2))]
    assert w.sample("heatup_dispatch_lag_seconds_count") == 2


async def test_late_slots_are_one_skipped_row_and_the_schedule_goes_on() -> None:
    w = World()
    await w.add(1)
    await w.scheduler.prepare()
    await w.tick()
    w.clock.advance(5 * 3600 + 600)  # down for five slots
    assert await w.tick() == 0
    assert w.rows(1)[1:] == [("skipped", hours(1), hours(6))]
    assert "missed by 15000 s" in (w.errors(1)[1] or "")
    assert next(iter(w.store.sessions.values()))["next_run_at"] == hours(6)
    assert w.sample("heatup_runs_total", status="skipped", trigger="schedule") == 1


async def test_slots_passed_within_the_grace_coalesce_with_a_row_of_their_own() -> None:
    w = World(misfire_grace_seconds=3600)
    await w.add(1, "10m")
    await w.scheduler.prepare()
    await w.tick()
    w.clock.advance(35 * 60)
    assert await w.tick() == 1
    m = timedelta(minutes=1)
    assert w.rows(1) == [
        ("succeeded", START, START + 10 * m),
        ("succeeded", START + 10 * m, START + 20 * m),
        ("skipped", START + 20 * m, START + 40 * m),
    ]


async def test_a_slot_that_comes_while_a_run_is_in_flight_is_skipped() -> None:
    w = World()
    await w.add(1, "1h")
    await w.scheduler.prepare()
    api_run = await w.store.start_run(1, Trigger.API, w.clock.now(), "api")  # holds the session
    assert await w.scheduler.dispatch() == 0
    assert w.rows(1) == [("skipped", START, hours(1))]
    assert f"run {api_run.id} of the session was still in flight" in w.errors(1)


async def test_cooldown_skips_to_the_first_slot_after_it() -> None:
    w = World()
    session_id = await w.add(1, "10m")
    await w.scheduler.prepare()
    await w.store.set_cooldown(session_id, START + timedelta(minutes=25), 1500, START)
    assert await w.tick() == 0
    assert w.rows(1) == [("skipped", START, START + timedelta(minutes=30))]
    w.clock.advance(30 * 60)
    assert await w.tick() == 1


async def test_at_most_max_concurrent_runs_in_due_order() -> None:
    w = World(max_concurrent_runs=2)
    for gateway_id in (1, 2, 3):
        await w.add(gateway_id)
    await w.scheduler.prepare()
    for offset, row in enumerate(w.store.sessions.values()):
        row["next_run_at"] = row["next_nominal_at"] = START - timedelta(seconds=30 - offset)
    assert await w.scheduler.dispatch() == 2
    assert await w.scheduler.dispatch() == 0  # full: the third waits
    await w.pool.wait_all()
    assert await w.tick() == 1
    first = sorted(w.store.runs.values(), key=lambda r: r.id)[:2]
    assert {r.gateway_session_id for r in first} == {1, 2}


class Hanging(FakeGateway):
    """Every call waits until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.entered = asyncio.Event()

    async def _call(self, operation: str, gateway_session_id: int, channel: str | None) -> None:
        self.entered.set()
        await self.release.wait()
        await super()._call(operation, gateway_session_id, channel)


async def test_a_run_whose_row_becomes_invalid_is_cancelled() -> None:
    gateway = Hanging()
    w = World(gateway)
    session_id = await w.add(1)
    await w.scheduler.prepare()
    assert await w.scheduler.dispatch() == 1
    await gateway.entered.wait()  # the run is in its first gateway call
    w.store.sessions[session_id]["timezone"] = "Mars/Olympus"  # an admin's bad edit
    await w.scheduler.reconcile()
    await w.pool.wait_all()
    [run] = w.store.runs.values()
    assert run.status is RunStatus.INTERRUPTED
    assert "Mars/Olympus" in (w.store.sessions[session_id]["invalid_reason"] or "")
    assert [a.error_code for a in run.actions] == ["interrupted"]


async def test_bad_rows_are_flagged_once_and_the_others_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    w = World()
    await w.add(1)
    bad = await w.add(2)
    w.store.sessions[bad]["schedule"] = "0 0 31 2 *"  # parses, never fires
    cooled = await w.add(3)
    w.store.sessions[cooled]["cooldown_until"] = "soon"  # junk in one of heatup's columns
    await w.scheduler.prepare()
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            await w.scheduler.reconcile()
            await w.tick()
    assert "never fires" in w.store.sessions[bad]["invalid_reason"]
    assert "cooldown_until holds 'soon'" in w.store.sessions[cooled]["invalid_reason"]
    assert sum("not usable" in r.message for r in caplog.records) == 2  # once each
    assert [r[0] for r in w.rows(1)] == ["succeeded"]
    w.store.sessions[cooled]["cooldown_until"] = None  # fixed by hand
    await w.scheduler.reconcile()
    assert w.store.sessions[cooled]["invalid_reason"] is None
    assert await w.tick() == 1


async def test_a_database_outage_pauses_the_jobs_and_is_never_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    w = World()
    await w.add(1)
    await w.scheduler.prepare()
    dispatch = w.scheduler._guarded("dispatch", w.scheduler.dispatch)
    w.store.unavailable = True
    with caplog.at_level(logging.ERROR):
        for _ in range(int(FATAL_AFTER_S) * 3):
            assert await dispatch() is False
            w.clock.advance(1)
    assert w.fatal == []
    assert sum("not available" in r.message for r in caplog.records) == 1  # logged once
    assert w.scheduler.database_error is not None
    w.store.unavailable = False
    assert await dispatch() is True
    assert w.scheduler.database_error is None
    await w.pool.wait_all()
    assert [r[0] for r in w.rows(1)] == ["succeeded"]  # 180 s late: within the 300 s grace


async def test_a_job_failing_for_a_minute_for_another_reason_is_fatal() -> None:
    w = World()

    async def broken() -> None:
        raise RuntimeError("a bug")

    job = w.scheduler._guarded("reconcile", broken)
    while not w.fatal:
        await job()
        w.clock.advance(1)
    assert len(w.fatal) == 1 and isinstance(w.fatal[0], RuntimeError)
    assert w.clock.monotonic() == FATAL_AFTER_S + 1
    assert w.sample("heatup_job_failures_total", job="reconcile") == FATAL_AFTER_S + 1


async def test_the_reaper_spares_its_own_runs_and_waits_after_an_outage() -> None:
    w = World(stale_run_seconds=60, heartbeat_seconds=10)
    await w.add(1)
    await w.add(2)
    mine = await w.store.start_run(1, Trigger.API, START, "n1")
    dead = await w.store.start_run(2, Trigger.API, START, "n2")
    w.pool._tasks[mine.session.id] = (mine, asyncio.get_running_loop().create_future())  # type: ignore[assignment]
    w.clock.advance(120)
    reap = w.scheduler._guarded("reap", w.scheduler.reap)
    w.store.unavailable = True
    await reap()
    w.store.unavailable = False
    assert await reap()  # the database is back ...
    assert w.store.runs[dead.id].status is RunStatus.RUNNING  # ... leases get a chance first
    w.clock.advance(61)
    await reap()
    assert w.store.runs[dead.id].status is RunStatus.INTERRUPTED
    assert w.store.runs[mine.id].status is RunStatus.RUNNING  # alive in this process
    w.pool._tasks.clear()


async def test_a_cooldown_does_not_cut_the_run_in_flight() -> None:
    # The run's own flood wait sets the cooldown and ends that run: reconcile must not turn
    # its end into "interrupted" (it cancels for disable, invalid rows, needs attention).
    gateway = Hanging()
    w = World(gateway)
    session_id = await w.add(1)
    await w.scheduler.prepare()
    assert await w.scheduler.dispatch() == 1
    await gateway.entered.wait()
    w.store.sessions[session_id]["cooldown_until"] = START + timedelta(minutes=5)
    await w.scheduler.reconcile()
    gateway.release.set()
    await w.pool.wait_all()
    [run] = w.store.runs.values()
    assert run.status is RunStatus.SUCCEEDED


async def test_retention_deletes_old_history_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("heatup_daemon.scheduler.RETENTION_BATCH", 3)
    w = World()
    await w.add(1)
    for days_ago in range(40, 20, -1):  # 20 runs, one a day; 10 are past 30 days
        started = START - timedelta(days=days_ago)
        run = await w.store.start_run(1, Trigger.CLI, started, "n1")
        await w.store.finish_run(run.id, RunStatus.SUCCEEDED, None, started)
    assert await w.scheduler.trim_history() == 10
    assert len(await w.store.history(1, 100)) == 10
    assert w.sample("heatup_history_deleted_runs_total") == 10


async def test_readiness_does_not_wait_for_the_first_reconcile_it_runs_at_once() -> None:
    """The daemon's start: ``prepare`` without the reconcile, then the reconcile job starts
    at once (not after ``reconcile_seconds``), so a new row gets its slot straight away."""
    world = World(reconcile_seconds=3600)
    session_id = await world.add(1)
    await world.scheduler.prepare(reconcile=False)
    assert world.store.sessions[session_id]["next_run_at"] is None  # READY comes here
    world.scheduler.start()
    try:
        for _ in range(100):
            if world.store.sessions[session_id]["next_run_at"] is not None:
                break
            await asyncio.sleep(0.01)
        assert world.store.sessions[session_id]["next_run_at"] is not None
    finally:
        await world.scheduler.stop(0)
