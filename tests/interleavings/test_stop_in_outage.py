"""Once a defect, kept as its test.

InFlight.stop ends with Runner.drain(), which awaits every run's _finish; _finish writes
the end through the DurableRecorder, which retries until the database answers. A stop that
comes during a database outage (the runs it cancels cannot write their end) therefore never
returns while the outage lasts, and a second SIGTERM (hurry) cancels run tasks, not the
_finishing futures drain waits for. README: "A run whose end the database does not take at
the stop is left to the reaper"; invariant: a stop never hangs."""

from __future__ import annotations

import asyncio

from tests.unit.test_scheduler import Hanging, world


async def test_a_stop_during_an_outage_returns() -> None:
    gateway = Hanging()
    w = await world(gateway)
    await w.add_session(1)
    await w.scheduler.prepare()
    assert await w.scheduler.dispatch() == 1
    await asyncio.wait_for(gateway.entered.wait(), 2)  # the run is in its first gateway call
    w.store.unavailable = True  # the database goes away, and SIGTERM arrives
    stop = asyncio.create_task(w.in_flight.stop(0.05))
    done, _ = await asyncio.wait([stop], timeout=2.0)
    hung = stop not in done
    where = (len(w.in_flight), sorted(w.nodes[0].runner.finishing))
    w.in_flight.hurry()  # a second SIGTERM
    done, _ = await asyncio.wait([stop], timeout=1.0)
    still_hung = stop not in done
    after = (len(w.in_flight), sorted(w.nodes[0].runner.finishing))
    w.store.unavailable = False  # let the test end
    gateway.release.set()
    await asyncio.wait_for(stop, 5)
    # First in InFlight.stop's loop: the cancelled run retries its action row (carried,
    # durable) with no further cancel; after hurry() in Runner.drain: its end is retried.
    assert not hung and not still_hung, f"stop hung: (tasks, finishing) {where}, then {after}"
