"""Once a defect, kept as its test.

A run whose end write the database refuses (DatabaseRefused: e.g. PostgreSQL's disk_full,
53100, which db/base.py does not count as transient) stays ``running``; its task is done and
its id leaves Runner._finishing. The next adoption (any outage after it sets adopt_pending,
and the dispatcher now adopts on every pass for 30 s) finds the row in runs_in_flight, neither
known nor finishing, and launches it again: a second task executes the same run id -- a new
plan, the gateway calls made again, and its action rows (unique per run and seq) upserted over
the first execution's."""

from __future__ import annotations

from typing import Any

from heatup_daemon.errors import DatabaseRefused
from tests.unit.test_scheduler import world


async def test_a_run_whose_end_was_refused_is_executed_again_by_an_adoption() -> None:
    w = await world()
    await w.add_session(1)
    await w.scheduler.prepare()
    store, in_flight = w.store, w.in_flight
    finish_run, refusals = store.finish_run, [1]

    async def disk_full_once(*args: Any) -> Any:
        if refusals:
            refusals.pop()
            raise DatabaseRefused("could not extend file: No space left on device")
        return await finish_run(*args)

    store.finish_run = disk_full_once  # type: ignore[method-assign]
    assert await w.tick() == 1  # the run made its calls; its end was refused
    [run] = store.runs.values()
    calls_once = len(w.gateway.calls)
    assert calls_once > 0 and not refusals
    in_flight.adopt_pending = True  # later, a reconcile pass meets an outage (_outage_began)
    await w.tick()  # the next dispatch pass adopts first
    calls = len(w.gateway.calls)
    assert len(store.runs) == 1, "a new slot was claimed"
    await w.scheduler.stop(1)
    await w.nodes[0].lease.release()
    assert calls == calls_once, (
        f"run {run.id} was executed twice: {calls_once} gateway calls, then {calls}"
    )
