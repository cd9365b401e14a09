"""Run history and the session state heatup owns: runs, actions, cooldowns, joins."""

from __future__ import annotations

import zoneinfo
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from heatup_daemon.db.models import (
    ActionRow,
    ChannelRow,
    RunRow,
    SessionChannelRow,
    SessionRow,
)
from heatup_daemon.db.registry import SessionView
from heatup_daemon.db.store import Store, rows_affected, view_of
from heatup_daemon.errors import AlreadyRunning, DuplicateSlot, NotFound
from heatup_daemon.planner.model import Plan, PlanContext, PoolChannel

# A channel failing with the same code for this many sessions within a day is flagged.
CHANNEL_FLAG_SESSIONS: Final = 3
CHANNEL_FLAG_WINDOW: Final = timedelta(days=1)
RECENT_RUNS: Final = 3


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One executed action, as the executor reports it and the history shows it."""

    seq: int
    kind: str
    channel: str | None
    planned_duration_s: float | None
    actual_duration_s: float | None
    started_at: datetime
    finished_at: datetime
    outcome: str
    error_code: str | None = None
    error_text: str | None = None
    gateway_latency_s: float | None = None

    @classmethod
    def of(cls, row: ActionRow) -> ActionRecord:
        return view_of(cls, row)


@dataclass(frozen=True, slots=True)
class RunStart:
    session_id: int
    gateway_session_id: int
    trigger: str
    due_at: datetime
    started_at: datetime
    node: str
    scheduled_for: datetime | None = None


@dataclass(frozen=True, slots=True)
class RunView:
    id: int
    session_id: int | None
    gateway_session_id: int
    trigger: str
    scheduled_for: datetime | None
    due_at: datetime
    status: str
    plan_source: str | None
    plan_model: str | None
    plan: Any
    prompt_tokens: int | None
    completion_tokens: int | None
    node: str
    started_at: datetime
    heartbeat_at: datetime | None
    finished_at: datetime | None
    error: str | None
    actions: tuple[ActionRecord, ...]

    @classmethod
    def of(cls, row: RunRow, actions: tuple[ActionRecord, ...]) -> RunView:
        return view_of(cls, row, actions=actions)


class RunStore(Store):
    """Runs, their actions, and the columns of ``sessions`` that heatup owns."""

    async def start_run(self, start: RunStart) -> int:
        """Insert a ``running`` run; raise ``AlreadyRunning`` if the session has one in
        flight, ``DuplicateSlot`` if its scheduled slot was run already."""
        row = RunRow(
            session_id=start.session_id,
            gateway_session_id=start.gateway_session_id,
            trigger=start.trigger,
            scheduled_for=start.scheduled_for,
            due_at=start.due_at,
            status="running",
            node=start.node,
            started_at=start.started_at,
            heartbeat_at=start.started_at,
        )
        try:
            async with self._transaction() as db:
                db.add(row)
        except IntegrityError:
            async with self._transaction() as db:
                running = await db.scalar(
                    select(RunRow.id).where(
                        RunRow.session_id == start.session_id, RunRow.status == "running"
                    )
                )
            if running is not None:
                raise AlreadyRunning(
                    f"session {start.gateway_session_id} has run {running} in flight"
                ) from None
            raise DuplicateSlot(
                f"session {start.gateway_session_id} already ran its slot {start.scheduled_for}"
            ) from None
        return row.id

    async def set_run_plan(self, run_id: int, plan: Plan) -> None:
        document = {
            "actions": plan.as_json(),
            "fallback_reason": plan.fallback_reason,
            "notes": list(plan.notes),
        }
        async with self._transaction() as db:
            await db.execute(
                update(RunRow)
                .where(RunRow.id == run_id)
                .values(
                    plan=document,
                    plan_source=plan.source,
                    plan_model=plan.model,
                    prompt_tokens=plan.prompt_tokens,
                    completion_tokens=plan.completion_tokens,
                )
            )

    async def record_action(self, run_id: int, record: ActionRecord) -> None:
        async with self._transaction() as db:
            db.add(
                ActionRow(
                    run_id=run_id,
                    seq=record.seq,
                    kind=record.kind,
                    channel=record.channel,
                    planned_duration_s=record.planned_duration_s,
                    actual_duration_s=record.actual_duration_s,
                    started_at=record.started_at,
                    finished_at=record.finished_at,
                    outcome=record.outcome,
                    error_code=record.error_code,
                    error_text=record.error_text,
                    gateway_latency_s=record.gateway_latency_s,
                )
            )

    async def heartbeat(self, run_id: int, at: datetime) -> bool:
        """Renew the run's lease; ``False`` if it is no longer ``running`` (the reaper took
        it: the run must stop, another may already have started)."""
        async with self._transaction() as db:
            result = await db.execute(
                update(RunRow)
                .where(RunRow.id == run_id, RunRow.status == "running")
                .values(heartbeat_at=at)
            )
        return bool(rows_affected(result))

    async def finish_run(self, run_id: int, status: str, error: str | None, at: datetime) -> None:
        """End a ``running`` run (a run the reaper ended meanwhile keeps the reaper's end)."""
        async with self._transaction() as db:
            session_id = await db.scalar(
                update(RunRow)
                .where(RunRow.id == run_id, RunRow.status == "running")
                .values(status=status, error=error, finished_at=at, heartbeat_at=at)
                .returning(RunRow.session_id)
            )
            if session_id is not None:
                await db.execute(
                    update(SessionRow).where(SessionRow.id == session_id).values(last_run_at=at)
                )

    async def set_cooldown(self, session_id: int, until: datetime) -> None:
        async with self._transaction() as db:
            await db.execute(
                update(SessionRow).where(SessionRow.id == session_id).values(cooldown_until=until)
            )

    async def mark_needs_attention(self, session_id: int, reason: str) -> None:
        async with self._transaction() as db:
            await db.execute(
                update(SessionRow)
                .where(SessionRow.id == session_id)
                .values(state="needs_attention", state_reason=reason[:500])
            )

    async def record_join(self, session_id: int, channel: str, at: datetime) -> None:
        async with self._transaction() as db:
            channel_id = await db.scalar(
                select(ChannelRow.id).where(ChannelRow.username == channel)
            )
            if channel_id is None:
                return  # removed from the pool meanwhile
            known = await db.get(SessionChannelRow, (session_id, channel_id))
            if known is None:
                db.add(
                    SessionChannelRow(session_id=session_id, channel_id=channel_id, joined_at=at)
                )

    async def note_channel_failure(self, channel: str, code: str, at: datetime) -> bool:
        """Flag ``channel`` in the pool once it failed with ``code`` for several sessions
        within a day (its action rows are the evidence); return whether it is flagged now."""
        async with self._transaction() as db:
            sessions = await db.scalar(
                select(func.count(func.distinct(RunRow.gateway_session_id)))
                .select_from(ActionRow)
                .join(RunRow, RunRow.id == ActionRow.run_id)
                .where(
                    ActionRow.channel == channel,
                    ActionRow.error_code == code,
                    ActionRow.finished_at >= at - CHANNEL_FLAG_WINDOW,
                )
            )
            if (sessions or 0) < CHANNEL_FLAG_SESSIONS:
                return False
            reason = (
                f"{code} for {sessions} sessions (since {at - CHANNEL_FLAG_WINDOW:%Y-%m-%d %H:%M}Z)"
            )
            await db.execute(
                update(ChannelRow)
                .where(ChannelRow.username == channel, ChannelRow.flagged_reason.is_(None))
                .values(flagged_reason=reason)
            )
            return True

    async def plan_context(self, session: SessionView, now: datetime) -> PlanContext:
        """What the planner needs: the usable pool, what the session joined, its last runs."""
        async with self._transaction() as db:
            pool_rows = await db.scalars(
                select(ChannelRow)
                .where(
                    ChannelRow.enabled.is_(True),
                    ChannelRow.invalid_reason.is_(None),
                    ChannelRow.flagged_reason.is_(None),
                )
                .order_by(ChannelRow.username)
            )
            pool = tuple(PoolChannel(c.username, c.category, c.title) for c in pool_rows)
            joined = await db.scalars(
                select(ChannelRow.username)
                .join(SessionChannelRow, SessionChannelRow.channel_id == ChannelRow.id)
                .where(SessionChannelRow.session_id == session.id)
            )
            runs = await self._runs(db, RunRow.session_id == session.id, RECENT_RUNS)
        try:
            zone = zoneinfo.ZoneInfo(session.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            zone = zoneinfo.ZoneInfo("UTC")
        assert isinstance(session.gateway_session_id, int)
        return PlanContext(
            gateway_session_id=session.gateway_session_id,
            pool=pool,
            joined=frozenset(joined),
            local_time=now.astimezone(zone),
            recent_runs=tuple(_summary(run, zone) for run in runs),
        )

    async def history(self, gateway_session_id: int, limit: int = 10) -> list[RunView]:
        async with self._transaction() as db:
            condition = RunRow.gateway_session_id == gateway_session_id
            return await self._runs(db, condition, limit)

    async def get_run(self, run_id: int) -> RunView:
        async with self._transaction() as db:
            runs = await self._runs(db, RunRow.id == run_id, 1)
        if not runs:
            raise NotFound(f"no run with id {run_id}")
        return runs[0]

    @staticmethod
    async def _runs(db: Any, condition: Any, limit: int) -> list[RunView]:
        rows = list(
            await db.scalars(
                select(RunRow)
                .where(condition)
                .order_by(RunRow.started_at.desc(), RunRow.id.desc())
                .limit(limit)
            )
        )
        actions: dict[int, list[ActionRecord]] = defaultdict(list)
        if rows:
            action_rows = await db.scalars(
                select(ActionRow)
                .where(ActionRow.run_id.in_([row.id for row in rows]))
                .order_by(ActionRow.run_id, ActionRow.seq)
            )
            for action in action_rows:
                actions[action.run_id].append(ActionRecord.of(action))
        return [RunView.of(row, tuple(actions[row.id])) for row in rows]


def _summary(run: RunView, zone: zoneinfo.ZoneInfo) -> str:
    """One line about a past run for the planner's prompt."""
    done: dict[str, list[str]] = defaultdict(list)
    for action in run.actions:
        if action.outcome == "ok" and action.channel:
            done[action.kind].append(f"@{action.channel}")
    parts = [f"{run.started_at.astimezone(zone):%a %H:%M} {run.status}"]
    if done["join_channel"]:
        parts.append("joined " + " ".join(done["join_channel"]))
    if done["read_messages"]:
        parts.append("read " + " ".join(done["read_messages"]))
    return "; ".join(parts)
