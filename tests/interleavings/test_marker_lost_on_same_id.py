"""Once a defect: lease.py acquire after a takeover marks the new node, then unmarks the
previous one. On SQLite, node ids are rowids and a deleted highest id is given again, so the new
node can have the previous node's id: mark() replaces the marker at the same path, then
unmark(previous) pops that *new* handle and unlinks the new marker. The live daemon has no
marker; its successor after a crash waits for the lease instead."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import delete

from heatup_daemon.config.sections import SchedulerSettings
from heatup_daemon.db.models import NodeRow
from heatup_daemon.lease import NodeLease
from heatup_daemon.succession import Markers
from heatup_daemon.timing.clock import SystemClock
from tests.conftest import migrated_repository


async def test_a_re_registration_under_the_same_id_drops_the_marker(tmp_path: Path) -> None:
    async with migrated_repository(f"sqlite+aiosqlite:///{tmp_path / 't.db'}") as repo:
        markers = Markers(tmp_path, "t.db.node-", "db")
        lease = NodeLease(repo, "host", SchedulerSettings(), clock=SystemClock())
        lease._markers = markers  # as held(markers=...) sets it
        await lease.acquire()
        # its own reaper judged it dead (a long stall past the lease) and dropped the row
        await repo._write(lambda db: db.execute(delete(NodeRow)))
        await lease.renew()  # 'taken over': registers again
        assert (tmp_path / f"t.db.node-{lease.node.id}.lock").exists()
        markers.unmark(lease.node)
