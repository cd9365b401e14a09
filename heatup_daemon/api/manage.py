"""The console's forms: what the CLI does to sessions and channels, as a browser posts it,
with the CLI's validation and its error text.

- ``/ui/sessions/new``: register a session;
- ``/ui/sessions/{id}``: edit its schedule, jitter, time zone, label and account age;
- ``/ui/sessions/{id}/{enable,disable,remove,run}``: the session's buttons (a run started
  here is shown live at ``/ui/runs/{id}``, a page that re-renders itself while it runs);
- ``/ui/sessions/bulk``: one of those buttons for every session ticked in the list;
- ``/ui/sessions/import`` and ``/ui/sessions/export``: many sessions at once, as a CSV or
  JSONL file (``transfer``);
- ``/ui/channels``, ``/ui/channels/{username}/{enable,disable}``: the channel pool.

A post is served only with the form token of the sign-in its page was rendered for
(``auth.form_ok``) and with a sign-in that acts; each change is audited as the console's,
with the kind of token signed in. A form with a problem is shown again, filled in as sent,
with the problem named, and nothing is written.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Annotated, Final
from urllib.parse import parse_qs

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from heatup_daemon import transfer
from heatup_daemon.api import auth, console, starting
from heatup_daemon.api.state import ApiState, GatewayId, State, status_of
from heatup_daemon.enums import Actor, Format, SessionAction, Surface
from heatup_daemon.errors import AlreadyExists, HeatupError, InvalidValue, NotFound
from heatup_daemon.http_server import LARGE_BODIES
from heatup_daemon.validation import (
    parse_account_created,
    parse_gateway_id,
    parse_username,
    validate_channel,
    validate_edit,
    validate_session,
)
from heatup_daemon.views import Author

MAX_FIELDS: Final = 1000
SESSION_ACTIONS: Final = ", ".join(SessionAction)
REGISTER_FIELDS: Final = (
    "gateway_id",
    "schedule",
    "jitter",
    "timezone",
    "label",
    "account_created",
)
CHANNEL_FIELDS: Final = ("username", "title", "category", "description")
ChannelName = Annotated[str, Path(min_length=1, max_length=40)]

router = APIRouter(prefix=console.PREFIX, include_in_schema=False)


class Refused(Exception):
    """A post the console does not serve, shown as a page with this status."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


@dataclass(frozen=True)
class Posted:
    """A form that may act: its fields and who sent it."""

    fields: dict[str, list[str]]
    author: Author

    def one(self, name: str) -> str:
        return (self.fields.get(name) or [""])[-1].strip()

    def every(self, name: str) -> list[str]:
        return [value.strip() for value in self.fields.get(name, [])]


async def _posted(request: Request, state: ApiState) -> Posted:
    """The form (within ``serving.MAX_BODY_BYTES``), once it may act; ``Refused``
    otherwise."""
    try:
        fields = parse_qs(
            (await request.body()).decode(), keep_blank_values=True, max_num_fields=MAX_FIELDS
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise Refused(400, "unreadable form", f"the form could not be read: {exc}") from None
    return Posted(fields, _author(request, state, (fields.get(auth.FORM_FIELD) or [""])[-1]))


def _author(request: Request, state: ApiState, form_token: str) -> Author:
    """Who sends a form that carries ``form_token``; ``Refused`` unless it may act."""
    api = state.settings.api
    if not auth.form_ok(request, api, state.form_key, form_token):
        raise Refused(403, "form refused", "the form's token is missing or stale: reload the page")
    if api.token is None:
        return Author(Surface.CONSOLE, Actor.NO_TOKEN)
    if auth.cookie_access(request, api) is not auth.Access.ACT:
        raise Refused(403, "read only", "this sign-in only reads: sign in with api.token to act")
    return Author(Surface.CONSOLE, Actor.TOKEN)


def _number(text: str) -> int | str:
    """A whole number typed into a form, or the text as typed (for the validator to name)."""
    return int(text) if text.isascii() and text.isdigit() and len(text) < 20 else text


def _refused(request: Request, refused: Refused) -> Response:
    return console.page(
        request, "error.html", refused.status, title=refused.title, detail=refused.detail
    )


def _to(path: str) -> Response:
    return RedirectResponse(f"{console.PREFIX}{path}", status_code=303)


# --- sessions ---------------------------------------------------------------------------


@router.get("/sessions/new")
async def register_form(request: Request, state: State) -> Response:
    console.require_sign_in(request, state)
    return _register_page(request, {}, None, 200)


def _register_page(
    request: Request, values: dict[str, str], problem: str | None, status: int
) -> Response:
    return console.page(
        request, "register.html", status, title="register a session", values=values,
        problem=problem,
    )  # fmt: skip


@router.post("/sessions/new")
async def register(request: Request, state: State) -> Response:
    try:
        posted = await _posted(request, state)
    except Refused as refused:
        return _refused(request, refused)
    values = {name: posted.one(name) for name in REGISTER_FIELDS}
    try:
        spec = validate_session(
            gateway_session_id=values["gateway_id"],
            schedule=values["schedule"],
            jitter_seconds=_number(values["jitter"] or "0"),
            timezone=values["timezone"] or "UTC",
            label=values["label"] or None,
        )
        if values["account_created"]:
            created = parse_account_created(values["account_created"], state.clock.now())
            spec = replace(spec, account_created_at=created)
        enabled = not posted.one("disabled")
        await state.registry.add_session(spec, enabled=enabled, by=posted.author)
    except InvalidValue as exc:
        return _register_page(request, values, str(exc), 422)
    except AlreadyExists as exc:
        return _register_page(request, values, str(exc), 409)
    state.on_registered()
    return _to(f"/sessions/{spec.gateway_session_id}")


@router.get("/sessions/import")
async def import_form(request: Request, state: State) -> Response:
    console.require_sign_in(request, state)
    return console.page(request, "import.html", title="import sessions", report=None, filename="")


@router.post("/sessions/import")
async def import_file(request: Request, state: State) -> Response:
    """Register the sessions of an uploaded CSV or JSONL file, with the CLI's rules: all of
    them, or with "skip invalid" the good ones; the page names each bad row."""
    try:
        async with request.form(
            max_files=1, max_fields=8, max_part_size=LARGE_BODIES[request.url.path]
        ) as form:
            author = _author(request, state, str(form.get(auth.FORM_FIELD) or ""))
            upload = form.get("file")
            if not isinstance(upload, UploadFile) or not upload.filename:
                raise Refused(422, "no file", "choose a CSV or JSONL file to import")
            name, raw = upload.filename, await upload.read()
            skip_invalid = bool(form.get("skip_invalid"))
    except MultiPartException as exc:
        return _refused(request, Refused(400, "unreadable upload", exc.message))
    except Refused as refused:
        return _refused(request, refused)
    try:
        text = await asyncio.to_thread(raw.decode, "utf-8-sig")  # up to 32 MiB
    except UnicodeDecodeError:
        return _refused(request, Refused(422, "unreadable file", f"{name} is not UTF-8 text"))
    report = await transfer.register_all(
        state.registry, text, Format.of(name, text), skip_invalid=skip_invalid, by=author,
        now=state.clock.now(),
    )  # fmt: skip
    if report.written:
        state.on_registered()
    status = 422 if report.problems and not report.written else 200
    page = console.page(
        request, "import.html", status, title="import sessions", report=report, filename=name
    )
    await asyncio.to_thread(transfer.release, report.problems)  # perhaps millions
    return page


@router.get("/sessions/export")
async def export_file(request: Request, state: State, format: Format = Format.CSV) -> Response:
    """Every session as a CSV or JSONL file (``heatup sessions export``'s)."""
    console.require_sign_in(request, state)

    async def pieces() -> AsyncIterator[str]:
        yield transfer.header(format)
        async for batch in transfer.every_session(state.registry):
            yield transfer.export(batch, format)

    media = "text/csv" if format is Format.CSV else "application/x-ndjson"
    disposition = f'attachment; filename="heatup-sessions.{format.value}"'
    headers = {**console.HEADERS, "Content-Disposition": disposition}
    return StreamingResponse(pieces(), media_type=media, headers=headers)


@router.post("/sessions/bulk")
async def bulk(request: Request, state: State) -> Response:
    """One session action for every session ticked; a page says how each went."""
    try:
        posted = await _posted(request, state)
        action = _session_action(posted.one("action"), 422, "choose one of")
        chosen = posted.every("id")
        if not chosen:
            raise Refused(422, "nothing chosen", "tick at least one session")
    except Refused as refused:
        return _refused(request, refused)
    results: list[tuple[str, str, int | None]] = []
    for given in dict.fromkeys(chosen):
        try:
            gateway_id = parse_gateway_id(given)
            outcome, run_id = await _act(state, gateway_id, action, posted.author)
        except (InvalidValue, Refused) as exc:
            outcome, run_id = str(exc), None
        results.append((given, outcome, run_id))
    return console.page(request, "bulk.html", title=f"{action}: {len(results)} sessions",
                        action=action, results=results)  # fmt: skip


@router.post("/sessions/{gateway_session_id}/{action}")
async def session_action(
    request: Request, gateway_session_id: GatewayId, action: str, state: State
) -> Response:
    try:
        posted = await _posted(request, state)
        chosen = _session_action(action, 404, "sessions can")
        _, run_id = await _act(state, gateway_session_id, chosen, posted.author)
    except Refused as refused:
        return _refused(request, refused)
    if run_id is not None:
        return _to(f"/runs/{run_id}")
    return _to("" if chosen is SessionAction.REMOVE else f"/sessions/{gateway_session_id}")


def _session_action(given: str, status: int, choices: str) -> SessionAction:
    try:
        return SessionAction(given)
    except ValueError:
        raise Refused(status, "no such action", f"{choices} {SESSION_ACTIONS}") from None


async def _act(
    state: ApiState, gateway_id: int, action: SessionAction, author: Author
) -> tuple[str, int | None]:
    """Do ``action`` to one session: what happened, and the run it started if any."""
    try:
        if action is SessionAction.REMOVE:
            await state.registry.remove_session(gateway_id, by=author)
            return "removed; its run history is kept", None
        if action in (SessionAction.ENABLE, SessionAction.DISABLE):
            enabled = action is SessionAction.ENABLE
            await state.registry.set_session_enabled(gateway_id, enabled, by=author)
            state.on_registered()
            return f"{action}d", None
    except NotFound as exc:
        raise Refused(404, "no such session", str(exc)) from None
    try:
        started = await starting.start(state, gateway_id, None)
    except HeatupError as exc:
        raise Refused(status_of(exc), "the run did not start", str(exc)) from None
    return "run started", started.run.id


@router.post("/sessions/{gateway_session_id}")
async def edit(request: Request, gateway_session_id: GatewayId, state: State) -> Response:
    """Change the session's schedule, jitter, time zone, label and account age."""
    try:
        posted = await _posted(request, state)
    except Refused as refused:
        return _refused(request, refused)
    changes: dict[str, object | None] = {
        "schedule": posted.one("schedule"),
        "jitter_seconds": _number(posted.one("jitter")),
        "timezone": posted.one("timezone"),
        "label": posted.one("label"),
        "account_created_at": posted.one("account_created") or None,
    }
    try:
        record = await state.registry.get_session(gateway_session_id)
        spec = validate_edit(record.public(), changes, state.clock.now())
        await state.registry.edit_session(spec, by=posted.author)
    except NotFound as exc:
        return _refused(request, Refused(404, "no such session", str(exc)))
    except InvalidValue as exc:
        return await console.session_page(request, state, gateway_session_id, str(exc), 422)
    state.on_registered()
    return _to(f"/sessions/{gateway_session_id}")


# --- channels ---------------------------------------------------------------------------


@router.post("/channels")
async def add_channel(request: Request, state: State) -> Response:
    try:
        posted = await _posted(request, state)
    except Refused as refused:
        return _refused(request, refused)
    values = {name: posted.one(name) for name in CHANNEL_FIELDS}
    try:
        spec = validate_channel(
            username=values["username"],
            title=values["title"] or None,
            category=values["category"] or None,
            description=values["description"] or None,
        )
        await state.registry.add_channel(spec, by=posted.author)
    except (InvalidValue, AlreadyExists) as exc:
        status = 409 if isinstance(exc, AlreadyExists) else 422
        return await console.channels_page(request, state, values, str(exc), status)
    return _to("/channels")


@router.post("/channels/{username}/{action}")
async def channel_action(
    request: Request, username: ChannelName, action: str, state: State
) -> Response:
    try:
        posted = await _posted(request, state)
        if action not in ("enable", "disable"):
            raise Refused(404, "no such action", "channels can enable, disable")
        name = parse_username(username)
        await state.registry.set_channel_enabled(name, action == "enable", by=posted.author)
    except Refused as refused:
        return _refused(request, refused)
    except (InvalidValue, NotFound) as exc:
        return _refused(request, Refused(404, "no such channel", str(exc)))
    return _to("/channels")
