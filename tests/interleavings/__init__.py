"""Interleavings of heatup's own tasks that once broke a promise, each shown by the test that
walks it: two starts whose answers were lost, an adoption and an end, a stop and an
unconfirmed start, a cancelled reservation, a fence behind a queue of writes, a marker
re-registered under its own id, an import and another admin."""

from __future__ import annotations

from typing import Any

from heatup_daemon.api.state import ApiState


def api_state(world: Any, node: Any) -> ApiState:
    """What the API's routes share, for ``node`` of ``world`` (``tests.unit.test_scheduler``):
    starts through ``api.starting`` as a request makes them."""

    async def healthy() -> dict[str, str]:
        return {}

    return ApiState(
        settings=world.settings,
        registry=world.store,
        runner=node.runner,
        in_flight=node.in_flight,
        health=healthy,
        exposition=node.metrics.exposition,
        clock=world.clock,
    )


def fail_first(store: Any, name: str, times: int, error: Exception) -> list[int]:
    """Make ``store``'s method ``name`` raise ``error`` on its first ``times`` calls; the
    list returned empties as they are spent."""
    method, left = getattr(store, name), [1] * times

    async def failing(*args: Any) -> Any:
        if left:
            left.pop()
            raise error
        return await method(*args)

    setattr(store, name, failing)
    return left
