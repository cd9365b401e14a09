"""Registry operations: the sessions admins register and the channel pool.

Callers get frozen records, never ORM objects, so nothing outside the repository can lazily
load or accidentally write.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

from sqlalchemy import Select, and_, bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from heatup_daemon.config.sections import ChannelEntry
from heatup_daemon.db.base import SqlStore, record_of, rows_affected
from heatup_daemon.db.models import AuditRow, ChannelRow, SessionRow
from heatup_daemon.db.sessions import boolean_of, enabled_value, record_columns, record_from
from heatup_daemon.enums import Change, SessionState
from heatup_daemon.errors import AlreadyExists, NotFound
from heatup_daemon.records import ChannelView
from heatup_daemon.session import SessionRecord
from heatup_daemon.validation import ChannelSpec, SessionSpec
from heatup_daemon.views import (
    AUDITED_CHANNEL_FIELDS,
    AUDITED_SESSION_FIELDS,
    CLI_AUTHOR,
    AuditEntry,
    Author,
    Imported,
    audited,
    jsonable,
)

# Rows an import registers a statement; gateway ids it looks up a query (SQLite's limit on
# parameters is 32,766).
IMPORT_CHUNK: Final = 2000


class RegistrySql(SqlStore):
    """The admin-owned registry: sessions and the channel pool."""

    # --- sessions -------------------------------------------------------------------

    async def add_session(
        self, spec: SessionSpec, *, enabled: bool = True, by: Author = CLI_AUTHOR
    ) -> SessionRecord:
        statement = (
            self.insert(SessionRow)
            .values(**spec.columns(enabled))
            .on_conflict_do_nothing(index_elements=[SessionRow.gateway_session_id])
            .returning(SessionRow.id)
        )

        def add(db: Connection) -> SessionRecord | None:
            if db.scalar(statement) is None:
                return None
            after = _session_of(db, spec.gateway_session_id)
            _audit(db, by, Change.REGISTER, None, after)
            return after

        record = await self._write(add)
        if record is None:
            raise AlreadyExists(
                f"a session with gateway id {spec.gateway_session_id} is already registered"
            )
        return record

    async def edit_session(self, spec: SessionSpec, *, by: Author = CLI_AUTHOR) -> SessionRecord:
        """Set a registered session's schedule, jitter, time zone, label and account
        creation time to ``spec``'s."""
        values: dict[str, object] = {
            "label": spec.label,
            "schedule": spec.schedule_text,
            "jitter_seconds": spec.jitter_seconds,
            "timezone": spec.timezone.key,
            "account_created_at": spec.account_created_at,
        }
        return await self._change_session(spec.gateway_session_id, values, Change.EDIT, by)

    async def registered(self, gateway_ids: Sequence[int]) -> set[int]:
        return await self._read(lambda db: _registered(db, gateway_ids))

    async def import_sessions(
        self,
        rows: Sequence[tuple[SessionSpec, bool]],
        *,
        skip_registered: bool,
        by: Author = CLI_AUTHOR,
    ) -> Imported:
        """Register ``(spec, enabled)`` rows in one transaction, each audited. Gateway ids
        already registered are returned; unless ``skip_registered``, nothing is written
        when there is one."""

        # A session registered by another admin after the read below (on PostgreSQL a
        # committed insert is seen by the next statement) is passed over, not an error.
        add = (
            self.insert(SessionRow)
            .on_conflict_do_nothing(index_elements=[SessionRow.gateway_session_id])
            .returning(SessionRow.gateway_session_id)
        )

        def register(db: Connection) -> Imported:
            registered = _registered(db, [spec.gateway_session_id for spec, _ in rows])
            if registered and not skip_registered:
                return Imported(registered, 0)
            fresh = [(spec, enabled) for spec, enabled in rows
                     if spec.gateway_session_id not in registered]  # fmt: skip
            written = 0
            for start in range(0, len(fresh), IMPORT_CHUNK):
                chunk = fresh[start : start + IMPORT_CHUNK]
                added = set(db.scalars(add, [s.columns(e) for s, e in chunk]))
                registered |= {s.gateway_session_id for s, _ in chunk} - added
                audits = [
                    _registration(by, s, e) for s, e in chunk if s.gateway_session_id in added
                ]
                if audits:
                    db.execute(insert(AuditRow), audits)
                written += len(added)
            return Imported(registered, written)

        return await self._write(register)

    async def list_sessions(self) -> list[SessionRecord]:
        query = select(*record_columns()).order_by(SessionRow.id)
        return await self._read(lambda db: [record_from(row) for row in db.execute(query)])

    async def session_batch(self, after_id: int, limit: int) -> list[SessionRecord]:
        """Up to ``limit`` sessions after row ``after_id``, in row order (an export reads the
        registry this way, a batch at a time)."""
        query = (
            select(*record_columns())
            .where(SessionRow.id > after_id)
            .order_by(SessionRow.id)
            .limit(limit)
        )
        return await self._read(lambda db: [record_from(row) for row in db.execute(query)])

    async def get_session(self, gateway_session_id: int) -> SessionRecord:
        row = await self._read(lambda db: _session_row(db, gateway_session_id))
        if row is None:
            raise NotFound(f"no session with gateway id {gateway_session_id} is registered")
        return record_from(row)

    async def set_session_enabled(
        self, gateway_session_id: int, enabled: bool, *, by: Author = CLI_AUTHOR
    ) -> SessionRecord:
        """Enable or disable a session. Enabling also clears ``needs_attention``: an admin's
        re-enable is how a session that lost its account or got frozen comes back."""
        values: dict[str, object] = {"enabled": enabled}
        if enabled:
            values.update(state=SessionState.ACTIVE, state_reason=None)
        change = Change.ENABLE if enabled else Change.DISABLE
        return await self._change_session(gateway_session_id, values, change, by)

    async def _change_session(
        self, gateway_session_id: int, values: dict[str, object], change: Change, by: Author
    ) -> SessionRecord:
        statement = (
            update(SessionRow)
            .where(SessionRow.gateway_session_id == gateway_session_id)
            .values(**values)
        )

        def set_values(db: Connection) -> SessionRecord | None:
            before = _session_of(db, gateway_session_id)
            if before is None:
                return None
            db.execute(statement)
            after = _session_of(db, gateway_session_id)
            _audit(db, by, change, before, after)
            return after

        record = await self._write(set_values)
        if record is None:
            raise NotFound(f"no session with gateway id {gateway_session_id} is registered")
        return record

    async def remove_session(self, gateway_session_id: int, *, by: Author = CLI_AUTHOR) -> None:
        """Delete a session; its runs stay in the history (their ``session_id`` is nulled),
        and so does its audit."""
        statement = delete(SessionRow).where(SessionRow.gateway_session_id == gateway_session_id)

        def remove(db: Connection) -> bool:
            before = _session_of(db, gateway_session_id)
            if before is None or rows_affected(db.execute(statement)) == 0:
                return False
            _audit(db, by, Change.REMOVE, before, None)
            return True

        if not await self._write(remove):
            raise NotFound(f"no session with gateway id {gateway_session_id} is registered")

    # --- channels -------------------------------------------------------------------

    async def add_channel(self, spec: ChannelSpec, *, by: Author = CLI_AUTHOR) -> ChannelView:
        statement = (
            self.insert(ChannelRow)
            .values(
                username=spec.username,
                title=spec.title,
                category=spec.category,
                description=spec.description,
                enabled=True,
            )
            .on_conflict_do_nothing(index_elements=[ChannelRow.username])
            .returning(*channel_columns().selected_columns)
        )

        def add(db: Connection) -> ChannelView | None:
            row = db.execute(statement).first()
            if row is None:
                return None
            view = channel_view(row)
            _audit_channel(db, by, Change.ADD_CHANNEL, spec.username, None, view)
            return view

        view = await self._write(add)
        if view is None:
            raise AlreadyExists(f"channel @{spec.username} is already in the pool")
        return view

    async def list_channels(self) -> list[ChannelView]:
        query = channel_columns().order_by(ChannelRow.username)
        return await self._read(lambda db: [channel_view(row) for row in db.execute(query)])

    async def set_channel_enabled(
        self, username: str, enabled: bool, *, by: Author = CLI_AUTHOR
    ) -> None:
        query = channel_columns().where(ChannelRow.username == username)
        statement = (
            update(ChannelRow).where(ChannelRow.username == username).values(enabled=enabled)
        )
        change = Change.ENABLE_CHANNEL if enabled else Change.DISABLE_CHANNEL

        def set_enabled(db: Connection) -> bool:
            before = db.execute(query).first()
            if before is None:
                return False
            db.execute(statement)
            after = channel_view(db.execute(query).one())
            _audit_channel(db, by, change, username, channel_view(before), after)
            return True

        if not await self._write(set_enabled):
            raise NotFound(f"channel @{username} is not in the pool")

    async def audit_of(self, gateway_session_id: int, limit: int) -> list[AuditEntry]:
        """The session's audit, newest first."""
        query = (
            select(*AuditRow.__table__.columns)
            .where(AuditRow.gateway_session_id == gateway_session_id)
            .order_by(AuditRow.id.desc())
            .limit(limit)
        )
        return await self._read(
            lambda db: [AuditEntry(**row._mapping) for row in db.execute(query)]
        )

    async def seed_channels(self, entries: Iterable[ChannelEntry]) -> int:
        """Fill an empty pool from the configuration; return how many were added.

        Only an empty ``channels`` table is seeded: once it holds rows, admins own it, and
        a channel they removed does not come back on the next start. Several nodes may seed
        at once: the insert skips what another one added meanwhile.
        """
        rows = [
            {
                "username": entry.username,
                "title": entry.title,
                "category": entry.category,
                "description": entry.description,
                "enabled": True,
            }
            for entry in entries
        ]
        statement = self.insert(ChannelRow).on_conflict_do_nothing().returning(ChannelRow.id)

        def seed(db: Connection) -> int:
            if not rows or db.scalar(select(func.count()).select_from(ChannelRow)):
                return 0
            return len(self._insert_rows(db, statement, rows))

        return await self._write(seed)

    async def check_channels(self) -> list[tuple[str, str | None]]:
        """Validate every pool row (admins may write them by hand); store each verdict that
        changed in ``invalid_reason`` and return those (username, reason) pairs."""
        statement = (
            update(ChannelRow)
            .where(ChannelRow.id == bindparam("row_id"))
            .values(invalid_reason=bindparam("reason"))
        )

        def check(db: Connection) -> list[tuple[ChannelView, str | None]]:
            views = [channel_view(row) for row in db.execute(channel_columns())]
            changed = [(v, problem) for v in views if (problem := v.problem) != v.invalid_reason]
            if changed:
                db.execute(statement, [{"row_id": v.id, "reason": p} for v, p in changed])
            return changed

        changed = await self._write(check)
        return [(str(v.username), problem) for v, problem in changed]


def in_pool_sql() -> ColumnElement[bool]:
    """``ChannelView.in_pool`` in SQL."""
    return and_(
        ChannelRow.enabled.is_(True),
        ChannelRow.invalid_reason.is_(None),
        ChannelRow.flagged_reason.is_(None),
    )


def channel_columns() -> Select[Any]:
    """A ``ChannelView``'s columns, ``enabled`` as read (a hand edit may leave anything)."""
    table = ChannelRow.__table__.c
    names = ("id", "username", "title", "category", "description", "invalid_reason")
    return select(
        *(table[name] for name in names),
        ChannelRow.flagged_reason,
        enabled_value(ChannelRow.enabled).label("enabled"),
    )


def channel_view(row: Any) -> ChannelView:
    return record_of(ChannelView, row, enabled=boolean_of(row.enabled))


def _session_row(db: Connection, gateway_session_id: int) -> Any:
    query = select(*record_columns()).where(SessionRow.gateway_session_id == gateway_session_id)
    return db.execute(query).first()


def _session_of(db: Connection, gateway_session_id: int) -> SessionRecord | None:
    row = _session_row(db, gateway_session_id)
    return None if row is None else record_from(row)


def _audit(
    db: Connection,
    by: Author,
    change: Change,
    before: SessionRecord | None,
    after: SessionRecord | None,
) -> None:
    """The audit row of a change to a session, in the change's transaction."""
    subject = after or before
    assert subject is not None
    db.execute(
        insert(AuditRow).values(
            via=by.via,
            actor=by.actor,
            action=change,
            gateway_session_id=subject.gateway_session_id,
            before=None if before is None else audited(before, AUDITED_SESSION_FIELDS),
            after=None if after is None else audited(after, AUDITED_SESSION_FIELDS),
        )
    )


def _audit_channel(
    db: Connection,
    by: Author,
    change: Change,
    username: str,
    before: ChannelView | None,
    after: ChannelView | None,
) -> None:
    db.execute(
        insert(AuditRow).values(
            via=by.via,
            actor=by.actor,
            action=change,
            channel=username,
            before=None if before is None else audited(before, AUDITED_CHANNEL_FIELDS),
            after=None if after is None else audited(after, AUDITED_CHANNEL_FIELDS),
        )
    )


def _registration(by: Author, spec: SessionSpec, enabled: bool) -> dict[str, object]:
    """The audit row of an imported session: its admin columns as registered."""
    registered = {**spec.columns(enabled), "state": SessionState.ACTIVE.value}
    after = jsonable({name: registered[name] for name in AUDITED_SESSION_FIELDS})
    return {
        "via": by.via,
        "actor": by.actor,
        "action": Change.REGISTER,
        "gateway_session_id": spec.gateway_session_id,
        "before": None,
        "after": after,
    }


def _registered(db: Connection, gateway_ids: Sequence[int]) -> set[int]:
    """Which of ``gateway_ids`` are registered."""
    found: set[int] = set()
    column = SessionRow.gateway_session_id
    for start in range(0, len(gateway_ids), IMPORT_CHUNK):
        chunk = gateway_ids[start : start + IMPORT_CHUNK]
        found.update(db.scalars(select(column).where(column.in_(chunk))))
    return found
