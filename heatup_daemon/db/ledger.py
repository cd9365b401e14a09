"""The join ledger: the places plans reserve for joins, and how each is settled.

A place is reserved before its run carries the join out, in one transaction with the
channels' rows locked, so that two nodes never both take a channel's last place; a run
holds one place per channel (a retried reservation changes nothing). A place counts for the
account's ramp and the channel's pace while it is reserved or joined. When its join ends
it is ``joined`` if the join may have happened (``Outcome.may_have_happened``), else
``released``; when its run ends on any other path (finished, interrupted, reaped, failed,
its session removed) a place still reserved is settled by the same rule, from the join's
action row: an in-flight (``unknown``) row keeps it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import bindparam, case, exists, func, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import Update
from sqlalchemy.sql.elements import ColumnElement

from heatup_daemon.db.actions import action_upsert, action_values, member_insert
from heatup_daemon.db.base import SqlStore
from heatup_daemon.db.models import ActionRow, ChannelRow, JoinRow, RunRow, SessionRow
from heatup_daemon.enums import ActionKind, JoinRefusal, JoinStatus, Outcome, RunStatus
from heatup_daemon.ramp import PACE_WINDOW, RAMP_WINDOW
from heatup_daemon.records import ActionRecord, JoinLimits, Run
from heatup_daemon.warmth import reserve_places

HAPPENED: Final = tuple(outcome for outcome in Outcome if outcome.may_have_happened)

# A place counts (for the ramp and the pace) while it is reserved or joined.
HELD_SINCE: Final = (JoinRow.reserved_at >= bindparam("b_since")) & (
    JoinRow.status != JoinStatus.RELEASED
)
SESSION_JOINS: Final = (
    select(func.count())
    .select_from(JoinRow)
    .where(JoinRow.session_id == bindparam("b_session_id"), HELD_SINCE)
)
CHANNEL_JOINS: Final = (
    select(ChannelRow.username, func.count())
    .join(JoinRow, JoinRow.channel_id == ChannelRow.id)
    .where(HELD_SINCE)
    .group_by(ChannelRow.username)
)
_SESSION_ID: Final = select(SessionRow.id).where(SessionRow.id == bindparam("b_session_id"))
_CHANNEL_ID: Final = select(ChannelRow.id).where(ChannelRow.username == bindparam("b_username"))


def settle_reserved(runs: ColumnElement[bool]) -> Update:
    """Settle the places still reserved by the runs ``runs`` selects (a condition on
    ``channel_joins``): kept (``joined``) where the run's join of that channel may have
    happened, given back (``released``) everywhere else."""
    happened = exists().where(
        ActionRow.run_id == JoinRow.run_id,
        ActionRow.kind == ActionKind.JOIN_CHANNEL,
        ActionRow.outcome.in_(HAPPENED),
        ActionRow.channel == ChannelRow.username,
        ChannelRow.id == JoinRow.channel_id,
    )
    return (
        update(JoinRow)
        .where(JoinRow.status == JoinStatus.RESERVED, runs)
        .values(status=case((happened, JoinStatus.JOINED), else_=JoinStatus.RELEASED))
    )


# The places of runs that no longer run (a crash's, once the reaper ended them; or of runs
# the history no longer holds).
ENDED_RUNS: Final = or_(
    JoinRow.run_id.is_(None),
    JoinRow.run_id.in_(select(RunRow.id).where(RunRow.status != RunStatus.RUNNING)),
)


class LedgerSql(SqlStore):
    async def reserve_joins(
        self, run: Run, channels: Sequence[str], limits: JoinLimits, now: datetime
    ) -> dict[str, JoinRefusal | None]:
        if not channels:
            return {}
        query = (
            select(ChannelRow.id, ChannelRow.username)
            .where(ChannelRow.username.in_(sorted(set(channels))))
            .order_by(ChannelRow.id)  # one lock order for every node: no deadlock
        )
        query = self.locked(query, ChannelRow)
        # The session's row is kept from removal until the places are written.
        alive = self.locked(_SESSION_ID, SessionRow, key_share=True)
        session_id = run.session.id
        # This run's own places are left out of the counts and kept as they are, so that a
        # retry of a reservation whose commit did land decides the same and adds nothing.
        others = JoinRow.run_id.is_distinct_from(run.id)
        insert = self.insert(JoinRow).on_conflict_do_nothing(
            index_elements=[JoinRow.run_id, JoinRow.channel_id]
        )

        def place(channel_id: int) -> dict[str, Any]:
            return {
                "channel_id": channel_id,
                "session_id": session_id,
                "run_id": run.id,
                "reserved_at": now,
                "status": JoinStatus.RESERVED,
            }

        def reserve(db: Connection) -> dict[str, JoinRefusal | None]:
            # A session removed while its run was in flight has no ramp left to judge by.
            if db.scalar(alive, {"b_session_id": session_id}) is None:
                return dict.fromkeys(channels, JoinRefusal.SESSION_REMOVED)
            ids = {username: channel_id for channel_id, username in db.execute(query)}
            since = {"b_session_id": session_id, "b_since": now - RAMP_WINDOW}
            taken = int(db.scalar(SESSION_JOINS.where(others), since) or 0)
            hour = db.execute(
                select(JoinRow.channel_id, func.count())
                .where(JoinRow.channel_id.in_(list(ids.values())), HELD_SINCE, others)
                .group_by(JoinRow.channel_id),
                {"b_since": now - PACE_WINDOW},
            )
            counts = {channel_id: int(count) for channel_id, count in hour}
            verdicts, granted = reserve_places(channels, ids, taken, counts, limits)
            if granted:
                db.execute(insert, [place(channel_id) for channel_id in granted])
            return verdicts

        return await self._write(reserve)

    async def record_join(self, run: Run, record: ActionRecord) -> None:
        assert record.channel is not None
        action = action_values(run.id, record)
        upsert, member = action_upsert(self.dialect), member_insert(self.dialect)
        settle = (
            update(JoinRow)
            .where(
                JoinRow.run_id == run.id,
                JoinRow.channel_id == bindparam("b_channel_id"),
                JoinRow.status == JoinStatus.RESERVED,
            )
            .values(
                status=JoinStatus.JOINED
                if record.outcome.may_have_happened
                else JoinStatus.RELEASED
            )
        )
        joined = {"b_session_id": run.session.id, "b_joined_at": record.finished_at}

        def end(db: Connection) -> None:
            db.execute(upsert, action)
            channel_id = db.scalar(_CHANNEL_ID, {"b_username": record.channel})
            if channel_id is None:
                return  # removed from the pool meanwhile (its ledger rows went with it)
            db.execute(settle, {"b_channel_id": channel_id})
            if record.outcome is Outcome.OK:
                db.execute(member, {**joined, "b_channel_id": channel_id})

        await self._write(end)
