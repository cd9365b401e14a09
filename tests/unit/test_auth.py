"""Who may use the daemon's guarded routes (the acting token, the read token, the console's
cookie and form token), and which hosts and origins the boundary refuses."""

from __future__ import annotations

import pytest
from fastapi import HTTPException
from pydantic import SecretStr, ValidationError
from starlette.datastructures import Headers
from starlette.requests import Request

from heatup_daemon.api import auth
from heatup_daemon.api.auth import Access
from heatup_daemon.config.sections import ApiSettings

TOKEN = SecretStr("a-token-of-some-length")
READER = SecretStr("a-read-only-token-of-length")
API = ApiSettings(token=TOKEN, read_token=READER)
OPEN = ApiSettings()


def request(*headers: tuple[str, str], method: str = "GET") -> Request:
    raw = [(name.lower().encode(), value.encode()) for name, value in headers]
    return Request({"type": "http", "method": method, "path": "/", "headers": raw})


def bearer(token: SecretStr, method: str = "GET") -> Request:
    return request(("Authorization", f"Bearer {token.get_secret_value()}"), method=method)


def with_cookie(cookie: str, method: str = "GET") -> Request:
    return request(("Cookie", f"{auth.COOKIE}={cookie}"), method=method)


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
        auth.require(request(("Authorization", header)), API)
    assert refused.value.status_code == 401


def test_the_token_or_the_cookie_passes() -> None:
    assert auth.require(bearer(TOKEN), API) is Access.ACT
    given = request(("Authorization", "bearer  a-token-of-some-length "))
    assert auth.require(given, API) is Access.ACT
    cookie = auth.console_cookie(API, Access.ACT)
    assert TOKEN.get_secret_value() not in cookie
    assert auth.require(with_cookie(cookie), API) is Access.ACT
    assert auth.require(with_cookie(cookie, "HEAD"), API) is Access.ACT


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_the_read_token_reads_and_is_refused_every_write(method: str) -> None:
    assert auth.require(bearer(READER), API) is Access.READ
    reader_cookie = auth.console_cookie(API, Access.READ)
    assert READER.get_secret_value() not in reader_cookie
    assert auth.require(with_cookie(reader_cookie), API) is Access.READ
    with pytest.raises(HTTPException) as refused:
        auth.require(bearer(READER, method), API)
    assert refused.value.status_code == 403
    assert "read_token" in str(refused.value.detail)
    assert READER.get_secret_value() not in str(refused.value.detail)


def tampered(cookie: str) -> list[str]:
    expires, kind, signature = cookie.split(".")
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    return [
        f"{expires}.{kind}.{flipped}",  # a wrong signature
        f"{int(expires) + 3600}.{kind}.{signature}",  # a later expiry under the old signature
        f"{expires}.act.{signature}" if kind == "read" else f"{expires}.read.{signature}",
        f"{expires}.{signature}",  # no kind
        signature,  # no expiry
        f"{expires}.{kind}.",  # no signature
        f"-{expires}.{kind}.{signature}",
        f"{expires}0000000000000.{kind}.{signature}",
        "",
    ]


@pytest.mark.parametrize("access", list(Access))
def test_a_tampered_cookie_is_refused(access: Access) -> None:
    for cookie in tampered(auth.console_cookie(API, access)):
        with pytest.raises(HTTPException):
            auth.require(with_cookie(cookie), API)


def test_the_cookie_expires_and_dies_with_its_token() -> None:
    issued = 1_800_000_000.0
    given = with_cookie(auth.console_cookie(API, Access.ACT, now=issued))
    assert auth.cookie_access(given, API, now=issued + auth.COOKIE_LIFETIME_S - 1) is Access.ACT
    assert auth.cookie_access(given, API, now=issued + auth.COOKIE_LIFETIME_S) is None
    changed = ApiSettings(token=SecretStr("another-token-entirely"), read_token=READER)
    assert auth.cookie_access(given, changed, now=issued) is None


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_the_cookie_opens_no_api_route_that_changes_anything(method: str) -> None:
    cookie = auth.console_cookie(API, Access.ACT)
    with pytest.raises(HTTPException) as refused:
        auth.require(with_cookie(cookie, method), API)
    assert refused.value.status_code == 401
    assert auth.require(bearer(TOKEN, method), API) is Access.ACT


def test_no_token_configured_is_open() -> None:
    assert auth.require(request(method="POST"), OPEN) is Access.ACT


def test_a_form_token_is_bound_to_its_sign_in() -> None:
    key = auth.FormKey()
    act = with_cookie(auth.console_cookie(API, Access.ACT, now=1_900_000_000.0))
    later = with_cookie(auth.console_cookie(API, Access.ACT, now=1_900_000_001.0))
    token = auth.form_token(act, API, key)
    assert token and auth.form_ok(act, API, key, token)
    assert not auth.form_ok(later, API, key, token)  # another sign-in
    assert not auth.form_ok(act, API, key, "")
    assert not auth.form_ok(act, API, key, token[:-1])
    assert auth.form_token(request(), API, key) == ""  # no sign-in, no form token
    assert not auth.form_ok(request(), API, key, "")
    # With no api.token, form tokens are this process's own.
    mine = auth.form_token(request(), OPEN, key)
    assert auth.form_ok(request(), OPEN, key, mine)
    assert not auth.form_ok(request(), OPEN, auth.FormKey(), mine)


@pytest.mark.parametrize(
    ("host", "served"),
    [
        ("127.0.0.1:8080", True),
        ("127.0.0.1", True),
        ("localhost:8080", True),
        ("LOCALHOST.:8080", True),
        ("[::1]:8080", True),
        ("127.5.6.7:1", True),
        ("heatup.example:443", True),  # in allowed_hosts
        ("attacker.example:8080", False),  # DNS rebinding: a name that now points at us
        ("localhost.attacker.example", False),
        ("10.0.0.5:8080", False),
        ("", False),
        (None, False),
        ("127.0.0.1:80:80", False),
        ("[::1", False),
        ("127.0.0.1:http", False),
    ],
)
def test_hosts_served(host: str | None, served: bool) -> None:
    api = ApiSettings(allowed_hosts=("Heatup.Example.",))
    assert (auth.host_refusal(host, api) is None) is served


def test_a_wildcard_bind_serves_any_ip_address_but_only_listed_names() -> None:
    api = ApiSettings(host="0.0.0.0", token=TOKEN)
    assert auth.host_refusal("10.0.0.5:8080", api) is None
    assert auth.host_refusal("[2001:db8::1]:8080", api) is None
    refusal = auth.host_refusal("heatup.example", api)
    assert refusal is not None and "api.allowed_hosts" in refusal


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({}, False),  # curl, the CLI: no browser headers
        ({"sec-fetch-site": "same-origin"}, False),
        ({"sec-fetch-site": "none"}, False),
        ({"sec-fetch-site": "same-site"}, True),  # another port of localhost
        ({"sec-fetch-site": "cross-site"}, True),
        ({"origin": "http://127.0.0.1:8080"}, False),
        ({"origin": "http://127.0.0.1:3000"}, True),
        ({"origin": "http://localhost:8080"}, True),  # another origin, though the same host
        ({"origin": "https://attacker.example"}, True),
        ({"origin": "null"}, True),
        ({"origin": "https://heatup.example"}, False),  # a proxy's name in allowed_hosts
        ({"origin": "http://127.0.0.1:8080", "sec-fetch-site": "cross-site"}, True),
        ({"origin": "null", "sec-fetch-site": "same-origin"}, False),  # no-referrer pages
        ({"origin": "https://attacker.example", "sec-fetch-site": "same-origin"}, False),
    ],
)
def test_writes_from_other_sites(headers: dict[str, str], refused: bool) -> None:
    api = ApiSettings(allowed_hosts=("heatup.example",))
    given = Headers({"host": "127.0.0.1:8080", **headers})
    assert (auth.origin_refusal(given, api) is not None) is refused


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"read_token": READER}, "api.token is not"),
        ({"token": TOKEN, "read_token": TOKEN}, "must differ"),
        ({"token": TOKEN, "read_token": SecretStr("short")}, "shorter than"),
        ({"allowed_hosts": ("https://heatup.example",)}, "without a scheme"),
        ({"allowed_hosts": ("heatup.example:8080",)}, "without a scheme, port"),
    ],
)
def test_api_settings_refused(values: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError) as refused:
        ApiSettings.model_validate(values)
    assert problem in str(refused.value)
    assert TOKEN.get_secret_value() not in str(refused.value)
