"""Who may use the daemon's HTTP surface, and from where.

Two tokens. ``api.token`` acts: it reads every route and starts runs. ``api.read_token``
reads only: a write it sends is refused (403). With no ``api.token`` (allowed on a loopback
bind only) every route is open. Otherwise every route but ``/healthz`` and ``/metrics`` needs
``Authorization: Bearer <token>``; reading routes (GET and HEAD) also take the console's
cookie, which its login form gives in exchange for either token. The cookie never holds a
token: it holds an expiry, the token's kind and an HMAC of both keyed by that token, so it
stops working when it expires or the token changes. It is HttpOnly and SameSite=Strict. A
console form carries a form token, an HMAC of the sign-in it was rendered for, without which
the form's post is refused. Tokens, cookies and form tokens are compared in constant time.

Before any route runs, ``Boundary`` refuses two kinds of request a browser can be made to
send by a page of another site:
- one for a host heatup does not serve (400), which is how DNS rebinding reads a loopback
  daemon: the ``Host`` must be loopback, ``api.host``, a name in ``api.allowed_hosts``, or,
  when ``api.host`` is a wildcard, any IP address;
- one that would change something (any method but GET, HEAD and OPTIONS) and that the browser
  says came from elsewhere (403): ``Sec-Fetch-Site`` other than ``same-origin`` or ``none``,
  or, from a browser that does not send it, an ``Origin`` that is not the request's own
  host (or a name in ``api.allowed_hosts``).
A client that is not a browser (curl, the CLI) sends neither header and is not affected.
``/healthz`` and ``/metrics`` are left to every host, as they are left to every caller.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import secrets
import time
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urlsplit

from fastapi import HTTPException, Request
from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from heatup_daemon.config.sections import ApiSettings

COOKIE: Final = "heatup_console"
COOKIE_LIFETIME_S: Final = 12 * 3600
READING: Final = frozenset({"GET", "HEAD"})
SAFE: Final = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN_PATHS: Final = frozenset({"/healthz", "/metrics"})
FORM_FIELD: Final = "form_token"
_COOKIE_PURPOSE: Final = b"heatup console session v3:"
_FORM_PURPOSE: Final = b"heatup console form v1:"
_SAME_SITE: Final = frozenset({"same-origin", "none"})
_WILDCARDS: Final = frozenset({"0.0.0.0", "::", ""})


class Access(enum.Enum):
    """What a caller may do: read, or read and act."""

    READ = "read"
    ACT = "act"


def _sign(key: SecretStr, purpose: bytes, message: str) -> str:
    secret = key.get_secret_value().encode()
    return hmac.new(secret, purpose + message.encode(), hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def _token_for(api: ApiSettings, access: Access) -> SecretStr | None:
    return api.token if access is Access.ACT else api.read_token


def console_cookie(api: ApiSettings, access: Access, now: float | None = None) -> str:
    """The console cookie's value for a sign-in with ``access``, valid for
    ``COOKIE_LIFETIME_S``."""
    token = _token_for(api, access)
    assert token is not None, "a cookie is given only for a configured token"
    expires = int(now if now is not None else time.time()) + COOKIE_LIFETIME_S
    claim = f"{expires}.{access.value}"
    return f"{claim}.{_sign(token, _COOKIE_PURPOSE, claim)}"


def cookie_access(request: Request, api: ApiSettings, now: float | None = None) -> Access | None:
    """The access the request's console cookie grants, if it is valid."""
    expires, _, rest = request.cookies.get(COOKIE, "").partition(".")
    kind, _, signature = rest.partition(".")
    if not (expires.isascii() and expires.isdigit() and len(expires) <= 12 and signature):
        return None
    if int(expires) <= (now if now is not None else time.time()):
        return None
    try:
        access = Access(kind)
    except ValueError:
        return None
    token = _token_for(api, access)
    if token is None or not _same(signature, _sign(token, _COOKIE_PURPOSE, f"{expires}.{kind}")):
        return None
    return access


def token_access(given: str, api: ApiSettings) -> Access | None:
    """The access a presented token (a bearer token, or one typed into the login form)
    grants. Both tokens are always compared, so the time taken tells nothing."""
    acts = api.token is not None and _same(given, api.token.get_secret_value())
    reads = api.read_token is not None and _same(given, api.read_token.get_secret_value())
    return Access.ACT if acts else Access.READ if reads else None


def bearer_access(request: Request, api: ApiSettings) -> Access | None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token_access(credentials.strip(), api)


def access_of(request: Request, api: ApiSettings) -> Access | None:
    """What ``request`` may do on a guarded route: its bearer token, or for a reading
    request its console cookie; everything with no ``api.token``."""
    if api.token is None:
        return Access.ACT
    bearer = bearer_access(request, api)
    if bearer is not None or request.method not in READING:
        return bearer
    return cookie_access(request, api)


def require(request: Request, api: ApiSettings) -> Access:
    """The request's access on a guarded route: 401 without any, 403 for a write that only
    the acting token may make."""
    access = access_of(request, api)
    if access is None:
        raise HTTPException(
            401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )
    if access is Access.READ and request.method not in READING:
        raise HTTPException(403, "api.read_token may only read: this needs api.token")
    return access


@dataclass
class FormKey:
    """The key form tokens are signed with when no ``api.token`` is set (no sign-in to bind
    them to): random, this process's own."""

    secret: SecretStr = field(default_factory=lambda: SecretStr(secrets.token_hex(32)))


def form_token(request: Request, api: ApiSettings, key: FormKey) -> str:
    """The form token for the console's forms rendered for this request's sign-in."""
    if api.token is None:
        return _sign(key.secret, _FORM_PURPOSE, "open")
    access = cookie_access(request, api)
    token = _token_for(api, access) if access is not None else None
    if access is None or token is None:
        return ""
    return _sign(token, _FORM_PURPOSE, request.cookies.get(COOKIE, ""))


def form_ok(request: Request, api: ApiSettings, key: FormKey, given: str) -> bool:
    expected = form_token(request, api, key)
    return bool(expected) and _same(given, expected)


def _host_name(value: str) -> tuple[str, str] | None:
    """``(name, port)`` of a ``Host`` header or an origin's netloc, lower case and without a
    trailing dot; None if malformed."""
    value = value.strip().lower()
    if value.startswith("["):
        name, bracket, port = value[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            return None
        port = port[1:]
    else:
        name, _, port = value.partition(":")
        if ":" in port:
            return None
    if port and not (port.isascii() and port.isdigit()):
        return None
    name = name.rstrip(".")
    return (name, port) if name else None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _is_loopback(name: str) -> bool:
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_refusal(host: str | None, api: ApiSettings) -> str | None:
    """Why a request for ``host`` is not served, or None if it is."""
    parsed = _host_name(host) if host else None
    if parsed is None:
        return "the request has no valid Host header"
    name = parsed[0]
    configured = api.host.strip("[]").lower()
    if (
        _is_loopback(name)
        or name == configured
        or name in api.allowed_hosts
        or (configured in _WILDCARDS and _is_ip(name))
    ):
        return None
    return (
        f"host {name!r} is not served here: requests must name a loopback address, "
        f"api.host or a name in api.allowed_hosts"
    )


def origin_refusal(headers: Headers, api: ApiSettings) -> str | None:
    """Why a request that would change something looks sent by another site's page, or
    None. ``Sec-Fetch-Site`` is set by the browser and no page can forge it, so where it is
    sent it decides; ``Origin`` decides for browsers that do not send it. (A page whose
    referrer policy is ``no-referrer``, as the console's is, posts its forms with
    ``Origin: null``: only ``Sec-Fetch-Site`` tells such a post from a foreign one.)"""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None:
        if fetch_site.lower() in _SAME_SITE:
            return None
        return f"a cross-site request ({fetch_site[:40]}) may not change anything"
    origin = headers.get("origin")
    if origin is None:
        return None
    parts = urlsplit(origin)
    own = _host_name(headers.get("host", ""))
    theirs = _host_name(parts.netloc) if parts.scheme in ("http", "https") else None
    if theirs is not None and (theirs == own or theirs[0] in api.allowed_hosts):
        return None
    return f"a request from another origin ({origin[:100]}) may not change anything"


class Boundary:
    """ASGI middleware: refuse what ``host_refusal`` and ``origin_refusal`` name, before any
    route runs."""

    def __init__(self, app: ASGIApp, api: ApiSettings) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            headers = Headers(scope=scope)
            refusal = host_refusal(headers.get("host"), self.api)
            status = 400
            if refusal is None and scope["method"] not in SAFE:
                refusal, status = origin_refusal(headers, self.api), 403
            if refusal is not None:
                response = JSONResponse({"detail": refusal}, status_code=status)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
