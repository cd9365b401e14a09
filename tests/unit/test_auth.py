"""Who may use the daemon's guarded routes: the bearer token or the console's cookie."""

from __future__ import annotations

import pytest
from fastapi import HTTPException
from pydantic import SecretStr
from starlette.requests import Request

from heatup_daemon.api import auth

TOKEN = SecretStr("a-token-of-some-length")


def request(*headers: tuple[str, str], method: str = "GET") -> Request:
    raw = [(name.lower().encode(), value.encode()) for name, value in headers]
    return Request({"type": "http", "method": method, "path": "/", "headers": raw})


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
    auth.require(request(("Cookie", f"{auth.COOKIE}={cookie}"), method="HEAD"), TOKEN)


def tampered(cookie: str) -> list[str]:
    expires, _, signature = cookie.partition(".")
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    return [
        f"{expires}.{flipped}",  # a wrong signature
        f"{int(expires) + 3600}.{signature}",  # a later expiry under the old signature
        signature,  # no expiry
        f"{expires}.",  # no signature
        f"-{expires}.{signature}",
        f"{expires}0000000000000.{signature}",
        "",
    ]


def test_a_tampered_cookie_is_refused() -> None:
    for cookie in tampered(auth.console_cookie(TOKEN)):
        with pytest.raises(HTTPException):
            auth.require(request(("Cookie", f"{auth.COOKIE}={cookie}")), TOKEN)


def test_the_cookie_expires_and_dies_with_its_token() -> None:
    issued = 1_800_000_000.0
    cookie = auth.console_cookie(TOKEN, now=issued)
    given = request(("Cookie", f"{auth.COOKIE}={cookie}"))
    assert auth.cookie_ok(given, TOKEN, now=issued + auth.COOKIE_LIFETIME_S - 1)
    assert not auth.cookie_ok(given, TOKEN, now=issued + auth.COOKIE_LIFETIME_S)
    assert not auth.cookie_ok(given, SecretStr("another-token-entirely"), now=issued)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_the_cookie_opens_no_route_that_changes_anything(method: str) -> None:
    cookie = auth.console_cookie(TOKEN)
    with pytest.raises(HTTPException) as refused:
        auth.require(request(("Cookie", f"{auth.COOKIE}={cookie}"), method=method), TOKEN)
    assert refused.value.status_code == 401
    auth.require(
        request(("Authorization", f"Bearer {TOKEN.get_secret_value()}"), method=method), TOKEN
    )


def test_no_token_configured_is_open() -> None:
    auth.require(request(), None)
