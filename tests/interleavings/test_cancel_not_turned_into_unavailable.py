"""Once a defect, kept as its test.

A run task cancelled by a stop out of time whose end write is given up (cut_short) ends
with DatabaseUnavailable, not cancelled: Runner._run's finally awaits the shielded end,
which now raises, replacing the CancelledError."""

from __future__ import annotations

import asyncio
from typing import Any

from heatup_daemon.errors import DatabaseUnavailable
from tests.unit.test_scheduler import Hanging, world


async def test_a_cancelled_run_task_ends_cancelled_even_when_its_end_is_given_up() -> None:
    gateway = Hanging()
    w = await world(gateway)
    await w.add_session(1)
    await w.scheduler.prepare()
    assert await w.scheduler.dispatch() == 1
    await asyncio.wait_for(gateway.entered.wait(), 2)
    held = w.in_flight.held_for(1)
    assert held is not None
    _, task = held

    async def out(*args: Any) -> Any:
        raise DatabaseUnavailable("a blip")

    w.store.finish_run = out  # type: ignore[method-assign]
    await asyncio.wait_for(w.in_flight.stop(0.05), 5)
    gateway.release.set()
    assert task.cancelled(), f"the cancelled run task ended with {task.exception()!r}"
