"""The sandbox gateway as an ASGI application: the real gateway's paths, bodies, status codes
and bearer auth, over a ``Telegram`` world, with fault injection and an audit log.

Besides the gateway's paths it serves ``GET /healthz`` and a small control surface for
tests (bearer auth like the rest): ``PUT /_sandbox/faults`` with ``{"faults": SPEC}``,
``POST /_sandbox/reset`` and ``GET /_sandbox/sessions/{uid}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

from heatup_daemon.errors import InvalidValue
from heatup_daemon.sandbox.asgi import Receive, Reply, Scope, Send, lifespan, read_body, send_json
from heatup_daemon.sandbox.faults import FaultDraw, Faults, parse_faults
from heatup_daemon.sandbox.telegram import Answer, Telegram, telegram_error
from heatup_daemon.sandbox.world import World, default_world

# The gateway's own pattern for join_chat's chat_id (looser than heatup's check).
CHAT_ID_RE: Final = re.compile(r"(((https://)?t\.me/)|@)?([A-z][A-z0-9_]{3,31})")
_SESSION_PATH: Final = re.compile(
    r"/api/external/sessions/([^/]*)(/rpc/join_chat|/rpc/invoke|/idle|/stop-idle)?"
)
_OPERATIONS: Final = {
    None: ("GET", "session_info"),
    "/rpc/join_chat": ("POST", "join_chat"),
    "/rpc/invoke": ("POST", "invoke"),
    "/idle": ("POST", "idle"),
    "/stop-idle": ("POST", "stop_idle"),
}
_INVOKE_OPERATIONS: Final = (
    ("GetDialogs", "get_dialogs"),
    ("ResolveUsername", "resolve_username"),
    ("GetHistory", "get_history"),
    ("ReadHistory", "read_history"),
)
_NOT_JSON: Final = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
# The channel a request names: join_chat's chat_id, or the username a query resolves.
_ASKED_RE: Final = re.compile(
    rb'"chat_id": ?"@?([A-Za-z0-9_]{1,64})"' + rb"|username=\\?'([A-Za-z0-9_]{1,64})"
)


def _validation_error(loc: list[Any], kind: str, msg: str, value: Any) -> Reply:
    detail = [{"type": kind, "loc": loc, "msg": msg, "input": value}]
    return Reply(422, {"detail": detail}, "invalid")


class SandboxApp:
    """ASGI app. ``audit`` keeps every audit record in memory when ``keep_audit`` is set."""

    def __init__(
        self,
        world: World | None = None,
        *,
        faults: Faults | None = None,
        token: str | None = None,
        audit_path: Path | None = None,
        keep_audit: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.telegram = Telegram(world or default_world(), clock)
        self.draw = FaultDraw(faults or Faults())
        self.token = token.encode() if token else None
        self.keep_audit = keep_audit
        self.audit: list[dict[str, Any]] = []
        self._audit_file: IO[str] | None = (
            audit_path.open("a", encoding="utf-8", buffering=1) if audit_path else None
        )

    def close(self) -> None:
        if self._audit_file is not None:
            self._audit_file.close()
            self._audit_file = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send, on_shutdown=self.close)
            return
        if scope["type"] != "http":
            return
        body, too_large = await read_body(receive)
        path: str = scope["path"]
        if path == "/healthz":
            await send_json(send, Reply(200, {"status": "ok"}, "ok"))
            return
        if too_large:
            await send_json(send, Reply(413, {"detail": "Request body too large"}, "invalid"))
            return
        if not self._authorized(scope):
            reply = _unauthorized(scope)
            if not path.startswith("/_sandbox/"):
                self._record(path, _uid_of(path), body, reply)
            await send_json(send, reply)
            return
        if path.startswith("/_sandbox/"):
            await send_json(send, self._control(scope["method"], path, body))
            return
        await self._gateway(scope, receive, send, body)

    async def _gateway(self, scope: Scope, receive: Receive, send: Send, body: bytes) -> None:
        path = scope["path"]
        latency = self.draw.latency_s()
        if latency:
            await asyncio.sleep(latency)
        fault = self.draw.fault()
        uid = _uid_of(path)
        state = self.telegram.sessions.get(uid) if uid is not None else None
        during_flood = state is not None and state.flood_until > self.telegram.clock()
        if fault in ("5xx", "429", "nonjson", "hang", "drop"):
            self._record(path, uid, body, Reply(0, None, fault), during_flood)
            await _inject(fault, send, receive, self.draw.faults.hang_s)
            return
        if fault == "flood" and state is not None and "/rpc/" in path:
            seconds = self.draw.flood_s()
            state.flood_until = self.telegram.clock() + seconds
            reply = _rpc(telegram_error("FLOOD_WAIT_X", "sandbox", seconds=seconds))
            self._record(path, uid, body, reply, during_flood)
            await send_json(send, reply)
            return
        reply = self._route(scope["method"], path, body, rpc_error=fault == "rpc_error")
        self._record(path, uid, body, reply, during_flood)
        await send_json(send, reply)

    def _route(self, method: str, path: str, body: bytes, *, rpc_error: bool) -> Reply:
        match = _SESSION_PATH.fullmatch(path)
        if match is None:
            return Reply(404, {"detail": "Not Found"}, "not_found")
        expected_method, operation = _OPERATIONS[match.group(2)]
        if method != expected_method:
            return Reply(405, {"detail": "Method Not Allowed"}, "invalid")
        raw_uid = match.group(1)
        if not re.fullmatch(r"-?\d+", raw_uid):
            return _validation_error(
                ["path", "uid"],
                "int_parsing",
                "Input should be a valid integer, unable to parse string as an integer",
                raw_uid,
            )
        if int(raw_uid) < 1:
            return _validation_error(
                ["path", "uid"],
                "greater_than_equal",
                "Input should be greater than or equal to 1",
                raw_uid,
            )
        state = self.telegram.sessions.get(int(raw_uid))
        if state is None:
            return Reply(404, {"detail": "Session not found"}, "not_found")
        if operation == "session_info":
            return Reply(200, self.telegram.session_body(state), "ok")
        if operation in ("idle", "stop_idle"):
            state.idle = operation == "idle"
            return Reply(200, {}, "ok")
        payload = _json_object(body)
        if isinstance(payload, Reply):
            return payload
        if operation == "join_chat":
            return self._join(state, payload, rpc_error)
        return self._invoke(state, payload, rpc_error)

    def _join(self, state: Any, payload: dict[str, Any], rpc_error: bool) -> Reply:
        chat_id = _rpc_param(payload, "join_chat", "chat_id")
        if isinstance(chat_id, Reply):
            return chat_id
        match = CHAT_ID_RE.fullmatch(chat_id)
        if match is None:
            return _validation_error(
                ["body", "params", "chat_id"],
                "string_pattern_mismatch",
                "String should match pattern",
                chat_id,
            )
        username = match.group(4).lower()
        if rpc_error:
            return _rpc(telegram_error("MSG_ID_INVALID", "channels.JoinChannel"))
        join = functools.partial(self.telegram.join, state, username)
        return _rpc(self.telegram.rpc(state, join, "channels.JoinChannel"))

    def _invoke(self, state: Any, payload: dict[str, Any], rpc_error: bool) -> Reply:
        query = _rpc_param(payload, "invoke", "query")
        if isinstance(query, Reply):
            return query
        if rpc_error:
            return _rpc(telegram_error("MSG_ID_INVALID", "sandbox"))
        return _rpc(self.telegram.rpc(state, lambda: self.telegram.invoke(state, query), "invoke"))

    def _control(self, method: str, path: str, body: bytes) -> Reply:
        if method == "PUT" and path == "/_sandbox/faults":
            payload = _json_object(body)
            if isinstance(payload, Reply):
                return payload
            try:
                self.draw = FaultDraw(parse_faults(str(payload.get("faults", ""))))
            except InvalidValue as exc:
                return Reply(422, {"detail": str(exc)}, "invalid")
            return Reply(200, {"faults": payload.get("faults", "")}, "ok")
        if method == "POST" and path == "/_sandbox/reset":
            self.telegram.reset()
            return Reply(200, {}, "ok")
        if method == "GET" and (match := re.fullmatch(r"/_sandbox/sessions/(\d+)", path)):
            state = self.telegram.sessions.get(int(match.group(1)))
            if state is None:
                return Reply(404, {"detail": "Session not found"}, "not_found")
            return Reply(
                200,
                {
                    "joined": sorted(state.joined),
                    "idle": state.idle,
                    "read_up_to": state.read_up_to,
                },
                "ok",
            )
        return Reply(404, {"detail": "Not Found"}, "not_found")

    def _authorized(self, scope: Scope) -> bool:
        if self.token is None:
            return True
        given = _bearer(scope)
        return given is not None and hmac.compare_digest(given, self.token)

    def _channel_asked(self, body: bytes) -> str | None:
        """The channel a request named (for the audit of a request a fault answered)."""
        match = _ASKED_RE.search(body)
        if match is not None:
            return (match.group(1) or match.group(2)).decode().lower()
        for channel_id in re.findall(rb"channel_id=(-?\d{1,19})", body):
            channel = self.telegram.channels_by_id.get(int(channel_id))
            if channel is not None:
                return channel.username
        return None

    def _record(
        self, path: str, uid: int | None, body: bytes, reply: Reply, during_flood: bool = False
    ) -> None:
        now = self.telegram.clock()
        record = {
            "t": datetime.now(UTC).isoformat(),
            "mono": now,
            "session": uid,
            "op": _operation_of(path, body),
            "outcome": reply.outcome,
            "status": reply.status,
            "channel": reply.channel or self._channel_asked(body),
            # The call arrived while this session's flood wait was still running: heatup
            # promises this never happens.
            "during_flood": during_flood,
        }
        if self.keep_audit:
            self.audit.append(record)
        if self._audit_file is not None:
            self._audit_file.write(json.dumps(record, separators=(",", ":")) + "\n")


def _rpc_param(payload: dict[str, Any], method: str, name: str) -> str | Reply:
    """The text parameter ``name`` of an RPC task body for ``method``, or the 422 reply."""
    if payload.get("method", method) != method:
        return _validation_error(
            ["body", "method"],
            "literal_error",
            f"Input should be {method!r}",
            payload.get("method"),
        )
    params = payload.get("params")
    value = params.get(name) if isinstance(params, dict) else None
    if not isinstance(value, str):
        return _validation_error(["body", "params", name], "missing", "Field required", params)
    return value


def _rpc(answer: Answer) -> Reply:
    return Reply(200, answer.body, answer.outcome, channel=answer.channel)


def _unauthorized(scope: Scope) -> Reply:
    if _bearer(scope) is None:
        return Reply(403, {"detail": "Not authenticated"}, "unauthorized")
    return Reply(401, {"detail": "Invalid authentication credentials"}, "unauthorized")


def _bearer(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            if scheme.lower() == b"bearer" and credentials:
                return bytes(credentials.strip())
    return None


def _uid_of(path: str) -> int | None:
    match = _SESSION_PATH.fullmatch(path)
    if match and match.group(1).isdigit():
        return int(match.group(1))
    return None


def _operation_of(path: str, body: bytes) -> str:
    match = _SESSION_PATH.fullmatch(path)
    if match is None:
        return "unknown"
    operation = _OPERATIONS[match.group(2)][1]
    if operation == "invoke":
        for marker, name in _INVOKE_OPERATIONS:
            if marker.encode() in body:
                return name
    return operation


def _json_object(body: bytes) -> dict[str, Any] | Reply:
    try:
        payload = json.loads(body)
    except ValueError:
        return _validation_error(["body"], "json_invalid", "JSON decode error", None)
    if not isinstance(payload, dict):
        return _validation_error(
            ["body"], "model_attributes_type", "Input should be a valid dictionary", payload
        )
    return payload


async def _inject(fault: str, send: Send, receive: Receive, hang_s: float) -> None:
    if fault == "5xx":
        await send_json(send, Reply(503, {"detail": "Service Unavailable"}, fault))
    elif fault == "429":
        await send_json(
            send,
            Reply(429, {"detail": "Too Many Requests"}, fault, headers=((b"retry-after", b"1"),)),
        )
    elif fault == "nonjson":
        headers = [(b"content-type", b"text/html"), (b"content-length", b"%d" % len(_NOT_JSON))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": _NOT_JSON})
    elif fault == "hang":
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(hang_s):
                while (await receive())["type"] != "http.disconnect":
                    pass
    elif fault == "drop":
        headers = [(b"content-type", b"application/json"), (b"content-length", b"1000")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"success": tr', "more_body": True})
        # Returning now leaves the body incomplete: the server closes the connection.
