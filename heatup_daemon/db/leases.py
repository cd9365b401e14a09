"""The nodes' leases and the reaper, decided on the database's clock.

Each process that runs runs holds a ``nodes`` row and renews its ``lease_until`` (one write
per node per renewal, however many runs it has in flight). A run is alive while its node's
lease is: the reaper ends the runs of a node whose lease ran out (``interrupted``) and drops
that node's row, in one transaction, with the nodes it judges locked so that a renewal waits
for the verdict instead of racing it. On PostgreSQL every comparison uses the database's
``now()`` (``SqlStore.shared_now``), so a node whose clock is wrong neither reaps live runs nor
keeps dead ones.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, delete, exists, insert, or_, select, update
from sqlalchemy.engine import Connection

from heatup_daemon.db.base import SqlStore, rows_affected
from heatup_daemon.db.ledger import ENDED_RUNS, settle_reserved
from heatup_daemon.db.models import NodeRow, RunRow
from heatup_daemon.enums import RunStatus
from heatup_daemon.lease import ENDED_BY_SUCCESSOR, REAPED
from heatup_daemon.records import LeaseReading, Node


class LeaseSql(SqlStore):
    async def register_node(self, name: str, lease_s: float, now: datetime) -> LeaseReading:
        moment = self.shared_now(now)
        statement = (
            insert(NodeRow)
            .values(
                name=name,
                started_at=moment,
                renewed_at=moment,
                lease_until=self.shared_now(now, lease_s),
            )
            .returning(NodeRow.id, NodeRow.renewed_at)
        )
        row = await self._write(lambda db: db.execute(statement).one())
        return LeaseReading(Node(row.id, name), row.renewed_at)

    async def renew_node(self, node: Node, lease_s: float, now: datetime) -> LeaseReading | None:
        statement = (
            update(NodeRow)
            .where(NodeRow.id == node.id)
            .values(renewed_at=self.shared_now(now), lease_until=self.shared_now(now, lease_s))
            .returning(NodeRow.renewed_at)
        )
        renewed = await self._write(lambda db: db.scalar(statement))
        return None if renewed is None else LeaseReading(node, renewed)

    async def release_node(self, node: Node) -> None:
        statement = delete(NodeRow).where(NodeRow.id == node.id)
        await self._write(lambda db: db.execute(statement))

    async def end_dead_node(self, node: Node, now: datetime) -> int:
        moment = self.shared_now(now)
        name = self.locked(select(NodeRow.name).where(NodeRow.id == node.id), NodeRow)

        def end(db: Connection) -> int:
            if db.scalar(name) not in (None, node.name):
                return 0
            ended = db.execute(
                update(RunRow)
                .where(
                    RunRow.status == RunStatus.RUNNING,
                    RunRow.node_id == node.id,
                    RunRow.node == node.name,
                )
                .values(status=RunStatus.INTERRUPTED, finished_at=moment, error=ENDED_BY_SUCCESSOR)
            )
            db.execute(delete(NodeRow).where(NodeRow.id == node.id))
            db.execute(settle_reserved(ENDED_RUNS))
            return rows_affected(ended)

        return await self._write(end)

    async def reap_stale_runs(self, now: datetime, stale_s: float) -> int:
        moment = self.shared_now(now)
        expired = select(NodeRow.id).where(NodeRow.lease_until < moment)
        # A renewal of one of these waits for this verdict.
        expired = self.locked(expired, NodeRow, skip_taken=True)
        has_node_row = exists().where(NodeRow.id == RunRow.node_id)

        def reap(db: Connection) -> int:
            expired_ids = list(db.scalars(expired))
            dead = or_(
                RunRow.node_id.in_(expired_ids),
                and_(RunRow.node_id.is_not(None), ~has_node_row),
                # Written before leases existed: judged by the run's own heartbeat.
                and_(
                    RunRow.node_id.is_(None),
                    RunRow.heartbeat_at < self.shared_now(now, -stale_s),
                ),
            )
            reaped = db.execute(
                update(RunRow)
                .where(RunRow.status == RunStatus.RUNNING, dead)
                .values(status=RunStatus.INTERRUPTED, finished_at=moment, error=REAPED)
            )
            if expired_ids:
                db.execute(delete(NodeRow).where(NodeRow.id.in_(expired_ids)))
            db.execute(settle_reserved(ENDED_RUNS))  # their places: kept only if joined
            return rows_affected(reaped)

        return await self._write(reap)
