"""What the web console reads: the pool at a glance, a page of the session list in the order
asked, and the channel pool with how it is used. Reads only, each in one transaction."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import Select, func, literal_column, nulls_first, nulls_last, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.util import ClauseAdapter

from heatup_daemon.db import dialect
from heatup_daemon.db.base import SqlStore
from heatup_daemon.db.models import (
    STANDING_RANK_SQL,
    ChannelMembersRow,
    ChannelRow,
    JoinRow,
    RunRow,
    SessionRow,
)
from heatup_daemon.db.registry import channel_columns, channel_view
from heatup_daemon.db.scheduling import session_counts
from heatup_daemon.db.sessions import record_columns, record_from, standing_sql
from heatup_daemon.enums import JoinStatus, RunStatus, SessionSort, Standing
from heatup_daemon.records import SessionCounts
from heatup_daemon.views import (
    EVERY_SESSION,
    ChannelLine,
    Overview,
    SessionLine,
    SessionPage,
    SessionSearch,
)

# A row's standing as its rank in ``Standing``'s order, in its index's own form.
STANDING_RANK: Final[ColumnElement[int]] = literal_column(STANDING_RANK_SQL)
# The column each sort key orders by, and where NULLs go: "last" either way, or "oldest"
# (a session that never ran ran longest ago: first ascending, last descending, so that
# one index serves both directions). Ties go by gateway id, in the same direction.
_ORDER: Final[Mapping[SessionSort, tuple[Any, str | None]]] = {
    SessionSort.GATEWAY_ID: (SessionRow.gateway_session_id, None),
    # Active first, then needing attention, disabled, invalid (``Standing``'s order).
    SessionSort.STANDING: (STANDING_RANK, None),
    SessionSort.SCHEDULE: (SessionRow.schedule, None),
    SessionSort.LAST_RUN: (SessionRow.last_run_at, "oldest"),
    SessionSort.NEXT_RUN: (SessionRow.next_run_at, "last"),
    SessionSort.PROBLEM: (
        func.coalesce(SessionRow.invalid_reason, SessionRow.state_reason),
        "last",
    ),
}
# SQLite's planner knows the standing index's size, not how few rows a standing other than
# active holds: it is told (PostgreSQL's statistics know).
_BY_STANDING: Final = ClauseAdapter(
    dialect.indexed_by(SessionRow.__table__, "ix_sessions_standing")  # type: ignore[arg-type]
)
# A filtered list counts its matches up to this many, and says "more" past them.
COUNT_CAP: Final = 10_000


def _matching(search: SessionSearch) -> list[ColumnElement[bool]]:
    """The session list's filters: a gateway id (the whole text as a number) or a label
    that starts with the text, in any case (through the labels' index); a standing."""
    conditions: list[ColumnElement[bool]] = []
    text = search.text.strip()
    if text:
        start, end = text.lower(), dialect.prefix_end(text.lower())
        label = dialect.folded(SessionRow.label) >= start
        if end is not None:
            label = label & (dialect.folded(SessionRow.label) < end)
        if text.isascii() and text.isdigit() and len(text) <= 19:
            conditions.append(or_(SessionRow.gateway_session_id == int(text), label))
        else:
            conditions.append(label)
    if search.standing is not None:
        conditions.append(STANDING_RANK == list(Standing).index(search.standing))
    return conditions


def _sort_keys(sort: SessionSort, descending: bool) -> list[Any]:
    column, nulls = _ORDER[sort]
    keys = [column.desc() if descending else column.asc()]
    if nulls == "last" or (nulls == "oldest" and descending):
        keys = [nulls_last(keys[0])]
    elif nulls == "oldest":
        keys = [nulls_first(keys[0])]
    tie = SessionRow.gateway_session_id
    return (
        [*keys, tie.desc() if descending else tie.asc()]
        if sort is not SessionSort.GATEWAY_ID
        else keys
    )


def page_rows(
    sort: SessionSort, descending: bool, search: SessionSearch, offset: int, limit: int
) -> Select[Any]:
    """The ids of a page of the session list, in its order."""
    query = select(SessionRow.id).where(*_matching(search)).order_by(*_sort_keys(sort, descending))
    return _hinted(query, search).offset(offset).limit(limit)


def _hinted(query: Select[Any], search: SessionSearch) -> Select[Any]:
    if search.standing is None or search.standing is Standing.ACTIVE:
        return query
    return _BY_STANDING.traverse(query)


class ConsoleSql(SqlStore):
    async def overview(
        self, now: datetime, counted: tuple[SessionCounts, datetime] | None = None
    ) -> Overview:
        usable = standing_sql() == Standing.ACTIVE.value

        def read(db: Connection) -> Overview:
            sessions, counted_at = counted or (session_counts(db, now), now)
            return Overview(
                sessions=sessions,
                counted_at=counted_at,
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
        keys = _sort_keys(sort, descending)
        matching = _matching(search)
        # The page's rows first (an index walk where the order has one), then their
        # columns and latest runs: nothing is read for the rows an offset skips.
        chosen = page_rows(sort, descending, search, offset, limit + 1).subquery()
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
            .join(chosen, chosen.c.id == SessionRow.id)
            .order_by(*keys)
        )
        capped = _hinted(select(SessionRow.id).where(*matching), search).limit(COUNT_CAP + 1)
        counted = select(func.count()).select_from(capped.subquery())

        def read(db: Connection) -> SessionPage:
            rows = db.execute(query).all()
            lines = tuple(
                SessionLine(
                    record_from(row),
                    None if row.last_status is None else RunStatus(row.last_status),
                    row.last_started_at,
                )
                for row in rows[:limit]
            )
            total = int(db.scalar(counted) or 0)
            return SessionPage(lines, min(total, COUNT_CAP), total > COUNT_CAP, len(rows) > limit)

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
                    select(ChannelMembersRow.channel_id, ChannelMembersRow.sessions)
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
