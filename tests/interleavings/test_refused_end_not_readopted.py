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

from heatup_daemon.enums import RunStatus
from heatup_daemon.errors import DatabaseRefused
from tests.interleavings import fail_first
from tests.unit.test_scheduler import world


async def run_whose_end_is_refused(times: int) -> Any:
    w = await world()
    await w.add_session(1)
    await w.scheduler.prepare()
    store = w.store
    disk_full = DatabaseRefused("could not extend file: No space left on device")
    refusals = fail_first(store, "finish_run", times, disk_full)
    assert await w.tick() == 1  # the run made its calls; its end was refused
    return w, refusals


async def test_a_run_whose_end_was_refused_is_not_executed_again_by_an_adoption() -> None:
    w, refusals = await run_whose_end_is_refused(1)
    store, in_flight = w.store, w.in_flight
    [run] = store.runs.values()
    calls_once = len(w.gateway.calls)
    assert calls_once > 0 and not refusals
    in_flight.adopt_pending = True  # later, a reconcile pass meets an outage (_outage_began)
    await w.tick()  # the next dispatch pass adopts first: it writes the end again
    calls = len(w.gateway.calls)
    assert len(store.runs) == 1, "a new slot was claimed"
    assert store.runs[run.id].status is not RunStatus.RUNNING
    await w.scheduler.stop(1)
    await w.nodes[0].lease.release()
    assert calls == calls_once, (
        f"run {run.id} was executed twice: {calls_once} gateway calls, then {calls}"
    )


async def test_an_end_refused_again_fails_neither_the_adoption_nor_the_stop() -> None:
    w, refusals = await run_whose_end_is_refused(3)
    [run] = w.store.runs.values()
    w.in_flight.adopt_pending = True
    await w.tick()  # the adoption's second try is refused too: dispatch goes on
    await w.scheduler.stop(1)  # the stop's third try is refused: the stop ends all the same
    await w.nodes[0].lease.release()
    assert not refusals and w.store.runs[run.id].status is RunStatus.RUNNING  # the reaper's
