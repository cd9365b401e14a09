"""Turning the ``sessions`` table into runs: reconcile, dispatch, reap.

One APScheduler ``AsyncIOScheduler`` runs three jobs; no job exists per session, so a
hundred thousand sessions cost three jobs and their rows:

- **reconcile** (every ``scheduler.reconcile_seconds``): rows admins inserted or edited (the
  database finds them, see ``db.scheduling``) are validated once; a usable, enabled, active
  one gets its next slot; an unusable one gets ``invalid_reason`` and a log line, once. The
  channel pool (small) is checked whole; plans never use a channel with ``invalid_reason``.
  Runs of sessions that were disabled, deleted or set aside meanwhile are cancelled.
- **dispatch** (every ``scheduler.dispatch_interval_seconds``): due sessions are claimed in
  due order, at most as many as ``scheduler.max_concurrent_runs`` leaves room for; each
  claim moves the session to its next slot by compare-and-set and starts the run. A slot
  more than ``scheduler.misfire_grace_seconds`` late is recorded ``skipped``; slots missed
  in between coalesce; a session in cooldown moves to its first slot after the cooldown.
- **reap** (every half ``scheduler.stale_run_seconds``): runs whose heartbeat stopped (their
  process died) are marked ``interrupted``.

A job that keeps failing for ``FATAL_AFTER_S`` stops the daemon with a non-zero exit, so
that systemd restarts it; it never fails silently.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger

from heatup_daemon import metrics
from heatup_daemon.clock import Clock
from heatup_daemon.config import SchedulerSettings
from heatup_daemon.db.registry import SessionView
from heatup_daemon.db.repository import Repository
from heatup_daemon.db.scheduling import RECONCILE_BATCH, Applied, ChangedRow, DueSession
from heatup_daemon.errors import AlreadyRunning, DuplicateSlot, InvalidValue, SessionNotRunnable
from heatup_daemon.executor import ActionObserver
from heatup_daemon.runner import Runner
from heatup_daemon.schedule import Slot, make_trigger, slot_after, slot_at_or_after
from heatup_daemon.validation import SessionSpec, validate_session_row

log = logging.getLogger(__name__)

FATAL_AFTER_S: Final = 60.0


class Scheduler:
    def __init__(
        self,
        settings: SchedulerSettings,
        repository: Repository,
        runner: Runner,
        clock: Clock,
        node: str,
        *,
        rng: random.Random | None = None,
        on_fatal: Callable[[BaseException], None] = lambda exc: None,
        on_action: ActionObserver | None = None,
    ) -> None:
        self._settings = settings
        self._repository = repository
        self._runner = runner
        self._clock = clock
        self._node = node
        self._rng = rng or random.Random()
        self._on_fatal = on_fatal
        self._on_action = on_action
        self.in_flight: dict[int, asyncio.Task[Any]] = {}
        self.stop_runs = asyncio.Event()
        self.last_error: str | None = None
        self._stopping = False
        self._dispatching = asyncio.Lock()
        self._failing_since: dict[str, float] = {}
        self._aps: AsyncIOScheduler | None = None

    # --- life cycle -------------------------------------------------------------------

    async def prepare(self) -> None:
        """Before the jobs start: reap runs whose process died, then apply every pending
        admin edit. (A node name is no process identity: a CLI run of the same host is alive.)"""
        await self.reap()
        while await self.reconcile() == RECONCILE_BATCH:
            pass  # a full batch: more rows may be waiting

    def start(self) -> None:
        aps = AsyncIOScheduler(timezone=UTC)
        jobs: tuple[tuple[str, float, Callable[[], Awaitable[Any]]], ...] = (
            ("dispatch", self._settings.dispatch_interval_seconds, self.dispatch),
            ("reconcile", self._settings.reconcile_seconds, self.reconcile),
            ("reap", self._settings.stale_run_seconds / 2, self.reap),
        )
        for name, interval_s, job in jobs:
            aps.add_job(
                self._guarded(name, job),
                "interval",
                seconds=interval_s,
                id=name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
        aps.start()
        self._aps = aps

    @property
    def running(self) -> bool:
        """The dispatcher is running (started and not stopping)."""
        return self._aps is not None and self._aps.running and not self._stopping

    def adopt(self, session_id: int, task: asyncio.Task[Any]) -> None:
        """Count a run task as in flight, whether dispatched here or started by the API:
        dispatch leaves its session alone, and a stop waits for it like for any other."""
        self.in_flight[session_id] = task
        task.add_done_callback(functools.partial(self._forget, session_id))

    async def stop(self, timeout_s: float) -> None:
        """Stop claiming; let runs in flight finish their current action for up to
        ``timeout_s``; cancel the rest (they end ``interrupted``)."""
        self._stopping = True
        async with self._dispatching:  # a claim in progress completes first
            if self._aps is not None and self._aps.running:
                self._aps.shutdown(wait=False)
        self.stop_runs.set()
        tasks = list(self.in_flight.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def run_once(self) -> int:
        """Dispatch what is due now, wait for those runs; return how many were started."""
        await self.prepare()
        cutoff = self._clock.now()
        started = 0
        while True:
            count = await self.dispatch(now=cutoff)
            started += count
            if self.in_flight:
                await asyncio.wait(
                    list(self.in_flight.values()), return_when=asyncio.FIRST_COMPLETED
                )
            elif count == 0:
                return started

    def _guarded(
        self, name: str, job: Callable[[], Awaitable[Any]]
    ) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            try:
                await job()
            except Exception as exc:
                now = self._clock.monotonic()
                since = self._failing_since.setdefault(name, now)
                self.last_error = f"{name}: {type(exc).__name__}: {str(exc)[:200]}"
                log.exception("the %s job failed", name)
                if now - since >= FATAL_AFTER_S:
                    self._on_fatal(exc)
            else:
                self._failing_since.pop(name, None)

        return run

    # --- reconcile --------------------------------------------------------------------

    async def reconcile(self) -> int:
        """Apply changed rows; cancel runs of sessions no longer runnable. Returns how many
        rows were looked at (more may be waiting when it returns the batch size)."""
        now = self._clock.now()
        rows = await self._repository.changed_sessions()
        await self._repository.apply_schedules([self._decide(row, now) for row in rows])
        for username, reason in await self._repository.check_channels():
            if reason is None:
                log.info("channel row %r is usable again", username)
            else:
                log.warning("channel row %r is not usable: %s", username, reason)
        for session_id in await self._repository.not_runnable(frozenset(self.in_flight)):
            task = self.in_flight.get(session_id)
            if task is not None:
                log.info(
                    "cancelling the run of a session no longer runnable",
                    extra={"session_row": session_id},
                )
                task.cancel()
        return len(rows)

    def _decide(self, row: ChangedRow, now: datetime) -> Applied:
        try:
            spec = validate_session_row(row)
        except InvalidValue as exc:
            reason = str(exc)
            if reason != row.invalid_reason:  # once per distinct problem, not every pass
                log.warning(
                    "session row %d is not usable: %s",
                    row.id,
                    reason,
                    extra={"session_row": row.id},
                )
            return Applied(row, reason, row.next_nominal_at, None)
        if row.invalid_reason:
            log.info(
                "session row %d is usable again", row.id, extra={"session": spec.gateway_session_id}
            )
        if not (row.enabled and row.state == "active"):
            return Applied(row, None, row.next_nominal_at, None)
        keep_grid = row.next_nominal_at is not None and not row.schedule_changed
        anchor = row.next_nominal_at if keep_grid and row.next_nominal_at else now
        slot = slot_at_or_after(self._trigger(spec, anchor), now, spec.jitter_seconds, self._rng)
        return Applied(row, None, slot.nominal, slot.due)

    @staticmethod
    def _trigger(spec: SessionSpec, anchor: datetime) -> BaseTrigger:
        return make_trigger(spec.schedule, spec.timezone, anchor)

    # --- dispatch ---------------------------------------------------------------------

    async def dispatch(self, now: datetime | None = None) -> int:
        """Claim due sessions and start their runs; return how many started."""
        async with self._dispatching:
            if self._stopping:
                return 0
            free = self._settings.max_concurrent_runs - len(self.in_flight)
            if free <= 0:
                return 0
            moment = now or self._clock.now()
            due = await self._repository.due_sessions(moment, free, frozenset(self.in_flight))
            started = 0
            for item in due:
                started += await self._claim(item)
            return started

    async def _claim(self, item: DueSession) -> int:
        view, nominal, due = item.view, item.next_nominal_at, item.next_run_at
        now = self._clock.now()
        try:
            spec = validate_session_row(view)
        except InvalidValue:
            return 0  # edited since reconciled; the next reconcile flags it
        trigger = self._trigger(spec, nominal)
        jitter, repository = spec.jitter_seconds, self._repository
        if view.cooldown_until is not None and view.cooldown_until > now:
            after = slot_at_or_after(trigger, view.cooldown_until, jitter, self._rng)
            await repository.advance(view.id, nominal, after.nominal, after.due)
            return 0
        following = self._following(trigger, nominal, now, jitter)
        if not await repository.advance(view.id, nominal, following.nominal, following.due):
            return 0  # another claimer took this slot
        late_s = (now - due).total_seconds()
        if late_s > self._settings.misfire_grace_seconds:
            reason = f"missed by {late_s:.0f} s (heatup was not running); the schedule goes on"
            if await repository.record_skipped(view, nominal, due, reason, self._node, now):
                metrics.RUNS.labels("skipped", "schedule").inc()
            log.info("slot skipped: %s", reason, extra={"session": view.gateway_session_id})
            return 0
        self.adopt(view.id, asyncio.create_task(self._run(view, nominal, due)))
        return 1

    def _forget(self, session_id: int, task: asyncio.Task[Any]) -> None:
        if self.in_flight.get(session_id) is task:
            del self.in_flight[session_id]
        if not task.cancelled() and task.exception() is not None:
            log.debug("run task of session row %d ended with %r", session_id, task.exception())

    def _following(
        self, trigger: BaseTrigger, nominal: datetime, now: datetime, jitter: int
    ) -> Slot:
        """The slot after ``nominal``; slots already past coalesce into the one being run."""
        slot = slot_after(trigger, nominal, jitter, self._rng)
        if slot.nominal <= now:
            later = slot_at_or_after(trigger, now, jitter, self._rng)
            slot = later if later.nominal > nominal else slot
        return slot

    async def _run(self, view: SessionView, nominal: datetime, due: datetime) -> None:
        lag_s = (self._clock.now() - due).total_seconds()
        metrics.DISPATCH_LAG.observe(max(lag_s, 0.0))
        session = view.gateway_session_id
        try:
            result = await self._runner.run(
                view,
                "schedule",
                scheduled_for=nominal,
                due_at=due,
                stop=self.stop_runs,
                on_action=self._on_action,
            )
        except (AlreadyRunning, SessionNotRunnable) as exc:
            skipped = await self._repository.record_skipped(
                view, nominal, due, str(exc), self._node, self._clock.now()
            )
            if skipped:
                metrics.RUNS.labels("skipped", "schedule").inc()
        except DuplicateSlot:
            log.info("slot already run by another process", extra={"session": session})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the runner has recorded and logged it
            self.last_error = f"run of session {session}: {type(exc).__name__}"
        else:
            log.info(
                "run %s %s (%d actions, started %.3f s after due)",
                result.run_id,
                result.outcome.status,
                len(result.outcome.actions),
                lag_s,
                extra={"session": session, "run": result.run_id},
            )

    # --- reap -------------------------------------------------------------------------

    async def reap(self) -> int:
        reaped = await self._repository.reap_stale_runs(
            self._clock.now(), self._settings.stale_run_seconds
        )
        if reaped:
            log.warning("marked %d runs interrupted: their process stopped", reaped)
        return reaped
