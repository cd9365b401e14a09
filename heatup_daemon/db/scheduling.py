"""What the scheduler asks of the database: rows admins changed, due sessions, claims.

Admin edits are found by the database itself: ``admin_key`` is an SQL expression over every
admin-owned column (and ``state``); ``sessions.applied_schedule`` holds its value as of the
last time heatup applied the row. A row whose key differs was inserted or edited (by the
CLI or by hand in SQL) and is reconciled; the rest cost nothing. Claims are compare-and-set
updates of ``next_nominal_at``, so two claimers never take the same slot, and the unique key
on (session, slot) of ``warmup_runs`` stands behind that.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import String, and_, bindparam, case, cast, func, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from heatup_daemon.db.models import ChannelRow, RunRow, SessionRow, UTCDateTime
from heatup_daemon.db.registry import SessionView
from heatup_daemon.db.store import Store, rows_affected

KEY_SEPARATOR: Final = "\x1f"
KEY_FIELDS: Final = (
    "gateway_session_id",
    "schedule",
    "jitter_seconds",
    "timezone",
    "enabled",
    "state",
    "label",
)
RECONCILE_BATCH: Final = 10_000
# The fields whose change moves the session's slots; the rest only re-validate.
SCHEDULE_FIELDS: Final = ("schedule", "jitter_seconds", "timezone")


def _text(column: Any) -> ColumnElement[str]:
    return func.coalesce(cast(column, String), literal(""))


def admin_key() -> ColumnElement[str]:
    enabled = case((SessionRow.enabled, literal("on")), else_=literal("off"))
    parts: list[ColumnElement[str]] = [
        _text(SessionRow.gateway_session_id),
        _text(SessionRow.schedule),
        _text(SessionRow.jitter_seconds),
        _text(SessionRow.timezone),
        enabled,
        _text(SessionRow.state),
        _text(SessionRow.label),
    ]
    key = parts[0]
    for part in parts[1:]:
        key = key + literal(KEY_SEPARATOR) + part
    return key


def key_fields(key: str | None) -> dict[str, str]:
    if key is None:
        return {}
    return dict(zip(KEY_FIELDS, key.split(KEY_SEPARATOR, len(KEY_FIELDS) - 1), strict=False))


@dataclass(frozen=True, slots=True)
class ChangedRow:
    """A ``sessions`` row whose admin columns changed since heatup last applied them."""

    id: int
    key: str
    applied_key: str | None
    gateway_session_id: object
    schedule: object
    jitter_seconds: object
    timezone: object
    label: object
    enabled: bool
    state: str
    invalid_reason: str | None
    next_nominal_at: datetime | None

    @property
    def schedule_changed(self) -> bool:
        old, new = key_fields(self.applied_key), key_fields(self.key)
        return any(old.get(name) != new.get(name) for name in SCHEDULE_FIELDS)


@dataclass(frozen=True, slots=True)
class Applied:
    """What reconciling a changed row decided."""

    row: ChangedRow
    invalid_reason: str | None
    next_nominal_at: datetime | None
    next_run_at: datetime | None


@dataclass(frozen=True, slots=True)
class DueSession:
    view: SessionView
    next_nominal_at: datetime
    next_run_at: datetime


class SchedulingStore(Store):
    async def changed_sessions(self, limit: int = RECONCILE_BATCH) -> list[ChangedRow]:
        key = admin_key().label("key")
        async with self._transaction() as db:
            rows = await db.execute(
                select(
                    SessionRow.id,
                    key,
                    SessionRow.applied_schedule,
                    SessionRow.gateway_session_id,
                    SessionRow.schedule,
                    SessionRow.jitter_seconds,
                    SessionRow.timezone,
                    SessionRow.label,
                    SessionRow.enabled,
                    SessionRow.state,
                    SessionRow.invalid_reason,
                    SessionRow.next_nominal_at,
                )
                .where(SessionRow.applied_schedule.is_distinct_from(admin_key()))
                .order_by(SessionRow.id)
                .limit(limit)
            )
            return [
                ChangedRow(
                    id=r.id,
                    key=r.key,
                    applied_key=r.applied_schedule,
                    gateway_session_id=r.gateway_session_id,
                    schedule=r.schedule,
                    jitter_seconds=r.jitter_seconds,
                    timezone=r.timezone,
                    label=r.label,
                    enabled=bool(r.enabled),
                    state=r.state,
                    invalid_reason=r.invalid_reason,
                    next_nominal_at=r.next_nominal_at,
                )
                for r in rows
            ]

    async def apply_schedules(self, results: list[Applied]) -> int:
        """Store the outcome of reconciling a batch of rows in one transaction; a row edited
        again meanwhile is left for the next pass. Returns how many rows were stored."""
        if not results:
            return 0
        statement = (
            update(SessionRow)
            .where(SessionRow.id == bindparam("row_id"), admin_key() == bindparam("row_key"))
            .values(
                applied_schedule=bindparam("row_key"),
                invalid_reason=bindparam("reason"),
                next_nominal_at=bindparam("nominal", type_=UTCDateTime()),
                next_run_at=bindparam("due", type_=UTCDateTime()),
            )
        )
        parameters = [
            {
                "row_id": r.row.id,
                "row_key": r.row.key,
                "reason": r.invalid_reason,
                "nominal": r.next_nominal_at,
                "due": r.next_run_at,
            }
            for r in results
        ]
        async with self.engine.begin() as connection:
            result = await connection.execute(statement, parameters)
        return rows_affected(result)

    async def due_sessions(
        self, now: datetime, limit: int, exclude: frozenset[int] = frozenset()
    ) -> list[DueSession]:
        """Runnable sessions whose ``next_run_at`` has come, most overdue first."""
        condition = and_(
            SessionRow.next_run_at <= now,
            SessionRow.enabled.is_(True),
            SessionRow.state == "active",
            SessionRow.invalid_reason.is_(None),
            SessionRow.applied_schedule == admin_key(),  # not edited since reconciled
        )
        if exclude:
            condition = and_(condition, SessionRow.id.not_in(exclude))
        async with self._transaction() as db:
            rows = await db.scalars(
                select(SessionRow).where(condition).order_by(SessionRow.next_run_at).limit(limit)
            )
            due: list[DueSession] = []
            for row in rows:
                # reconcile sets both slot columns together, or clears both
                assert row.next_nominal_at is not None and row.next_run_at is not None
                due.append(DueSession(SessionView.of(row), row.next_nominal_at, row.next_run_at))
            return due

    async def advance(
        self, session_id: int, expected_nominal: datetime, nominal: datetime, due: datetime
    ) -> bool:
        """Move the session to its next slot if its current slot is still ``expected_nominal``
        (compare-and-set: exactly one claimer wins a slot)."""
        async with self._transaction() as db:
            result = await db.execute(
                update(SessionRow)
                .where(SessionRow.id == session_id, SessionRow.next_nominal_at == expected_nominal)
                .values(next_nominal_at=nominal, next_run_at=due)
            )
        return bool(rows_affected(result))

    async def record_skipped(
        self,
        view: SessionView,
        nominal: datetime,
        due: datetime,
        reason: str,
        node: str,
        at: datetime,
    ) -> bool:
        """A ``skipped`` run for a slot that was not run; ``False`` if the slot has a run."""
        assert isinstance(view.gateway_session_id, int)
        try:
            async with self._transaction() as db:
                db.add(
                    RunRow(
                        session_id=view.id,
                        gateway_session_id=view.gateway_session_id,
                        trigger="schedule",
                        scheduled_for=nominal,
                        due_at=due,
                        status="skipped",
                        node=node,
                        started_at=at,
                        finished_at=at,
                        error=reason,
                    )
                )
        except IntegrityError:
            return False
        return True

    async def reap_stale_runs(self, now: datetime, stale_s: float) -> int:
        """Mark ``interrupted`` the running runs whose heartbeat is older than ``stale_s``:
        their process died (a live run renews its heartbeat far more often)."""
        stale = RunRow.heartbeat_at < now - timedelta(seconds=stale_s)
        async with self._transaction() as db:
            result = await db.execute(
                update(RunRow)
                .where(RunRow.status == "running", stale)
                .values(
                    status="interrupted",
                    finished_at=now,
                    error="the process running it stopped (heartbeat lost)",
                )
            )
        return rows_affected(result)

    async def not_runnable(self, session_ids: frozenset[int]) -> set[int]:
        """Which of ``session_ids`` are now disabled, not active, invalid or deleted."""
        if not session_ids:
            return set()
        async with self._transaction() as db:
            runnable = await db.scalars(
                select(SessionRow.id).where(
                    SessionRow.id.in_(session_ids),
                    SessionRow.enabled.is_(True),
                    SessionRow.state == "active",
                )
            )
            return set(session_ids) - set(runnable)

    async def session_counts(self) -> dict[str, int]:
        """Counts for the status line and the gauges."""
        runnable = and_(SessionRow.enabled.is_(True), SessionRow.invalid_reason.is_(None))
        async with self._transaction() as db:
            row = (
                await db.execute(
                    select(
                        func.count(),
                        func.count(SessionRow.next_run_at),
                        func.count(SessionRow.invalid_reason),
                        _count(and_(runnable, SessionRow.state == "active")),
                        _count(and_(runnable, SessionRow.state == "needs_attention")),
                        _count(
                            and_(SessionRow.enabled.is_(False), SessionRow.invalid_reason.is_(None))
                        ),
                    )
                )
            ).one()
            invalid_channels = await db.scalar(select(func.count(ChannelRow.invalid_reason)))
        return {
            "sessions": row[0],
            "scheduled": row[1],
            "invalid": row[2],
            "active": int(row[3] or 0),
            "needs_attention": int(row[4] or 0),
            "disabled": int(row[5] or 0),
            "invalid_channels": int(invalid_channels or 0),
        }


def _count(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.sum(case((condition, 1), else_=0))
