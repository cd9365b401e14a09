"""Dispatch: claiming due sessions, most overdue first, while this process has room
(``scheduler.max_concurrent_runs``), in batches of one transaction each
(``SchedulingStore.claim_due``; the decisions are ``slots.Slots``), and starting the runs it
claimed. It sleeps until the earliest ``next_run_at`` (at most
``scheduler.dispatch_interval_s``) and wakes early when a reconcile moved a slot or a run
ended. After a restart or an outage, the slots that fell due meanwhile are spread out
(``slots.CatchUp``). A pass that outlasts the interval counts in
``heatup_dispatch_overruns_total``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Final, Protocol

from heatup_daemon.config.sections import SchedulerSettings
from heatup_daemon.enums import Job, RunStatus, SkipCause
from heatup_daemon.errors import DatabaseUnavailable
from heatup_daemon.lease import NodeLease
from heatup_daemon.logs import log_context
from heatup_daemon.records import Decision
from heatup_daemon.run.runner import InFlight
from heatup_daemon.scheduling.jobs import JobMetrics, Jobs
from heatup_daemon.scheduling.slots import CatchUp
from heatup_daemon.stores import SchedulingStore, SlotPolicy, carried
from heatup_daemon.timing.clock import Clock

log = logging.getLogger(__name__)

CLAIM_BATCH: Final = 500
FULL_WARNING_S: Final = 60.0
# A due row that could not be claimed yet (another node holds it) is looked at again after.
BUSY_RETRY_S: Final = 0.02


class DispatchMetrics(JobMetrics, Protocol):
    def run_dispatched(self, lag_s: float) -> None: ...
    def dispatch_finished(self, seconds: float, overran: bool) -> None: ...
    def dispatch_waited_for_room(self) -> None: ...
    def slots_skipped(self, cause: SkipCause, count: int) -> None: ...
    def decisions_refused(self, count: int) -> None: ...


class Dispatcher:
    """The dispatch loop of one node, and a pass of it on demand (``dispatch``)."""

    def __init__(
        self,
        settings: SchedulerSettings,
        store: SchedulingStore,
        in_flight: InFlight,
        metrics: DispatchMetrics,
        clock: Clock,
        lease: NodeLease,
        slots: SlotPolicy,
        jobs: Jobs,
    ) -> None:
        self._settings = settings
        self._store = store
        self._in_flight = in_flight
        self._metrics = metrics
        self._clock = clock
        self._lease = lease
        self._slots = slots
        self._jobs = jobs
        self.stopping = False
        self._dispatching = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Dispatch (re)starts: overdue slots are spread out (``slots.CatchUp``).
        self.catch_up_pending = True
        self._catch_up: CatchUp | None = None
        self._full_said_at: float | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done() and not self.stopping

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self.forever(), name=Job.DISPATCH)
        return self._task

    def wake(self) -> None:
        """Look for due sessions now (a slot moved, or room was made)."""
        self._wake.set()

    async def stop(self) -> None:
        """Claim no more; a claim in progress completes (and starts its runs)."""
        self.stopping = True
        async with self._dispatching:
            if self._task is not None:  # it sleeps, or waits for this lock
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)

    async def forever(self) -> None:
        interval_s = self._settings.dispatch_interval_s
        dispatch = self._jobs.guarded(Job.DISPATCH, self.dispatch)
        while not self.stopping:
            started = self._clock.monotonic()
            done = await dispatch()
            took_s = self._clock.monotonic() - started
            self._metrics.dispatch_finished(took_s, took_s > interval_s)
            await self._sleep(await self._until_due(interval_s) if done else interval_s)

    async def _until_due(self, cap_s: float) -> float:
        """Seconds until the next row comes due (at most ``cap_s``)."""
        if len(self._in_flight) >= self._settings.max_concurrent_runs:
            await self._in_flight.wait_for_room(cap_s)  # full: the next chance is a run ending
            return 0.0
        try:
            # Shielded: a stop cancels this loop, never a query halfway.
            due = await carried(self._store.next_due_at())
        except DatabaseUnavailable:
            return cap_s
        if due is None:
            return cap_s
        if self._catch_up is not None:
            due = self._catch_up.claimable_at(due)
        wait_s = (due - self._clock.now()).total_seconds()
        return min(cap_s, max(wait_s, BUSY_RETRY_S))

    async def _note_full(self) -> None:
        """Runs in flight fill ``max_concurrent_runs``: when due runs wait for a free place
        meanwhile, count it, and say so in the log once a minute, with the remedy."""
        try:
            due = await carried(self._store.next_due_at())
        except DatabaseUnavailable:
            return
        now = self._clock.now()
        if due is None or due > now:
            return
        self._metrics.dispatch_waited_for_room()
        at = self._clock.monotonic()
        if self._full_said_at is not None and at - self._full_said_at < FULL_WARNING_S:
            return
        self._full_said_at = at
        log.warning(
            "%d runs in flight, as many as scheduler.max_concurrent_runs allows: due runs "
            "wait for a free place (the oldest for %.0f s); raise max_concurrent_runs",
            len(self._in_flight),
            (now - due).total_seconds(),
        )

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        try:
            # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that arrives as
            # the event is set, and a stop would then wait for this loop forever.
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()

    async def dispatch(self, now: datetime | None = None) -> int:
        """Claim due sessions while there is room and start their runs; return how many
        started."""
        async with self._dispatching:
            if self._in_flight.adopt_pending:  # a claim's commit answer may have been lost
                await self._in_flight.adopt_orphans()
            if self.catch_up_pending:
                await self._begin_catch_up()
            started = 0
            while not self.stopping:
                room = self._settings.max_concurrent_runs - len(self._in_flight)
                if room <= 0:
                    await self._note_full()
                    break
                limit = min(room, CLAIM_BATCH)
                try:
                    async with self._in_flight.writing():  # no adoption between claim and launch
                        # Read once the gate lets it by: the runs' start and the slots'
                        # verdicts are as of the claim, not of a wait for an adoption.
                        moment = now or self._clock.now()
                        claim = await self._store.claim_due(
                            self._slots, moment, limit, self._lease.node, self._due_by(moment)
                        )
                        for run in claim.runs:
                            self._in_flight.launch(run)
                except DatabaseUnavailable:
                    # Whatever outage this is part of: the claim may have landed unconfirmed.
                    self._in_flight.adopt_pending = True
                    raise
                self._report(claim.decisions)
                for run in claim.runs:
                    self._metrics.run_dispatched((self._clock.now() - run.due_at).total_seconds())
                started += len(claim.runs)
                if len(claim.decisions) < limit:
                    break
            return started

    async def _begin_catch_up(self) -> None:
        now = self._clock.now()
        oldest = await self._store.next_due_at()
        self.catch_up_pending = False
        self._catch_up = CatchUp.of(oldest, now, self._settings.misfire_grace_s)
        if self._catch_up is not None:
            log.info(
                "slots fell due while dispatch was away: the runs of the last %.0f s start "
                "over the next %.0f s, in due order",
                self._catch_up.window.total_seconds(),
                self._catch_up.window.total_seconds(),
            )

    def _due_by(self, now: datetime) -> datetime | None:
        """How far due rows may be claimed: all, or as far as a catch-up has come."""
        if self._catch_up is None:
            return None
        cutoff = self._catch_up.cutoff(now)
        if cutoff is None:
            self._catch_up = None
            log.info("caught up with the slots that fell due while dispatch was away")
        return cutoff

    def _report(self, decisions: Sequence[Decision]) -> None:
        skipped: Counter[SkipCause] = Counter()
        count_refused(self._metrics, decisions)
        for decision in decisions:
            log_verdict(decision)
            for row in decision.rows:
                if row.status is RunStatus.SKIPPED and row.cause is not None:
                    skipped[row.cause] += 1
                    with log_context(session=decision.record.gateway_session_id):
                        log.debug("slot %s skipped: %s", row.scheduled_for, row.error)
        for cause, count in skipped.items():
            self._metrics.slots_skipped(cause, count)
        if skipped:
            causes = ", ".join(f"{count} {cause}" for cause, count in skipped.most_common())
            log.info("%d slots recorded as skipped (%s)", sum(skipped.values()), causes)


def count_refused(metrics: DispatchMetrics, decisions: Sequence[Decision]) -> None:
    refused = sum(1 for decision in decisions if decision.refused)
    if refused:
        metrics.decisions_refused(refused)


def log_verdict(decision: Decision) -> None:
    """One line per distinct problem of a row, and one when it is usable again."""
    record, reason = decision.record, decision.invalid_reason
    if reason == record.invalid_reason:
        return
    with log_context(session=record.gateway_session_id):
        if reason is None:
            log.info("session row %d is usable again", record.id)
        else:
            log.warning("session row %d is not usable: %s", record.id, reason)
