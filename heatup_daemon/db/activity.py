"""The history rolled up by hour: the runs that started in each hour (UTC) by status, and
their actions by outcome (``run_hours``, ``action_hours``). The console's charts and its
24-hour figures read these few hundred rows, never the millions of runs behind them. The
same pass counts each pool channel's members (``channel_members``) for the channel page.

``roll_up`` counts each hour from the history and replaces its rows, every status and
outcome included (zeros too): counting an hour again is always safe, so every node does it
without coordination, and a pass cut short by a crash or a stop leaves each hour either
as it was or counted anew. A pass counts the hours since the latest one counted, from
``REVISED`` before it (a run started then may have ended since, or an hour counted while
it was still going on), at most ``KEPT`` back; the first pass after an upgrade fills the
week from the history. Each hour is read in a transaction of its own and written in
another, so that a writer never waits on a count.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Final

from sqlalchemy import delete, func, select
from sqlalchemy.engine import Connection

from heatup_daemon.db import dialect
from heatup_daemon.db.base import SqlStore
from heatup_daemon.db.models import (
    ActionHourRow,
    ActionRow,
    ChannelMembersRow,
    ChannelRow,
    RunHourRow,
    RunRow,
    SessionChannelRow,
)
from heatup_daemon.enums import Outcome, RunStatus
from heatup_daemon.views import Activity

HOUR: Final = timedelta(hours=1)
# How long the hours are kept: the longest chart's week, and a day to spare.
KEPT: Final = timedelta(days=8)
# How far back a pass counts again before the latest hour it counted: longer than a run
# lasts (minutes: a plan's few actions and their pauses) and than the reaper takes to end
# one whose node died (``scheduler.stale_run_s``).
REVISED: Final = timedelta(hours=3)


def hour_of(moment: datetime) -> datetime:
    """The start of ``moment``'s hour, in UTC."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


class ActivitySql(SqlStore):
    async def roll_up(self, now: datetime) -> int:
        """Count the hours since the latest counted (as the module says); how many."""
        oldest, current = hour_of(now - KEPT), hour_of(now)
        latest = await self._read(lambda db: db.scalar(select(func.max(RunHourRow.hour))))
        first = oldest if latest is None else max(oldest, min(latest, current) - REVISED)
        hours = [first + step * HOUR for step in range(int((current - first) / HOUR) + 1)]
        for hour in hours:  # oldest first: a pass cut short goes on from there
            runs, actions = await self._read(partial(_count, hour=hour))
            await self._write(partial(self._store, hour=hour, runs=runs, actions=actions, now=now))
        await self._write(partial(_forget, before=oldest))
        members = await self._read(_members)
        await self._write(partial(self._store_members, members=members, now=now))
        return len(hours)

    def _store_members(self, db: Connection, *, members: Mapping[int, int], now: datetime) -> None:
        """Replace the counts: a channel that lost its last member is counted as 0, and a
        channel gone from the pool (its row deleted) is no longer counted."""
        channels = db.scalars(select(ChannelRow.id).order_by(ChannelRow.id)).all()
        if not channels:
            return
        rows = [
            {"channel_id": channel, "sessions": members.get(channel, 0), "counted_at": now}
            for channel in channels
        ]
        insert = dialect.insert(self.dialect, ChannelMembersRow).values(rows)
        db.execute(
            insert.on_conflict_do_update(
                index_elements=["channel_id"],
                set_={"sessions": insert.excluded.sessions, "counted_at": now},
            )
        )

    def _store(
        self,
        db: Connection,
        *,
        hour: datetime,
        runs: Mapping[str, int],
        actions: Mapping[str, int],
        now: datetime,
    ) -> None:
        for table, name, total, counts, values in (
            (RunHourRow, "status", "runs", runs, RunStatus),
            (ActionHourRow, "outcome", "actions", actions, Outcome),
        ):
            rows = [
                {"hour": hour, name: value.value, total: counts.get(value.value, 0),
                 "counted_at": now}
                for value in values  # in one order on every node: no two upserts deadlock
            ]  # fmt: skip
            insert = dialect.insert(self.dialect, table).values(rows)
            db.execute(
                insert.on_conflict_do_update(
                    index_elements=["hour", name],
                    set_={total: insert.excluded[total], "counted_at": insert.excluded.counted_at},
                )
            )

    async def activity(self, since: datetime) -> Activity:
        """The hours counted from ``since``'s on, as ``Activity`` holds them."""
        start = hour_of(since)

        def read(db: Connection) -> Activity:
            runs = _by_hour(
                db.execute(
                    select(RunHourRow.hour, RunHourRow.status, RunHourRow.runs).where(
                        RunHourRow.hour >= start
                    )
                )
            )
            actions = _by_hour(
                db.execute(
                    select(ActionHourRow.hour, ActionHourRow.outcome, ActionHourRow.actions).where(
                        ActionHourRow.hour >= start
                    )
                )
            )
            counted_at = db.scalar(
                select(func.max(RunHourRow.counted_at)).where(RunHourRow.hour >= start)
            )
            return Activity(runs, actions, counted_at)

        return await self._read(read)


def _count(db: Connection, *, hour: datetime) -> tuple[dict[str, int], dict[str, int]]:
    """The runs started in ``hour`` by status, and their actions by outcome."""
    started = (RunRow.started_at >= hour) & (RunRow.started_at < hour + HOUR)
    runs = db.execute(select(RunRow.status, func.count()).where(started).group_by(RunRow.status))
    actions = db.execute(
        select(ActionRow.outcome, func.count())
        .join(RunRow, RunRow.id == ActionRow.run_id)
        .where(started)
        .group_by(ActionRow.outcome)
    )
    return (
        {str(status): int(count) for status, count in runs},
        {str(outcome): int(count) for outcome, count in actions},
    )


def _members(db: Connection) -> dict[int, int]:
    counted = select(SessionChannelRow.channel_id, func.count()).group_by(
        SessionChannelRow.channel_id
    )
    return {int(channel): int(count) for channel, count in db.execute(counted)}


def _forget(db: Connection, *, before: datetime) -> None:
    db.execute(delete(RunHourRow).where(RunHourRow.hour < before))
    db.execute(delete(ActionHourRow).where(ActionHourRow.hour < before))


def _by_hour(rows: Any) -> dict[datetime, dict[str, int]]:
    hours: dict[datetime, dict[str, int]] = {}
    for hour, name, count in rows:
        hours.setdefault(hour, {})[str(name)] = int(count)
    return hours
