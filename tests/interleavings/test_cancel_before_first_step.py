"""Once a defect, kept as its test.

InFlight.launch creates the run's task; a cancel that reaches it before its first step
(hurry() on a second SIGTERM, or reconcile's InFlight.cancel, run in the same loop iteration
as the dispatcher's launch) throws CancelledError into a coroutine that never started:
Runner._run's try/finally never runs, so the run's end is never written. Nothing adopts it
(adopt_pending is False), and InFlight.stop skips end_unconfirmed: a clean stop leaves the
row running, with the database answering."""

from __future__ import annotations

import asyncio

from heatup_daemon.enums import RunStatus
from tests.unit.test_scheduler import world


async def test_a_run_cancelled_before_its_first_step_is_left_running_after_a_clean_stop() -> None:
    w = await world()
    await w.add_session(1)
    await w.scheduler.prepare()
    store, in_flight = w.store, w.in_flight
    claim_due = store.claim_due

    async def claim_then_hurry(*args, **kwargs):  # type: ignore[no-untyped-def]
        claim = await claim_due(*args, **kwargs)
        # The second SIGTERM's callback is queued right behind the dispatcher's step, so it
        # runs before the tasks that step launches take their first step.
        asyncio.get_running_loop().call_soon(in_flight.hurry)
        return claim

    store.claim_due = claim_then_hurry  # type: ignore[method-assign]
    assert await w.scheduler.dispatch() == 1
    await in_flight.stop(0)  # the clean stop that follows; the database answers throughout
    [run] = store.runs.values()
    assert run.status is not RunStatus.RUNNING, "a clean stop left a running row"
