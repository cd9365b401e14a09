"""The four TL calls heatup sends through the gateway's ``invoke``, and reading their answers.

The gateway evaluates a query's text, so each query is built here from values that cannot
carry code: usernames that match ``validation.USERNAME_RE`` (checked again here) and Python
integers in the signed 64-bit range. Nothing else is ever formatted into a query.

Answers are TL objects as JSON with the type in ``"_"``; type names may come with or without
the ``types.`` prefix, and the whole result may be wrapped once more in ``{"result": ...}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from heatup_daemon.errors import ChannelUnavailable, InvalidValue, RpcFailed
from heatup_daemon.validation import parse_username

_RAW: Final = "pylogram.raw"
_INT64: Final = range(-(2**63), 2**63)


def _int(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value not in _INT64:
        raise InvalidValue(f"{name} must be a 64-bit integer, got {type(value).__name__}")
    return value


def _input_channel(kind: str, channel_id: int, access_hash: int) -> str:
    return (
        f"{_RAW}.types.{kind}(channel_id={_int(channel_id, 'channel_id')}, "
        f"access_hash={_int(access_hash, 'access_hash')})"
    )


def get_dialogs(limit: int) -> str:
    return (
        f"{_RAW}.functions.messages.GetDialogs(offset_date=0, offset_id=0, "
        f"offset_peer={_RAW}.types.InputPeerEmpty(), limit={_int(limit, 'limit')}, hash=0)"
    )


def resolve_username(username: str) -> str:
    # parse_username returns only [a-z0-9_] text, so the quotes below cannot be closed early.
    return f"{_RAW}.functions.contacts.ResolveUsername(username='{parse_username(username)}')"


def get_history(channel_id: int, access_hash: int, limit: int) -> str:
    peer = _input_channel("InputPeerChannel", channel_id, access_hash)
    return (
        f"{_RAW}.functions.messages.GetHistory(peer={peer}, offset_id=0, offset_date=0, "
        f"add_offset=0, limit={_int(limit, 'limit')}, max_id=0, min_id=0, hash=0)"
    )


def read_history(channel_id: int, access_hash: int, max_id: int) -> str:
    channel = _input_channel("InputChannel", channel_id, access_hash)
    return (
        f"{_RAW}.functions.channels.ReadHistory(channel={channel}, max_id={_int(max_id, 'max_id')})"
    )


# --- answers ---------------------------------------------------------------------------


def type_name(value: object) -> str:
    """The TL type of a JSON object without its ``types.`` prefix ('' if it has none)."""
    if isinstance(value, dict):
        name = value.get("_")
        if isinstance(name, str):
            return name.removeprefix("types.")
    return ""


def unwrap(result: Any) -> Any:
    """Remove one ``{"result": ...}`` wrapper around a TL object, if there is one."""
    if isinstance(result, dict) and "_" not in result and "result" in result:
        return result["result"]
    return result


def _bad_answer(what: str) -> RpcFailed:
    return RpcFailed(f"unexpected gateway answer: {what}", code="BAD_ANSWER")


@dataclass(frozen=True, slots=True)
class ChannelRef:
    channel_id: int
    access_hash: int
    # Telegram's ``left`` flag of the channel for this session (not a member); ``None`` when
    # the answer does not carry it.
    left: bool | None = None


def parse_resolved_channel(result: Any, username: str) -> ChannelRef:
    """The channel of a ``contacts.ResolvedPeer`` answer."""
    answer = unwrap(result)
    if type_name(answer) != "contacts.ResolvedPeer":
        raise _bad_answer(f"ResolveUsername gave {type_name(answer) or type(answer).__name__}")
    peer = answer.get("peer")
    if type_name(peer) != "PeerChannel":
        raise ChannelUnavailable(f"@{username} is not a channel", code="NOT_A_CHANNEL")
    channel_id = peer.get("channel_id")
    for chat in answer.get("chats") or ():
        if not isinstance(chat, dict) or chat.get("id") != channel_id:
            continue
        if type_name(chat) == "ChannelForbidden":
            raise ChannelUnavailable(f"@{username} is forbidden", code="CHANNEL_PRIVATE")
        if type_name(chat) == "Channel":
            access_hash = chat.get("access_hash")
            left = chat.get("left")
            if isinstance(channel_id, int) and isinstance(access_hash, int):
                return ChannelRef(channel_id, access_hash, left if isinstance(left, bool) else None)
    raise _bad_answer(f"ResolvedPeer of @{username} has no usable channel")


def parse_message_ids(result: Any) -> list[int]:
    """Message ids of a ``messages.*Messages`` answer (GetHistory)."""
    answer = unwrap(result)
    if not type_name(answer).startswith("messages.") or "messages" not in answer:
        raise _bad_answer(f"GetHistory gave {type_name(answer) or type(answer).__name__}")
    ids = [m.get("id") for m in answer["messages"] if isinstance(m, dict)]
    return [i for i in ids if isinstance(i, int) and not isinstance(i, bool)]


def parse_dialog_count(result: Any) -> int:
    """How many dialogs a ``messages.Dialogs``/``DialogsSlice`` answer lists."""
    answer = unwrap(result)
    if not type_name(answer).startswith("messages.Dialogs"):
        raise _bad_answer(f"GetDialogs gave {type_name(answer) or type(answer).__name__}")
    dialogs = answer.get("dialogs")
    return len(dialogs) if isinstance(dialogs, list) else 0
