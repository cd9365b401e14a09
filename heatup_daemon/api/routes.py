"""The daemon's HTTP routes (DESIGN section 8), served inside its event loop.

Errors: 400 a host heatup does not serve, 401 no valid token, 403 a write with the read token
or from another site's page, 404 unknown session or run, 409 a run in flight or a session
that may not run now, 422 a malformed id, 503 not ready or stopping. Every route but
``/healthz`` and ``/metrics`` requires a token when ``api.token`` is configured
(``api.auth``), the OpenAPI document included.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict

from heatup_daemon import __version__, warmth
from heatup_daemon.api import auth, compat, console, manage, sign_in, starting
from heatup_daemon.api.state import ApiState, GatewayId, RunId, State, authorized, status_of
from heatup_daemon.errors import DatabaseUnavailable, HeatupError, NotFound
from heatup_daemon.planner.model import Plan
from heatup_daemon.records import Run, RunView
from heatup_daemon.run.runner import RunResult
from heatup_daemon.session import SessionRecord

log = logging.getLogger(__name__)

ENDPOINTS: Final = (
    "/healthz",
    "/readyz",
    "/metrics",
    "/health",
    "/warmup/{id}",
    "/warmup-sync/{id}",
    "/sessions",
    "/sessions/{id}",
    "/sessions/{id}/runs",
    "/runs/{id}",
    "/ui",
)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ServiceInfo(_Out):
    """The original service's ``GET /`` (service, status, version), and more."""

    service: str
    status: str
    version: str
    node: str
    endpoints: list[str]


class Health(_Out):
    status: str
    checks: dict[str, str]


class SeedHealth(Health):
    """The original service's ``GET /health`` (status, telegram_client, llm_agent), and
    heatup's checks."""

    telegram_client: str
    llm_agent: str


class SessionOut(_Out):
    """A registered session as its row holds it (a value heatup cannot use is shown as it
    is, and ``invalid_reason`` says why)."""

    gateway_session_id: int | str
    label: str | None
    enabled: bool | str
    schedule: str | int | None
    jitter_seconds: int | str | None
    timezone: str | int | None
    account_created_at: datetime | str | None
    state: str
    state_reason: str | None
    invalid_reason: str | None
    next_run_at: datetime | str | None
    last_run_at: datetime | str | None
    cooldown_until: datetime | str | None
    created_at: datetime | str | None


class SessionDetail(SessionOut):
    """A session and its warmth report."""

    warmth: warmth.Warmth


class Problem(_Out):
    detail: str


router = APIRouter()
guarded = APIRouter(dependencies=[Depends(authorized)])


def create_app(state: ApiState) -> FastAPI:
    errors: dict[int | str, dict[str, Any]] = {
        400: {"model": Problem},
        401: {"model": Problem},
        403: {"model": Problem},
        404: {"model": Problem},
        409: {"model": Problem},
        503: {"model": Problem},
    }
    app = FastAPI(
        title="heatup",
        version=__version__,
        responses=errors,
        openapi_url=None,  # served below, behind the token
        docs_url=None,
        redoc_url=None,
    )
    app.state.heatup = state
    app.include_router(router)
    app.include_router(console.router)
    app.include_router(sign_in.router)
    app.include_router(manage.router)  # before the pages: /ui/sessions/new is not an id
    app.include_router(console.pages)
    app.add_exception_handler(HeatupError, _domain_error)
    app.add_middleware(auth.Boundary, api=state.settings.api)
    return app


async def _domain_error(request: Request, exc: Exception) -> Response:
    """A domain error no route handled: its status; a database that could not answer the
    console is an HTML page."""
    assert isinstance(exc, HeatupError)
    if isinstance(exc, DatabaseUnavailable) and request.url.path.startswith(console.PREFIX):
        return console.unavailable(request, str(exc))
    return JSONResponse({"detail": str(exc)}, status_code=status_of(exc))


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: the event loop answers."""
    return Health(status="ok", checks={})


@router.get("/metrics", response_class=Response)
async def metrics_endpoint(state: State) -> Response:
    """Prometheus text exposition."""
    payload, content_type = state.exposition()
    return Response(payload, media_type=content_type)


@guarded.get("/openapi.json", include_in_schema=False)
async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@guarded.get("/docs", include_in_schema=False)
async def docs() -> HTMLResponse:
    return get_swagger_ui_html(openapi_url="/openapi.json", title="heatup API")


@guarded.get("/readyz", response_model=Health)
async def readyz(state: State) -> Response:
    """Readiness: database reachable and migrated, dispatcher running, gateway auth."""
    checks = await state.health()
    failing = [name for name, value in checks.items() if value != "ok"]
    body = Health(status="ready" if not failing else f"not ready: {failing[0]}", checks=checks)
    return JSONResponse(body.model_dump(), status_code=503 if failing else 200)


@guarded.get("/", response_model=ServiceInfo)
async def root(state: State) -> ServiceInfo:
    return ServiceInfo(
        service="heatup",
        status="stopping" if not state.accepting else "running",
        version=__version__,
        node=state.settings.node_name,
        endpoints=list(ENDPOINTS),
    )


@guarded.get("/health", response_model=SeedHealth)
async def health(state: State) -> SeedHealth:
    checks = await state.health()
    healthy = all(value == "ok" for value in checks.values())
    gateway = "ready" if checks["gateway_auth"] == "ok" else "unauthorized"
    llm = "ready" if state.settings.llm.configured else "not configured (built-in planner)"
    return SeedHealth(
        status="healthy" if healthy else "unhealthy",
        telegram_client=gateway,
        llm_agent=llm,
        checks=checks,
    )


@guarded.post("/warmup/{gateway_session_id}", status_code=202, response_model=compat.WarmupAnswer)
async def warmup(gateway_session_id: GatewayId, state: State) -> compat.WarmupAnswer:
    """Start a run now; answer as soon as its plan exists."""
    planned: asyncio.Future[tuple[Run, Plan]] = asyncio.get_running_loop().create_future()

    async def on_plan(run: Run, plan: Plan) -> None:
        if not planned.done():
            planned.set_result((run, plan))

    task = (await starting.start(state, gateway_session_id, on_plan)).task
    waiters: list[asyncio.Future[Any]] = [planned, task]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    if planned.done():
        run, plan = planned.result()
    else:  # ended before its plan was told here (adopted by another request's read-back)
        result = _result(task)
        run, plan = result.run, result.plan
    view = await state.registry.get_run(run.id)
    return compat.started(gateway_session_id, view, list(plan.actions))


@guarded.post("/warmup-sync/{gateway_session_id}", response_model=compat.WarmupAnswer)
async def warmup_sync(gateway_session_id: GatewayId, state: State) -> compat.WarmupAnswer:
    """Run now and answer with the whole run when it ends."""
    task = (await starting.start(state, gateway_session_id, None)).task
    await asyncio.wait([task])
    result = _result(task)
    view = await state.registry.get_run(result.run.id)
    return compat.completed(gateway_session_id, view, list(result.plan.actions))


def _result(task: asyncio.Task[RunResult]) -> RunResult:
    """The run's result; a run that failed of a defect is a 500 naming its kind."""
    try:
        return starting.result_of(task)
    except HeatupError:
        raise
    except Exception as exc:
        raise HTTPException(500, f"internal error: {type(exc).__name__}") from None


@guarded.get("/sessions", response_model=list[SessionOut])
async def sessions(state: State) -> list[SessionRecord]:
    return await state.registry.list_sessions()


@guarded.get("/sessions/{gateway_session_id}", response_model=SessionDetail)
async def session(gateway_session_id: GatewayId, state: State) -> SessionDetail:
    """The session's row and its warmth report."""
    try:
        record, report = await warmth.report(
            state.registry, gateway_session_id, state.settings.ramp.ramp, state.clock.now()
        )
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    return SessionDetail.model_validate({**record.public(), "warmth": report})


@guarded.get("/sessions/{gateway_session_id}/runs", response_model=list[RunView])
async def session_runs(
    gateway_session_id: GatewayId, state: State, limit: Annotated[int, Query(ge=1, le=500)] = 20
) -> list[RunView]:
    runs = await state.registry.history(gateway_session_id, limit)
    if not runs:
        await _session(state, gateway_session_id)  # 404 unless registered
    return [run.shown() for run in runs]


@guarded.get("/runs/{run_id}", response_model=RunView)
async def run(run_id: RunId, state: State) -> RunView:
    try:
        return (await state.registry.get_run(run_id)).shown()
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None


router.include_router(guarded)


async def _session(state: ApiState, gateway_session_id: int) -> SessionRecord:
    try:
        return await state.registry.get_session(gateway_session_id)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None
