"""Reading an ``RPCTaskExecutionResult`` into a result or one of heatup's gateway errors.

This is GATEWAY.md's outcome table as code. It is pure: recorded bodies test it directly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

from heatup_daemon.errors import (
    ChannelUnavailable,
    FloodWait,
    RpcFailed,
    SessionFrozen,
    SessionGone,
    TooManyChannels,
)
from heatup_daemon.redact import redact

SESSION_GONE_CODES: Final = frozenset(
    {"AUTH_KEY_UNREGISTERED", "SESSION_REVOKED", "USER_DEACTIVATED", "USER_DEACTIVATED_BAN"}
)
CHANNEL_CODES: Final = frozenset(
    {
        "USERNAME_NOT_OCCUPIED",
        "USERNAME_INVALID",
        "CHANNEL_PRIVATE",
        "CHANNEL_INVALID",
        "INVITE_REQUEST_SENT",
    }
)
TOO_MANY_CHANNELS: Final = "CHANNELS_TOO_MUCH"
# When Telegram's text names no number of seconds, wait this long: guessing short would be
# working around the limit.
FLOOD_WAIT_UNKNOWN_S: Final = 300
EXCERPT_LENGTH: Final = 200

_FLOOD_RE: Final = re.compile(r"\b(?:FLOOD_WAIT|SLOWMODE_WAIT|FLOOD_PREMIUM_WAIT)_(\d+|X)\b")
_WAIT_RE: Final = re.compile(r"\bA wait of (\d+) seconds\b")
_CODE_RE: Final = re.compile(r"\[(?:\d{3} )?([A-Z][A-Z0-9_]{2,63})\]")
_WORD_RE: Final = re.compile(r"\b[A-Z][A-Z0-9_]{2,63}\b")
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]+")


def excerpt(text: object, secrets: Iterable[str] = ()) -> str:
    """A short, single-line, secret-free rendering of gateway-supplied text."""
    value = text if isinstance(text, str) else repr(text)
    value = redact(value, secrets)
    value = _CONTROL_RE.sub(" ", value).strip()
    return value if len(value) <= EXCERPT_LENGTH else value[: EXCERPT_LENGTH - 3] + "..."


def flood_wait_seconds(error: str) -> int | None:
    """Seconds of a flood wait named in ``error``, ``FLOOD_WAIT_UNKNOWN_S`` if it names a
    flood wait without a number, ``None`` if it is not a flood wait."""
    flood = _FLOOD_RE.search(error)
    wait = _WAIT_RE.search(error)
    if flood is None and wait is None:
        return None
    for match in (flood, wait):
        if match is not None and match.group(1).isdigit():
            return int(match.group(1))
    return FLOOD_WAIT_UNKNOWN_S


def error_code(error: str) -> str | None:
    """Telegram's error code in pyrogram's text (``[400 USERNAME_INVALID]``), if any."""
    match = _CODE_RE.search(error)
    return match.group(1) if match else None


def rpc_result(body: Any, secrets: Iterable[str] = ()) -> Any:
    """The ``result`` of a successful RPC answer; otherwise raise the error it describes."""
    if not isinstance(body, dict) or not isinstance(body.get("success"), bool):
        raise RpcFailed(f"unexpected gateway answer: {excerpt(body, secrets)}", code="BAD_ANSWER")
    raw_error = body.get("error")
    error = raw_error if isinstance(raw_error, str) else ""
    text = excerpt(error, secrets)
    if body.get("session_frozen") is True:
        raise SessionFrozen(text or "the session is frozen")
    if body.get("session_deleted") is True:
        reason = body.get("session_delete_reason")
        reason = reason if isinstance(reason, str) and reason else "DELETED"
        raise SessionGone(excerpt(reason), text or f"the session was deleted ({reason})")
    if body["success"]:
        return body.get("result")
    seconds = flood_wait_seconds(error)
    if seconds is not None:
        raise FloodWait(seconds, text)
    words = set(_WORD_RE.findall(error))
    gone = words & SESSION_GONE_CODES
    if gone:
        raise SessionGone(min(gone), text)
    if TOO_MANY_CHANNELS in words:
        raise TooManyChannels(text)
    channel = words & CHANNEL_CODES
    if channel:
        raise ChannelUnavailable(text, code=min(channel))
    raise RpcFailed(
        text or "the gateway reported failure without a reason",
        code=error_code(error) or "RPC_FAILED",
    )
