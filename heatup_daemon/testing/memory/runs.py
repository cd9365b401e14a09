"""Runs, their actions, and the columns of a session that runs change (``db/runs.py``)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from heatup_daemon.db.texts import clipped
from heatup_daemon.enums import Clearance, RunStatus, SessionState, Trigger
from heatup_daemon.errors import AlreadyRunning, NotFound
from heatup_daemon.pool import CHANNEL_FLAG_WINDOW, channel_flag
from heatup_daemon.ramp import PACE_WINDOW, RAMP_WINDOW
from heatup_daemon.records import (
    RECENT_RUNS,
    ActionRecord,
    Node,
    PastRun,
    PlanningFacts,
    PoolChannel,
    Run,
    RunInFlight,
    RunView,
    StoredPlan,
    WarmthFacts,
)
from heatup_daemon.session import admit
from heatup_daemon.testing.memory.tables import MemoryTables
from heatup_daemon.warmth import WARMTH_WINDOW


class MemoryRuns(MemoryTables):
    """Runs, their actions, and the columns of a session that runs change (``db/runs.py``)."""

    async def start_run(
        self, gateway_session_id: int, trigger: Trigger, now: datetime, node: Node
    ) -> Run:
        self._check()
        session_id = self._by_gateway_id(gateway_session_id)
        session = admit(self._record(session_id), now)
        running = self._running(session_id)
        if running is not None:
            raise AlreadyRunning(f"session {gateway_session_id} has run {running.id} in flight")
        row = self._insert_run(session_id, gateway_session_id, trigger, node, now)
        return Run(row.id, session, trigger, now, now)

    async def runs_in_flight(self, node: Node) -> list[RunInFlight]:
        self._check()
        return [
            RunInFlight(
                run.id,
                run.trigger,
                run.due_at,
                run.started_at,
                run.scheduled_for,
                self._record(run.session_id) if run.session_id in self.sessions else None,
            )
            for run in self.runs.values()
            if run.status is RunStatus.RUNNING and self.run_nodes.get(run.id) == node.id
        ]

    async def set_run_plan(self, run_id: int, plan: StoredPlan) -> None:
        self._check()
        self._update(
            run_id,
            plan_source=plan.source,
            plan_model=plan.model,
            plan=plan.document,
            prompt_tokens=plan.prompt_tokens,
            completion_tokens=plan.completion_tokens,
        )

    async def record_action(self, run_id: int, record: ActionRecord) -> None:
        self._check()
        self._write_action(run_id, record)

    async def start_call(
        self, run_id: int, record: ActionRecord, budget_s: float, now: datetime
    ) -> Clearance:
        self._check()
        if self.runs[run_id].status is not RunStatus.RUNNING:
            return Clearance.REAPED
        lease_until = self.leases.get(self.run_nodes.get(run_id, -1))
        if lease_until is None or lease_until <= now + timedelta(seconds=budget_s):
            return Clearance.LEASE_SHORT
        self._update(run_id, heartbeat_at=now)
        await self.record_action(run_id, record)
        return Clearance.CLEARED

    async def finish_run(
        self, run_id: int, status: RunStatus, error: str | None, at: datetime
    ) -> RunStatus:
        self._check()
        run = self.runs[run_id]
        if run.status is RunStatus.RUNNING:
            self._update(
                run_id, status=status, error=clipped(error), finished_at=at, heartbeat_at=at
            )
            if run.session_id in self.sessions:
                self.sessions[run.session_id]["last_run_at"] = at
        self._settle(lambda join: join["run_id"] == run_id)
        return self.runs[run_id].status

    async def set_cooldown(
        self, session_id: int, until: datetime, wait_s: int, at: datetime
    ) -> None:
        self._check()
        self.sessions[session_id].update(
            cooldown_until=until, flood_wait_at=at, flood_wait_s=wait_s
        )

    async def mark_needs_attention(self, session_id: int, reason: str) -> None:
        self._check()
        self.sessions[session_id].update(
            state=SessionState.NEEDS_ATTENTION.value, state_reason=clipped(reason)
        )

    async def note_channel_failure(self, channel: str, code: str, at: datetime) -> str | None:
        self._check()
        sessions = {
            run.gateway_session_id
            for run in self.runs.values()
            for action in run.actions
            if action.channel == channel
            and action.error_code == code
            and action.finished_at >= at - CHANNEL_FLAG_WINDOW
        }
        reason = channel_flag(code, len(sessions), at)
        if reason is None:
            return None
        for row in self.channels.values():
            if row["username"] == channel and row["flagged_reason"] is None:
                row["flagged_reason"] = reason
                return reason
        return None

    async def warmth_facts(self, session_id: int, now: datetime) -> WarmthFacts:
        self._check()
        runs = Counter(
            run.status.value
            for run in self.runs.values()
            if run.session_id == session_id and run.started_at >= now - WARMTH_WINDOW
        )
        return WarmthFacts(
            joins_last_24h=self._held(now - RAMP_WINDOW, session_id=session_id),
            joins_last_7d=self._held(now - WARMTH_WINDOW, session_id=session_id),
            channels_joined=tuple(
                sorted(self.channels[cid]["username"] for cid in self.joined[session_id])
            ),
            runs_last_7d=dict(runs),
        )

    async def planning_facts(self, session: Any, now: datetime) -> PlanningFacts:
        self._check()
        pool = tuple(
            PoolChannel(view.username, view.category, view.title)
            for view in sorted(map(self._channel, self.channels), key=lambda v: str(v.username))
            if view.in_pool
        )
        joined = frozenset(
            self.channels[channel_id]["username"] for channel_id in self.joined[session.id]
        )
        finished = sorted(
            (
                r
                for r in self.runs.values()
                if r.session_id == session.id and r.status is not RunStatus.RUNNING
            ),
            key=lambda r: (r.started_at, r.id),
            reverse=True,
        )[:RECENT_RUNS]
        channel_joins = {
            row["username"]: held
            for channel_id, row in self.channels.items()
            if (held := self._held(now - PACE_WINDOW, channel_id=channel_id))
        }
        return PlanningFacts(
            pool,
            joined,
            tuple(PastRun.of(run) for run in finished),
            joins_last_24h=self._held(now - RAMP_WINDOW, session_id=session.id),
            channel_joins_last_hour=channel_joins,
        )

    async def history(self, gateway_session_id: int, limit: int = 10) -> list[RunView]:
        self._check()
        runs = [r for r in self.runs.values() if r.gateway_session_id == gateway_session_id]
        runs.sort(key=lambda r: (r.started_at, r.id), reverse=True)
        return runs[:limit]

    async def get_run(self, run_id: int) -> RunView:
        self._check()
        if run_id not in self.runs:
            raise NotFound(f"no run with id {run_id}")
        return self.runs[run_id]
