"""Turning the ``sessions`` table into runs: dispatch, reconcile, reap, housekeeping.

- **dispatch** (a loop of its own, ``dispatcher.Dispatcher``): claims due sessions while
  this process has room and starts their runs.
- **reconcile** (every ``scheduler.reconcile_s``): rows admins inserted or edited, and
  rows flagged for a bad value in heatup's own columns, are decided again; an unusable row
  gets ``invalid_reason`` and one log line per distinct problem. The channel pool is checked.
  Runs of sessions that may no longer run (``session.admit``) are cancelled.
- **reap** (every ``scheduler.heartbeat_s``): the runs of a node whose lease ran out
  (its process died, or lost the database) end ``interrupted``, on the database's clock;
  not until ``stale_run_s`` after a database outage, so that live nodes renew their
  leases first.
- **refresh** (every ``REFRESH_S``): the gauges and the counts of the status line. The
  pool-wide counts read every row of ``sessions``; they are taken again only once they have
  cost at most ``COUNTS_CPU_SHARE`` of the time since the last ones.
- **retention** (a minute after start, then every ``RETENTION_S``): runs older than
  ``history.retention_days`` are deleted in batches.
- **roll-up** (at start, then every ``scheduler.roll_up_s``): the history's latest
  hours are counted again for the console's charts (``db.activity``; the first pass after
  an upgrade counts the last week).

A database outage pauses the jobs (each pass fails, is logged once, and is tried again);
they resume by themselves. Any other failure that lasts a minute stops the daemon with a
non-zero exit: a broken process, not a broken dependency (``jobs.Jobs`` judges each pass).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from heatup_daemon.config.sections import HistorySettings, SchedulerSettings
from heatup_daemon.enums import Job, Refusal
from heatup_daemon.fatal import FatalRule
from heatup_daemon.lease import NodeLease
from heatup_daemon.ramp import Ramp, stage_counts
from heatup_daemon.records import SessionCounts
from heatup_daemon.run.runner import InFlight
from heatup_daemon.scheduling.dispatcher import (
    Dispatcher,
    DispatchMetrics,
    count_refused,
    log_verdict,
)
from heatup_daemon.scheduling.jobs import Jobs
from heatup_daemon.scheduling.slots import Slots
from heatup_daemon.stores import SchedulingStore, SlotPolicy
from heatup_daemon.timing.clock import Clock, SystemClock

log = logging.getLogger(__name__)

# APScheduler keeps the housekeeping jobs' times by the host's clock (its waits are the
# host's), so they are given in the host's time, whatever clock the node decides by.
HOST: Final = SystemClock()
RECONCILE_BATCH: Final = 10_000
RETENTION_BATCH: Final = 1_000
REFRESH_S: Final = 15.0
# The share of one core the pool-wide counts may take (they read every row of sessions).
COUNTS_CPU_SHARE: Final = 0.01
RETENTION_S: Final = 3600.0
RETENTION_FIRST_S: Final = 60.0
# At a stop, how long a housekeeping pass in progress may take to finish.
JOB_DRAIN_S: Final = 10.0


class SchedulerMetrics(DispatchMetrics, Protocol):
    def history_trimmed(self, runs: int) -> None: ...
    def set_gauges(
        self, counts: SessionCounts, ramp_stages: dict[str, int], in_flight: int
    ) -> None: ...


class Scheduler:
    def __init__(
        self,
        settings: SchedulerSettings,
        history: HistorySettings,
        store: SchedulingStore,
        in_flight: InFlight,
        metrics: SchedulerMetrics,
        clock: Clock,
        lease: NodeLease,
        *,
        ramp: Ramp | None = None,
        rng: random.Random | None = None,
        policy: SlotPolicy | None = None,
        on_fatal: Callable[[BaseException], None] = lambda exc: None,
    ) -> None:
        self._settings = settings
        self._ramp = ramp or Ramp()
        self._history = history
        self._store = store
        self._in_flight = in_flight
        self._metrics = metrics
        self._clock = clock
        self._lease = lease
        self._slots = policy or Slots(settings.misfire_grace_s, rng or random.Random())
        self._on_fatal = on_fatal
        self.jobs = Jobs(clock, metrics, FatalRule(clock, on_fatal), self._outage_began)
        self.dispatcher = Dispatcher(
            settings, store, in_flight, metrics, clock, lease, self._slots, self.jobs
        )
        self._aps: AsyncIOScheduler | None = None
        self.counts = SessionCounts()
        self._stages: dict[str, int] = {}
        self._counted_at: float | None = None
        self._counted_when: datetime | None = None
        self._count_every_s = REFRESH_S

    # --- life cycle -------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """The dispatcher runs (started, not stopping, its loop alive)."""
        return self.dispatcher.running

    async def prepare(self, *, reconcile: bool = True, count: bool = True) -> None:
        """Before the jobs start: reap runs whose process died, apply every pending admin
        edit (unless ``reconcile`` is false), count (unless ``count`` is false). The daemon
        leaves both to their jobs, which ``start`` runs at once: its readiness never waits
        on every row of a large registry (rows already scheduled are dispatched meanwhile;
        a new row is claimed once its first pass has given it a slot)."""
        await self.reap()
        if reconcile:
            await self.reconcile()
        if count:
            await self.refresh()

    @property
    def counted(self) -> bool:
        """Whether ``counts`` holds a count yet (the first comes just after the start)."""
        return self._counted_at is not None

    def last_counts(self) -> tuple[SessionCounts, datetime] | None:
        """The latest counts and when they were taken (None before the first)."""
        return None if self._counted_when is None else (self.counts, self._counted_when)

    def start(self) -> None:
        aps = AsyncIOScheduler(timezone=UTC)
        # (job, interval, first run after start): the reconcile and the counts at once
        # (prepare may leave them to the jobs; counts taken already are not taken again
        # before their budget allows); retention soon, so that a daemon restarted more often
        # than its interval still trims the history; the reap after its interval.
        jobs: tuple[tuple[Job, float, float, Callable[[], Awaitable[Any]]], ...] = (
            (Job.RECONCILE, self._settings.reconcile_s, 0.0, self.reconcile),
            (
                Job.REAP,
                self._settings.heartbeat_s,
                self._settings.heartbeat_s,
                self.reap,
            ),
            (Job.REFRESH, REFRESH_S, 0.0, self.refresh),
            (Job.RETENTION, RETENTION_S, RETENTION_FIRST_S, self.trim_history),
            (Job.ROLL_UP, self._settings.roll_up_s, 0.0, self.roll_up),
        )
        now = HOST.now()
        for name, interval_s, first_s, job in jobs:
            aps.add_job(
                self._housekeeping(name, job),
                "interval",
                seconds=interval_s,
                id=name,
                name=name,
                next_run_time=now + timedelta(seconds=first_s),
                # A pass still running when the next is due is counted and skipped here, so
                # APScheduler never sees (or logs) an overlap.
                max_instances=2,
                coalesce=True,
                misfire_grace_time=None,
            )
        aps.start()
        self._aps = aps
        self.dispatcher.start().add_done_callback(self._dispatcher_ended)

    def _housekeeping(
        self, name: Job, job: Callable[[], Awaitable[Any]]
    ) -> Callable[[], Awaitable[None]]:
        """``job`` as APScheduler runs it: judged (``Jobs.guarded``), and a pass a stop cuts
        short ends quietly (APScheduler would log the cancellation as the job's error)."""
        guarded = self.jobs.guarded(name, job)

        async def run() -> None:
            try:
                await guarded()
            except asyncio.CancelledError:
                log.info("the %s pass was cut short: heatup is stopping", name)

        return run

    def _dispatcher_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._on_fatal(task.exception() or RuntimeError("the dispatcher ended"))

    @property
    def next_runs(self) -> dict[Job, datetime]:
        """When each housekeeping job runs next (host time; empty until ``start``)."""
        if self._aps is None:
            return {}
        jobs = self._aps.get_jobs()
        return {Job(job.id): job.next_run_time for job in jobs if job.next_run_time}

    def reconcile_soon(self) -> None:
        """Run the reconcile job now (a session was registered in this process)."""
        if self._aps is not None and self._aps.running:
            self._aps.modify_job(Job.RECONCILE, next_run_time=HOST.now())

    def wake(self) -> None:
        """Look for due sessions now (a slot moved, or room was made)."""
        self.dispatcher.wake()

    async def dispatch(self, now: datetime | None = None) -> int:
        """One dispatch pass (``Dispatcher.dispatch``)."""
        return await self.dispatcher.dispatch(now)

    async def stop(self, timeout_s: float) -> None:
        """Stop claiming; let runs in flight finish their current action for up to
        ``timeout_s``; cancel the rest (they end ``interrupted``)."""
        await self.dispatcher.stop()
        if self._aps is not None and self._aps.running:
            # A housekeeping pass in progress finishes; APScheduler would cancel it.
            self._aps.pause()
            await self.jobs.finished(JOB_DRAIN_S)
            self._aps.shutdown(wait=False)
        await self._in_flight.stop(timeout_s)

    async def run_once(self) -> int:
        """Dispatch what is due now, wait for those runs; return how many were started.
        (An operator's explicit request: what is overdue is not spread out.)"""
        await self.prepare()
        self.dispatcher.catch_up_pending = False
        cutoff = self._clock.now()
        started = 0
        while True:
            count = await self.dispatch(now=cutoff)
            started += count
            if len(self._in_flight):
                await self._in_flight.wait_for_room(self._settings.dispatch_interval_s)
            elif count == 0:
                await self._in_flight.wait_all()
                return started

    def _outage_began(self) -> None:
        self.dispatcher.catch_up_pending = True  # what falls due meanwhile is spread out after
        self._in_flight.adopt_pending = True  # a write in flight may have landed unconfirmed

    # --- reconcile --------------------------------------------------------------------

    async def reconcile(self) -> int:
        """Decide changed rows, check the pool, cancel runs no longer allowed; return how
        many rows were looked at."""
        now = self._clock.now()
        after_id, examined = 0, 0
        while True:
            batch = await self._store.reconcile(self._slots, now, after_id, RECONCILE_BATCH)
            examined += batch.examined
            count_refused(self._metrics, batch.decisions)
            for decision in batch.decisions:
                log_verdict(decision)
                if decision.next_run_at is not None:
                    self.wake()
            if batch.examined < RECONCILE_BATCH:
                break
            after_id = batch.last_id
        for username, reason in await self._store.check_channels():
            if reason is None:
                log.info("channel row %r is usable again", username)
            else:
                log.warning("channel row %r is not usable: %s", username, reason)
        refused = await self._store.refusals(self._in_flight.session_ids, now)
        for session_id, (refusal, reason) in refused.items():
            # A cooldown comes from the run's own flood wait, which already ends that run.
            if refusal is not Refusal.COOLING_DOWN:
                self._in_flight.cancel(session_id, reason)
        return examined

    # --- reap and housekeeping ----------------------------------------------------------

    async def reap(self) -> int:
        if self.jobs.in_outage:
            await self._store.next_due_at()  # still out: this raises, and the outage goes on
            self.jobs.answered()
        if self.jobs.back_within(self._settings.stale_run_s):
            return 0  # live runs first renew the leases the outage left stale
        reaped = await self._store.reap_stale_runs(self._clock.now(), self._settings.stale_run_s)
        if reaped:
            log.warning("marked %d runs interrupted: their process stopped", reaped)
        return reaped

    async def refresh(self) -> None:
        at = self._clock.monotonic()
        if self._counted_at is None or at - self._counted_at >= self._count_every_s:
            now, started = self._clock.now(), time.perf_counter()
            self.counts = await self._store.counts(now)
            first_days = [day for day, _ in self._ramp.stages]
            aged = await self._store.sessions_aged(now, first_days)
            self._stages = stage_counts(self._ramp, aged)
            cost_s = time.perf_counter() - started
            self._counted_at, self._counted_when = at, now
            self._count_every_s = max(REFRESH_S, cost_s / COUNTS_CPU_SHARE)
        self._metrics.set_gauges(self.counts, self._stages, len(self._in_flight))

    async def roll_up(self) -> int:
        return await self._store.roll_up(self._clock.now())

    async def trim_history(self) -> int:
        before = self._clock.now() - timedelta(days=self._history.retention_days)
        deleted = 0
        while True:
            batch = await self._store.delete_history(before, RETENTION_BATCH)
            deleted += batch
            self._metrics.history_trimmed(batch)
            if batch < RETENTION_BATCH:
                break
            await asyncio.sleep(0)  # one batch at a time: claims go on in between
        if deleted:
            log.info("deleted %d runs older than %d days", deleted, self._history.retention_days)
        return deleted
