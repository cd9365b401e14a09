"""Starting a run now, as the API and the console do: the run the database wrote, launched
in this node's set of runs in flight, or the HTTP error that says why not."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Final

from fastapi import HTTPException

from heatup_daemon.api.state import ApiState
from heatup_daemon.enums import Actor, Surface, Trigger
from heatup_daemon.errors import (
    AlreadyExists,
    AlreadyRunning,
    DatabaseUnavailable,
    HeatupError,
    NotFound,
    SessionNotRunnable,
    Stopping,
)
from heatup_daemon.planner.model import Plan
from heatup_daemon.records import Author, Run
from heatup_daemon.run.runner import RunResult
from heatup_daemon.validation import validate_session

log = logging.getLogger(__name__)

AUTO_REGISTER: Final = {"schedule": "1d", "jitter_seconds": 3600, "timezone": "UTC"}


async def start(
    state: ApiState,
    gateway_session_id: int,
    on_plan: Callable[[Run, Plan], Awaitable[None]] | None,
) -> asyncio.Task[RunResult]:
    """Start a run of the session now (the API's and the console's); its task. 409 if the
    session may not run now, 503 while stopping."""
    if not state.accepting:
        raise HTTPException(503, "heatup is stopping")
    try:
        async with state.in_flight.starting():  # a stop that begins meanwhile awaits this run
            try:
                async with state.in_flight.writing():  # no adoption between write and launch
                    run = await _write_start(state, gateway_session_id)
                    return state.in_flight.launch(run, on_plan)
            except DatabaseUnavailable as exc:  # its commit may have landed unconfirmed
                return await _read_back(state, gateway_session_id, on_plan, exc)
    except (SessionNotRunnable, AlreadyRunning) as exc:
        raise HTTPException(409, str(exc)) from None
    except Stopping as exc:
        raise HTTPException(503, str(exc)) from None


async def _write_start(state: ApiState, gateway_session_id: int) -> Run:
    try:
        return await state.runner.start(gateway_session_id, Trigger.API)
    except NotFound as exc:
        if not state.settings.api.auto_register:
            raise HTTPException(404, str(exc)) from None
    await _register(state, gateway_session_id)
    return await state.runner.start(gateway_session_id, Trigger.API)


async def _read_back(
    state: ApiState,
    gateway_session_id: int,
    on_plan: Callable[[Run, Plan], Awaitable[None]] | None,
    unavailable: DatabaseUnavailable,
) -> asyncio.Task[RunResult]:
    """After a start the database may or may not have taken: the run it wrote, if it did
    (adopted and launched, so the client is answered with the run that exists); 503 if
    it did not, or the database cannot tell yet (the dispatcher adopts it later)."""
    state.in_flight.adopt_pending = True
    try:
        adopted = await state.in_flight.adopt_orphans(
            {gateway_session_id: on_plan} if on_plan else {}
        )
    except DatabaseUnavailable:
        raise HTTPException(503, str(unavailable)) from None
    for run in adopted:
        if run.session.gateway_session_id == gateway_session_id:
            return state.in_flight.task_of(run)
    raise HTTPException(503, str(unavailable))


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


def raise_for(task: asyncio.Task[RunResult]) -> RunResult:
    """The task's result, or the HTTP error its failure stands for."""
    if task.cancelled():
        raise HTTPException(503, "the run was cancelled: heatup is stopping")
    error = task.exception()
    if error is None:
        return task.result()
    if isinstance(error, HeatupError):
        raise HTTPException(503, str(error))
    raise HTTPException(500, f"internal error: {type(error).__name__}")
