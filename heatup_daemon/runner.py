"""One warm-up run from start to end: the same path whoever starts it (schedule, API, CLI).

1. the session must be runnable now (enabled, active, valid, not cooling down);
2. the run row is inserted ``running`` (the database refuses a second run in flight);
3. the planner plans; the plan is stored; ``on_plan`` hears of it (the API answers then);
4. the executor carries it out, writing each action as it ends;
5. the run is finished with its status, whatever happened (``interrupted`` on cancel).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from heatup_daemon import metrics
from heatup_daemon.clock import Clock
from heatup_daemon.db.registry import SessionView
from heatup_daemon.db.repository import Repository
from heatup_daemon.db.runs import RunStart
from heatup_daemon.errors import SessionNotRunnable
from heatup_daemon.executor import ActionObserver, Executor, RunOutcome, RunTarget
from heatup_daemon.planner import Planner
from heatup_daemon.planner.model import Plan

log = logging.getLogger(__name__)

PlanObserver = Callable[[int, Plan], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RunResult:
    run_id: int
    plan: Plan
    outcome: RunOutcome


def why_not_runnable(session: SessionView, now: datetime) -> str | None:
    """Why ``session`` may not run at ``now``, or ``None`` if it may."""
    if session.invalid_reason:
        return f"its row is not usable: {session.invalid_reason}"
    if not session.enabled:
        return "it is disabled"
    if session.state != "active":
        return f"it needs attention ({session.state_reason or 'no reason recorded'})"
    if session.cooldown_until is not None and session.cooldown_until > now:
        return f"it is cooling down until {session.cooldown_until:%Y-%m-%d %H:%M:%S}Z"
    return None


class Runner:
    def __init__(
        self,
        repository: Repository,
        planner: Planner,
        executor: Executor,
        clock: Clock,
        node: str,
    ) -> None:
        self._repository = repository
        self._planner = planner
        self._executor = executor
        self._clock = clock
        self._node = node

    async def run(
        self,
        session: SessionView,
        trigger: str,
        *,
        scheduled_for: datetime | None = None,
        due_at: datetime | None = None,
        on_plan: PlanObserver | None = None,
        on_action: ActionObserver | None = None,
        stop: asyncio.Event | None = None,
    ) -> RunResult:
        """Run ``session`` now. Raises ``SessionNotRunnable`` or ``AlreadyRunning`` (nothing
        written), ``DuplicateSlot`` for a scheduled slot that already ran."""
        now = self._clock.now()
        reason = why_not_runnable(session, now)
        if reason is not None:
            raise SessionNotRunnable(f"session {session.gateway_session_id} cannot run: {reason}")
        assert isinstance(session.gateway_session_id, int)
        start = RunStart(
            session_id=session.id,
            gateway_session_id=session.gateway_session_id,
            trigger=trigger,
            due_at=due_at or now,
            started_at=now,
            node=self._node,
            scheduled_for=scheduled_for,
        )
        run_id = await self._repository.start_run(start)
        started = self._clock.monotonic()
        status = "failed"
        error: str | None = "the run ended unexpectedly"
        try:
            context = await self._repository.plan_context(session, now)
            plan = await self._planner.plan(context)
            metrics.PLANS.labels(plan.source).inc()
            await self._repository.set_run_plan(run_id, plan)
            log.info(
                "run %d started: %d actions planned by %s",
                run_id,
                len(plan.actions),
                plan.source,
                extra={"session": session.gateway_session_id, "run": run_id},
            )
            if on_plan is not None:
                await on_plan(run_id, plan)
            target = RunTarget(run_id, session.id, session.gateway_session_id)
            outcome = await self._executor.execute(target, plan, on_action, stop)
            status, error = outcome.status, outcome.error
            return RunResult(run_id, plan, outcome)
        except asyncio.CancelledError:
            status, error = "interrupted", "the run was cancelled"
            raise
        except Exception as exc:
            log.exception("run %s of session %s failed", run_id, session.gateway_session_id)
            error = f"internal error: {type(exc).__name__}"
            raise
        finally:
            finish = self._repository.finish_run(run_id, status, error, self._clock.now())
            await asyncio.shield(finish)
            metrics.RUNS.labels(status, trigger).inc()
            metrics.RUN_DURATION.labels(status).observe(self._clock.monotonic() - started)
