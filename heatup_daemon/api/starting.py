"""Starting a run now, as the API and the console do: the run the database wrote, launched
in this node's set of runs in flight, or the domain error that says why not (the routes
answer each with its HTTP status, ``routes.STATUS_OF``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from heatup_daemon.api.state import ApiState
from heatup_daemon.enums import Actor, Surface, Trigger
from heatup_daemon.errors import (
    AlreadyExists,
    DatabaseUnavailable,
    NotFound,
    Stopping,
)
from heatup_daemon.planner.model import Plan
from heatup_daemon.records import Run
from heatup_daemon.run.runner import RunResult
from heatup_daemon.validation import validate_session
from heatup_daemon.views import Author

log = logging.getLogger(__name__)

AUTO_REGISTER: Final = {"schedule": "1d", "jitter_seconds": 3600, "timezone": "UTC"}


@dataclass(frozen=True, slots=True)
class Started:
    """A run started now, and the task that carries it out."""

    run: Run
    task: asyncio.Task[RunResult]


async def start(
    state: ApiState,
    gateway_session_id: int,
    on_plan: Callable[[Run, Plan], Awaitable[None]] | None,
) -> Started:
    """Start a run of the session now (the API's and the console's). Raises ``NotFound``
    (an unregistered session, without ``api.auto_register``), ``SessionNotRunnable`` or
    ``AlreadyRunning`` (it may not run now), ``Stopping``, or ``DatabaseUnavailable`` (the
    database did not answer, or cannot tell yet whether the start landed)."""
    if not state.accepting:
        raise Stopping("heatup is stopping")
    async with state.in_flight.starting():  # a stop that begins meanwhile awaits this run
        try:
            async with state.in_flight.writing():  # no adoption between write and launch
                run = await _write_start(state, gateway_session_id)
                return Started(run, state.in_flight.launch(run, on_plan))
        except DatabaseUnavailable as exc:  # its commit may have landed unconfirmed
            return await _read_back(state, gateway_session_id, on_plan, exc)


async def _write_start(state: ApiState, gateway_session_id: int) -> Run:
    try:
        return await state.runner.start(gateway_session_id, Trigger.API)
    except NotFound:
        if not state.settings.api.auto_register:
            raise
    await _register(state, gateway_session_id)
    return await state.runner.start(gateway_session_id, Trigger.API)


async def _read_back(
    state: ApiState,
    gateway_session_id: int,
    on_plan: Callable[[Run, Plan], Awaitable[None]] | None,
    unavailable: DatabaseUnavailable,
) -> Started:
    """After a start the database may or may not have taken: the run it wrote, if it did
    (adopted and launched, so the client is answered with the run that exists);
    ``unavailable`` if it did not, or the database cannot tell yet (the dispatcher adopts
    it later)."""
    state.in_flight.adopt_pending = True
    try:
        adopted = await state.in_flight.adopt_orphans(
            {gateway_session_id: on_plan} if on_plan else {}
        )
    except DatabaseUnavailable:
        raise unavailable from None
    for run in adopted:
        if run.session.gateway_session_id == gateway_session_id:
            return Started(run, state.in_flight.task_of(run))
    # Another start's read-back may have adopted it meanwhile (it waited for this write).
    held = state.in_flight.held_for(gateway_session_id)
    if held is not None and held[0].trigger is Trigger.API:
        return Started(*held)
    raise unavailable


async def _register(state: ApiState, gateway_session_id: int) -> None:
    spec = validate_session(
        gateway_session_id=gateway_session_id, label="registered by the API", **AUTO_REGISTER
    )
    actor = Actor.NO_TOKEN if state.settings.api.token is None else Actor.TOKEN
    try:
        await state.registry.add_session(spec, by=Author(Surface.API, actor))
    except AlreadyExists:  # registered meanwhile
        return
    state.on_registered()
    log.info(
        "registered session %d on its first /warmup",
        gateway_session_id,
        extra={"session": gateway_session_id},
    )


def result_of(task: asyncio.Task[RunResult]) -> RunResult:
    """The task's result, or the error it failed with (``Stopping`` if it was cancelled)."""
    if task.cancelled():
        raise Stopping("the run was cancelled: heatup is stopping")
    error = task.exception()
    if error is not None:
        raise error
    return task.result()
