"""The web console's pages for operators, rendered on the server (Jinja2).

- ``/ui``: the sessions at a glance, its runs and actions by the hour over a day and a week
  (``charts``), and the session list, sortable by any column, searched by gateway id or a
  label's start and filtered by state;
- ``/ui/sessions/{gateway id}``: a session's warmth, a timeline of its runs, each with its
  actions, and its audit;
- ``/ui/runs/{id}``: one run, re-rendered while it runs;
- ``/ui/activity``: every node's runs, filtered, a page at a time, and their export;
- ``/ui/channels``: the channel pool, its flags, and how it is used against its pace.

A sign-in that acts also sees the forms that change things (``manage``). The pages follow
the API's rules (``auth``): open on loopback with no token; with one, a login form exchanges
a token for the console's cookie (``sign_in``). No script runs on any page and nothing is
loaded from elsewhere: the stylesheet is served from the package, and the
Content-Security-Policy allows nothing else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from importlib.resources import files
from typing import Annotated, Any, Final, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, StreamingResponse
from jinja2 import Environment, PackageLoader, StrictUndefined

from heatup_daemon import __version__, transfer, warmth
from heatup_daemon.api import auth, charts
from heatup_daemon.api.state import ApiState, GatewayId, RunId, State, state_of
from heatup_daemon.enums import Format, RunStatus, SessionSort, SessionState, Standing, Trigger
from heatup_daemon.errors import InvalidValue, NotFound
from heatup_daemon.records import IN_FLIGHT
from heatup_daemon.validation import parse_gateway_id
from heatup_daemon.views import RunFilter, SessionSearch

E = TypeVar("E", bound=StrEnum)
PREFIX: Final = "/ui"
PAGE_SIZE: Final = 100
TIMELINE_RUNS: Final = 60
AUDIT_ENTRIES: Final = 50
RUN_REFRESH_S: Final = 2
WEEK: Final = timedelta(days=7)
HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
STYLESHEET: Final = files("heatup_daemon.api").joinpath("static/console.css").read_bytes()
# The columns of the session list, in order: (sort key, heading).
COLUMNS: Final = (
    (SessionSort.GATEWAY_ID, "session"),
    (SessionSort.STANDING, "standing"),
    (SessionSort.SCHEDULE, "schedule"),
    (SessionSort.LAST_RUN, "last run"),
    (SessionSort.NEXT_RUN, "next run"),
    (SessionSort.PROBLEM, "reason"),
)


def _when(value: object) -> str:
    if not isinstance(value, datetime):
        return "-" if value is None else str(value)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _relative(value: object, now: datetime) -> str:
    """``in 4 min``, ``2 h ago``: how far ``value`` is from ``now``."""
    if not isinstance(value, datetime):
        return ""
    seconds = (value - now).total_seconds()
    size = abs(seconds)
    if size < 60:
        text = f"{size:.0f} s"
    elif size < 3600:
        text = f"{size / 60:.0f} min"
    elif size < 172800:
        text = f"{size / 3600:.0f} h"
    else:
        text = f"{size / 86400:.0f} d"
    return f"in {text}" if seconds >= 0 else f"{text} ago"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("heatup_daemon.api", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(when=_when, seconds=_seconds)
    environment.globals.update(
        version=__version__,
        relative=_relative,
        in_flight_code=IN_FLIGHT,
        run_statuses=tuple(RunStatus),
        session_states=SessionState,
    )
    environment.tests.update(running=lambda status: status is RunStatus.RUNNING)
    return environment


TEMPLATES: Final = _environment()


def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    state = state_of(request)
    api = state.settings.api
    access = auth.cookie_access(request, api) if api.token is not None else auth.Access.ACT
    html = TEMPLATES.get_template(name).render(
        signed_in=api.token is not None and access is not None,
        can_act=access is auth.Access.ACT,
        form_token=auth.form_token(request, api, state.form_key),
        now=state.clock.now(),
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def unavailable(request: Request, detail: str) -> HTMLResponse:
    return page(request, "error.html", 503, title="database unavailable", detail=detail)


def require_sign_in(request: Request, state: State) -> None:
    """Send a browser without the token or the cookie to the login form."""
    if auth.access_of(request, state.settings.api) is None:
        target = urlencode({"next": request.url.path})
        raise HTTPException(303, "sign in first", headers={"Location": f"/ui/login?{target}"})


router = APIRouter(prefix=PREFIX, include_in_schema=False)
pages = APIRouter(prefix=PREFIX, include_in_schema=False, dependencies=[Depends(require_sign_in)])


@router.get("/static/console.css")
async def stylesheet() -> Response:
    return Response(STYLESHEET, media_type="text/css", headers={"Cache-Control": "max-age=3600"})


@pages.get("")
async def overview(
    request: Request,
    state: State,
    sort: SessionSort = SessionSort.NEXT_RUN,
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "asc",
    number: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
    q: Annotated[str, Query(max_length=200)] = "",
    standing_text: Annotated[str, Query(alias="standing", max_length=40)] = "",
) -> Response:
    """The sessions at a glance and a page of the session list, searched by gateway id or
    label and filtered by state."""
    try:
        standing = _choice(Standing, "standing", standing_text)
    except InvalidValue as exc:
        return page(request, "error.html", 422, title="bad filter", detail=str(exc))
    now = state.clock.now()
    overview = await state.registry.overview(now, state.session_counts())
    history = await state.registry.activity(now - WEEK)
    search = SessionSearch(q, standing)
    listing = await state.registry.session_page(
        sort, order == "desc", (number - 1) * PAGE_SIZE, PAGE_SIZE, search
    )
    # The whole registry is counted already; a search's matches are counted to a cap.
    searched = bool(search.text.strip()) or standing is not None
    total = listing.total if searched else overview.sessions.sessions
    exact = not (searched and listing.more_than_total)
    last_page = max(1, -(-total // PAGE_SIZE)) if exact else None
    return page(
        request,
        "overview.html",
        title="sessions",
        overview=overview,
        **charts.overview_figures(history, now),
        lines=listing.lines,
        total=total,
        exact=exact,
        more=listing.more,
        columns=COLUMNS,
        sort=sort,
        order=order,
        number=number,
        last_page=last_page,
        q=q,
        standing=standing,
        standings=list(Standing),
        link=lambda **changes: _link(request, changes),
    )


def _link(request: Request, changes: Mapping[str, object], path: str = "") -> str:
    """This page's address with ``changes`` to its query (None drops a parameter)."""
    query = {**request.query_params, **{name: str(value) for name, value in changes.items()}}
    kept = {name: value for name, value in query.items() if value != "None"}
    return f"{PREFIX}{path}?{urlencode(kept)}"


@pages.get("/sessions/{gateway_session_id}")
async def session(request: Request, gateway_session_id: GatewayId, state: State) -> Response:
    """A session's warmth, its forms, the timeline of its runs and its audit."""
    return await session_page(request, state, gateway_session_id)


async def session_page(
    request: Request,
    state: ApiState,
    gateway_session_id: int,
    problem: str | None = None,
    status: int = 200,
) -> Response:
    """The session's page; after a refused edit, with ``problem`` above its form."""
    try:
        record, report = await warmth.report(
            state.registry, gateway_session_id, state.settings.ramp.ramp, state.clock.now()
        )
    except NotFound as exc:
        return page(request, "error.html", 404, title="no such session", detail=str(exc))
    runs = [run.shown() for run in await state.registry.history(gateway_session_id, TIMELINE_RUNS)]
    audit = await state.registry.audit_of(gateway_session_id, AUDIT_ENTRIES)
    return page(
        request,
        "session.html",
        status,
        title=f"session {gateway_session_id}",
        record=record,
        warmth=report,
        runs=runs,
        timeline=list(reversed(runs)),
        length=_length,
        audit=audit,
        problem=problem,
    )


@pages.get("/activity")
async def activity(
    request: Request,
    state: State,
    status_text: Annotated[str, Query(alias="status", max_length=40)] = "",
    trigger_text: Annotated[str, Query(alias="trigger", max_length=40)] = "",
    node: Annotated[str, Query(max_length=128)] = "",
    session_text: Annotated[str, Query(alias="session", max_length=40)] = "",
    since: Annotated[str, Query(max_length=40)] = "",
    until: Annotated[str, Query(max_length=40)] = "",
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    format: Format | None = None,
) -> Response:
    """Every node's runs, newest first, filtered; a page at a time, or (``format``) the
    whole filtered set as CSV or JSON Lines. An empty filter matches every run."""
    try:
        status = _choice(RunStatus, "status", status_text)
        trigger = _choice(Trigger, "trigger", trigger_text)
        session = parse_gateway_id(session_text) if session_text.strip() else None
        moments = _moment("since", since), _moment("until", until)
        matching = RunFilter(status, trigger, node.strip() or None, session, *moments)
    except InvalidValue as exc:
        return page(request, "error.html", 422, title="bad filter", detail=str(exc))
    if format is not None:
        return activity_export(state, matching, format)
    runs = await state.registry.runs_page(matching, before, PAGE_SIZE + 1)
    shown = [run.shown() for run in runs[:PAGE_SIZE]]
    return page(
        request,
        "activity.html",
        title="activity",
        runs=shown,
        older=shown[-1].id if len(runs) > PAGE_SIZE else None,
        filters={
            "status": status,
            "trigger": trigger,
            "node": node or "",
            "session": session_text.strip(),
            "since": since,
            "until": until,
        },
        statuses=list(RunStatus),
        triggers=list(Trigger),
        length=_length,
        link=lambda **changes: _link(request, changes, "/activity"),
    )


def activity_export(state: ApiState, matching: RunFilter, kind: Format) -> Response:
    """The filtered runs as a file, streamed a batch at a time."""

    async def pieces() -> AsyncIterator[str]:
        yield transfer.header(kind, transfer.RUN_FIELDS)
        async for batch in transfer.every_run(state.registry, matching):
            yield transfer.export_runs(batch, kind)

    media = "text/csv" if kind is Format.CSV else "application/x-ndjson"
    disposition = f'attachment; filename="heatup-runs.{kind.value}"'
    return StreamingResponse(
        pieces(), media_type=media, headers={**HEADERS, "Content-Disposition": disposition}
    )


def _choice(values: type[E], name: str, text: str) -> E | None:
    """A filter's value among ``values``, or None for an empty one."""
    if not text.strip():
        return None
    try:
        return values(text.strip())
    except ValueError:
        allowed = ", ".join(str(value) for value in values)
        raise InvalidValue(f"{name} {text[:40]!r} is not one of {allowed}") from None


def _moment(name: str, text: str) -> datetime | None:
    """A filter's date (``2026-12-01``) or date and time, UTC unless it says otherwise."""
    if not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidValue(
            f"{name} {text!r} is not a date (2026-12-01) or an ISO date and time"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@pages.get("/runs/{run_id}")
async def run(request: Request, run_id: RunId, state: State) -> Response:
    """One run with its actions; while it runs, the page re-renders itself every few
    seconds (a ``refresh`` meta tag: no script)."""
    try:
        shown = (await state.registry.get_run(run_id)).shown()
    except NotFound as exc:
        return page(request, "error.html", 404, title="no such run", detail=str(exc))
    return page(
        request,
        "run.html",
        title=f"run {run_id}",
        run=shown,
        length=_length,
        refresh_s=RUN_REFRESH_S if shown.status is RunStatus.RUNNING else None,
    )


def _length(started: datetime, finished: datetime | None) -> str:
    if finished is None:
        return "running"
    return _seconds((finished - started) / timedelta(seconds=1))


@pages.get("/channels")
async def channels(request: Request, state: State) -> Response:
    """The channel pool, its flags and its use."""
    return await channels_page(request, state)


async def channels_page(
    request: Request,
    state: ApiState,
    values: Mapping[str, str] | None = None,
    problem: str | None = None,
    status: int = 200,
) -> Response:
    """The channel page; after a refused addition, with its form filled in as sent."""
    lines = await state.registry.channel_lines(state.clock.now())
    pace = state.settings.pool.max_joins_per_channel_per_hour
    return page(
        request,
        "channels.html",
        status,
        title="channels",
        lines=[(line, line.view.shown()) for line in lines],
        pace=pace,
        chart=charts.against_limit(
            "Joins per channel in the last hour, against the pace",
            [(line.view.username, line.joins_last_hour) for line in lines],
            pace,
        ),
        values=values or {},
        problem=problem,
    )
