"""The daemon's HTTP surface (DESIGN section 8), served inside its event loop.

Every route but ``/healthz`` and ``/metrics`` requires ``api.token`` as a bearer token when
one is configured (and one must be, off loopback); the comparison is constant-time.
Errors: 404 unknown session or run, 409 a run in flight or a session that may not run now,
422 a malformed id, 503 not ready.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from heatup_daemon import __version__, metrics
from heatup_daemon.config import Settings
from heatup_daemon.db.registry import SessionView
from heatup_daemon.db.repository import Repository
from heatup_daemon.db.runs import RunView
from heatup_daemon.errors import (
    AlreadyExists,
    AlreadyRunning,
    HeatupError,
    NotFound,
    SessionNotRunnable,
)
from heatup_daemon.planner.model import Plan
from heatup_daemon.runner import Runner, RunResult
from heatup_daemon.scheduler import Scheduler
from heatup_daemon.validation import validate_session

log = logging.getLogger(__name__)

GatewayId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the session's gateway id")]
RunId = Annotated[int, Path(ge=1, le=2**63 - 1)]
AUTO_REGISTER: Final = {"schedule": "1d", "jitter_seconds": 3600, "timezone": "UTC"}


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class PlannedActionOut(_Out):
    action: str
    channel: str | None
    duration_seconds: float | None
    reason: str


class WarmupAccepted(_Out):
    run_id: int
    gateway_session_id: int
    status: str
    plan_source: str
    plan_model: str | None
    fallback_reason: str | None
    action_plan: list[PlannedActionOut]


class ServiceInfo(_Out):
    service: str
    version: str
    node: str
    endpoints: list[str]


class Health(_Out):
    status: str
    checks: dict[str, str]


class Problem(_Out):
    detail: str


@dataclass
class ApiState:
    settings: Settings
    repository: Repository
    runner: Runner
    scheduler: Scheduler
    gateway_auth_failing: Callable[[], bool]
    accepting: bool = True


def create_app(state: ApiState) -> FastAPI:
    errors: dict[int | str, dict[str, Any]] = {
        401: {"model": Problem},
        404: {"model": Problem},
        409: {"model": Problem},
        503: {"model": Problem},
    }
    app = FastAPI(title="heatup", version=__version__, responses=errors)
    app.state.heatup = state
    app.include_router(router)
    return app


def _state(request: Request) -> ApiState:
    state: ApiState = request.app.state.heatup
    return state


def _authorized(request: Request, state: Annotated[ApiState, Depends(_state)]) -> None:
    token = state.settings.api.token
    if token is None:
        return
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(credentials.encode(), expected):
        raise HTTPException(
            401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )


State = Annotated[ApiState, Depends(_state)]
router = APIRouter()
guarded = APIRouter(dependencies=[Depends(_authorized)])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: the event loop answers."""
    return Health(status="ok", checks={})


@router.get("/metrics", response_class=Response)
async def metrics_endpoint(state: State) -> Response:
    """Prometheus text exposition."""
    await _refresh_gauges(state)
    payload, content_type = metrics.exposition()
    return Response(payload, media_type=content_type)


@guarded.get("/readyz", response_model=Health)
async def readyz(state: State) -> Response:
    """Readiness: database reachable and migrated, dispatcher running, gateway auth."""
    checks = await _checks(state)
    failing = [name for name, value in checks.items() if value != "ok"]
    body = Health(status="ready" if not failing else f"not ready: {failing[0]}", checks=checks)
    return JSONResponse(body.model_dump(), status_code=503 if failing else 200)


@guarded.get("/", response_model=ServiceInfo)
async def root(state: State) -> ServiceInfo:
    return ServiceInfo(
        service="heatup",
        version=__version__,
        node=state.settings.node_name,
        endpoints=[
            "/healthz",
            "/readyz",
            "/metrics",
            "/health",
            "/warmup/{id}",
            "/warmup-sync/{id}",
            "/sessions",
            "/sessions/{id}/runs",
            "/runs/{id}",
        ],
    )


@guarded.get("/health", response_model=Health)
async def health(state: State) -> Health:
    checks = await _checks(state)
    healthy = all(value == "ok" for value in checks.values())
    return Health(status="healthy" if healthy else "unhealthy", checks=checks)


@guarded.post("/warmup/{gateway_session_id}", status_code=202, response_model=WarmupAccepted)
async def warmup(gateway_session_id: GatewayId, state: State) -> WarmupAccepted:
    """Start a run now; answer as soon as its plan exists."""
    planned: asyncio.Future[tuple[int, Plan]] = asyncio.get_running_loop().create_future()

    async def on_plan(run_id: int, plan: Plan) -> None:
        if not planned.done():
            planned.set_result((run_id, plan))

    task = await _start(state, gateway_session_id, on_plan)
    waiters: list[asyncio.Future[Any]] = [planned, task]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    if not planned.done():
        _raise_for(task)
    run_id, plan = planned.result()
    return WarmupAccepted(
        run_id=run_id,
        gateway_session_id=gateway_session_id,
        status="running",
        plan_source=plan.source,
        plan_model=plan.model,
        fallback_reason=plan.fallback_reason,
        action_plan=[PlannedActionOut(**action.as_json()) for action in plan.actions],
    )


@guarded.post("/warmup-sync/{gateway_session_id}", response_model=RunView)
async def warmup_sync(gateway_session_id: GatewayId, state: State) -> RunView:
    """Run now and answer with the whole run when it ends."""
    task = await _start(state, gateway_session_id, None)
    await asyncio.wait([task])
    result = _raise_for(task)
    return await state.repository.get_run(result.run_id)


@guarded.get("/sessions", response_model=list[SessionView])
async def sessions(state: State) -> list[SessionView]:
    return await state.repository.list_sessions()


@guarded.get("/sessions/{gateway_session_id}/runs", response_model=list[RunView])
async def session_runs(
    gateway_session_id: GatewayId, state: State, limit: Annotated[int, Query(ge=1, le=500)] = 20
) -> list[RunView]:
    runs = await state.repository.history(gateway_session_id, limit)
    if not runs:
        await _session(state, gateway_session_id)  # 404 unless registered
    return runs


@guarded.get("/runs/{run_id}", response_model=RunView)
async def run(run_id: RunId, state: State) -> RunView:
    try:
        return await state.repository.get_run(run_id)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None


router.include_router(guarded)


async def _session(state: ApiState, gateway_session_id: int) -> SessionView:
    try:
        return await state.repository.get_session(gateway_session_id)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None


async def _start(
    state: ApiState,
    gateway_session_id: int,
    on_plan: Callable[[int, Plan], Awaitable[None]] | None,
) -> asyncio.Task[RunResult]:
    if not state.accepting:
        raise HTTPException(503, "heatup is stopping")
    try:
        view = await state.repository.get_session(gateway_session_id)
    except NotFound as exc:
        if not state.settings.api.auto_register:
            raise HTTPException(404, str(exc)) from None
        view = await _register(state, gateway_session_id)
    if view.id in state.scheduler.in_flight:
        raise HTTPException(409, f"session {gateway_session_id} has a run in flight")
    task = asyncio.create_task(
        state.runner.run(view, "api", on_plan=on_plan, stop=state.scheduler.stop_runs)
    )
    state.scheduler.adopt(view.id, task)
    return task


async def _register(state: ApiState, gateway_session_id: int) -> SessionView:
    spec = validate_session(
        gateway_session_id=gateway_session_id, label="registered by the API", **AUTO_REGISTER
    )
    try:
        view = await state.repository.add_session(spec)
    except AlreadyExists:  # registered meanwhile
        return await state.repository.get_session(gateway_session_id)
    log.info(
        "registered session %d on its first /warmup",
        gateway_session_id,
        extra={"session": gateway_session_id},
    )
    return view


def _raise_for(task: asyncio.Task[RunResult]) -> RunResult:
    """The task's result, or the HTTP error its failure stands for."""
    error = task.exception()
    if error is None:
        return task.result()
    if isinstance(error, SessionNotRunnable | AlreadyRunning):
        raise HTTPException(409, str(error))
    if isinstance(error, HeatupError):
        raise HTTPException(503, str(error))
    raise HTTPException(500, f"internal error: {type(error).__name__}")


async def _checks(state: ApiState) -> dict[str, str]:
    checks = {"database": "ok", "dispatcher": "ok", "gateway_auth": "ok"}
    try:
        await state.repository.ensure_ready()
    except HeatupError as exc:
        checks["database"] = str(exc)
    if not state.scheduler.running:
        checks["dispatcher"] = "not running"
    if state.gateway_auth_failing():
        checks["gateway_auth"] = "the gateway refuses heatup's token"
    metrics.READY.set(all(value == "ok" for value in checks.values()))
    return checks


async def _refresh_gauges(state: ApiState) -> None:
    metrics.RUNS_IN_FLIGHT.set(len(state.scheduler.in_flight))
    metrics.GATEWAY_AUTH_FAILING.set(state.gateway_auth_failing())
    try:
        counts = await state.repository.session_counts()
    except Exception:  # the scrape still answers; readiness reports the database
        log.warning("cannot count sessions for /metrics", exc_info=True)
        return
    for name in ("active", "needs_attention", "disabled", "invalid"):
        metrics.SESSIONS.labels(name).set(counts.get(name, 0))
    metrics.INVALID_ROWS.labels("sessions").set(counts["invalid"])
    metrics.INVALID_ROWS.labels("channels").set(counts.get("invalid_channels", 0))
