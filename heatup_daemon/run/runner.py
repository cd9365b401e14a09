"""One warm-up run from its row to its end: the same path whoever starts it.

A run begins with its ``running`` row: a claim writes it for a scheduled slot
(``db.scheduling``), ``Runner.start`` for the API and the CLI (refused, with nothing
written, when ``session.admit`` says no or a run is in flight). Then ``Runner.run``:

1. the planner plans (told the session's pool, joins and recent runs); the plan is stored
   and reported (``on_plan``: the API answers then);
2. the executor carries it out, writing each action as it ends;
3. the run is finished with its status whatever happened (``interrupted`` on cancel), the
   write retried until the database takes it.

``InFlight`` holds the runs in flight in this process, one per session: the dispatcher's and
the API's alike, so that a stop waits for all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

from heatup_daemon.config.sections import PlannerSettings
from heatup_daemon.enums import ActionKind, Refusal, RunStatus, Trigger
from heatup_daemon.errors import (
    DatabaseRefused,
    DatabaseUnavailable,
    SessionNotRunnable,
    Stopping,
)
from heatup_daemon.fatal import FatalRule
from heatup_daemon.lease import NodeLease
from heatup_daemon.logs import log_context
from heatup_daemon.planner import Planner
from heatup_daemon.planner.context import plan_context
from heatup_daemon.planner.model import Plan, PlanContext
from heatup_daemon.planner.validate import narrowed
from heatup_daemon.ramp import JoinPolicy
from heatup_daemon.records import ActionRecord, JoinLimits, Run, RunInFlight
from heatup_daemon.run.events import RunEnd, RunObserver
from heatup_daemon.run.executor import Executor, RunOutcome
from heatup_daemon.session import admit
from heatup_daemon.stores import RunRecorder
from heatup_daemon.timing.clock import Clock
from heatup_daemon.validation import handle

log = logging.getLogger(__name__)

PlanObserver = Callable[[Run, Plan], Awaitable[None]]
UNCONFIRMED: Final = "heatup stopped before the run's start was confirmed"
BEFORE_IT_BEGAN: Final = "the run was cancelled before it began"
# A write whose answer was lost has landed within this, or never: the server finishes a
# commit it has begun (a flush) within seconds of its client giving up on it.
UNCERTAIN_S: Final = 30.0
# The fatal rule's name for runs that fail of a defect (a refused write, a bug).
DEFECTS: Final = "runs"


def _retrieved(future: asyncio.Future[Any]) -> None:
    """A done callback: the failure of a future nobody may await is retrieved (it is logged
    where it happens)."""
    if not future.cancelled():
        future.exception()


@dataclass(frozen=True, slots=True)
class RunResult:
    run: Run
    plan: Plan
    outcome: RunOutcome
    # The status the run row has: the outcome's, or the reaper's if it ended the run first.
    status: RunStatus


class Runner:
    def __init__(
        self,
        recorder: RunRecorder,
        planner: Planner,
        executor: Executor,
        observer: RunObserver,
        clock: Clock,
        lease: NodeLease,
        *,
        joins: JoinPolicy,
        bounds: PlannerSettings,
        on_fatal: Callable[[BaseException], None] = lambda exc: None,
        store: RunRecorder | None = None,
        cut_short: asyncio.Event | None = None,
    ) -> None:
        self._recorder = recorder
        # Set when a stop runs out of time: ``recorder``'s writes stop waiting out an outage.
        self._cut_short = cut_short or asyncio.Event()
        # Writes that may not wait out an outage (``recorder``'s do): the ends of unconfirmed
        # starts, asked again later if the database does not answer.
        self._store = store or recorder
        self._planner = planner
        self._executor = executor
        self._observer = observer
        self._clock = clock
        self._lease = lease
        self._joins = joins
        self._bounds = bounds
        self._fatal = FatalRule(clock, on_fatal)
        # Ends being written, by run id; they outlive a cancelled run task (see ``drain``).
        self._finishing: dict[int, asyncio.Future[RunStatus]] = {}
        self._begun: set[int] = set()  # runs whose task took its first step, until it ends
        # Runs whose task is done but whose end the database did not take: never adopted
        # (a task ran them), their end tried again by the next adoption and at the stop.
        self._unended: dict[int, tuple[RunStatus, str | None]] = {}

    def cut_short(self) -> None:
        """A stop ran out of time: the writes of runs and their ends are tried once more,
        then left to the reaper, instead of waiting out an outage."""
        self._cut_short.set()

    def monotonic(self) -> float:
        return self._clock.monotonic()

    def ended(self, run: Run, cancelled: bool) -> None:
        """``run``'s task is done. Cancelled before its first step, its own ``finally`` never
        ran: its end is written here (``interrupted``)."""
        if run.id in self._begun:
            self._begun.discard(run.id)
        elif cancelled:
            with log_context(session=run.session.gateway_session_id, run=run.id):
                now = self._clock.monotonic()
                self._ending(run, RunStatus.INTERRUPTED, BEFORE_IT_BEGAN, (), now)

    def _ending(
        self,
        run: Run,
        status: RunStatus,
        error: str | None,
        actions: tuple[ActionRecord, ...],
        started: float,
    ) -> asyncio.Future[RunStatus]:
        """Write ``run``'s end in a task of its own, which a cancelled run task outlives."""
        finishing = asyncio.ensure_future(self._finish(run, status, error, actions, started))
        self._finishing[run.id] = finishing
        finishing.add_done_callback(lambda _: self._finishing.pop(run.id, None))
        finishing.add_done_callback(_retrieved)  # a cancelled run task no longer awaits it
        return finishing

    async def drain(self, timeout_s: float | None = None) -> None:
        """Until every run's end has been written (a cancelled run's end is written after
        its task is done), or ``timeout_s`` has passed."""
        if self._finishing:  # not gather: a timeout must not cancel the writes
            await asyncio.wait(list(self._finishing.values()), timeout=timeout_s)

    @property
    def finishing(self) -> frozenset[int]:
        """The runs whose end is being written (their task may be done already)."""
        return frozenset(self._finishing)

    async def start(self, gateway_session_id: int, trigger: Trigger) -> Run:
        """Insert the ``running`` row of an API or CLI run (see ``RunRecorder.start_run``)."""
        return await self._recorder.start_run(
            gateway_session_id, trigger, self._clock.now(), self._lease.node
        )

    async def orphans(self, known: frozenset[int]) -> list[Run]:
        """This node's runs in flight that none of ``known`` is, nor a run whose end is being
        written: their row was written but the answer to its commit was lost, so no task runs
        them. Those whose session may run are returned, to launch; the others are ended
        ``interrupted``. Raises ``DatabaseUnavailable`` rather than wait for the database."""
        now, adopted = self._clock.now(), []
        for row in await self._unconfirmed(known):
            if row.id in self._unended:  # a task ran it: its end is tried again, never it
                with contextlib.suppress(DatabaseRefused):  # logged when first refused
                    await self._end_again(row.id, now)
                continue
            try:
                if row.record is None:
                    raise SessionNotRunnable("its session was removed", refusal=Refusal.REMOVED)
                session = admit(row.record, now)
            except SessionNotRunnable as refused:
                reason = f"its start could not be confirmed, and now {refused}"
                await self._store.finish_run(row.id, RunStatus.INTERRUPTED, reason, now)
                continue
            adopted.append(
                Run(row.id, session, row.trigger, row.due_at, row.started_at, row.scheduled_for)
            )
        return adopted

    async def end_unconfirmed(self) -> int:
        """At a stop, once no task runs here: end this node's runs whose start was never
        confirmed (``interrupted``); how many. The reaper ends them if the database does not
        answer now."""
        ended = 0
        try:
            for row in await self._unconfirmed(frozenset()):
                now = self._clock.now()
                try:
                    if row.id in self._unended:
                        await self._end_again(row.id, now)
                    else:
                        await self._store.finish_run(
                            row.id, RunStatus.INTERRUPTED, UNCONFIRMED, now
                        )
                except DatabaseRefused as exc:  # this row's end: the others are still ended
                    log.warning("the end of run %d is left to the reaper: %s", row.id, exc)
                    continue
                ended += 1
        except (DatabaseUnavailable, DatabaseRefused) as exc:
            log.warning("runs whose end could not be written are left to the reaper: %s", exc)
        return ended

    async def _end_again(self, run_id: int, now: datetime) -> None:
        """Write the end the database did not take when the run's task wrote it."""
        status, error = self._unended[run_id]
        await self._store.finish_run(run_id, status, error, now)
        del self._unended[run_id]

    async def _unconfirmed(self, known: frozenset[int]) -> list[RunInFlight]:
        # Taken before the read: an end written while it reads leaves its row running there.
        skip = known | self.finishing
        rows = await self._store.runs_in_flight(self._lease.node)
        running = {row.id for row in rows}
        for run_id in self._unended.keys() - running:  # ended since (the reaper)
            del self._unended[run_id]
        return [row for row in rows if row.id not in skip]

    async def run(
        self,
        run: Run,
        *,
        on_plan: PlanObserver | None = None,
        stop: asyncio.Event | None = None,
    ) -> RunResult:
        """Plan and carry out ``run``, and finish its row whatever happens."""
        with log_context(session=run.session.gateway_session_id, run=run.id):
            return await self._run(run, on_plan, stop)

    async def _run(
        self, run: Run, on_plan: PlanObserver | None, stop: asyncio.Event | None
    ) -> RunResult:
        self._begun.add(run.id)
        started = self._clock.monotonic()
        cancelled = False
        status = RunStatus.FAILED
        error: str | None = "the run ended unexpectedly"
        actions: tuple[ActionRecord, ...] = ()
        try:
            now = self._clock.now()
            facts = await self._recorder.planning_facts(run.session, now)
            limits = self._joins.limits(run.session, now)
            context = plan_context(run.session, facts, now, limits)
            plan = await self._reserve(run, await self._planner.plan(context), context, limits)
            await self._recorder.set_run_plan(run.id, plan.stored())
            self._observer.run_started(run, plan)
            if on_plan is not None:
                await on_plan(run, plan)
            outcome = await self._executor.execute(run, plan, stop)
            status, error, actions = outcome.status, outcome.error, outcome.actions
            self._fatal.recovered(DEFECTS)
        except asyncio.CancelledError:
            status, error, cancelled = RunStatus.INTERRUPTED, "the run was cancelled", True
            raise
        except DatabaseUnavailable as exc:
            error = f"the database was unavailable: {exc}"
            raise
        except DatabaseRefused as exc:  # a defect: the run cannot go on, and it counts
            log.error("run %d failed: %s", run.id, exc)
            error = str(exc)
            self._fatal.failed(DEFECTS, exc)
            raise
        except Exception as exc:
            log.exception("run %d failed", run.id)
            error = f"internal error: {type(exc).__name__}"
            self._fatal.failed(DEFECTS, exc)
            raise
        finally:
            try:
                final = await asyncio.shield(self._ending(run, status, error, actions, started))
            except DatabaseUnavailable:
                if not cancelled:  # a cancelled run ends cancelled: its end is the reaper's
                    raise
        return RunResult(run, plan, outcome, final)

    async def _reserve(
        self, run: Run, plan: Plan, context: PlanContext, limits: JoinLimits
    ) -> Plan:
        """Reserve the plan's joins in the ledger; narrow the plan to those granted (another
        node may have taken a channel's last place since the plan was made)."""
        joins = [a.channel for a in plan.actions if a.action is ActionKind.JOIN_CHANNEL]
        channels = [channel for channel in joins if channel is not None]
        if not channels:
            return plan
        verdicts = await self._recorder.reserve_joins(run, channels, limits, self._clock.now())
        refused = {channel: why for channel, why in verdicts.items() if why is not None}
        if not refused:
            return plan
        granted = {channel for channel, why in verdicts.items() if why is None}
        narrow = narrowed(plan.actions, granted, context, self._bounds)
        dropped = Counter(dict(plan.joins_dropped))
        dropped.update(why for why in refused.values() if why.looks_after_accounts)
        notes = [
            f"join of {handle(channel)} refused by the ledger: {why}"
            for channel, why in refused.items()
        ]
        return replace(
            plan,
            actions=narrow.actions,
            notes=(*plan.notes, *notes, *narrow.notes),
            joins_dropped=tuple(sorted(dropped.items())),
        )

    async def _finish(
        self,
        run: Run,
        status: RunStatus,
        error: str | None,
        actions: tuple[ActionRecord, ...],
        started: float,
    ) -> RunStatus:
        with log_context(session=run.session.gateway_session_id, run=run.id):
            try:
                final = await self._recorder.finish_run(run.id, status, error, self._clock.now())
            except DatabaseRefused as exc:  # its end cannot be written: it stays running
                log.error("the end of run %d cannot be written: %s", run.id, exc)
                self._fatal.failed(DEFECTS, exc)
                self._unended[run.id] = (status, error)
                raise
            except DatabaseUnavailable as exc:  # a stop out of time gave up waiting
                log.warning("the end of run %d is left to the reaper: %s", run.id, exc)
                self._unended[run.id] = (status, error)
                raise
            if final is not status:
                error = f"ended by the reaper first ({final}); the run saw: {error or status}"
            seconds = self._clock.monotonic() - started
            self._observer.run_ended(run, RunEnd(final, error, actions, seconds))
            return final


class InFlight:
    """The runs in flight in this process, at most one per session."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner
        self._tasks: dict[int, tuple[Run, asyncio.Task[RunResult]]] = {}
        self._stop = asyncio.Event()  # graceful: finish the current action, then end
        self._ended = asyncio.Event()  # set whenever a run ends (room for another)
        self._starting = 0  # API starts writing their running row
        self._start_done = asyncio.Event()  # one of them ended
        # A write of a running row may have landed unconfirmed: adopt before the next claim,
        # and again until a read made UNCERTAIN_S after it (``adopt_pending``).
        self._pending = False
        self._uncertain_until = 0.0
        self._adopting = asyncio.Lock()
        # Writes of running rows between their commit and their launch (claims, starts), and
        # an adoption that waits for them: a row committed but not launched is no orphan.
        self._writing = 0
        self._no_writes = asyncio.Event()
        self._no_writes.set()
        self._gate_open = asyncio.Event()
        self._gate_open.set()

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def session_ids(self) -> frozenset[int]:
        return frozenset(self._tasks)

    @property
    def run_ids(self) -> frozenset[int]:
        return frozenset(run.id for run, _ in self._tasks.values())

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def adopt_pending(self) -> bool:
        """Whether a write of ``running`` rows may have landed without its answer, and no
        read-back made ``UNCERTAIN_S`` after it has looked since (a commit its client gave
        up on can still become visible after a first read-back)."""
        return self._pending

    @adopt_pending.setter
    def adopt_pending(self, pending: bool) -> None:
        self._pending = pending
        if pending:
            self._uncertain_until = self._runner.monotonic() + UNCERTAIN_S

    def launch(self, run: Run, on_plan: PlanObserver | None = None) -> asyncio.Task[RunResult]:
        """Run ``run`` in its own task, counted in flight until it ends."""
        name = f"run {run.id} of session {run.session.gateway_session_id}"
        task = asyncio.create_task(
            self._runner.run(run, on_plan=on_plan, stop=self._stop), name=name
        )
        self._tasks[run.session.id] = (run, task)
        task.add_done_callback(lambda done: self._forget(run, done))
        return task

    async def adopt_orphans(self, on_plan: dict[int, PlanObserver] | None = None) -> list[Run]:
        """Launch this node's runs whose start was written but never confirmed
        (``Runner.orphans``); ``on_plan`` observes the plan of a gateway id's run (an API
        client waits for it). Returns the runs launched."""
        async with self._adopting:
            self._gate_open.clear()  # no new write of running rows; those under way end
            try:
                await self._no_writes.wait()
                began = self._runner.monotonic()
                runs = await self._runner.orphans(self.run_ids)
                if began >= self._uncertain_until:
                    self._pending = False
                if self.stopping:  # none is launched now: the stop ends them
                    return []
                for run in runs:
                    with log_context(session=run.session.gateway_session_id, run=run.id):
                        log.warning("adopting the run: its start was written, its answer lost")
                    self.launch(run, (on_plan or {}).get(run.session.gateway_session_id))
                return runs
            finally:
                self._gate_open.set()

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        """Around a write of ``running`` rows and the launch of their runs (a claim, an API
        start): an adoption waits until it is over, and it waits for an adoption under way.
        Leave it before adopting what the write may have left unconfirmed."""
        while not self._gate_open.is_set():
            await self._gate_open.wait()
        self._writing += 1
        self._no_writes.clear()
        try:
            yield
        finally:
            self._writing -= 1
            if self._writing == 0:
                self._no_writes.set()

    @contextlib.asynccontextmanager
    async def starting(self) -> AsyncIterator[None]:
        """Around an API start (its ``running`` row written, then ``launch``): refused with
        ``Stopping`` once a stop began; otherwise a stop waits for it, and for its run."""
        if self.stopping:
            raise Stopping("heatup is stopping")
        self._starting += 1
        try:
            yield
        finally:
            self._starting -= 1
            self._start_done.set()

    def held_for(self, gateway_session_id: int) -> tuple[Run, asyncio.Task[RunResult]] | None:
        """The run in flight here of the session with ``gateway_session_id``, and its task."""
        for run, task in self._tasks.values():
            if run.session.gateway_session_id == gateway_session_id:
                return run, task
        return None

    def task_of(self, run: Run) -> asyncio.Task[RunResult]:
        """The task of ``run``, in flight here."""
        return self._tasks[run.session.id][1]

    def _forget(self, run: Run, task: asyncio.Task[Any]) -> None:
        held = self._tasks.get(run.session.id)
        if held is not None and held[1] is task:
            del self._tasks[run.session.id]
        self._runner.ended(run, task.cancelled())
        if not task.cancelled() and task.exception() is not None:
            log.debug("%s ended with %r", task.get_name(), task.exception())
        self._ended.set()

    def cancel(self, session_id: int, reason: str) -> None:
        """Cancel the session's run in flight (it ends ``interrupted``)."""
        held = self._tasks.get(session_id)
        if held is not None and not held[1].done():
            run, task = held
            with log_context(session=run.session.gateway_session_id, run=run.id):
                log.info("cancelling the run: %s", reason)
            task.cancel()

    async def wait_for_room(self, timeout_s: float) -> None:
        """Until a run ends (or ``timeout_s`` passes)."""
        self._ended.clear()
        try:
            async with asyncio.timeout(timeout_s):  # not wait_for: see ``Dispatcher._sleep``
                await self._ended.wait()
        except TimeoutError:
            pass

    async def wait_all(self) -> None:
        tasks = [task for _, task in self._tasks.values()]
        if tasks:
            await asyncio.wait(tasks)

    async def stop(self, timeout_s: float) -> None:
        """Let runs in flight finish their current action for up to ``timeout_s``; cancel
        the rest (they end ``interrupted``). Waits for the starts in progress and the runs
        they launch too (those see the stop at once), until every run has written its end."""
        self._stop.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._tasks or self._starting:
            self._start_done.clear()
            tasks = [task for _, task in self._tasks.values()]
            remaining_s = deadline - loop.time()
            if remaining_s <= 0:  # out of time: cancel what runs (and what starts later)
                self._runner.cut_short()  # and no write waits out an outage any more
                for task in tasks:
                    task.cancel()
            # Until every run known now has ended, or a start ended (it may add one).
            waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._start_done.wait())]
            if tasks:
                waiters.append(asyncio.ensure_future(asyncio.wait(tasks)))
            await asyncio.wait(
                waiters,
                timeout=remaining_s if remaining_s > 0 else None,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for waiter in waiters:
                waiter.cancel()
            await asyncio.wait(waiters)  # gone before the next round (or the return)
        # Ends still being written (a task cancelled earlier may have left one): within the
        # same time, then cut short.
        while self._runner.finishing:
            remaining_s = deadline - loop.time()
            if remaining_s <= 0:
                self._runner.cut_short()
            await self._runner.drain(remaining_s if remaining_s > 0 else None)
        # Whatever no task ran here: a start's row that landed without its answer, or a run
        # whose end was given up. One read; the reaper ends them if the database is away.
        await self._runner.end_unconfirmed()

    def hurry(self) -> None:
        """A second stop request: cancel every run now instead of waiting for its action
        (or for the database, through an outage)."""
        self._stop.set()
        self._runner.cut_short()
        for _, task in self._tasks.values():
            task.cancel()
