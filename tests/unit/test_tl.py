"""TL query text and answer parsing, including the shapes the gateway may send."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heatup_daemon.errors import ChannelUnavailable, InvalidValue, RpcFailed
from heatup_daemon.gateway import tl
from heatup_daemon.sandbox.telegram import GET_DIALOGS, GET_HISTORY, READ_HISTORY, RESOLVE_USERNAME


def test_queries_match_gateway_md() -> None:
    assert tl.get_dialogs(20) == (
        "pylogram.raw.functions.messages.GetDialogs(offset_date=0, offset_id=0, "
        "offset_peer=pylogram.raw.types.InputPeerEmpty(), limit=20, hash=0)"
    )
    assert tl.resolve_username("@Durov") == (
        "pylogram.raw.functions.contacts.ResolveUsername(username='durov')"
    )
    assert tl.get_history(1006503122, -4436451431223402234, 20) == (
        "pylogram.raw.functions.messages.GetHistory(peer=pylogram.raw.types.InputPeerChannel("
        "channel_id=1006503122, access_hash=-4436451431223402234), offset_id=0, offset_date=0, "
        "add_offset=0, limit=20, max_id=0, min_id=0, hash=0)"
    )
    assert tl.read_history(1006503122, -4436451431223402234, 1234) == (
        "pylogram.raw.functions.channels.ReadHistory(channel=pylogram.raw.types.InputChannel("
        "channel_id=1006503122, access_hash=-4436451431223402234), max_id=1234)"
    )


@pytest.mark.parametrize(
    "username",
    [
        "durov'",
        "x') or __import__('os').system('id",
        "@__import__",
        "du(rov)",
        'du"rov',
        "durov\\",
        "durov\n",
        "",
        "a" * 40,
        "@dur ov",
    ],
)
def test_hostile_usernames_never_become_queries(username: str) -> None:
    with pytest.raises(InvalidValue):
        tl.resolve_username(username)


@pytest.mark.parametrize("value", [True, 1.5, "5", 2**63, -(2**63) - 1, None])
def test_only_64_bit_integers(value: Any) -> None:
    with pytest.raises(InvalidValue):
        tl.get_history(value, 1, 20)
    with pytest.raises(InvalidValue):
        tl.read_history(1, value, 5)
    with pytest.raises(InvalidValue):
        tl.get_dialogs(value)


usernames = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{3,31}", fullmatch=True)
int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@given(usernames, int64, int64, st.integers(min_value=0, max_value=2**31))
def test_every_query_heatup_builds_is_one_the_sandbox_reads(
    username: str, channel_id: int, access_hash: int, number: int
) -> None:
    assert RESOLVE_USERNAME.fullmatch(tl.resolve_username(username))
    assert GET_DIALOGS.fullmatch(tl.get_dialogs(number))
    assert GET_HISTORY.fullmatch(tl.get_history(channel_id, access_hash, number))
    assert READ_HISTORY.fullmatch(tl.read_history(channel_id, access_hash, number))


CHANNEL = {"_": "types.Channel", "id": 1006503122, "access_hash": -44, "broadcast": True}
RESOLVED = {
    "_": "types.contacts.ResolvedPeer",
    "peer": {"_": "types.PeerChannel", "channel_id": 1006503122},
    "chats": [CHANNEL],
    "users": [],
}
BARE = {
    "_": "contacts.ResolvedPeer",
    "peer": {"_": "PeerChannel", "channel_id": 1006503122},
    "chats": [{**CHANNEL, "_": "Channel"}],
}


@pytest.mark.parametrize("answer", [RESOLVED, BARE, {"result": RESOLVED}, {"result": BARE}])
def test_resolved_peer_shapes(answer: Any) -> None:
    assert tl.parse_resolved_channel(answer, "durov") == tl.ChannelRef(1006503122, -44)


def test_resolved_user_is_not_a_channel() -> None:
    answer = {**RESOLVED, "peer": {"_": "types.PeerUser", "user_id": 1}}
    with pytest.raises(ChannelUnavailable) as caught:
        tl.parse_resolved_channel(answer, "durov")
    assert caught.value.code == "NOT_A_CHANNEL"


def test_forbidden_channel() -> None:
    answer = {**RESOLVED, "chats": [{"_": "types.ChannelForbidden", "id": 1006503122}]}
    with pytest.raises(ChannelUnavailable) as caught:
        tl.parse_resolved_channel(answer, "durov")
    assert caught.value.code == "CHANNEL_PRIVATE"


@pytest.mark.parametrize(
    "answer",
    [
        None,
        True,
        {"_": "types.Updates"},
        {**RESOLVED, "chats": []},
        {**RESOLVED, "chats": [{**CHANNEL, "access_hash": "x"}]},
        {"result": {"result": RESOLVED}},
    ],
)
def test_unusable_resolve_answers(answer: Any) -> None:
    with pytest.raises(RpcFailed) as caught:
        tl.parse_resolved_channel(answer, "durov")
    assert caught.value.code == "BAD_ANSWER"


HISTORY = {
    "_": "types.messages.ChannelMessages",
    "messages": [
        {"_": "types.Message", "id": 1234},
        {"_": "Message", "id": 1233},
        {"_": "types.MessageService", "id": True},
        "junk",
    ],
}


@pytest.mark.parametrize(
    "answer",
    [HISTORY, {"result": HISTORY}, {**HISTORY, "_": "messages.ChannelMessages"}],
)
def test_history_shapes(answer: Any) -> None:
    assert tl.parse_message_ids(answer) == [1234, 1233]


def test_history_of_another_type() -> None:
    with pytest.raises(RpcFailed):
        tl.parse_message_ids({"_": "types.Updates"})


@pytest.mark.parametrize(
    ("answer", "count"),
    [
        ({"_": "types.messages.Dialogs", "dialogs": [{}, {}]}, 2),
        ({"result": {"_": "messages.DialogsSlice", "dialogs": [{}], "count": 9}}, 1),
        ({"_": "types.messages.DialogsNotModified", "count": 3}, 0),
    ],
)
def test_dialog_shapes(answer: Any, count: int) -> None:
    assert tl.parse_dialog_count(answer) == count
