"""Once a defect: api/starting.py _read_back answers 503 for a run that landed and runs, when a
concurrent adoption (another API start's read-back, or the dispatcher's) launched it first:
adopt_orphans returns only what *this* call adopted."""

from __future__ import annotations

import asyncio
from typing import Any

from heatup_daemon.api import starting
from heatup_daemon.enums import RunStatus
from heatup_daemon.errors import DatabaseUnavailable
from tests.interleavings import api_state
from tests.unit.test_scheduler import world


async def test_a_start_adopted_by_another_read_back_answers_unavailable() -> None:
    w = await world()
    for gid in (1, 2):
        await w.add_session(gid)
    store, node = w.store, w.nodes[0]
    start_run = store.start_run
    both_writing = asyncio.Barrier(2)
    release_b = asyncio.Event()

    async def commit_then_lose(gid: int, *args: Any) -> Any:
        await both_writing.wait()  # both starts are inside writing()
        if gid == 2:
            await release_b.wait()  # B's commit comes back a little later
        await start_run(gid, *args)  # the row is committed ...
        raise DatabaseUnavailable("connection lost after COMMIT")  # ... its answer lost

    store.start_run = commit_then_lose  # type: ignore[method-assign]

    state = api_state(w, node)
    a = asyncio.create_task(starting.start(state, 1, None))
    b = asyncio.create_task(starting.start(state, 2, None))
    for _ in range(20):  # A fails, reads back: its adoption waits for B's write to end
        await asyncio.sleep(0)
    release_b.set()
    results = await asyncio.gather(a, b, return_exceptions=True)
    await w.in_flight.wait_all()
    [run_b] = [r for r in store.runs.values() if r.gateway_session_id == 2]
    assert run_b.status is RunStatus.SUCCEEDED  # B's run landed and was run ...
    assert not isinstance(results[1], BaseException)  # ... yet B's client got 503
