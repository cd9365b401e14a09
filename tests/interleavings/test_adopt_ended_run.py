"""Once a defect: run/runner.py Runner.orphans checks `row.id in self._finishing` *after*
awaiting runs_in_flight. A cancelled run (its task done, its end being written) is in neither
`known` nor, by the time the read returns, `_finishing` (the end committed meanwhile), yet the
read saw it `running`: the adoption launches a second task for a run that has ended."""

from __future__ import annotations

import asyncio
from typing import Any

from heatup_daemon.enums import RunStatus, Trigger
from tests.unit.test_scheduler import world


async def test_an_adoption_relaunches_a_run_whose_end_lands_during_its_read() -> None:
    w = await world()
    await w.add_session(1)
    store, node, in_flight = w.store, w.nodes[0], w.in_flight
    planning, planned = asyncio.Event(), asyncio.Event()
    finish_go, read_taken, read_go = asyncio.Event(), asyncio.Event(), asyncio.Event()
    calls: dict[str, int] = {"planning_facts": 0, "set_run_plan": 0}

    planning_facts, finish_run = store.planning_facts, store.finish_run
    runs_in_flight, set_run_plan = store.runs_in_flight, store.set_run_plan

    async def slow_planning(*a: Any) -> Any:
        calls["planning_facts"] += 1
        if calls["planning_facts"] == 1:
            planning.set()
            await planned.wait()  # the first task is cancelled here
        return await planning_facts(*a)

    async def slow_finish(*a: Any) -> Any:
        await finish_go.wait()  # the end's write takes a moment
        return await finish_run(*a)

    async def slow_read(node_: Any) -> Any:
        rows = await runs_in_flight(node_)  # the read's snapshot ...
        read_taken.set()
        await read_go.wait()  # ... comes back a moment later
        return rows

    async def counting_plan(*a: Any) -> Any:
        calls["set_run_plan"] += 1
        return await set_run_plan(*a)

    store.planning_facts = slow_planning  # type: ignore[method-assign]
    store.finish_run = slow_finish  # type: ignore[method-assign]
    store.runs_in_flight = slow_read  # type: ignore[method-assign]
    store.set_run_plan = counting_plan  # type: ignore[method-assign]

    run = await node.runner.start(1, Trigger.API)
    first = in_flight.launch(run)
    await planning.wait()
    in_flight.cancel(run.session.id, "an admin disabled the session")  # as reconcile does
    for _ in range(5):
        await asyncio.sleep(0)  # the task now awaits its end's write (shielded) ...
    in_flight.cancel(run.session.id, "still disabled")  # ... and the next reconcile cancels again
    await asyncio.gather(first, return_exceptions=True)
    assert first.cancelled() and run.id in node.runner.finishing  # end being written

    adopting = asyncio.create_task(in_flight.adopt_orphans())  # e.g. an API read-back
    await read_taken.wait()  # the read saw the run `running`
    finish_go.set()  # the end commits, `_finishing` forgets the run
    while run.id in node.runner.finishing:  # noqa: ASYNC110 - the end's own callback clears it
        await asyncio.sleep(0)
    read_go.set()
    adopted = await adopting
    await in_flight.wait_all()
    assert store.runs[run.id].status is RunStatus.INTERRUPTED
    assert adopted == []  # one task a run: an ended run is never launched again
