"""Once a defect, kept as its test.

A run task that is cancelled while its shielded end write is retrying (reconcile's
InFlight.cancel of a session an admin removed, hitting the run as it writes its end) is
done: it leaves InFlight._tasks, and its end write lives on only in Runner._finishing.
A stop during the outage then finds no task, so its loop never reaches the deadline branch,
cut_short is never set, and Runner.drain() waits for the DurableRecorder's retries forever
(README: "Through a database outage a stop still ends in that time")."""

from __future__ import annotations

import asyncio
from typing import Any

from heatup_daemon.errors import DatabaseUnavailable
from tests.unit.test_scheduler import world


async def test_a_stop_hangs_on_an_end_write_whose_task_reconcile_cancelled() -> None:
    w = await world()
    await w.add_session(1)
    await w.scheduler.prepare()
    store, in_flight, runner = w.store, w.in_flight, w.nodes[0].runner
    finish_run = store.finish_run

    async def lock_not_had_in_time(*args: Any) -> Any:  # the run's row is held meanwhile
        raise DatabaseUnavailable("canceling statement due to lock timeout")

    store.finish_run = lock_not_had_in_time  # type: ignore[method-assign]
    assert await w.scheduler.dispatch() == 1
    for _ in range(200):  # until the run is in its finally, its end retrying
        await asyncio.sleep(0)
        if runner.finishing:
            break
    assert runner.finishing and len(in_flight) == 1
    await store.remove_session(1)  # an admin removes the session
    await w.scheduler.reconcile()  # reads answer: it cancels the run, which is in its end
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(in_flight) == 0 and runner.finishing  # task gone, its end write lives on
    store.unavailable = True  # the database goes away; SIGTERM
    stop = asyncio.create_task(in_flight.stop(0.05))
    done, _ = await asyncio.wait([stop], timeout=2.0)
    hung = stop not in done
    where = (len(in_flight), sorted(runner.finishing))
    in_flight.hurry()  # let the test end
    store.finish_run = finish_run  # type: ignore[method-assign]
    store.unavailable = False
    await asyncio.wait_for(stop, 5)
    assert not hung, f"stop(0.05) still waiting after 2 s: (tasks, finishing) {where}"
