"""Once a defect: an API start's commit that became visible only after its read-back was
never adopted (the read cleared ``adopt_pending``): its row stayed running, and every later
slot of the session was skipped behind it. A read-back now settles the doubt only when it
was made ``UNCERTAIN_S`` after the lost answer. On PostgreSQL asyncpg's
command_timeout (or a cut connection) can fail the client while the server still flushes
the COMMIT."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from heatup_daemon.api import starting
from heatup_daemon.enums import RunStatus, Trigger
from heatup_daemon.errors import DatabaseUnavailable
from heatup_daemon.run.runner import UNCERTAIN_S
from tests.interleavings import api_state
from tests.unit.test_scheduler import world


async def test_a_start_committed_after_its_read_back_is_never_adopted() -> None:
    w = await world()
    await w.add_session(1)
    await w.scheduler.prepare()
    assert await w.tick() == 1  # the first slot ran
    store, node = w.store, w.nodes[0]
    start_run = store.start_run
    read_back_done = asyncio.Event()
    runs_in_flight = store.runs_in_flight

    async def reading(*args: Any) -> Any:
        rows = await runs_in_flight(*args)
        read_back_done.set()
        return rows

    landed: list[asyncio.Task[Any]] = []

    async def commit_outlives_its_answer(*args: Any) -> Any:
        async def commit() -> None:
            await read_back_done.wait()  # the server's COMMIT completes after the read-back
            await start_run(*args)

        landed.append(asyncio.create_task(commit()))
        raise DatabaseUnavailable("command timeout during COMMIT")

    store.start_run = commit_outlives_its_answer  # type: ignore[method-assign]
    store.runs_in_flight = reading  # type: ignore[method-assign]
    with pytest.raises(DatabaseUnavailable):  # 503: the client may retry, fine
        await starting.start(api_state(w, node), 1, None)
    await asyncio.gather(*landed)
    store.start_run = start_run  # type: ignore[method-assign]

    [orphan] = [r for r in store.runs.values() if r.trigger is Trigger.API]
    assert orphan.status is RunStatus.RUNNING and len(w.in_flight) == 0  # landed, not run
    assert node.in_flight.adopt_pending  # the read-back came too soon to settle it
    w.clock.advance(UNCERTAIN_S)
    await w.tick()  # a read-back made long enough after the lost answer adopts it
    await w.in_flight.wait_all()
    assert store.runs[orphan.id].status is not RunStatus.RUNNING, "the orphan never ran"
    assert not node.in_flight.adopt_pending
    w.clock.advance(3600)
    await w.tick()  # the next slot runs
    skipped = [r for r in store.runs.values() if r.status is RunStatus.SKIPPED]
    await w.scheduler.stop(1)
    await node.lease.release()
    assert not skipped, f"slot skipped behind an orphan nobody runs: {skipped[0].error}"
