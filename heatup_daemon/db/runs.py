"""Run history and the session state runs change: runs, actions, cooldowns, joins."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any, Final

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from heatup_daemon.db.models import (
    ActionRow,
    ChannelRow,
    JoinRow,
    RunRow,
    SessionChannelRow,
    SessionRow,
    TokenUsageRow,
)
from heatup_daemon.db.sessions import record_columns, record_from
from heatup_daemon.db.store import Store, record_of
from heatup_daemon.enums import (
    ActionKind,
    JoinStatus,
    Outcome,
    PlanSource,
    RunStatus,
    SessionState,
    Trigger,
)
from heatup_daemon.errors import AlreadyRunning, NotFound
from heatup_daemon.session import Session, admit
from heatup_daemon.stores import (
    ActionRecord,
    JoinLimits,
    PastRun,
    PlanningFacts,
    PoolChannel,
    Run,
    RunView,
    StoredPlan,
    WarmthFacts,
)

HOUR: Final = timedelta(hours=1)
DAY: Final = timedelta(days=1)
WEEK: Final = timedelta(days=7)
# A channel failing with the same code for this many sessions within a day is flagged.
CHANNEL_FLAG_SESSIONS: Final = 3
CHANNEL_FLAG_WINDOW: Final = timedelta(days=1)
RECENT_RUNS: Final = 3


class RunStore(Store):
    """Runs, their actions, and the columns of ``sessions`` that runs change."""

    async def start_run(
        self, gateway_session_id: int, trigger: Trigger, now: datetime, node: str
    ) -> Run:
        query = select(*record_columns()).where(SessionRow.gateway_session_id == gateway_session_id)
        if self.locks_rows:
            query = query.with_for_update(of=SessionRow)
        async with self._write() as db:
            row = (await db.execute(query)).first()
            if row is None:
                raise NotFound(f"no session with gateway id {gateway_session_id} is registered")
            session = admit(record_from(row), now)
            running = await db.scalar(
                select(RunRow.id).where(
                    RunRow.session_id == session.id, RunRow.status == RunStatus.RUNNING
                )
            )
            if running is not None:
                raise AlreadyRunning(f"session {gateway_session_id} has run {running} in flight")
            run_id = await db.scalar(
                self.insert(RunRow)
                .values(
                    session_id=session.id,
                    gateway_session_id=gateway_session_id,
                    trigger=trigger,
                    due_at=now,
                    status=RunStatus.RUNNING,
                    node=node,
                    started_at=now,
                    heartbeat_at=now,
                )
                .returning(RunRow.id)
            )
        assert run_id is not None
        return Run(run_id, session, trigger, now, now)

    async def set_run_plan(self, run_id: int, plan: StoredPlan) -> None:
        async with self._write() as db:
            await db.execute(
                update(RunRow)
                .where(RunRow.id == run_id)
                .values(
                    plan=plan.document,
                    plan_source=plan.source,
                    plan_model=plan.model,
                    prompt_tokens=plan.prompt_tokens,
                    completion_tokens=plan.completion_tokens,
                )
            )

    async def record_action(self, run_id: int, record: ActionRecord) -> None:
        row = {
            "run_id": run_id,
            "seq": record.seq,
            "kind": record.kind,
            "channel": record.channel,
            "planned_duration_s": record.planned_duration_s,
            "actual_duration_s": record.actual_duration_s,
            "started_at": record.started_at,
            "finished_at": record.finished_at,
            "outcome": record.outcome,
            "error_code": record.error_code,
            "error_text": record.error_text,
            "gateway_latency_s": record.gateway_latency_s,
        }
        statement = self.insert(ActionRow).values(row)
        written = {name: value for name, value in row.items() if name not in ("run_id", "seq")}
        async with self._write() as db:
            await db.execute(
                statement.on_conflict_do_update(
                    index_elements=[ActionRow.run_id, ActionRow.seq], set_=written
                )
            )

    async def heartbeat(self, run_id: int, at: datetime) -> bool:
        async with self._write() as db:
            beat = await db.scalar(
                update(RunRow)
                .where(RunRow.id == run_id, RunRow.status == RunStatus.RUNNING)
                .values(heartbeat_at=at)
                .returning(RunRow.id)
            )
        return beat is not None

    async def finish_run(
        self, run_id: int, status: RunStatus, error: str | None, at: datetime
    ) -> RunStatus:
        async with self._write() as db:
            session_id = await db.scalar(
                update(RunRow)
                .where(RunRow.id == run_id, RunRow.status == RunStatus.RUNNING)
                .values(status=status, error=error, finished_at=at, heartbeat_at=at)
                .returning(RunRow.session_id)
            )
            if session_id is not None:
                await db.execute(
                    update(SessionRow).where(SessionRow.id == session_id).values(last_run_at=at)
                )
                # Joins the plan reserved but never reached give their places back.
                await db.execute(
                    update(JoinRow)
                    .where(JoinRow.run_id == run_id, JoinRow.status == JoinStatus.RESERVED)
                    .values(status=JoinStatus.RELEASED)
                )
                return status
            final = await db.scalar(select(RunRow.status).where(RunRow.id == run_id))
        return RunStatus(final) if final is not None else status

    async def set_cooldown(
        self, session_id: int, until: datetime, wait_s: int, at: datetime
    ) -> None:
        async with self._write() as db:
            await db.execute(
                update(SessionRow)
                .where(SessionRow.id == session_id)
                .values(cooldown_until=until, flood_wait_at=at, flood_wait_s=wait_s)
            )

    async def mark_needs_attention(self, session_id: int, reason: str) -> None:
        async with self._write() as db:
            await db.execute(
                update(SessionRow)
                .where(SessionRow.id == session_id)
                .values(state=SessionState.NEEDS_ATTENTION, state_reason=reason[:500])
            )

    async def record_join(self, session_id: int, channel: str, at: datetime) -> None:
        async with self._write() as db:
            channel_id = await db.scalar(
                select(ChannelRow.id).where(ChannelRow.username == channel)
            )
            if channel_id is None:
                return  # removed from the pool meanwhile
            await db.execute(
                self.insert(SessionChannelRow)
                .values(session_id=session_id, channel_id=channel_id, joined_at=at)
                .on_conflict_do_nothing()
            )

    async def note_channel_failure(self, channel: str, code: str, at: datetime) -> str | None:
        """Flag ``channel`` in the pool once it failed with ``code`` for several sessions
        within a day (its action rows are the evidence); the reason if this call flagged it."""
        async with self._write() as db:
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
                return None
            reason = (
                f"{code} for {sessions} sessions (since {at - CHANNEL_FLAG_WINDOW:%Y-%m-%d %H:%M}Z)"
            )
            flagged = await db.scalar(
                update(ChannelRow)
                .where(ChannelRow.username == channel, ChannelRow.flagged_reason.is_(None))
                .values(flagged_reason=reason)
                .returning(ChannelRow.id)
            )
        return reason if flagged is not None else None

    async def reserve_joins(
        self, run: Run, channels: Sequence[str], limits: JoinLimits, now: datetime
    ) -> dict[str, str | None]:
        if not channels:
            return {}
        query = (
            select(ChannelRow.id, ChannelRow.username)
            .where(ChannelRow.username.in_(sorted(set(channels))))
            .order_by(ChannelRow.id)  # one lock order for every node: no deadlock
        )
        if self.locks_rows:
            query = query.with_for_update(of=ChannelRow)
        async with self._write() as db:
            ids = {username: channel_id for channel_id, username in await db.execute(query)}
            taken = await db.scalar(
                select(func.count())
                .select_from(JoinRow)
                .where(JoinRow.session_id == run.session.id, _held(now - DAY))
            )
            left = limits.per_day - int(taken or 0)
            hour = await db.execute(
                select(JoinRow.channel_id, func.count())
                .where(JoinRow.channel_id.in_(list(ids.values())), _held(now - HOUR))
                .group_by(JoinRow.channel_id)
            )
            room = {channel_id: limits.per_channel_hour - count for channel_id, count in hour}
            verdicts: dict[str, str | None] = {}
            for channel in channels:
                channel_id = ids.get(channel)
                verdicts[channel] = join_verdict(channel_id, left, room, limits)
                if verdicts[channel] is not None:
                    continue
                assert channel_id is not None
                room[channel_id] = room.get(channel_id, limits.per_channel_hour) - 1
                left -= 1
                db.add(
                    JoinRow(
                        channel_id=channel_id,
                        session_id=run.session.id,
                        run_id=run.id,
                        reserved_at=now,
                        status=JoinStatus.RESERVED,
                    )
                )
        return verdicts

    async def settle_join(self, run_id: int, channel: str, joined: bool) -> None:
        async with self._write() as db:
            channel_id = select(ChannelRow.id).where(ChannelRow.username == channel)
            await db.execute(
                update(JoinRow)
                .where(
                    JoinRow.run_id == run_id,
                    JoinRow.channel_id == channel_id.scalar_subquery(),
                    JoinRow.status == JoinStatus.RESERVED,
                )
                .values(status=JoinStatus.JOINED if joined else JoinStatus.RELEASED)
            )

    async def warmth_facts(self, session_id: int, now: datetime) -> WarmthFacts:
        async with self._read() as db:
            day = await db.scalar(
                select(func.count())
                .select_from(JoinRow)
                .where(JoinRow.session_id == session_id, _held(now - DAY))
            )
            week = await db.scalar(
                select(func.count())
                .select_from(JoinRow)
                .where(JoinRow.session_id == session_id, _held(now - WEEK))
            )
            joined = await db.scalars(
                select(ChannelRow.username)
                .join(SessionChannelRow, SessionChannelRow.channel_id == ChannelRow.id)
                .where(SessionChannelRow.session_id == session_id)
                .order_by(ChannelRow.username)
            )
            runs = await db.execute(
                select(RunRow.status, func.count())
                .where(RunRow.session_id == session_id, RunRow.started_at >= now - WEEK)
                .group_by(RunRow.status)
            )
            return WarmthFacts(
                joins_last_24h=int(day or 0),
                joins_last_7d=int(week or 0),
                channels_joined=tuple(joined),
                runs_last_7d={str(status): int(count) for status, count in runs},
            )

    async def planning_facts(self, session: Session, now: datetime) -> PlanningFacts:
        """The usable pool, the session's joined channels, its last finished runs, and the
        join ledger's counts."""
        async with self._read() as db:
            pool_rows = await db.execute(
                select(ChannelRow.username, ChannelRow.category, ChannelRow.title)
                .where(
                    ChannelRow.enabled.is_(True),
                    ChannelRow.invalid_reason.is_(None),
                    ChannelRow.flagged_reason.is_(None),
                )
                .order_by(ChannelRow.username)
            )
            pool = tuple(PoolChannel(*row) for row in pool_rows)
            joined = await db.scalars(
                select(ChannelRow.username)
                .join(SessionChannelRow, SessionChannelRow.channel_id == ChannelRow.id)
                .where(SessionChannelRow.session_id == session.id)
            )
            finished = (RunRow.session_id == session.id) & (RunRow.status != RunStatus.RUNNING)
            runs = await self._runs(db, finished, RECENT_RUNS)
            taken = await db.scalar(
                select(func.count())
                .select_from(JoinRow)
                .where(JoinRow.session_id == session.id, _held(now - DAY))
            )
            hour = await db.execute(
                select(ChannelRow.username, func.count())
                .join(JoinRow, JoinRow.channel_id == ChannelRow.id)
                .where(_held(now - HOUR))
                .group_by(ChannelRow.username)
            )
            channel_joins = {str(username): int(count) for username, count in hour}
        return PlanningFacts(
            pool=pool,
            joined=frozenset(joined),
            recent_runs=tuple(map(past_run, runs)),
            joins_last_24h=int(taken or 0),
            channel_joins_last_hour=channel_joins,
        )

    async def history(self, gateway_session_id: int, limit: int = 10) -> list[RunView]:
        async with self._read() as db:
            return await self._runs(db, RunRow.gateway_session_id == gateway_session_id, limit)

    async def get_run(self, run_id: int) -> RunView:
        async with self._read() as db:
            runs = await self._runs(db, RunRow.id == run_id, 1)
        if not runs:
            raise NotFound(f"no run with id {run_id}")
        return runs[0]

    async def tokens_spent(self, day: date) -> int:
        async with self._read() as db:
            spent = await db.scalar(select(TokenUsageRow.tokens).where(TokenUsageRow.day == day))
        return int(spent or 0)

    async def spend_tokens(self, day: date, tokens: int) -> None:
        statement = self.insert(TokenUsageRow).values(day=day, tokens=tokens)
        statement = statement.on_conflict_do_update(
            index_elements=[TokenUsageRow.day],
            set_={"tokens": TokenUsageRow.tokens + statement.excluded.tokens},
        )
        async with self._write() as db:
            await db.execute(statement)

    @staticmethod
    async def _runs(db: AsyncSession, condition: Any, limit: int) -> list[RunView]:
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
                actions[action.run_id].append(
                    record_of(
                        ActionRecord,
                        action,
                        kind=ActionKind(action.kind),
                        outcome=Outcome(action.outcome),
                    )
                )
        return [_view(row, tuple(actions[row.id])) for row in rows]


def _view(row: RunRow, actions: tuple[ActionRecord, ...]) -> RunView:
    return record_of(
        RunView,
        row,
        trigger=Trigger(row.trigger),
        status=RunStatus(row.status),
        plan_source=None if row.plan_source is None else PlanSource(row.plan_source),
        actions=actions,
    )


def past_run(run: RunView) -> PastRun:
    """A finished run as the planner's prompt tells of it."""

    def channels(kind: ActionKind) -> tuple[str, ...]:
        return tuple(
            a.channel
            for a in run.actions
            if a.kind is kind and a.outcome is Outcome.OK and a.channel
        )

    return PastRun(
        run.started_at,
        run.status,
        channels(ActionKind.JOIN_CHANNEL),
        channels(ActionKind.READ_MESSAGES),
    )


def _held(since: datetime) -> Any:
    """A ledger row that counts: reserved or joined (not released) since ``since``."""
    return (JoinRow.reserved_at >= since) & (JoinRow.status != JoinStatus.RELEASED)


def join_verdict(
    channel_id: int | None, left: int, room: dict[int, int], limits: JoinLimits
) -> str | None:
    """Why a join may not be reserved (``None``: it may)."""
    if channel_id is None:
        return "gone"
    if left <= 0:
        return "ramp"
    if room.get(channel_id, limits.per_channel_hour) <= 0:
        return "channel_pace"
    return None
