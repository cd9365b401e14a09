"""What the web console reads: the pool at a glance, a page of the session list in the order
asked, and the channel pool with how it is used. Reads only, each in one transaction."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import case, func, nulls_last, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from heatup_daemon.db.base import SqlStore
from heatup_daemon.db.models import ChannelRow, JoinRow, RunRow, SessionChannelRow, SessionRow
from heatup_daemon.db.registry import channel_columns, channel_view
from heatup_daemon.db.scheduling import session_counts
from heatup_daemon.db.sessions import record_columns, record_from, standing_sql
from heatup_daemon.enums import JoinStatus, RunStatus, Standing
from heatup_daemon.records import (
    EVERY_SESSION,
    ChannelLine,
    Overview,
    SessionLine,
    SessionPage,
    SessionSearch,
    SessionSort,
)

# The order each sort key gives, as columns; ties go by gateway id.
_ORDER: Final[Mapping[SessionSort, tuple[Any, ...]]] = {
    SessionSort.GATEWAY_ID: (SessionRow.gateway_session_id,),
    # Active first, then needing attention, disabled, invalid (``Standing``'s order).
    SessionSort.STATE: (
        case(*((standing_sql() == s.value, rank) for rank, s in enumerate(Standing)), else_=99),
    ),
    SessionSort.SCHEDULE: (SessionRow.schedule,),
    SessionSort.LAST_RUN: (SessionRow.last_run_at,),
    SessionSort.NEXT_RUN: (SessionRow.next_run_at,),
    SessionSort.PROBLEM: (func.coalesce(SessionRow.invalid_reason, SessionRow.state_reason),),
}


def _matching(search: SessionSearch) -> list[ColumnElement[bool]]:
    """The session list's filters: a gateway id (the whole text as a number) or a label
    holding the text, in any case; a standing."""
    conditions: list[ColumnElement[bool]] = []
    text = search.text.strip()
    if text:
        escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        label = func.lower(SessionRow.label).like(f"%{escaped}%", escape="\\")
        if text.isascii() and text.isdigit() and len(text) <= 19:
            conditions.append(or_(SessionRow.gateway_session_id == int(text), label))
        else:
            conditions.append(label)
    if search.standing is not None:
        conditions.append(standing_sql() == search.standing.value)
    return conditions


class ConsoleSql(SqlStore):
    async def overview(self, now: datetime) -> Overview:
        usable = standing_sql() == Standing.ACTIVE.value

        def read(db: Connection) -> Overview:
            runs = db.execute(
                select(RunRow.status, func.count())
                .where(RunRow.started_at >= now - timedelta(hours=24))
                .group_by(RunRow.status)
            )
            return Overview(
                sessions=session_counts(db, now),
                runs_last_24h={str(status): int(count) for status, count in runs},
                next_due_at=db.scalar(select(func.min(SessionRow.next_run_at)).where(usable)),
            )

        return await self._read(read)

    async def session_page(
        self,
        sort: SessionSort,
        descending: bool,
        offset: int,
        limit: int,
        search: SessionSearch = EVERY_SESSION,
    ) -> SessionPage:
        keys = [nulls_last(c.desc() if descending else c.asc()) for c in _ORDER[sort]]
        matching = _matching(search)
        latest = (
            select(RunRow.status, RunRow.started_at)
            .where(RunRow.session_id == SessionRow.id)
            .order_by(RunRow.started_at.desc(), RunRow.id.desc())
            .limit(1)
        )
        query = (
            select(
                *record_columns(),
                latest.with_only_columns(RunRow.status).scalar_subquery().label("last_status"),
                latest.with_only_columns(RunRow.started_at)
                .scalar_subquery()
                .label("last_started_at"),
            )
            .where(*matching)
            .order_by(*keys, SessionRow.gateway_session_id)
            .offset(offset)
            .limit(limit)
        )
        counted = select(func.count()).select_from(SessionRow).where(*matching)

        def read(db: Connection) -> SessionPage:
            total = int(db.scalar(counted) or 0)
            lines = tuple(
                SessionLine(
                    record_from(row),
                    None if row.last_status is None else RunStatus(row.last_status),
                    row.last_started_at,
                )
                for row in db.execute(query)
            )
            return SessionPage(lines, total)

        return await self._read(read)

    async def channel_lines(self, now: datetime) -> list[ChannelLine]:
        counted = JoinRow.status != JoinStatus.RELEASED
        since_hour, since_day = now - timedelta(hours=1), now - timedelta(hours=24)

        def read(db: Connection) -> list[ChannelLine]:
            channels = [
                channel_view(row)
                for row in db.execute(channel_columns().order_by(ChannelRow.username))
            ]
            members = {
                channel_id: int(count)
                for channel_id, count in db.execute(
                    select(SessionChannelRow.channel_id, func.count()).group_by(
                        SessionChannelRow.channel_id
                    )
                )
            }
            joins = {
                channel_id: (int(hour or 0), int(day or 0))
                for channel_id, hour, day in db.execute(
                    select(
                        JoinRow.channel_id,
                        func.count().filter(JoinRow.reserved_at >= since_hour),
                        func.count(),
                    )
                    .where(counted, JoinRow.reserved_at >= since_day)
                    .group_by(JoinRow.channel_id)
                )
            }
            return [
                ChannelLine(view, members.get(view.id, 0), *joins.get(view.id, (0, 0)))
                for view in channels
            ]

        return await self._read(read)
