"""Once a defect, kept as its test.

Runs_in_flight (db/runs.py, and the in-memory twin) inner-joins sessions, so a running
row whose session an admin removed is invisible to Runner.orphans and to
Runner.end_unconfirmed. An API start whose commit answer was lost, whose session is removed
before the read-back, stays `running` for the node's whole life (its lease is renewed, the
reaper passes it over) and after its clean stop."""

from __future__ import annotations

import contextlib
from typing import Any

from heatup_daemon.api import starting
from heatup_daemon.enums import RunStatus
from heatup_daemon.errors import DatabaseUnavailable
from tests.interleavings import api_state
from tests.unit.test_scheduler import world


async def test_an_unconfirmed_start_of_a_removed_session_outlives_a_clean_stop() -> None:
    w = await world()
    await w.add_session(1)
    await w.add_session(2)
    store, node = w.store, w.nodes[0]
    start_run = store.start_run

    async def commit_then_drop(*args: Any) -> Any:
        await start_run(*args)  # committed
        store.unavailable = True  # the answer and the read-back fail
        raise DatabaseUnavailable("connection lost after COMMIT")

    store.start_run = commit_then_drop  # type: ignore[method-assign]
    with contextlib.suppress(DatabaseUnavailable):
        await starting.start(api_state(w, node), 1, None)
    store.start_run = start_run  # type: ignore[method-assign]
    store.unavailable = False
    assert node.in_flight.adopt_pending
    await store.remove_session(1)  # an admin removes the session meanwhile
    await w.tick()  # the next pass reads back (and clears adopt_pending)
    await w.scheduler.stop(5)
    await node.lease.release()
    running = [r for r in store.runs.values() if r.status is RunStatus.RUNNING]
    assert not running, f"clean stop left {[(r.id, r.gateway_session_id) for r in running]}"
