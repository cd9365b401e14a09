"""Who may use the daemon's HTTP surface.

With no ``api.token`` (allowed on a loopback bind only) every route is open. With one, every
route but ``/healthz`` and ``/metrics`` needs ``Authorization: Bearer <token>``; reading
routes (GET and HEAD) also take the console's cookie, which its login form gives in exchange
for the token. The cookie never holds the token: it holds an expiry and an HMAC of that
expiry keyed by the token, so it stops working when it expires or the token changes. It is
HttpOnly and SameSite=Strict, and as it opens no route that changes anything, a page on
another site cannot use it to start a run. Both are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Final

from fastapi import HTTPException, Request
from pydantic import SecretStr

COOKIE: Final = "heatup_console"
COOKIE_LIFETIME_S: Final = 12 * 3600
READING: Final = frozenset({"GET", "HEAD"})
_COOKIE_PURPOSE: Final = b"heatup console session v2:"


def _signature(token: SecretStr, expires: int) -> str:
    key = token.get_secret_value().encode()
    return hmac.new(key, _COOKIE_PURPOSE + str(expires).encode(), hashlib.sha256).hexdigest()


def console_cookie(token: SecretStr, now: float | None = None) -> str:
    """The console cookie's value for ``token``, valid for ``COOKIE_LIFETIME_S``."""
    expires = int(now if now is not None else time.time()) + COOKIE_LIFETIME_S
    return f"{expires}.{_signature(token, expires)}"


def bearer_ok(request: Request, token: SecretStr) -> bool:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    given = credentials.strip().encode()
    return (
        scheme.lower() == "bearer"
        and bool(given)
        and hmac.compare_digest(given, token.get_secret_value().encode())
    )


def cookie_ok(request: Request, token: SecretStr, now: float | None = None) -> bool:
    expires, _, signature = request.cookies.get(COOKIE, "").partition(".")
    if not (expires.isascii() and expires.isdigit() and len(expires) <= 12 and signature):
        return False
    if int(expires) <= (now if now is not None else time.time()):
        return False
    return hmac.compare_digest(signature.encode(), _signature(token, int(expires)).encode())


def token_ok(given: str, token: SecretStr) -> bool:
    """The login form's check of a typed token."""
    return bool(given) and hmac.compare_digest(given.encode(), token.get_secret_value().encode())


def allowed(request: Request, token: SecretStr | None) -> bool:
    """Whether ``request`` may use a guarded route."""
    if token is None or bearer_ok(request, token):
        return True
    return request.method in READING and cookie_ok(request, token)


def require(request: Request, token: SecretStr | None) -> None:
    """Raise 401 unless the request may use a guarded route."""
    if not allowed(request, token):
        raise HTTPException(
            401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
        )
