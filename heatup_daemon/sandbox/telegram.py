"""What the sandbox's Telegram does with each RPC: the world's state and its answers.

Answers are ``RPCTaskExecutionResult`` bodies; errors carry pyrogram's text form
(``Telegram says: [420 FLOOD_WAIT_X] - A wait of 73 seconds is required (caused by ...)``).
The invoke queries accepted are exactly the four shapes of GATEWAY.md; the text is matched,
never evaluated.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import Any, Final, NamedTuple

from heatup_daemon.sandbox.world import ChannelSpec, SessionState, World

_RAW: Final = r"pylogram\.raw"
_INT: Final = r"(-?\d{1,19})"
GET_DIALOGS: Final = re.compile(
    rf"{_RAW}\.functions\.messages\.GetDialogs\(offset_date=0, offset_id=0, "
    rf"offset_peer={_RAW}\.types\.InputPeerEmpty\(\), limit={_INT}, hash=0\)"
)
RESOLVE_USERNAME: Final = re.compile(
    rf"{_RAW}\.functions\.contacts\.ResolveUsername\(username='([A-Za-z0-9_]{{1,64}})'\)"
)
GET_HISTORY: Final = re.compile(
    rf"{_RAW}\.functions\.messages\.GetHistory\(peer={_RAW}\.types\.InputPeerChannel\("
    rf"channel_id={_INT}, access_hash={_INT}\), offset_id=0, offset_date=0, add_offset=0, "
    rf"limit={_INT}, max_id=0, min_id=0, hash=0\)"
)
READ_HISTORY: Final = re.compile(
    rf"{_RAW}\.functions\.channels\.ReadHistory\(channel={_RAW}\.types\.InputChannel\("
    rf"channel_id={_INT}, access_hash={_INT}\), max_id={_INT}\)"
)

_MESSAGES: Final = {
    "FLOOD_WAIT_X": "A wait of {seconds} seconds is required",
    "USERNAME_NOT_OCCUPIED": "The username is not occupied by anyone",
    "USERNAME_INVALID": "The username is invalid",
    "CHANNEL_PRIVATE": "The channel is private",
    "CHANNEL_INVALID": "The channel parameter is invalid",
    "INVITE_REQUEST_SENT": "The request to join was sent to the admins",
    "CHANNELS_TOO_MUCH": "You have joined too many channels or supergroups",
    "INPUT_METHOD_INVALID": "The method invoked is invalid in the sandbox",
    "MSG_ID_INVALID": "The message ID used in the peer was invalid",
}
_HTTP_CODES: Final = {"FLOOD_WAIT_X": 420, "CHANNELS_TOO_MUCH": 400}


class Answer(NamedTuple):
    """An RPC answer body and its audit outcome (``ok`` or the Telegram error code)."""

    body: dict[str, Any]
    outcome: str
    channel: str | None = None


def ok(result: Any, channel: str | None = None) -> Answer:
    body = {
        "success": True,
        "error": None,
        "result": result,
        "session_deleted": False,
        "session_delete_reason": None,
        "session_frozen": False,
    }
    return Answer(body, "ok", channel)


def telegram_error(code: str, caused_by: str, *, channel: str | None = None, **fmt: Any) -> Answer:
    http = _HTTP_CODES.get(code, 401 if code in _SESSION_ERRORS else 400)
    text = _MESSAGES.get(code, "The session cannot be used").format(**fmt)
    body = {
        "success": False,
        "error": f'Telegram says: [{http} {code}] - {text} (caused by "{caused_by}")',
        "result": None,
        "session_deleted": None,
        "session_delete_reason": None,
        "session_frozen": None,
    }
    return Answer(body, code.removesuffix("_X"), channel)


_SESSION_ERRORS: Final = frozenset(
    {"AUTH_KEY_UNREGISTERED", "SESSION_REVOKED", "USER_DEACTIVATED", "USER_DEACTIVATED_BAN"}
)


class Telegram:
    """The sandbox world's state. Not thread-safe; the sandbox runs on one event loop."""

    def __init__(self, world: World, clock: Callable[[], float] = time.monotonic) -> None:
        self.world = world
        self.clock = clock
        self.channels = {c.username: c for c in world.channels}
        self.channels_by_id = {c.channel_id: c for c in world.channels}
        self.reset()

    def reset(self) -> None:
        self.sessions = {s.id: SessionState(s, set(s.joined)) for s in self.world.sessions}

    def session_body(self, state: SessionState) -> dict[str, Any]:
        """A ``SessionDto`` including the account's secrets, as the real gateway sends it."""
        spec = state.spec
        return {
            "id": spec.id,
            "phone_number": f"+1555{spec.id:07d}",
            "is_premium": False,
            "status": -1 if spec.deleted else 1,
            "deleted": spec.deleted is not None,
            "delete_reason": spec.deleted,
            "spamblock": False,
            "frozen": spec.frozen,
            "api_id": 2040,
            "api_hash": f"sandbox-api-hash-{spec.id}",
            "auth_string": f"sandbox-auth-string-{spec.id}-do-not-log",
            "two_factor_password": f"sandbox-2fa-{spec.id}",
            "proxy": {
                "host": "proxy.sandbox.invalid",
                "port": 1080,
                "password": "sandbox-proxy-pw",
            },
        }

    def rpc(self, state: SessionState, call: Callable[[], Answer], caused_by: str) -> Answer:
        """Account-level checks first (deleted, frozen, lost, flood wait), then the call."""
        spec = state.spec
        if spec.deleted is not None:
            body = telegram_error("AUTH_KEY_UNREGISTERED", caused_by).body
            body.update(session_deleted=True, session_delete_reason=spec.deleted)
            return Answer(body, "session_deleted")
        if spec.frozen:
            body = telegram_error("FROZEN_METHOD_INVALID", caused_by).body
            body.update(session_frozen=True)
            return Answer(body, "session_frozen")
        if spec.error is not None:
            return telegram_error(spec.error, caused_by)
        remaining = state.flood_until - self.clock()
        if remaining > 0:
            return telegram_error("FLOOD_WAIT_X", caused_by, seconds=math.ceil(remaining))
        return call()

    def join(self, state: SessionState, username: str) -> Answer:
        channel = self.channels.get(username)
        problem = _join_problem(channel)
        if problem is not None:
            return telegram_error(problem, "channels.JoinChannel", channel=username)
        now = self.clock()
        limits = self.world.limits
        while state.join_times and state.join_times[0] <= now - limits.flood_window_s:
            state.join_times.popleft()
        if len(state.join_times) >= limits.flood_joins:
            state.flood_until = now + limits.flood_wait_s
            return telegram_error(
                "FLOOD_WAIT_X",
                "channels.JoinChannel",
                channel=username,
                seconds=limits.flood_wait_s,
            )
        if username not in state.joined and len(state.joined) >= limits.max_channels:
            return telegram_error("CHANNELS_TOO_MUCH", "channels.JoinChannel", channel=username)
        state.join_times.append(now)
        state.joined.add(username)
        assert channel is not None
        return ok({"_": "types.Updates", "chats": [_chat(channel)], "users": []}, username)

    def invoke(self, state: SessionState, query: str) -> Answer:
        if match := GET_DIALOGS.fullmatch(query):
            return self._dialogs(state, int(match.group(1)))
        if match := RESOLVE_USERNAME.fullmatch(query):
            return self._resolve(state, match.group(1).lower())
        if match := GET_HISTORY.fullmatch(query):
            return self._history(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        if match := READ_HISTORY.fullmatch(query):
            channel_id, access_hash, max_id = (int(g) for g in match.groups())
            return self._read(state, channel_id, access_hash, max_id)
        return telegram_error("INPUT_METHOD_INVALID", "sandbox")

    def _dialogs(self, state: SessionState, limit: int) -> Answer:
        joined = sorted(state.joined)[: max(limit, 0)]
        dialogs = [
            {"_": "types.Dialog", "peer": {"_": "types.PeerChannel", "channel_id": c.channel_id}}
            for c in (self.channels[name] for name in joined if name in self.channels)
        ]
        return ok(
            {
                "_": "types.messages.DialogsSlice",
                "count": len(state.joined),
                "dialogs": dialogs,
                "messages": [],
                "chats": [],
                "users": [],
            }
        )

    def _resolve(self, state: SessionState, username: str) -> Answer:
        channel = self.channels.get(username)
        if channel is None or channel.kind == "nonexistent":
            return telegram_error(
                "USERNAME_NOT_OCCUPIED", "contacts.ResolveUsername", channel=username
            )
        if channel.kind == "invalid":
            return telegram_error("USERNAME_INVALID", "contacts.ResolveUsername", channel=username)
        # Without the "types." prefix: answers come in both spellings (GATEWAY.md).
        peer = {"_": "PeerChannel", "channel_id": channel.channel_id}
        chat = _chat(channel) | {"_": "Channel", "left": username not in state.joined}
        return ok(
            {"_": "contacts.ResolvedPeer", "peer": peer, "chats": [chat], "users": []}, username
        )

    def _history(self, channel_id: int, access_hash: int, limit: int) -> Answer:
        channel = self.channels_by_id.get(channel_id)
        if channel is None or channel.access_hash != access_hash or channel.kind == "broken":
            name = channel.username if channel else None
            return telegram_error("CHANNEL_INVALID", "messages.GetHistory", channel=name)
        if channel.kind in ("private", "invite_only"):
            return telegram_error(
                "CHANNEL_PRIVATE", "messages.GetHistory", channel=channel.username
            )
        newest = channel.messages
        ids = range(newest, max(newest - max(limit, 0), 0), -1)
        messages = [{"_": "types.Message", "id": i, "message": f"post {i}"} for i in ids]
        answer = {
            "_": "types.messages.ChannelMessages",
            "count": newest,
            "messages": messages,
            "chats": [_chat(channel)],
            "users": [],
        }
        # Wrapped once more: the gateway sometimes nests results (GATEWAY.md).
        return ok({"result": answer}, channel.username)

    def _read(self, state: SessionState, channel_id: int, access_hash: int, max_id: int) -> Answer:
        channel = self.channels_by_id.get(channel_id)
        if channel is None or channel.access_hash != access_hash:
            return telegram_error("CHANNEL_INVALID", "channels.ReadHistory")
        if max_id > channel.messages:
            return telegram_error(
                "MSG_ID_INVALID", "channels.ReadHistory", channel=channel.username
            )
        state.read_up_to[channel.username] = max(state.read_up_to.get(channel.username, 0), max_id)
        return ok(True, channel.username)


def _join_problem(channel: ChannelSpec | None) -> str | None:
    if channel is None or channel.kind == "nonexistent":
        return "USERNAME_NOT_OCCUPIED"
    return {
        "invalid": "USERNAME_INVALID",
        "private": "CHANNEL_PRIVATE",
        "invite_only": "INVITE_REQUEST_SENT",
        "broken": "CHANNEL_INVALID",
    }.get(channel.kind)


def _chat(channel: ChannelSpec) -> dict[str, Any]:
    return {
        "_": "types.Channel",
        "id": channel.channel_id,
        "access_hash": channel.access_hash,
        "broadcast": True,
        "title": channel.title or channel.username,
        "username": channel.username,
    }
