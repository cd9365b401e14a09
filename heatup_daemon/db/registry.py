"""Registry operations: the sessions admins register and the channel pool.

Callers get frozen records, never ORM objects, so nothing outside the repository can lazily
load or accidentally write.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Select, and_, bindparam, delete, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from heatup_daemon.config import ChannelEntry
from heatup_daemon.db.base import SqlStore, record_of, rows_affected
from heatup_daemon.db.models import ChannelRow, SessionRow
from heatup_daemon.db.sessions import boolean_of, enabled_value, record_columns, record_from
from heatup_daemon.enums import SessionState
from heatup_daemon.errors import AlreadyExists, NotFound
from heatup_daemon.records import ChannelView
from heatup_daemon.session import SessionRecord
from heatup_daemon.validation import ChannelSpec, SessionSpec


class RegistrySql(SqlStore):
    """The admin-owned registry: sessions and the channel pool."""

    # --- sessions -------------------------------------------------------------------

    async def add_session(self, spec: SessionSpec, *, enabled: bool = True) -> SessionRecord:
        statement = (
            self.insert(SessionRow)
            .values(
                gateway_session_id=spec.gateway_session_id,
                label=spec.label,
                enabled=enabled,
                schedule=spec.schedule_text,
                jitter_seconds=spec.jitter_seconds,
                timezone=spec.timezone.key,
                account_created_at=spec.account_created_at,
            )
            .on_conflict_do_nothing(index_elements=[SessionRow.gateway_session_id])
            .returning(SessionRow.id)
        )
        if await self._write(lambda db: db.scalar(statement)) is None:
            raise AlreadyExists(
                f"a session with gateway id {spec.gateway_session_id} is already registered"
            )
        return await self.get_session(spec.gateway_session_id)

    async def list_sessions(self) -> list[SessionRecord]:
        query = select(*record_columns()).order_by(SessionRow.id)
        return await self._read(lambda db: [record_from(row) for row in db.execute(query)])

    async def get_session(self, gateway_session_id: int) -> SessionRecord:
        query = select(*record_columns()).where(SessionRow.gateway_session_id == gateway_session_id)
        row = await self._read(lambda db: db.execute(query).first())
        if row is None:
            raise NotFound(f"no session with gateway id {gateway_session_id} is registered")
        return record_from(row)

    async def set_session_enabled(self, gateway_session_id: int, enabled: bool) -> SessionRecord:
        """Enable or disable a session. Enabling also clears ``needs_attention``: an admin's
        re-enable is how a session that lost its account or got frozen comes back."""
        values: dict[str, object] = {"enabled": enabled}
        if enabled:
            values.update(state=SessionState.ACTIVE, state_reason=None)
        statement = (
            update(SessionRow)
            .where(SessionRow.gateway_session_id == gateway_session_id)
            .values(**values)
        )
        if await self._write(lambda db: rows_affected(db.execute(statement))) == 0:
            raise NotFound(f"no session with gateway id {gateway_session_id} is registered")
        return await self.get_session(gateway_session_id)

    async def remove_session(self, gateway_session_id: int) -> None:
        """Delete a session; its runs stay in the history (their ``session_id`` is nulled)."""
        statement = delete(SessionRow).where(SessionRow.gateway_session_id == gateway_session_id)
        if await self._write(lambda db: rows_affected(db.execute(statement))) == 0:
            raise NotFound(f"no session with gateway id {gateway_session_id} is registered")

    # --- channels -------------------------------------------------------------------

    async def add_channel(self, spec: ChannelSpec) -> ChannelView:
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
        row = await self._write(lambda db: db.execute(statement).first())
        if row is None:
            raise AlreadyExists(f"channel @{spec.username} is already in the pool")
        return channel_view(row)

    async def list_channels(self) -> list[ChannelView]:
        query = channel_columns().order_by(ChannelRow.username)
        return await self._read(lambda db: [channel_view(row) for row in db.execute(query)])

    async def set_channel_enabled(self, username: str, enabled: bool) -> None:
        statement = (
            update(ChannelRow).where(ChannelRow.username == username).values(enabled=enabled)
        )
        if await self._write(lambda db: rows_affected(db.execute(statement))) == 0:
            raise NotFound(f"channel @{username} is not in the pool")

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
