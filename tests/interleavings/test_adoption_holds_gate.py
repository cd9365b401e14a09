"""Once a defect: Runner.orphans ends a refused orphan through the DurableRecorder (finish_run
retried until the database answers) while adopt_orphans holds the gate closed and the dispatcher
holds its lock: during an outage every API start then hangs in writing() instead of answering
503, and Dispatcher.stop (a SIGTERM) waits for the database."""

from __future__ import annotations

import asyncio
from typing import Any

from heatup_daemon.api import starting
from heatup_daemon.enums import Trigger
from tests.interleavings import api_state
from tests.unit.test_scheduler import world


async def test_an_api_start_hangs_behind_an_adoption_in_an_outage() -> None:
    w = await world()
    await w.add_session(1)
    await w.add_session(2)
    store, node = w.store, w.nodes[0]
    orphan = await store.start_run(1, Trigger.API, w.clock.now(), node.lease.node)  # unconfirmed
    store.sessions[orphan.session.id]["enabled"] = False  # and now disabled: to be ended
    runs_in_flight = store.runs_in_flight

    async def read_then_outage(n: Any) -> Any:
        rows = await runs_in_flight(n)
        store.unavailable = True  # the database goes away right after the read
        return rows

    store.runs_in_flight = read_then_outage  # type: ignore[method-assign]
    node.in_flight.adopt_pending = True
    dispatching = asyncio.create_task(w.scheduler.dispatch())
    await asyncio.sleep(0.05)

    state = api_state(w, node)
    api = asyncio.create_task(starting.start(state, 2, None))
    stop = asyncio.create_task(w.scheduler.dispatcher.stop())
    done, _ = await asyncio.wait([api, stop], timeout=2.0)  # FakeClock: retries are instant
    store.unavailable = False
    await asyncio.gather(dispatching, api, stop, return_exceptions=True)
    await node.in_flight.wait_all()
    assert api in done  # an API start during an outage answers (503), never hangs
