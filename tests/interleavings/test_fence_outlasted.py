"""Once a defect: the fence (db/runs.py start_call on SQLite) asks that the lease outlast
`moment + budget`, `moment` being when its savepoint runs in the writer thread; but the
executor's deadline (run/executor.py within_budget) starts when the answer reaches the task,
after the rest of the group's writes and the COMMIT. A call cleared near the end of the lease is
still in progress after the lease ran out by that gap (here an import-sized write queued behind
the fence in the same group)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import update

from heatup_daemon.config.sections import ExecutorSettings
from heatup_daemon.db.models import NodeRow
from heatup_daemon.enums import ActionKind, PlanSource, Trigger
from heatup_daemon.planner.model import Plan, step
from heatup_daemon.run.executor import Executor
from heatup_daemon.testing import RecordingObserver
from heatup_daemon.timing.clock import SystemClock
from tests.builders import session_spec
from tests.conftest import migrated_repository

BUDGET_S = 1.0


class HangingGateway:
    """A gateway whose call never answers (the executor's deadline ends it)."""

    def __init__(self) -> None:
        self.began: datetime | None = None
        self.ended: datetime | None = None
        self.auth_failing = False

    async def browse_dialogs(self, gateway_session_id: int, limit: int = 20) -> int:
        self.began = datetime.now(UTC)
        try:
            await asyncio.sleep(3600)
        finally:
            self.ended = datetime.now(UTC)
        return 0


async def test_a_cleared_call_outlasts_the_lease(tmp_path: Path) -> None:
    async with migrated_repository(f"sqlite+aiosqlite:///{tmp_path / 't.db'}") as repo:
        await repo.add_session(session_spec(1, "1h"))
        node = (await repo.register_node("n1", 120, datetime.now(UTC))).node
        run = await repo.start_run(1, Trigger.API, datetime.now(UTC), node)
        gateway = HangingGateway()
        executor = Executor(
            gateway,  # type: ignore[arg-type]
            repo,
            ExecutorSettings(time_scale=0),
            RecordingObserver(),
            clock=SystemClock(),
            call_budget_s=BUDGET_S,
            renew_lease=lambda: asyncio.sleep(0),
        )
        t0 = datetime.now(UTC)
        lease_until = t0 + timedelta(seconds=BUDGET_S + 0.35)  # the lease is running out
        await repo._write(lambda db: db.execute(update(NodeRow).values(lease_until=lease_until)))
        t0 = datetime.now(UTC)
        busy = asyncio.ensure_future(repo._write(lambda db: time.sleep(0.2)))  # a write runs
        await asyncio.sleep(0.01)
        plan = Plan((step(ActionKind.BROWSE_DIALOGS),), PlanSource.FALLBACK)
        executing = asyncio.create_task(executor.execute(run, plan))
        await asyncio.sleep(0.02)  # its fence is queued behind `busy` ...
        trailing = asyncio.ensure_future(repo._write(lambda db: time.sleep(0.5)))  # ... and
        # another write (e.g. an import's 2,000-row chunk) is queued after it: same group
        await executing
        await asyncio.gather(busy, trailing)
        await repo.get_run(run.id)
        # Either the fence refused the call, or the call ended while the lease held.
        assert gateway.ended is None or gateway.ended <= lease_until
