"""Run history and the session state runs change: runs, actions, cooldowns, joins."""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Select, bindparam, exists, func, select, update
from sqlalchemy.engine import Connection

from heatup_daemon.db.actions import action_upsert, action_values
from heatup_daemon.db.base import SqlStore, record_of
from heatup_daemon.db.ledger import CHANNEL_JOINS, SESSION_JOINS, settle_reserved
from heatup_daemon.db.models import (
    ActionRow,
    ChannelRow,
    JoinRow,
    NodeRow,
    RunRow,
    SessionChannelRow,
    SessionRow,
)
from heatup_daemon.db.registry import in_pool_sql
from heatup_daemon.db.sessions import record_columns, record_from
from heatup_daemon.enums import (
    ActionKind,
    Clearance,
    Outcome,
    PlanSource,
    RunStatus,
    SessionState,
    Trigger,
)
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
    PoolJoins,
    Run,
    RunInFlight,
    RunView,
    StoredPlan,
    WarmthFacts,
)
from heatup_daemon.session import Session, admit
from heatup_daemon.views import RunFilter
from heatup_daemon.warmth import WARMTH_WINDOW

_RUNNING: Final = (RunRow.id == bindparam("b_run_id")) & (RunRow.status == RunStatus.RUNNING)
_FINISH: Final = (
    update(RunRow)
    .where(_RUNNING)
    .values(
        status=bindparam("b_status"),
        error=bindparam("b_error"),
        finished_at=bindparam("b_at"),
        heartbeat_at=bindparam("b_at"),
    )
    .returning(RunRow.id, RunRow.session_id)
)
_LAST_RUN: Final = (
    update(SessionRow)
    .where(SessionRow.id == bindparam("b_session_id"))
    .values(last_run_at=bindparam("b_at"))
)
_SETTLE_RUN: Final = settle_reserved(JoinRow.run_id == bindparam("b_run_id"))
_RUN_STATUS: Final = select(RunRow.status).where(RunRow.id == bindparam("b_run_id"))
_SET_PLAN: Final = (
    update(RunRow)
    .where(RunRow.id == bindparam("b_run_id"))
    .values(
        plan=bindparam("b_plan"),
        plan_source=bindparam("b_source"),
        plan_model=bindparam("b_model"),
        prompt_tokens=bindparam("b_prompt_tokens"),
        completion_tokens=bindparam("b_completion_tokens"),
    )
)


# What a plan is made from (``planning_facts``). A ledger row counts (for the ramp and the
# pace) while it is reserved or joined, not once released.
_POOL: Final = (
    select(ChannelRow.username, ChannelRow.category, ChannelRow.title)
    .where(in_pool_sql())
    .order_by(ChannelRow.username)
)
_JOINED: Final = (
    select(ChannelRow.username)
    .join(SessionChannelRow, SessionChannelRow.channel_id == ChannelRow.id)
    .where(SessionChannelRow.session_id == bindparam("b_session_id"))
)
_FINISHED_RUNS: Final = (
    select(RunRow)
    .where(RunRow.session_id == bindparam("b_session_id"), RunRow.status != RunStatus.RUNNING)
    .order_by(RunRow.started_at.desc(), RunRow.id.desc())
    .limit(RECENT_RUNS)
)
_ACTIONS_OF: Final = (
    select(ActionRow)
    .where(ActionRow.run_id.in_(bindparam("b_run_ids", expanding=True)))
    .order_by(ActionRow.run_id, ActionRow.seq)
)


class RunSql(SqlStore):
    """Runs, their actions, and the columns of ``sessions`` that runs change."""

    async def start_run(
        self, gateway_session_id: int, trigger: Trigger, now: datetime, node: Node
    ) -> Run:
        query = select(*record_columns()).where(SessionRow.gateway_session_id == gateway_session_id)
        query = self.locked(query, SessionRow)

        def start(db: Connection) -> Run:
            row = db.execute(query).first()
            if row is None:
                raise NotFound(f"no session with gateway id {gateway_session_id} is registered")
            session = admit(record_from(row), now)
            running = db.scalar(
                select(RunRow.id).where(
                    RunRow.session_id == session.id, RunRow.status == RunStatus.RUNNING
                )
            )
            if running is not None:
                raise AlreadyRunning(f"session {gateway_session_id} has run {running} in flight")
            run_id = db.scalar(
                self.insert(RunRow)
                .values(
                    session_id=session.id,
                    gateway_session_id=gateway_session_id,
                    trigger=trigger,
                    due_at=now,
                    status=RunStatus.RUNNING,
                    node=node.name,
                    node_id=node.id,
                    started_at=now,
                    heartbeat_at=now,
                )
                .returning(RunRow.id)
            )
            assert run_id is not None
            return Run(run_id, session, trigger, now, now)

        return await self._write(start)

    async def runs_in_flight(self, node: Node) -> list[RunInFlight]:
        query = (
            select(
                RunRow.id.label("run_id"),
                RunRow.trigger.label("run_trigger"),
                RunRow.due_at.label("run_due_at"),
                RunRow.started_at.label("run_started_at"),
                RunRow.scheduled_for.label("run_scheduled_for"),
                *record_columns(),
            )
            # Outer: the row of a session removed meanwhile is this node's to end.
            .outerjoin(SessionRow, SessionRow.id == RunRow.session_id)
            .where(RunRow.node_id == node.id, RunRow.status == RunStatus.RUNNING)
        )
        rows = await self._read(lambda db: db.execute(query).all())
        return [
            RunInFlight(
                row.run_id,
                Trigger(row.run_trigger),
                row.run_due_at,
                row.run_started_at,
                row.run_scheduled_for,
                record_from(row) if row.id is not None else None,
            )
            for row in rows
        ]

    async def set_run_plan(self, run_id: int, plan: StoredPlan) -> None:
        values = {
            "b_run_id": run_id,
            "b_plan": plan.document,
            "b_source": plan.source,
            "b_model": plan.model,
            "b_prompt_tokens": plan.prompt_tokens,
            "b_completion_tokens": plan.completion_tokens,
        }
        await self._write(lambda db: db.execute(_SET_PLAN, values))

    async def record_action(self, run_id: int, record: ActionRecord) -> None:
        values = action_values(run_id, record)
        statement = action_upsert(self.dialect)
        await self._write(lambda db: db.execute(statement, values))

    async def start_call(
        self, run_id: int, record: ActionRecord, budget_s: float, now: datetime
    ) -> Clearance:
        fence, upsert = self._fence, action_upsert(self.dialect)
        values = action_values(run_id, record)
        asked = time.monotonic()

        def clear(db: Connection) -> Clearance:
            # On SQLite the moment is the caller's, moved on by the time the write waited
            # for its turn: the lease must outlast the call from when the call can begin.
            moment = now + timedelta(seconds=time.monotonic() - asked)
            cleared = {
                "b_run_id": run_id,
                **self.shared_values(moment, b_now=0, b_lease_by=budget_s),
            }
            if db.scalar(fence, cleared) is not None:
                db.execute(upsert, values)
                return Clearance.CLEARED
            status = db.scalar(_RUN_STATUS, {"b_run_id": run_id})
            return Clearance.LEASE_SHORT if status == RunStatus.RUNNING else Clearance.REAPED

        return await self._write(clear)

    @functools.cached_property
    def _fence(self) -> Any:
        """The write that clears a gateway call: the run's heartbeat, only while it is
        running and its node's lease outlasts the call (built once: every call runs it)."""
        leased = exists().where(
            NodeRow.id == RunRow.node_id,
            NodeRow.lease_until > self.bound_shared_now("b_lease_by"),
        )
        return (
            update(RunRow)
            .where(_RUNNING, leased)
            .values(heartbeat_at=self.bound_shared_now("b_now"))
            .returning(RunRow.id)
        )

    async def finish_run(
        self, run_id: int, status: RunStatus, error: str | None, at: datetime
    ) -> RunStatus:
        def finish(db: Connection) -> RunStatus:
            values = {"b_run_id": run_id, "b_status": status, "b_error": error, "b_at": at}
            ended = db.execute(_FINISH, values).first()
            if ended is not None and ended.session_id is not None:  # not removed meanwhile
                db.execute(_LAST_RUN, {"b_session_id": ended.session_id, "b_at": at})
            # Places the run reserved and never settled (whoever ended it): kept where its
            # join may have happened, given back everywhere else.
            db.execute(_SETTLE_RUN, {"b_run_id": run_id})
            if ended is not None:
                return status
            final = db.scalar(_RUN_STATUS, {"b_run_id": run_id})  # the reaper ended it first
            return RunStatus(final) if final is not None else status

        return await self._write(finish)

    async def set_cooldown(
        self, session_id: int, until: datetime, wait_s: int, at: datetime
    ) -> None:
        statement = (
            update(SessionRow)
            .where(SessionRow.id == session_id)
            .values(cooldown_until=until, flood_wait_at=at, flood_wait_s=wait_s)
        )
        await self._write(lambda db: db.execute(statement))

    async def mark_needs_attention(self, session_id: int, reason: str) -> None:
        statement = (
            update(SessionRow)
            .where(SessionRow.id == session_id)
            .values(state=SessionState.NEEDS_ATTENTION, state_reason=reason)
        )
        await self._write(lambda db: db.execute(statement))

    async def note_channel_failure(self, channel: str, code: str, at: datetime) -> str | None:
        """Flag ``channel`` in the pool once it failed with ``code`` for several sessions
        within a day (its action rows are the evidence); the reason if this call flagged it."""
        failed_for = (
            select(func.count(func.distinct(RunRow.gateway_session_id)))
            .select_from(ActionRow)
            .join(RunRow, RunRow.id == ActionRow.run_id)
            .where(
                ActionRow.channel == channel,
                ActionRow.error_code == code,
                ActionRow.finished_at >= at - CHANNEL_FLAG_WINDOW,
            )
        )

        def note(db: Connection) -> str | None:
            reason = channel_flag(code, int(db.scalar(failed_for) or 0), at)
            if reason is None:
                return None
            flagged = db.scalar(
                update(ChannelRow)
                .where(ChannelRow.username == channel, ChannelRow.flagged_reason.is_(None))
                .values(flagged_reason=reason)
                .returning(ChannelRow.id)
            )
            return reason if flagged is not None else None

        return await self._write(note)

    async def warmth_facts(self, session_id: int, now: datetime) -> WarmthFacts:
        def facts(db: Connection) -> WarmthFacts:
            of_session = {"b_session_id": session_id}
            day = db.scalar(SESSION_JOINS, {**of_session, "b_since": now - RAMP_WINDOW})
            week = db.scalar(SESSION_JOINS, {**of_session, "b_since": now - WARMTH_WINDOW})
            joined = db.scalars(
                select(ChannelRow.username)
                .join(SessionChannelRow, SessionChannelRow.channel_id == ChannelRow.id)
                .where(SessionChannelRow.session_id == session_id)
                .order_by(ChannelRow.username)
            )
            runs = db.execute(
                select(RunRow.status, func.count())
                .where(RunRow.session_id == session_id, RunRow.started_at >= now - WARMTH_WINDOW)
                .group_by(RunRow.status)
            )
            return WarmthFacts(
                joins_last_24h=int(day or 0),
                joins_last_7d=int(week or 0),
                channels_joined=tuple(joined),
                runs_last_7d={str(status): int(count) for status, count in runs},
            )

        return await self._read(facts)

    async def planning_facts(self, session: Session, now: datetime) -> PlanningFacts:
        """The usable pool, the session's joined channels, its last finished runs, and the
        join ledger's counts."""

        def facts(db: Connection) -> PlanningFacts:
            session_id = {"b_session_id": session.id}
            joins = self._pool_joins
            if joins is None or not joins.fresh_at(now):
                hour = db.execute(CHANNEL_JOINS, {"b_since": now - PACE_WINDOW})
                joins = PoolJoins(now, {str(name): int(count) for name, count in hour})
                self._pool_joins = joins
            runs = _with_actions(db, db.execute(_FINISHED_RUNS, session_id).all())
            taken = db.scalar(SESSION_JOINS, {**session_id, "b_since": now - RAMP_WINDOW})
            return PlanningFacts(
                pool=tuple(PoolChannel(*row) for row in db.execute(_POOL)),
                joined=frozenset(db.scalars(_JOINED, session_id)),
                recent_runs=tuple(map(PastRun.of, runs)),
                joins_last_24h=int(taken or 0),
                channel_joins_last_hour=joins.last_hour,
            )

        return await self._read(facts)

    async def history(self, gateway_session_id: int, limit: int = 10) -> list[RunView]:
        condition = RunRow.gateway_session_id == gateway_session_id
        return await self._read(lambda db: _runs(db, condition, limit))

    async def runs_page(
        self, matching: RunFilter, before_id: int | None, limit: int
    ) -> list[RunView]:
        """Up to ``limit`` runs that match, newest first (by id), older than ``before_id``:
        the activity page, a page at a time, and its export."""
        query = runs_query(matching, before_id, limit)
        return await self._read(lambda db: _with_actions(db, db.execute(query).all()))

    async def get_run(self, run_id: int) -> RunView:
        runs = await self._read(lambda db: _runs(db, RunRow.id == run_id, 1))
        if not runs:
            raise NotFound(f"no run with id {run_id}")
        return runs[0]


def runs_query(matching: RunFilter, before_id: int | None, limit: int) -> Select[Any]:
    """The runs ``runs_page`` reads."""
    conditions: list[Any] = []
    if before_id is not None:
        conditions.append(RunRow.id < before_id)
    if matching.status is not None:
        conditions.append(RunRow.status == matching.status.value)
    if matching.trigger is not None:
        conditions.append(RunRow.trigger == matching.trigger.value)
    if matching.node is not None:
        conditions.append(RunRow.node == matching.node)
    if matching.gateway_session_id is not None:
        conditions.append(RunRow.gateway_session_id == matching.gateway_session_id)
    if matching.since is not None:
        conditions.append(RunRow.started_at >= matching.since)
    if matching.until is not None:
        conditions.append(RunRow.started_at < matching.until)
    return select(RunRow).where(*conditions).order_by(RunRow.id.desc()).limit(limit)


def _runs(db: Connection, condition: Any, limit: int) -> list[RunView]:
    rows = db.execute(
        select(RunRow)
        .where(condition)
        .order_by(RunRow.started_at.desc(), RunRow.id.desc())
        .limit(limit)
    ).all()
    return _with_actions(db, rows)


def _with_actions(db: Connection, rows: Sequence[Any]) -> list[RunView]:
    """The runs of ``rows`` (``warmup_runs`` rows), each with its actions."""
    actions: dict[int, list[ActionRecord]] = defaultdict(list)
    if rows:
        for action in db.execute(_ACTIONS_OF, {"b_run_ids": [row.id for row in rows]}):
            actions[action.run_id].append(
                record_of(
                    ActionRecord,
                    action,
                    kind=ActionKind(action.kind),
                    outcome=Outcome(action.outcome),
                )
            )
    return [_view(row, tuple(actions[row.id])) for row in rows]


def _view(row: Any, actions: tuple[ActionRecord, ...]) -> RunView:
    return record_of(
        RunView,
        row,
        trigger=Trigger(row.trigger),
        status=RunStatus(row.status),
        plan_source=None if row.plan_source is None else PlanSource(row.plan_source),
        actions=actions,
    )
