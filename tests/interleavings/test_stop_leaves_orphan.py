"""Once a defect: a clean stop never reads back this node's unconfirmed rows: an API start whose
commit answer was lost, and whose read-back could not run yet, stays `running` after the stop
(InFlight.stop and the lease's release only know the tasks they launched)."""

from __future__ import annotations

import contextlib
from typing import Any

from heatup_daemon.api import starting
from heatup_daemon.enums import RunStatus
from heatup_daemon.errors import DatabaseUnavailable
from tests.interleavings import api_state
from tests.unit.test_scheduler import world


async def test_clean_stop_with_an_unconfirmed_start() -> None:
    w = await world()
    await w.add_session(1)
    store, node = w.store, w.nodes[0]
    start_run = store.start_run

    async def commit_then_drop(*args: Any) -> Any:
        await start_run(*args)  # committed
        store.unavailable = True  # the connection drops: the answer and the read-back fail
        raise DatabaseUnavailable("connection lost after COMMIT")

    store.start_run = commit_then_drop  # type: ignore[method-assign]

    state = api_state(w, node)
    with contextlib.suppress(DatabaseUnavailable):  # its answer lost, its read-back too
        await starting.start(state, 1, None)
    store.unavailable = False  # the database is back ...
    await w.scheduler.stop(5)  # ... and SIGTERM arrives before the next dispatch pass
    await node.lease.release()  # as lease.held() does at the end of a clean stop
    assert all(r.status is not RunStatus.RUNNING for r in store.runs.values())
