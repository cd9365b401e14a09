"""What the HTTP routes share: the daemon's parts they use, who may call them, and the HTTP
status of each domain error they may end with."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Final

from fastapi import Depends, Path, Request

from heatup_daemon.api import auth
from heatup_daemon.config.settings import Settings
from heatup_daemon.errors import (
    AlreadyExists,
    AlreadyRunning,
    DatabaseUnavailable,
    HeatupError,
    InvalidValue,
    NotFound,
    SessionNotRunnable,
    Stopping,
)
from heatup_daemon.records import SessionCounts
from heatup_daemon.run.runner import InFlight, Runner
from heatup_daemon.stores import Console
from heatup_daemon.timing.clock import Clock


@dataclass
class ApiState:
    """What the routes need from the daemon."""

    settings: Settings
    registry: Console
    runner: Runner
    in_flight: InFlight
    health: Callable[[], Awaitable[dict[str, str]]]
    exposition: Callable[[], tuple[bytes, str]]
    clock: Clock  # the node's: what the API decides and shows is at its ``now``
    on_registered: Callable[[], None] = lambda: None
    # The registry's counts as the daemon last took them, and when (None: count them per
    # page).
    session_counts: Callable[[], tuple[SessionCounts, datetime] | None] = lambda: None
    accepting: bool = True
    form_key: auth.FormKey = field(default_factory=auth.FormKey)


def state_of(request: Request) -> ApiState:
    state: ApiState = request.app.state.heatup
    return state


State = Annotated[ApiState, Depends(state_of)]

# A session in a route's path: its gateway id, a positive 64-bit integer.
GatewayId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the session's gateway id")]
RunId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the run's id")]


def authorized(request: Request, state: State) -> auth.Access:
    """Refuse (401) a request to a guarded route without a token or the console cookie, and
    (403) a write with the read token."""
    return auth.require(request, state.settings.api)


# The domain errors a request may end with, and the HTTP status each stands for (the first
# that matches; any other ``HeatupError``: 503).
STATUS_OF: Final[tuple[tuple[type[HeatupError], int], ...]] = (
    (NotFound, 404),
    (InvalidValue, 422),
    (AlreadyExists, 409),
    (SessionNotRunnable, 409),
    (AlreadyRunning, 409),
    (Stopping, 503),
    (DatabaseUnavailable, 503),
)


def status_of(exc: HeatupError) -> int:
    return next((status for kind, status in STATUS_OF if isinstance(exc, kind)), 503)
