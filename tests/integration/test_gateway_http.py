"""Every row of GATEWAY.md's outcome table, produced by ``heatup sandbox`` in its own process
and recognised by ``HttpGateway`` over real loopback HTTP."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from heatup_daemon.config.sections import GatewaySettings
from heatup_daemon.errors import (
    ChannelUnavailable,
    FloodWait,
    GatewayAuthFailed,
    GatewayUnavailable,
    InvalidValue,
    RequestRejected,
    RpcFailed,
    SessionFrozen,
    SessionGone,
    TooManyChannels,
    UnknownSession,
)
from heatup_daemon.gateway import HttpGateway
from heatup_daemon.sandbox.world import DELETE_REASONS, GONE_ERRORS
from heatup_daemon.testing import FakeClock, sandbox_process
from tests.sandboxes import SandboxControl, running_sandbox

TOKEN = "sandbox-bearer-7c1e0f"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxControl]:
    with running_sandbox(tmp_path_factory, TOKEN) as control:
        yield control


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def settings(url: str, **changes: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "base_url": url,
        "token": TOKEN,
        "read_timeout_s": 2.0,
        "retry_attempts": 4,
        "retry_deadline_s": 30.0,
        "retry_backoff_initial_s": 0.5,
        "retry_backoff_max_s": 4.0,
    }
    return GatewaySettings(**(values | changes))


@pytest.fixture
async def gateway(sandbox: SandboxControl, clock: FakeClock) -> AsyncIterator[HttpGateway]:
    sandbox.reset()
    client = HttpGateway(settings(sandbox.url), clock=clock)
    yield client
    await client.aclose()


# --- success --------------------------------------------------------------------------


async def test_success(gateway: HttpGateway, sandbox: SandboxControl) -> None:
    await gateway.join_channel(5, "@Telegram")
    await gateway.join_channel(5, "nasa")
    assert await gateway.browse_dialogs(5) == 2
    read = await gateway.read_history(5, "telegram", limit=10)
    assert read.message_count == 10 and read.channel.left is False
    assert sandbox.state(5)["read_up_to"] == {"telegram": read.max_id}
    assert await gateway.is_member(5, "telegram") is True
    assert await gateway.is_member(5, "durov") is False
    ops = [(r["op"], r["outcome"], r["session"]) for r in sandbox.audit()]
    assert ops == [
        ("join_chat", "ok", 5),
        ("join_chat", "ok", 5),
        ("get_dialogs", "ok", 5),
        ("resolve_username", "ok", 5),
        ("get_history", "ok", 5),
        ("read_history", "ok", 5),
        ("resolve_username", "ok", 5),
        ("resolve_username", "ok", 5),
    ]


async def test_joining_a_joined_channel_is_a_join(
    gateway: HttpGateway, sandbox: SandboxControl
) -> None:
    await gateway.join_channel(6, "nasa")
    await gateway.join_channel(6, "nasa")
    assert [r["outcome"] for r in sandbox.audit()] == ["ok", "ok"]
    assert sandbox.state(6)["joined"] == ["nasa"]


# --- flood wait -------------------------------------------------------------------------


async def test_flood_wait(gateway: HttpGateway, sandbox: SandboxControl) -> None:
    channels = ["telegram", "durov", "tginfo", "nasa", "natgeo"]
    for name in channels:  # the default world allows five joins per minute
        await gateway.join_channel(11, name)
    with pytest.raises(FloodWait) as caught:
        await gateway.join_channel(11, "python")
    assert caught.value.seconds == 73
    audit = sandbox.audit()
    assert [r["outcome"] for r in audit] == ["ok"] * 5 + ["FLOOD_WAIT"]  # not retried
    assert not any(r["during_flood"] for r in audit)
    # The sandbox notices a call made while the wait runs (heatup must never make one).
    with pytest.raises(FloodWait):
        await gateway.browse_dialogs(11)
    assert sandbox.audit()[-1]["during_flood"] is True


# --- session gone / frozen ---------------------------------------------------------------


@pytest.mark.parametrize("uid", [9001, 9002, 9003, 9004, 9005])
async def test_session_deleted(gateway: HttpGateway, uid: int) -> None:
    with pytest.raises(SessionGone) as caught:
        await gateway.join_channel(uid, "telegram")
    assert caught.value.reason == DELETE_REASONS[uid - 9001]


@pytest.mark.parametrize("uid", [9201, 9202, 9203, 9204])
async def test_session_gone_by_error_text(gateway: HttpGateway, uid: int) -> None:
    with pytest.raises(SessionGone) as caught:
        await gateway.browse_dialogs(uid)
    assert caught.value.reason == GONE_ERRORS[uid - 9201]


async def test_session_frozen(gateway: HttpGateway) -> None:
    with pytest.raises(SessionFrozen) as caught:
        await gateway.read_history(9100, "telegram")
    assert caught.value.reason == "frozen"


# --- channel problems, too many channels -------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "code"),
    [
        ("privatechan", "CHANNEL_PRIVATE"),
        ("inviteonly", "INVITE_REQUEST_SENT"),
        ("nosuchchannel", "USERNAME_NOT_OCCUPIED"),
        ("neverheardof", "USERNAME_NOT_OCCUPIED"),
        ("badusername", "USERNAME_INVALID"),
        ("brokenchan", "CHANNEL_INVALID"),
    ],
)
async def test_channel_problems_on_join(gateway: HttpGateway, channel: str, code: str) -> None:
    with pytest.raises(ChannelUnavailable) as caught:
        await gateway.join_channel(20, channel)
    assert caught.value.code == code


@pytest.mark.parametrize(
    ("channel", "code"),
    [
        ("privatechan", "CHANNEL_PRIVATE"),
        ("nosuchchannel", "USERNAME_NOT_OCCUPIED"),
        ("badusername", "USERNAME_INVALID"),
        ("brokenchan", "CHANNEL_INVALID"),
    ],
)
async def test_channel_problems_on_read(gateway: HttpGateway, channel: str, code: str) -> None:
    with pytest.raises(ChannelUnavailable) as caught:
        await gateway.read_history(20, channel)
    assert caught.value.code == code


async def test_too_many_channels(tmp_path: Path) -> None:
    world = tmp_path / "world.toml"
    world.write_text(
        "[limits]\nmax_channels = 2\nflood_joins = 100\n[[sessions]]\nid = 1\n"
        '[[channels]]\nusername = "chan_one"\n[[channels]]\nusername = "chan_two"\n'
        '[[channels]]\nusername = "chan_three"\n'
    )
    with sandbox_process("--world", str(world)) as url:
        client = HttpGateway(settings(url, token=None))
        try:
            await client.join_channel(1, "chan_one")
            await client.join_channel(1, "chan_two")
            await client.join_channel(1, "chan_one")  # joining again is fine
            with pytest.raises(TooManyChannels):
                await client.join_channel(1, "chan_three")
        finally:
            await client.aclose()


# --- transient: retried, then GatewayUnavailable -----------------------------------------


@pytest.mark.parametrize(
    ("faults", "outcome"),
    [("5xx=1", "5xx"), ("429=1", "429"), ("nonjson=1", "nonjson"), ("drop=1", "drop")],
)
async def test_transient_failures_are_retried_then_reported(
    gateway: HttpGateway, sandbox: SandboxControl, clock: FakeClock, faults: str, outcome: str
) -> None:
    sandbox.faults(faults)
    with pytest.raises(GatewayUnavailable) as caught:
        await gateway.browse_dialogs(3)
    assert caught.value.code == "transient"
    assert [r["outcome"] for r in sandbox.audit()] == [outcome] * 4  # retry_attempts
    assert len(clock.sleeps) == 3
    # Capped exponential backoff with full jitter (429 asks for Retry-After: 1).
    for failures, slept in enumerate(clock.sleeps, start=1):
        cap = min(4.0, 0.5 * 2 ** (failures - 1))
        assert (
            (1.0 if outcome == "429" else 0.0) <= slept <= max(cap, 1.0 if outcome == "429" else 0)
        )


async def test_a_hang_times_out_and_is_retried(sandbox: SandboxControl) -> None:
    sandbox.reset("hang=1,hang_s=5")
    client = HttpGateway(settings(sandbox.url, read_timeout_s=0.2, retry_attempts=2))
    try:
        with pytest.raises(GatewayUnavailable, match="timeout"):
            await client.browse_dialogs(3)
    finally:
        await client.aclose()
    assert [r["outcome"] for r in sandbox.audit()] == ["hang", "hang"]


async def test_retries_recover_from_some_failures(
    gateway: HttpGateway, sandbox: SandboxControl
) -> None:
    sandbox.faults("5xx=0.5,seed=3")
    for _ in range(10):
        await gateway.browse_dialogs(4)
    outcomes = [r["outcome"] for r in sandbox.audit()]
    assert outcomes.count("ok") == 10 and "5xx" in outcomes


async def test_retries_stop_at_the_deadline(sandbox: SandboxControl, clock: FakeClock) -> None:
    sandbox.reset("5xx=1")
    client = HttpGateway(
        settings(
            sandbox.url,
            retry_attempts=20,
            retry_deadline_s=3.0,
            retry_backoff_initial_s=0.4,
            retry_backoff_max_s=1.0,
        ),
        clock=clock,
    )
    try:
        with pytest.raises(GatewayUnavailable):
            await client.browse_dialogs(3)
    finally:
        await client.aclose()
    assert sum(clock.sleeps) < 3.0  # never slept past the deadline
    attempts = len(sandbox.audit())
    assert 1 < attempts < 20 and attempts == len(clock.sleeps) + 1


# --- our bug: auth, unknown session, rejected ----------------------------------------------


async def test_bad_token(sandbox: SandboxControl, caplog: pytest.LogCaptureFixture) -> None:
    sandbox.reset()
    client = HttpGateway(settings(sandbox.url, token="wrong-token"))
    try:
        for uid in (1, 2, 3):
            with pytest.raises(GatewayAuthFailed):
                await client.browse_dialogs(uid)
        assert client.auth_failing
    finally:
        await client.aclose()
    assert [r["outcome"] for r in sandbox.audit()] == ["unauthorized"] * 3  # never retried
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(loud) == 1 and "gateway.token" in loud[0].getMessage()  # once, not per session


async def test_missing_token(sandbox: SandboxControl) -> None:
    client = HttpGateway(settings(sandbox.url, token=None))
    try:
        with pytest.raises(GatewayAuthFailed, match="HTTP 403"):
            await client.browse_dialogs(1)
    finally:
        await client.aclose()


async def test_auth_recovers(gateway: HttpGateway, sandbox: SandboxControl) -> None:
    gateway.auth_failing = True
    await gateway.browse_dialogs(1)
    assert not gateway.auth_failing


async def test_unknown_session(gateway: HttpGateway, sandbox: SandboxControl) -> None:
    with pytest.raises(UnknownSession):
        await gateway.join_channel(5555, "telegram")
    assert [r["status"] for r in sandbox.audit()] == [404]


async def test_rejected_request(gateway: HttpGateway, sandbox: SandboxControl) -> None:
    # Only a bug in heatup sends a body the gateway rejects; reach the transport directly.
    with pytest.raises(RequestRejected, match="string_pattern_mismatch"):
        await gateway._rpc(5, "join_chat", "join_channel", {"params": {"chat_id": "@a b"}})
    assert [r["status"] for r in sandbox.audit()] == [422]


# --- anything else --------------------------------------------------------------------------


async def test_unknown_telegram_error(gateway: HttpGateway, sandbox: SandboxControl) -> None:
    sandbox.faults("rpc_error=1")
    with pytest.raises(RpcFailed) as caught:
        await gateway.join_channel(5, "telegram")
    assert caught.value.code == "MSG_ID_INVALID"
    assert len(sandbox.audit()) == 1


# --- validation before any request; secrets ------------------------------------------------


@pytest.mark.parametrize(
    "username",
    [
        "durov'",
        "x') or __import__('os').system('id",
        "@__import__",
        "du(rov)",
        "@du rov",
        'x"); print(1); ("',
        "a" * 40,
    ],
)
async def test_hostile_usernames_never_reach_the_sandbox(
    gateway: HttpGateway, sandbox: SandboxControl, username: str
) -> None:
    for call in (gateway.join_channel, gateway.is_member, gateway.read_history):
        with pytest.raises(InvalidValue):
            await call(5, username)
    assert sandbox.audit() == []


@pytest.mark.parametrize("uid", [0, -1, True, "5", 2**63, 1.5])
async def test_bad_session_ids_never_reach_the_sandbox(
    gateway: HttpGateway, sandbox: SandboxControl, uid: Any
) -> None:
    with pytest.raises(InvalidValue):
        await gateway.join_channel(uid, "telegram")
    with pytest.raises(InvalidValue):
        await gateway.browse_dialogs(uid)
    assert sandbox.audit() == []


async def test_secrets_never_reach_logs_or_errors(
    sandbox: SandboxControl, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sandbox.reset()
    client = HttpGateway(settings(sandbox.url, retry_attempts=2, retry_backoff_max_s=0.01))
    bad = HttpGateway(settings(sandbox.url, token="planted-wrong-token"))
    errors: list[str] = []
    try:
        errors.append(repr(await client.read_history(42, "telegram")))
        for call in (
            client.join_channel(9001, "telegram"),
            client.read_history(9100, "telegram"),
            client.join_channel(42, "privatechan"),
            bad.browse_dialogs(42),
        ):
            try:
                await call
            except Exception as exc:
                errors.append(f"{exc!r} {exc}")
        sandbox.faults("5xx=1")
        try:
            await client.browse_dialogs(42)
        except GatewayUnavailable as exc:
            errors.append(str(exc))
    finally:
        await client.aclose()
        await bad.aclose()
    seen = caplog.text + "\n".join(errors)
    assert "HTTP Request" in caplog.text  # the client's own debug logging was captured
    for secret in (
        TOKEN,
        "planted-wrong-token",
        "sandbox-auth-string",
        "sandbox-2fa",
        "sandbox-api-hash",
        "sandbox-proxy-pw",
    ):
        assert secret not in seen
