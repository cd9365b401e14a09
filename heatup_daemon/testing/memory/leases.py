"""The nodes' leases and the reaper (``db/leases.py``)."""

from __future__ import annotations

from datetime import datetime, timedelta

from heatup_daemon.enums import RunStatus
from heatup_daemon.lease import ENDED_BY_SUCCESSOR, REAPED
from heatup_daemon.records import LeaseReading, Node
from heatup_daemon.testing.memory.tables import MemoryTables


class MemoryLeases(MemoryTables):
    """The nodes' leases and the reaper (``db/leases.py``)."""

    async def register_node(self, name: str, lease_s: float, now: datetime) -> LeaseReading:
        self._check()
        node = Node(self._next_id(), name)
        self.leases[node.id] = now + timedelta(seconds=lease_s)
        self.node_names[node.id] = name
        return LeaseReading(node, now)

    async def renew_node(self, node: Node, lease_s: float, now: datetime) -> LeaseReading | None:
        self._check()
        if node.id not in self.leases:
            return None
        self.leases[node.id] = now + timedelta(seconds=lease_s)
        return LeaseReading(node, now)

    async def release_node(self, node: Node) -> None:
        self._check()
        self.leases.pop(node.id, None)

    async def end_dead_node(self, node: Node, now: datetime) -> int:
        self._check()
        if self.node_names.get(node.id, node.name) != node.name:
            return 0
        ended = 0
        for run in list(self.runs.values()):
            ours = self.run_nodes.get(run.id) == node.id and run.node == node.name
            if ours and run.status is RunStatus.RUNNING:
                ended_by = ENDED_BY_SUCCESSOR
                self._update(run.id, status=RunStatus.INTERRUPTED, finished_at=now, error=ended_by)
                ended += 1
        self.leases.pop(node.id, None)
        self._settle(self._of_ended_run)
        return ended

    async def reap_stale_runs(self, now: datetime, stale_s: float) -> int:
        self._check()
        expired = {node for node, until in self.leases.items() if until < now}
        reaped = 0
        for run in list(self.runs.values()):
            node = self.run_nodes.get(run.id)
            if run.status is RunStatus.RUNNING and (node in expired or node not in self.leases):
                self._update(run.id, status=RunStatus.INTERRUPTED, finished_at=now, error=REAPED)
                reaped += 1
        for node in expired:
            del self.leases[node]
        self._settle(self._of_ended_run)
        return reaped
