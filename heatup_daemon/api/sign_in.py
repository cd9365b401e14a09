"""Signing in to the console: the login form trades a token (either kind, ``auth``) for the
console's cookie, and signing out drops it. Only console pages are gone to afterwards."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import RedirectResponse

from heatup_daemon.api import auth
from heatup_daemon.api.console import PREFIX, page
from heatup_daemon.api.state import State

router = APIRouter(prefix=PREFIX, include_in_schema=False)


@router.get("/login")
async def login_form(
    request: Request, state: State, target: Annotated[str, Query(alias="next")] = PREFIX
) -> Response:
    if state.settings.api.token is None:
        return RedirectResponse(PREFIX, status_code=303)
    return page(request, "login.html", title="sign in", target=_target(target), failed=False)


@router.post("/login")
async def login(request: Request, state: State) -> Response:
    """Exchange a token (either kind) for the console's cookie."""
    api = state.settings.api
    if api.token is None:
        return RedirectResponse(PREFIX, status_code=303)
    form = _form(await request.body())
    target = _target(form.get("next", PREFIX))
    access = auth.token_access(form.get("token", ""), api)
    if access is None:
        return page(request, "login.html", 401, title="sign in", target=target, failed=True)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        auth.COOKIE,
        auth.console_cookie(api, access),
        max_age=auth.COOKIE_LIFETIME_S,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request, state: State) -> Response:
    form = _form(await request.body())
    if not auth.form_ok(request, state.settings.api, state.form_key, form.get(auth.FORM_FIELD, "")):
        raise HTTPException(403, "the form's token is missing or stale: reload the page")
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(auth.COOKIE, path="/", httponly=True, samesite="strict")
    return response


def _form(body: bytes) -> dict[str, str]:
    """The login form's fields (the last of each name); nothing else is read."""
    try:
        fields = parse_qs(body.decode(), max_num_fields=4, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {name: values[-1] for name, values in fields.items() if values}


def _target(value: str) -> str:
    """Where to go after signing in: a console page, never another site."""
    if value.startswith(PREFIX) and not value.startswith("//") and "\\" not in value:
        return value
    return PREFIX
