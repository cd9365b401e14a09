"""Who may use the daemon's HTTP surface.

With no ``api.token`` (allowed on a loopback bind only) every route is open. With one, every
route but ``/healthz`` and ``/metrics`` needs either ``Authorization: Bearer <token>`` or the
console's cookie, which the login form gives in exchange for the token. The cookie holds an
HMAC of the token, never the token itself; both are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

from fastapi import HTTPException, Request
from pydantic import SecretStr

COOKIE: Final = "heatup_console"
_COOKIE_PURPOSE: Final = b"heatup console session v1"


def console_cookie(token: SecretStr) -> str:
    """The console cookie's value for ``token``."""
    key = token.get_secret_value().encode()
    return hmac.new(key, _COOKIE_PURPOSE, hashlib.sha256).hexdigest()


def bearer_ok(request: Request, token: SecretStr) -> bool:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    given = credentials.strip().encode()
    return (
        scheme.lower() == "bearer"
        and bool(given)
        and hmac.compare_digest(given, token.get_secret_value().encode())
    )


def cookie_ok(request: Request, token: SecretStr) -> bool:
    given = request.cookies.get(COOKIE, "")
    return bool(given) and hmac.compare_digest(given.encode(), console_cookie(token).encode())


def token_ok(given: str, token: SecretStr) -> bool:
    """The login form's check of a typed token."""
    return bool(given) and hmac.compare_digest(given.encode(), token.get_secret_value().encode())


def require(request: Request, token: SecretStr | None) -> None:
    """Raise 401 unless the request may use a guarded route."""
    if token is None or bearer_ok(request, token) or cookie_ok(request, token):
        return
    raise HTTPException(
        401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"}
    )
