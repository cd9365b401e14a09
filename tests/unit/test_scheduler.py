"""The scheduler on fakes: the in-memory store, a scripted gateway, a fake clock. Slots,
misfires, the concurrency bound, cancellation, reaping, and how it rides out an outage."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from heatup_daemon.enums import Job, RunStatus, Trigger
from heatup_daemon.errors import Stopping
from heatup_daemon.fatal import FATAL_AFTER_S
from heatup_daemon.scheduling.scheduler import COUNTS_CPU_SHARE, REFRESH_S
from heatup_daemon.testing import FakeClock, FakeGateway, InMemoryStore
from heatup_daemon.validation import validate_channel
from tests.worlds import START, World, quick_settings


class Unit(World):
    """heatup on the in-memory store."""

    store: InMemoryStore

    def __init__(self, gateway: FakeGateway | None) -> None:
        clock = FakeClock(START)
        super().__init__(InMemoryStore(clock), gateway=gateway, clock=clock)

    async def add_session(self, gateway_id: int, schedule: str = "1h", jitter: int = 0) -> int:
        if not self.store.channels:
            await self.store.add_channel(
                validate_channel(username="chan_a", title=None, category="news", description=None)
            )
        return (await self.add(gateway_id, schedule, jitter)).id

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


async def world(gateway: FakeGateway | None = None, **scheduler: Any) -> Unit:
    """One node on the in-memory store, with these scheduler settings."""
    unit = Unit(gateway)
    unit.settings = quick_settings(**scheduler)
    await unit.node()
    return unit


def hours(n: float) -> datetime:
    return START + timedelta(hours=n)


async def test_a_due_session_runs_once_per_slot_and_the_rows_chain() -> None:
    w = await world()
    await w.add_session(1)
    await w.scheduler.prepare()
    assert await w.tick() == 1 and await w.tick() == 0
    w.clock.advance(3600)
    assert await w.tick() == 1
    assert w.rows(1) == [("succeeded", hours(0), hours(1)), ("succeeded", hours(1), hours(2))]
    assert w.sample("heatup_dispatch_lag_seconds_count") == 2


async def test_late_slots_are_one_skipped_row_and_the_schedule_goes_on() -> None:
    w = await world()
    await w.add_session(1)
    await w.scheduler.prepare()
    await w.tick()
    w.clock.advance(5 * 3600 + 600)  # down for five slots
    assert await w.tick() == 0
    assert w.rows(1)[1:] == [("skipped", hours(1), hours(6))]
    assert "missed by 15000 s" in (w.errors(1)[1] or "")
    assert next(iter(w.store.sessions.values()))["next_run_at"] == hours(6)
    assert w.sample("heatup_runs_total", status="skipped", trigger="schedule") == 1


async def test_slots_passed_within_the_grace_coalesce_with_a_row_of_their_own() -> None:
    w = await world(misfire_grace_s=3600)
    await w.add_session(1, "10m")
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
    w = await world()
    await w.add_session(1, "1h")
    await w.scheduler.prepare()
    holder = w.nodes[0].lease.node
    api_run = await w.store.start_run(1, Trigger.API, w.clock.now(), holder)  # holds it
    assert await w.scheduler.dispatch() == 0
    assert w.rows(1) == [("skipped", START, hours(1))]
    assert f"run {api_run.id} of the session was still in flight" in w.errors(1)


async def test_cooldown_skips_to_the_first_slot_after_it() -> None:
    w = await world()
    session_id = await w.add_session(1, "10m")
    await w.scheduler.prepare()
    await w.store.set_cooldown(session_id, START + timedelta(minutes=25), 1500, START)
    assert await w.tick() == 0
    assert w.rows(1) == [("skipped", START, START + timedelta(minutes=30))]
    w.clock.advance(30 * 60)
    assert await w.tick() == 1


async def test_at_most_max_concurrent_runs_in_due_order() -> None:
    w = await world(max_concurrent_runs=2)
    for gateway_id in (1, 2, 3):
        await w.add_session(gateway_id)
    await w.scheduler.prepare()
    for offset, row in enumerate(w.store.sessions.values()):
        # Due in this order, seconds ago (more overdue would be a backlog, spread out).
        row["next_run_at"] = row["next_nominal_at"] = START - timedelta(seconds=3 - offset)
    assert await w.scheduler.dispatch() == 2
    assert await w.scheduler.dispatch() == 0  # full: the third waits
    await w.in_flight.wait_all()
    assert await w.tick() == 1
    first = sorted(w.store.runs.values(), key=lambda r: r.id)[:2]
    assert {r.gateway_session_id for r in first} == {1, 2}


async def test_runs_waiting_for_a_free_place_are_counted_and_told_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = Hanging()
    w = await world(gateway, max_concurrent_runs=1)
    for gateway_id in (1, 2):
        await w.add_session(gateway_id)
    await w.scheduler.prepare()
    for row in w.store.sessions.values():
        row["next_run_at"] = row["next_nominal_at"] = START - timedelta(seconds=1)
    with caplog.at_level(logging.WARNING):
        assert await w.scheduler.dispatch() == 1  # the second waits for a free place
        w.clock.advance(30)
        assert await w.scheduler.dispatch() == 0
        w.clock.advance(31)
        assert await w.scheduler.dispatch() == 0
    assert w.sample("heatup_dispatch_full_total") == 3
    told = [r.message for r in caplog.records if "max_concurrent_runs" in r.message]
    assert len(told) == 2  # at the first pass, then a minute later
    assert "the oldest for 1 s); raise max_concurrent_runs" in told[0]
    gateway.release.set()
    await w.in_flight.wait_all()


async def test_the_pool_wide_counts_take_at_most_their_share_of_a_core(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = await world()
    await w.add_session(1)
    reads = 0
    counts = w.store.counts

    async def counted(now: datetime) -> Any:
        nonlocal reads
        reads += 1
        return await counts(now)

    monkeypatch.setattr(w.store, "counts", counted)
    ticks = iter(range(0, 10_000, 2))  # every reading of the counts "costs" 2 s
    monkeypatch.setattr("heatup_daemon.scheduling.scheduler.time.perf_counter", lambda: next(ticks))
    await w.scheduler.refresh()
    assert reads == 1
    w.clock.advance(REFRESH_S)
    await w.scheduler.refresh()  # 2 s a reading: taken again 200 s later, not 15 s
    assert reads == 1
    w.clock.advance(2 / COUNTS_CPU_SHARE - REFRESH_S)
    await w.scheduler.refresh()
    assert reads == 2


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
    w = await world(gateway)
    session_id = await w.add_session(1)
    await w.scheduler.prepare()
    assert await w.scheduler.dispatch() == 1
    await gateway.entered.wait()  # the run is in its first gateway call
    w.store.sessions[session_id]["timezone"] = "Mars/Olympus"  # an admin's bad edit
    await w.scheduler.reconcile()
    await w.in_flight.wait_all()
    [run] = w.store.runs.values()
    assert run.status is RunStatus.INTERRUPTED
    assert "Mars/Olympus" in (w.store.sessions[session_id]["invalid_reason"] or "")
    assert [a.error_code for a in run.actions] == ["interrupted"]


async def test_bad_rows_are_flagged_once_and_the_others_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    w = await world()
    await w.add_session(1)
    bad = await w.add_session(2)
    w.store.sessions[bad]["schedule"] = "0 0 31 2 *"  # parses, never fires
    cooled = await w.add_session(3)
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
    w = await world()
    await w.add_session(1)
    await w.scheduler.prepare()
    dispatch = w.scheduler.jobs.guarded(Job.DISPATCH, w.scheduler.dispatch)
    w.store.unavailable = True
    with caplog.at_level(logging.ERROR):
        for _ in range(int(FATAL_AFTER_S) * 3):
            assert await dispatch() is False
            w.clock.advance(1)
    assert w.fatal == []
    assert sum("not available" in r.message for r in caplog.records) == 1  # logged once
    assert w.scheduler.jobs.database_error is not None
    w.store.unavailable = False
    assert await dispatch() is True
    assert w.scheduler.jobs.database_error is None
    await w.in_flight.wait_all()
    assert [r[0] for r in w.rows(1)] == ["succeeded"]  # 180 s late: within the 300 s grace


async def test_a_job_failing_for_a_minute_for_another_reason_is_fatal() -> None:
    w = await world()

    async def broken() -> None:
        raise RuntimeError("a bug")

    job = w.scheduler.jobs.guarded(Job.RECONCILE, broken)
    while not w.fatal:
        await job()
        w.clock.advance(1)
    assert len(w.fatal) == 1 and isinstance(w.fatal[0], RuntimeError)
    assert w.clock.monotonic() == FATAL_AFTER_S + 1
    assert w.sample("heatup_job_failures_total", job="reconcile") == FATAL_AFTER_S + 1


async def test_the_reaper_ends_the_runs_of_a_dead_node_but_waits_after_an_outage() -> None:
    w = await world(stale_run_s=60, heartbeat_s=10)
    live = w.nodes[0]
    dying = await w.node("n2")  # another process, which dies
    await w.add_session(1)
    await w.add_session(2)
    mine = await w.store.start_run(1, Trigger.API, START, live.lease.node)
    dead = await w.store.start_run(2, Trigger.API, START, dying.lease.node)
    w.clock.advance(61)
    await live.lease.renew()  # the live node renews its lease; the dead one cannot
    reap = live.scheduler.jobs.guarded(Job.REAP, live.scheduler.reap)
    w.store.unavailable = True
    await reap()
    w.store.unavailable = False
    assert await reap()  # the database is back ...
    assert w.store.runs[dead.id].status is RunStatus.RUNNING  # ... leases get a chance first
    w.clock.advance(61)
    await live.lease.renew()
    await reap()
    assert w.store.runs[dead.id].status is RunStatus.INTERRUPTED
    assert w.store.runs[mine.id].status is RunStatus.RUNNING  # its node holds its lease
    assert dying.lease.node.id not in w.store.leases  # the dead node's row is gone


async def test_a_cooldown_does_not_cut_the_run_in_flight() -> None:
    # The run's own flood wait sets the cooldown and ends that run: reconcile must not turn
    # its end into "interrupted" (it cancels for disable, invalid rows, needs attention).
    gateway = Hanging()
    w = await world(gateway)
    session_id = await w.add_session(1)
    await w.scheduler.prepare()
    assert await w.scheduler.dispatch() == 1
    await gateway.entered.wait()
    w.store.sessions[session_id]["cooldown_until"] = START + timedelta(minutes=5)
    await w.scheduler.reconcile()
    gateway.release.set()
    await w.in_flight.wait_all()
    [run] = w.store.runs.values()
    assert run.status is RunStatus.SUCCEEDED


async def test_retention_deletes_old_history_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("heatup_daemon.scheduling.scheduler.RETENTION_BATCH", 3)
    w = await world()
    await w.add_session(1)
    for days_ago in range(40, 20, -1):  # 20 runs, one a day; 10 are past 30 days
        started = START - timedelta(days=days_ago)
        run = await w.store.start_run(1, Trigger.CLI, started, w.nodes[0].lease.node)
        await w.store.finish_run(run.id, RunStatus.SUCCEEDED, None, started)
    assert await w.scheduler.trim_history() == 10
    assert len(await w.store.history(1, 100)) == 10
    assert w.sample("heatup_history_deleted_runs_total") == 10


async def test_readiness_does_not_wait_for_the_first_reconcile_it_runs_at_once() -> None:
    """The daemon's start: ``prepare`` without the reconcile, then the reconcile job starts
    at once (not after ``reconcile_s``), so a new row gets its slot straight away."""
    w = await world(reconcile_s=3600)
    session_id = await w.add_session(1)
    await w.scheduler.prepare(reconcile=False)
    assert w.store.sessions[session_id]["next_run_at"] is None  # READY comes here
    w.scheduler.start()
    try:
        for _ in range(100):
            if w.store.sessions[session_id]["next_run_at"] is not None:
                break
            await asyncio.sleep(0.01)
        assert w.store.sessions[session_id]["next_run_at"] is not None
    finally:
        await w.scheduler.stop(0)


async def overdue_pool(w: Unit, count: int) -> None:
    """``count`` sessions that fell due one a second over the last ``count`` seconds."""
    for gateway_id in range(1, count + 1):
        await w.add_session(gateway_id, "1h")
    await w.scheduler.prepare()
    make_overdue(w, count)


def make_overdue(w: Unit, count: int) -> None:
    for offset, row in enumerate(w.store.sessions.values()):
        row["next_run_at"] = row["next_nominal_at"] = START - timedelta(seconds=count - offset)


async def starts_per_second(w: Unit, seconds: int) -> list[int]:
    counts = []
    for _ in range(seconds):
        counts.append(await w.tick())
        w.clock.advance(1)
    return counts


async def test_a_restart_spreads_the_overdue_slots_in_due_order() -> None:
    w = await world()
    await overdue_pool(w, 60)
    await w.node()  # the daemon starts again
    counts = await starts_per_second(w, 40)
    assert sum(counts) == 60
    assert max(counts) <= 3  # they fell due 1 a second: caught up at twice that, not at once
    # The sweep reaches real time a window as long as they were overdue (60 s) after the
    # start; at twice real time it has passed the last of them after 30 s.
    assert sum(counts[:31]) == 60 and counts[0] <= 1
    runs = sorted(w.store.runs.values(), key=lambda r: (r.started_at, r.id))
    assert [r.gateway_session_id for r in runs] == list(range(1, 61))  # in due order
    assert all(r.status is RunStatus.SUCCEEDED for r in runs)  # none became late by it


async def test_dispatch_resuming_after_an_outage_spreads_the_overdue_slots() -> None:
    w = await world()
    for gateway_id in range(1, 61):
        await w.add_session(gateway_id, "1h")
    await w.scheduler.prepare()
    for row in w.store.sessions.values():
        row["next_run_at"] = row["next_nominal_at"] = START + timedelta(minutes=30)
    dispatch = w.scheduler.jobs.guarded(Job.DISPATCH, w.scheduler.dispatch)
    assert await dispatch()  # dispatching as usual: nothing is due
    w.store.unavailable = True
    assert await dispatch() is False  # the database goes away, for a minute ...
    make_overdue(w, 60)  # ... in which the 60 sessions fell due
    w.store.unavailable = False
    counts = []
    for _ in range(40):  # it answers again: dispatch resumes, pass after pass
        assert await dispatch()
        await w.in_flight.wait_all()
        counts.append(len([r for r in w.store.runs.values()]) - sum(counts))
        w.clock.advance(1)
    assert max(counts) <= 3 and sum(counts[:31]) == 60


async def test_retention_runs_a_minute_after_start_then_hourly() -> None:
    w = await world()
    before = datetime.now(UTC)
    w.scheduler.start()
    try:
        runs = w.scheduler.next_runs
        assert runs["retention"] - before <= timedelta(seconds=61)  # not an hour
        assert runs["reconcile"] - before <= timedelta(seconds=1)  # at once
        assert runs["reap"] - before >= timedelta(seconds=14)  # after its interval
    finally:
        await w.scheduler.stop(0)


async def test_a_start_that_races_a_stop_is_awaited_not_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = await world()
    await w.add_session(1)
    written, writing = asyncio.Event(), asyncio.Event()
    start_run = w.store.start_run

    async def slow_start(*args: Any) -> Any:
        writing.set()
        await written.wait()  # the running row's commit takes a while
        return await start_run(*args)

    monkeypatch.setattr(w.store, "start_run", slow_start)

    async def api_start() -> asyncio.Task[Any]:  # as the API's /warmup starts a run
        async with w.in_flight.starting():
            run = await w.nodes[0].runner.start(1, Trigger.API)
            return w.in_flight.launch(run)

    starting = asyncio.create_task(api_start())
    await writing.wait()
    stopping = asyncio.create_task(w.in_flight.stop(5))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not stopping.done()  # the stop waits for the start in progress ...
    written.set()
    await stopping
    launched = await starting
    assert launched.done()  # ... and for the run it launched, which saw the stop
    [run] = w.store.runs.values()
    assert run.status is RunStatus.INTERRUPTED
    with pytest.raises(Stopping):  # once stopping, no start begins
        async with w.in_flight.starting():
            pass
