"""GATEWAY.md's outcome table against recorded answer bodies."""

from __future__ import annotations

from typing import Any

import pytest

from heatup_daemon.errors import (
    ChannelUnavailable,
    FloodWait,
    GatewayError,
    RpcFailed,
    SessionFrozen,
    SessionGone,
    TooManyChannels,
)
from heatup_daemon.gateway.outcomes import (
    FLOOD_WAIT_UNKNOWN_S,
    excerpt,
    flood_wait_seconds,
    rpc_result,
)


def failed(error: str | None, **flags: Any) -> dict[str, Any]:
    return {
        "success": False,
        "error": error,
        "result": None,
        "session_deleted": None,
        "session_delete_reason": None,
        "session_frozen": None,
        **flags,
    }


def raised(body: Any) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        rpc_result(body)
    return caught.value


def test_success_returns_the_result() -> None:
    body = {"success": True, "error": None, "result": {"_": "types.Updates"}}
    assert rpc_result(body) == {"_": "types.Updates"}
    assert rpc_result({"success": True}) is None


@pytest.mark.parametrize(
    ("error", "seconds"),
    [
        (
            "Telegram says: [420 FLOOD_WAIT_X] - A wait of 73 seconds is required "
            '(caused by "channels.JoinChannel")',
            73,
        ),
        ("FLOOD_WAIT_120", 120),
        ("Telegram says: [420 SLOWMODE_WAIT_X] - A wait of 9 seconds is required", 9),
        ("[420 FLOOD_PREMIUM_WAIT_X] - A wait of 5 seconds is required", 5),
        ("Telegram says: [420 FLOOD_WAIT_X] - try later", FLOOD_WAIT_UNKNOWN_S),
    ],
)
def test_flood_wait(error: str, seconds: int) -> None:
    error_ = raised(failed(error))
    assert isinstance(error_, FloodWait) and error_.seconds == seconds
    assert error_.code == "FLOOD_WAIT"


def test_not_a_flood_wait() -> None:
    assert flood_wait_seconds("Telegram says: [400 USERNAME_INVALID]") is None
    assert flood_wait_seconds("A_FLOOD_WAIT_LIKE_WORD") is None


@pytest.mark.parametrize(
    "reason",
    ["REVOKED", "DEACTIVATED", "AUTH_KEY_UNREGISTERED", "AUTH_KEY_DUPLICATED", "PASSWORD_NEEDED"],
)
def test_session_deleted_flag(reason: str) -> None:
    error = raised(failed("whatever", session_deleted=True, session_delete_reason=reason))
    assert isinstance(error, SessionGone) and not isinstance(error, SessionFrozen)
    assert error.reason == reason


def test_session_deleted_without_reason() -> None:
    error = raised(failed(None, session_deleted=True))
    assert isinstance(error, SessionGone) and error.reason == "DELETED"


@pytest.mark.parametrize(
    "code", ["AUTH_KEY_UNREGISTERED", "SESSION_REVOKED", "USER_DEACTIVATED", "USER_DEACTIVATED_BAN"]
)
def test_session_gone_by_error_text(code: str) -> None:
    error = raised(failed(f"Telegram says: [401 {code}] - The key is not registered"))
    assert isinstance(error, SessionGone) and error.reason == code


def test_frozen_flag_wins_even_on_success() -> None:
    error = raised({"success": True, "result": True, "session_frozen": True})
    assert isinstance(error, SessionFrozen) and error.reason == "frozen"
    assert error.code == "SESSION_FROZEN"


@pytest.mark.parametrize(
    "code",
    [
        "USERNAME_NOT_OCCUPIED",
        "USERNAME_INVALID",
        "CHANNEL_PRIVATE",
        "CHANNEL_INVALID",
        "INVITE_REQUEST_SENT",
    ],
)
def test_channel_problems(code: str) -> None:
    error = raised(
        failed(f'Telegram says: [400 {code}] - no (caused by "contacts.ResolveUsername")')
    )
    assert isinstance(error, ChannelUnavailable) and error.code == code


def test_too_many_channels() -> None:
    error = raised(failed("Telegram says: [400 CHANNELS_TOO_MUCH] - You have joined too many"))
    assert isinstance(error, TooManyChannels) and error.code == "CHANNELS_TOO_MUCH"


def test_anything_else_keeps_telegrams_code() -> None:
    error = raised(failed("Telegram says: [400 PEER_ID_INVALID] - The peer id is invalid"))
    assert type(error) is RpcFailed and error.code == "PEER_ID_INVALID"
    error = raised(failed("something odd happened"))
    assert type(error) is RpcFailed and error.code == "RPC_FAILED"
    assert str(error) == "something odd happened"


@pytest.mark.parametrize(
    "body",
    [None, [], "ok", {"error": "x"}, {"success": "yes"}, {"success": 1}],
)
def test_strange_answers(body: Any) -> None:
    error = raised(body)
    assert type(error) is RpcFailed and error.code == "BAD_ANSWER"


def test_excerpt_is_short_single_line_and_redacted() -> None:
    text = "token s3cr3t in\nthe\x00text " + "x" * 500
    result = excerpt(text, ["s3cr3t"])
    assert "s3cr3t" not in result and "***" in result
    assert "\n" not in result and "\x00" not in result
    assert len(result) == 200 and result.endswith("...")


def test_error_text_is_redacted_by_value_in_any_case_and_by_shape() -> None:
    # Credential-shaped text is masked even when heatup does not know the value ...
    error = raised(failed("Telegram says: [400 WEIRD] - token=abc123tok"))
    assert "abc123tok" not in str(error) and "token=***" in str(error)
    # ... and a known secret wherever it appears, whatever its letter case.
    with pytest.raises(RpcFailed) as caught:
        rpc_result(
            failed("Telegram says: [400 WEIRD] - echo ABC123TOK and Abc123Tok"), ["abc123tok"]
        )
    assert "abc123tok" not in str(caught.value).lower()


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer s3cr3t-value-1",
        '{"auth_string": "s3cr3t-value-1"}',
        "two_factor_password=s3cr3t-value-1&x=1",
        "proxy http://user:s3cr3t-value-1@proxy.example:8080",
        "key sk-s3cr3tvalue1s3cr3tvalue1",
    ],
)
def test_credential_shapes_are_masked(text: str) -> None:
    assert "s3cr3t" not in excerpt(text)
