"""Who may use the daemon's guarded routes: the bearer token or the console's cookie."""

from __future__ import annotations

import pytest
from fastapi import HTTPException
from pydantic import SecretStr
from starlette.requests import Request

from heatup_daemon.api import auth

TOKEN = SecretStr("a-token-of-some-length")


def request(*headers: tuple[str, str]) -> Request:
    raw = [(name.lower().encode(), value.encode()) for name, value in headers]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw})


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer",
        "Bearer ",
        "Bearer    ",
        "bearer a-token",
        "Basic a-token-of-some-length",
        "a-token-of-some-length",
    ],
)
def test_refused(header: str) -> None:
    with pytest.raises(HTTPException) as refused:
        auth.require(request(("Authorization", header)), TOKEN)
    assert refused.value.status_code == 401


def test_the_token_or_the_cookie_passes() -> None:
    auth.require(request(("Authorization", "Bearer a-token-of-some-length")), TOKEN)
    auth.require(request(("Authorization", "bearer  a-token-of-some-length ")), TOKEN)
    cookie = auth.console_cookie(TOKEN)
    assert TOKEN.get_secret_value() not in cookie
    auth.require(request(("Cookie", f"{auth.COOKIE}={cookie}")), TOKEN)
    with pytest.raises(HTTPException):
        auth.require(request(("Cookie", f"{auth.COOKIE}={cookie[:-1]}0")), TOKEN)


def test_no_token_configured_is_open() -> None:
    auth.require(request(), None)
