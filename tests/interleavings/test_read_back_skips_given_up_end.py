"""Once a defect, kept as its test.

A stop out of time cancels run R (its gateway call hangs); R's end write meets a database
blip and, cut_short being set, is given up: R's row stays running, R's task is done and
R is no longer in Runner._finishing. An API start that was in progress (the stop waits for
it) loses its answer and reads back: adopt_orphans finds R in runs_in_flight, neither known
nor finishing, and launches it again -- a second task executes run R (it plans again,
reserves, and overwrites R's stored plan) while the node is stopping."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from heatup_daemon.api import starting
from heatup_daemon.errors import DatabaseUnavailable
from tests.interleavings import api_state, fail_first
from tests.unit.test_scheduler import Hanging, world


async def test_a_read_back_at_a_stop_adopts_a_run_whose_end_was_given_up() -> None:
    gateway = Hanging()
    w = await world(gateway)
    await w.add_session(1)
    await w.scheduler.prepare()
    store, node, in_flight = w.store, w.nodes[0], w.in_flight
    planned: Counter[int] = Counter()
    planning_facts = store.planning_facts

    async def counting(session: Any, now: Any) -> Any:
        planned[session.gateway_session_id] += 1
        return await planning_facts(session, now)

    store.planning_facts = counting  # type: ignore[method-assign]
    assert await w.scheduler.dispatch() == 1
    await asyncio.wait_for(gateway.entered.wait(), 2)  # run R is in a gateway call
    await w.add_session(2)
    [run] = in_flight.run_ids

    go, entered = asyncio.Event(), asyncio.Event()

    async def start_run_answer_lost(*args: Any) -> Any:
        entered.set()
        await go.wait()
        raise DatabaseUnavailable("connection reset during the start")

    store.start_run = start_run_answer_lost  # type: ignore[method-assign]
    api = asyncio.create_task(starting.start(api_state(w, node), 2, None))
    await asyncio.wait_for(entered.wait(), 2)

    blips = fail_first(store, "finish_run", 1, DatabaseUnavailable("a blip"))
    stop = asyncio.create_task(in_flight.stop(0.05))
    for _ in range(200):  # until R's task has ended (its end given up)
        await asyncio.sleep(0.01)
        if not in_flight.run_ids and not node.runner.finishing:
            break
    assert not in_flight.run_ids and not blips
    go.set()  # the start's answer is lost: it reads back
    with pytest.raises(DatabaseUnavailable):
        await asyncio.wait_for(api, 2)
    await asyncio.wait_for(stop, 5)
    gateway.release.set()
    assert planned[1] == 1, (
        f"run {run} was planned by {planned[1]} tasks; its end: {store.runs[run].error}"
    )
