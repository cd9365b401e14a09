"""What the scheduler asks of the database: reconcile, claim, reap, housekeeping.

Reconcile and claim each run as one transaction that locks the rows it decides on (on
PostgreSQL ``FOR UPDATE SKIP LOCKED``: another node's rows are passed over, never waited
for; on SQLite the write transaction holds the database's only write lock), asks the
scheduler's ``SlotPolicy``, and writes every decision before it commits: the session's next
slot and the slot's row together. Statements are batched, not one per session. The unique
key on (session, slot) of ``warmup_runs`` stands behind the locks: rows are inserted with
``ON CONFLICT DO NOTHING``, and a run starts only for a ``running`` row that went in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

from sqlalchemy import Text, and_, bindparam, case, delete, func, or_, select, text, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Select

from heatup_daemon.db.base import SqlStore, is_transient
from heatup_daemon.db.models import (
    ActionRow,
    ChannelRow,
    JoinRow,
    RunRow,
    SessionRow,
    TokenSettlementRow,
    UTCDateTime,
)
from heatup_daemon.db.sessions import admin_key, record_columns, record_from, standing_sql
from heatup_daemon.enums import Refusal, RunStatus, Standing, Trigger
from heatup_daemon.errors import DatabaseRefused
from heatup_daemon.records import Claim, Decision, Node, Reconciled, Run, SessionCounts
from heatup_daemon.session import Session, SessionRecord, refusals_of
from heatup_daemon.stores import SlotPolicy

R = TypeVar("R")
# The rows marked for reconcile, written as the partial index ``ix_sessions_needs_reconcile``
# states it: SQLite uses a partial index only for a term in the index's own form, and
# SQLAlchemy's ``needs_reconcile = 1`` would scan the table.
MARKED: Final = text("sessions.needs_reconcile")
# Ids bound in one statement at most.
ID_CHUNK: Final = 1000


def marked_rows(after_id: int, limit: int) -> Select[Any]:
    """The rows the database marked as inserted or edited since heatup applied them, in id
    order after ``after_id``: found through an index, however large the table."""
    return (
        select(*record_columns())
        .where(SessionRow.id > after_id, MARKED)
        .order_by(SessionRow.id)
        .limit(limit)
    )


class SchedulingSql(SqlStore):
    async def reconcile(
        self, policy: SlotPolicy, now: datetime, after_id: int, limit: int
    ) -> Reconciled:
        query = marked_rows(after_id, limit)

        def decide(db: Connection, isolate: bool) -> Reconciled:
            records = self._lock(db, query)
            decisions = [policy.reconcile(record, now) for record in records]
            changed = [d for d in decisions if d.changes_row]
            stored = _written(db, changed, isolate, lambda batch: store_decisions(db, batch))
            _applied(db, [record.id for record in records])
            last_id = records[-1].id if records else after_id
            return Reconciled(tuple(stored), len(records), last_id)

        return await self._refusal_isolated(decide)

    async def claim_due(
        self,
        policy: SlotPolicy,
        now: datetime,
        limit: int,
        node: Node,
        due_by: datetime | None = None,
    ) -> Claim:
        query = (
            select(*record_columns())
            .where(SessionRow.next_run_at <= (due_by or now))
            .order_by(SessionRow.next_run_at)
            .limit(limit)
        )

        def claim(db: Connection, isolate: bool) -> Claim:
            records = self._lock(db, query)
            if not records:
                return Claim((), ())
            running = _running_runs(db, [r.id for r in records])
            decisions = [policy.claim(r, running.get(r.id), now) for r in records]
            runs: list[Run] = []

            def write(batch: Sequence[Decision]) -> None:
                store_decisions(db, batch)
                runs.extend(self._insert_slot_rows(db, batch, node, now))

            stored = _written(db, decisions, isolate, write)
            return Claim(tuple(stored), tuple(runs))

        return await self._refusal_isolated(claim)

    async def _refusal_isolated(self, work: Callable[[Connection, bool], R]) -> R:
        """``work`` writes its batch of decisions at once; when the database refuses the
        batch, it runs again with each row's writes on their own, so that the rows the
        database takes are written and only the refused ones are flagged."""
        try:
            return await self._write(lambda db: work(db, False))
        except DatabaseRefused:
            return await self._write(lambda db: work(db, True))

    def _lock(self, db: Connection, query: Select[Any]) -> list[SessionRecord]:
        query = self.locked(query, SessionRow, skip_taken=True)
        return [record_from(row) for row in db.execute(query)]

    def _insert_slot_rows(
        self, db: Connection, decisions: Sequence[Decision], node: Node, now: datetime
    ) -> tuple[Run, ...]:
        rows: list[dict[str, Any]] = []
        sessions: dict[int, Session] = {}
        for decision in decisions:
            record = decision.record
            if decision.session is not None:
                sessions[record.id] = decision.session
            for slot in decision.rows:
                running = slot.status is RunStatus.RUNNING
                rows.append(
                    {
                        "session_id": record.id,
                        "gateway_session_id": record.gateway_session_id,
                        "trigger": Trigger.SCHEDULE,
                        "scheduled_for": slot.scheduled_for,
                        "next_slot_at": slot.next_slot_at,
                        "due_at": slot.due_at,
                        "status": slot.status,
                        "node": node.name,
                        "node_id": node.id,
                        "started_at": now,
                        "heartbeat_at": now if running else None,
                        "finished_at": None if running else now,
                        "error": slot.error,
                    }
                )
        if not rows:
            return ()
        statement = (
            self.insert(RunRow)
            .on_conflict_do_nothing()
            .returning(
                RunRow.id, RunRow.session_id, RunRow.status, RunRow.scheduled_for, RunRow.due_at
            )
        )
        inserted = self._insert_rows(db, statement, rows)
        return tuple(
            Run(
                row.id,
                sessions[row.session_id],
                Trigger.SCHEDULE,
                row.due_at,
                now,
                row.scheduled_for,
            )
            for row in inserted
            if row.status == RunStatus.RUNNING and row.session_id in sessions
        )

    async def next_due_at(self) -> datetime | None:
        query = select(func.min(SessionRow.next_run_at))
        value: datetime | None = await self._read(lambda db: db.scalar(query))
        return value

    async def refusals(
        self, session_ids: frozenset[int], now: datetime
    ) -> dict[int, tuple[Refusal, str]]:
        if not session_ids:
            return {}
        ids = sorted(session_ids)
        query = select(*record_columns()).where(
            SessionRow.id.in_(bindparam("b_ids", expanding=True))
        )

        def read(db: Connection) -> list[SessionRecord]:
            # In chunks: a statement binds one value per id, and SQLite takes 32,766 at most.
            return [
                record_from(row)
                for start in range(0, len(ids), ID_CHUNK)
                for row in db.execute(query, {"b_ids": ids[start : start + ID_CHUNK]})
            ]

        records = {record.id: record for record in await self._read(read)}
        return refusals_of(records, session_ids, now)

    async def delete_history(self, before: datetime, limit: int) -> int:
        def trim(db: Connection) -> int:
            ids = list(
                db.scalars(
                    select(RunRow.id)
                    .where(RunRow.started_at < before, RunRow.status != RunStatus.RUNNING)
                    .order_by(RunRow.started_at)
                    .limit(limit)
                )
            )
            if ids:
                db.execute(delete(ActionRow).where(ActionRow.run_id.in_(ids)))
                db.execute(delete(RunRow).where(RunRow.id.in_(ids)))
            db.execute(
                delete(JoinRow).where(
                    JoinRow.id.in_(
                        select(JoinRow.id)
                        .where(JoinRow.reserved_at < before)
                        .order_by(JoinRow.reserved_at)
                        .limit(limit)
                    )
                )
            )
            db.execute(
                delete(TokenSettlementRow).where(
                    TokenSettlementRow.key.in_(
                        select(TokenSettlementRow.key)
                        .where(TokenSettlementRow.day < before.date())
                        .limit(limit)
                    )
                )
            )
            return len(ids)

        return await self._write(trim)

    async def sessions_aged(self, now: datetime, days: Sequence[int]) -> list[int]:
        born = func.coalesce(SessionRow.account_created_at, SessionRow.created_at)
        runnable = standing_sql() == Standing.ACTIVE.value
        aged = [
            _count(
                and_(
                    runnable,
                    born <= bindparam(f"born_{d}", now - timedelta(days=d), type_=UTCDateTime()),
                )
            )
            for d in days
        ]
        row = await self._read(lambda db: db.execute(select(*aged)).one())
        return [int(value or 0) for value in row]

    async def counts(self, now: datetime) -> SessionCounts:
        return await self._read(lambda db: session_counts(db, now))


def _applied(db: Connection, session_ids: list[int]) -> None:
    """Clear the mark of the rows among ``session_ids`` that are now applied (their applied
    key is their admin key); a row left unapplied (flagged, or its decision refused) stays
    marked, and the next reconcile decides it again."""
    statement = (
        update(SessionRow)
        .where(
            SessionRow.id.in_(bindparam("b_ids", expanding=True)),
            SessionRow.applied_key == admin_key(),
        )
        .values(needs_reconcile=False)
    )
    for start in range(0, len(session_ids), ID_CHUNK):
        db.execute(statement, {"b_ids": session_ids[start : start + ID_CHUNK]})


def _running_runs(db: Connection, session_ids: list[int]) -> dict[int, int]:
    rows = db.execute(
        select(RunRow.session_id, RunRow.id).where(
            RunRow.session_id.in_(session_ids), RunRow.status == RunStatus.RUNNING
        )
    )
    return {session_id: run_id for session_id, run_id in rows if session_id is not None}


def _written(
    db: Connection,
    decisions: Sequence[Decision],
    isolate: bool,
    write: Callable[[Sequence[Decision]], None],
) -> list[Decision]:
    """``write`` the decisions at once, or (``isolate``) each in a savepoint of its own,
    replacing one the database refuses with ``refused``; the decisions as written."""
    if not isolate:
        write(decisions)
        return list(decisions)
    written: list[Decision] = []
    for decision in decisions:
        try:
            with db.begin_nested():
                write((decision,))
        except sa_exc.DBAPIError as error:
            if is_transient(error):
                raise
            decision = refused(decision, error)
            store_decisions(db, (decision,))
        written.append(decision)
    return written


def refused(decision: Decision, error: BaseException) -> Decision:
    """What is stored for a row whose decision the database refused: no slot, the reason,
    and no applied key, so the next reconcile decides the row again."""
    cause = getattr(error, "orig", None) or error
    detail = " ".join(str(cause).split())[:300]
    reason = (
        f"the database refused this row's next slot ({type(cause).__name__}: {detail}); "
        "heatup decides it again at the next reconcile"
    )
    record = decision.record
    nominal = record.next_nominal_at if isinstance(record.next_nominal_at, datetime) else None
    return Decision(record, nominal, None, reason, None, refused=True)


def store_decisions(db: Connection, decisions: Sequence[Decision]) -> None:
    """Write each decision's next slot, verdict and applied key to its session row (a row
    whose applied key is not its admin key stays marked for reconcile)."""
    if not decisions:
        return
    statement = (
        update(SessionRow)
        .where(SessionRow.id == bindparam("row_id"))
        .values(
            next_nominal_at=bindparam("nominal", type_=UTCDateTime()),
            next_run_at=bindparam("due", type_=UTCDateTime()),
            invalid_reason=bindparam("reason"),
            applied_key=bindparam("key"),
            # A row left unapplied (its decision refused) is read again by the next reconcile.
            needs_reconcile=or_(
                SessionRow.needs_reconcile,
                bindparam("key", type_=Text()).is_distinct_from(admin_key()),
            ),
        )
    )
    parameters = [
        {
            "row_id": d.record.id,
            "nominal": d.next_nominal_at,
            "due": d.next_run_at,
            "reason": d.invalid_reason,
            "key": d.applied_key,
        }
        for d in decisions
    ]
    db.execute(statement, parameters)


def session_counts(db: Connection, now: datetime) -> SessionCounts:
    """The rows by their standing (``standing_sql``), the pool rows heatup cannot use, the
    runs in flight."""
    standing = standing_sql().label("standing")
    cooling = and_(standing_sql() == Standing.ACTIVE.value, SessionRow.cooldown_until > now)
    rows = db.execute(
        select(
            standing, func.count(), func.count(SessionRow.next_run_at), _count(cooling)
        ).group_by(standing)
    ).all()
    by_standing = {Standing(row.standing): int(row[1]) for row in rows}
    invalid_channels = db.scalar(select(func.count(ChannelRow.invalid_reason)))
    running = db.scalar(
        select(func.count()).select_from(RunRow).where(RunRow.status == RunStatus.RUNNING)
    )
    return SessionCounts(
        sessions=sum(by_standing.values()),
        scheduled=sum(int(row[2]) for row in rows),
        cooling_down=sum(int(row[3] or 0) for row in rows),
        invalid_channels=int(invalid_channels or 0),
        running=int(running or 0),
        **{standing.value: count for standing, count in by_standing.items()},
    )


def _count(condition: Any) -> Any:
    return func.sum(case((condition, 1), else_=0))
