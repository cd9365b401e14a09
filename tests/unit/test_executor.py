"""The executor against a scripted gateway, an in-memory recorder and a fake clock."""

from __future__ import annotations

import asyncio
import itertools
import random
from datetime import timedelta

import pytest

from heatup_daemon.config import ExecutorSettings
from heatup_daemon.errors import (
    ChannelUnavailable,
    FloodWait,
    GatewayAuthFailed,
    GatewayUnavailable,
    RpcFailed,
    SessionFrozen,
    SessionGone,
    TooManyChannels,
    UnknownSession,
)
from heatup_daemon.executor import Executor, RunTarget
from heatup_daemon.gateway import HistoryRead
from heatup_daemon.planner.model import Action, Plan
from heatup_daemon.testing import FakeClock, FakeGateway, FakeRecorder

TARGET = RunTarget(run_id=1, session_id=10, gateway_session_id=77)
SETTINGS = ExecutorSettings(time_scale=1.0, long_pause_chance=0.0, delay_min_s=3, delay_max_s=3)


def plan(*actions: Action) -> Plan:
    return Plan(tuple(actions), "fallback")


JOIN_A = Action("join_channel", "chan_a")
JOIN_B = Action("join_channel", "chan_b")
READ_A = Action("read_messages", "chan_a", 20.0)
BROWSE = Action("browse_dialogs")
IDLE = Action("idle", None, 7.0)


class Harness:
    def __init__(self, settings: ExecutorSettings = SETTINGS, heartbeat_s: float = 15) -> None:
        self.clock = FakeClock()
        self.gateway = FakeGateway()
        self.recorder = FakeRecorder()
        self.executor = Executor(
            self.gateway,
            self.recorder,
            settings,
            clock=self.clock,
            heartbeat_s=heartbeat_s,
            rng=random.Random(4),
        )

    async def run(self, *actions: Action):  # type: ignore[no-untyped-def]
        return await self.executor.execute(TARGET, plan(*actions))

    def outcomes(self) -> list[tuple[str, str, str | None]]:
        return [(a.kind, a.outcome, a.error_code) for a in self.recorder.actions]


async def test_a_clean_run() -> None:
    h = Harness()
    outcome = await h.run(JOIN_A, READ_A, BROWSE, IDLE)
    assert (outcome.status, outcome.error) == ("succeeded", None)
    assert h.gateway.calls == [
        ("join_channel", 77, "chan_a"),
        ("read_history", 77, "chan_a"),
        ("browse_dialogs", 77, None),
    ]
    assert h.recorder.joins == [(10, "chan_a")]
    assert [a.seq for a in h.recorder.actions] == [1, 2, 3, 4]
    # Three pauses of 3 s, a 20 s read and a 7 s idle: 36 s of waiting, nothing else.
    assert sum(h.clock.sleeps) == pytest.approx(36.0)
    assert h.recorder.actions[1].actual_duration_s == pytest.approx(20.0)


async def test_time_scale_shrinks_every_wait() -> None:
    h = Harness(ExecutorSettings(time_scale=0.5, long_pause_chance=0, delay_min_s=3, delay_max_s=3))
    await h.run(JOIN_A, READ_A, IDLE)
    assert sum(h.clock.sleeps) == pytest.approx((3 + 20 + 3 + 7) * 0.5)
    h0 = Harness(ExecutorSettings(time_scale=0))
    await h0.run(JOIN_A, READ_A, IDLE)
    assert sum(h0.clock.sleeps) == 0


async def test_pauses_follow_the_settings() -> None:
    settings = ExecutorSettings(
        delay_min_s=3,
        delay_max_s=10,
        long_pause_chance=0.5,
        long_pause_min_s=5,
        long_pause_max_s=10,
    )
    executor = Executor(
        FakeGateway(),
        FakeRecorder(),
        settings,
        clock=FakeClock(),
        heartbeat_s=15,
        rng=random.Random(2),
    )
    pauses = [executor.pause_s() for _ in range(2000)]
    assert min(pauses) >= 3 and max(pauses) <= 20
    long = [p for p in pauses if p > 10]
    assert 0.2 < len(long) / len(pauses) < 0.5  # some of the half with a long pause


async def test_heartbeat_during_long_waits() -> None:
    h = Harness(heartbeat_s=5)
    await h.run(JOIN_A, Action("read_messages", "chan_a", 40.0), IDLE)
    assert len(h.recorder.heartbeats) >= 9  # about (3 + 40 + 3 + 7) / 5
    gaps = [b - a for a, b in itertools.pairwise(h.recorder.heartbeats)]
    assert max(gaps) <= timedelta(seconds=5)


async def test_flood_wait_stops_the_run_and_cools_the_session() -> None:
    h = Harness()
    h.gateway.fail[("join_channel", "chan_b")] = FloodWait(73, "wait")
    outcome = await h.run(JOIN_A, JOIN_B, READ_A, BROWSE)
    assert outcome.status == "partial" and "flood wait of 73 s" in (outcome.error or "")
    assert h.outcomes() == [("join_channel", "ok", None), ("join_channel", "failed", "FLOOD_WAIT")]
    flood_at = h.recorder.actions[1].finished_at
    assert h.recorder.cooldowns[10] == flood_at + timedelta(seconds=73)
    assert len(h.gateway.calls) == 2  # nothing after the flood wait


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (SessionGone("REVOKED", "gone"), "SESSION_GONE"),
        (SessionFrozen("frozen"), "SESSION_FROZEN"),
        (UnknownSession("who?"), "unknown_session"),
    ],
)
async def test_lost_sessions_need_attention(error: Exception, code: str) -> None:
    h = Harness()
    h.gateway.fail["join_channel"] = error
    outcome = await h.run(JOIN_A, READ_A, BROWSE)
    assert outcome.status == "failed" and outcome.error is not None
    assert h.outcomes() == [("join_channel", "failed", code)]
    assert 10 in h.recorder.attention


async def test_auth_failure_stops_without_blaming_the_session() -> None:
    h = Harness()
    h.gateway.fail["browse_dialogs"] = GatewayAuthFailed("refused")
    outcome = await h.run(BROWSE, JOIN_A, IDLE)
    assert outcome.status == "failed" and "token" in (outcome.error or "")
    assert h.recorder.attention == {} and h.recorder.cooldowns == {}


async def test_channel_problems_and_transient_failures_do_not_stop_the_run() -> None:
    h = Harness()
    h.gateway.fail[("join_channel", "chan_a")] = ChannelUnavailable(
        "private", code="CHANNEL_PRIVATE"
    )
    h.gateway.fail["browse_dialogs"] = GatewayUnavailable("down")
    h.gateway.fail[("join_channel", "chan_b")] = RpcFailed("odd", code="PEER_ID_INVALID")
    outcome = await h.run(JOIN_A, BROWSE, JOIN_B, IDLE)
    assert outcome.status == "partial"
    assert h.outcomes() == [
        ("join_channel", "failed", "CHANNEL_PRIVATE"),
        ("browse_dialogs", "failed", "transient"),
        ("join_channel", "failed", "PEER_ID_INVALID"),
        ("idle", "ok", None),
    ]
    assert h.recorder.channel_failures == [("chan_a", "CHANNEL_PRIVATE")]  # only channel codes
    assert h.recorder.joins == []


async def test_too_many_channels_skips_later_joins() -> None:
    h = Harness()
    h.gateway.fail["join_channel"] = TooManyChannels("full")
    outcome = await h.run(JOIN_A, BROWSE, JOIN_B)
    assert outcome.status == "partial"
    assert h.outcomes() == [
        ("join_channel", "failed", "CHANNELS_TOO_MUCH"),
        ("browse_dialogs", "ok", None),
        ("join_channel", "skipped", "CHANNELS_TOO_MUCH"),
    ]
    assert [c[0] for c in h.gateway.calls] == ["join_channel", "browse_dialogs"]


async def test_every_action_failing_fails_the_run() -> None:
    h = Harness()
    h.gateway.fail["browse_dialogs"] = GatewayUnavailable("down")
    h.gateway.always.add("browse_dialogs")
    outcome = await h.run(BROWSE, BROWSE, BROWSE)
    assert (outcome.status, outcome.error) == ("failed", "3 of 3 actions did not succeed")


class SignallingGateway(FakeGateway):
    def __init__(self) -> None:
        super().__init__()
        self.reading = asyncio.Event()

    async def read_history(self, uid: int, username: str, limit: int = 20) -> HistoryRead:
        result = await super().read_history(uid, username, limit)
        self.reading.set()
        return result


async def test_cancellation_records_the_action_in_flight() -> None:
    h = Harness()
    gateway = SignallingGateway()
    h.gateway = gateway
    h.executor.gateway = gateway
    task = asyncio.create_task(h.run(JOIN_A, Action("read_messages", "chan_a", 1e6), BROWSE))
    await gateway.reading.wait()  # the read is done; the run now stays in the channel
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert h.outcomes() == [
        ("join_channel", "ok", None),
        ("read_messages", "failed", "interrupted"),
    ]
    assert len(h.gateway.calls) == 2  # the browse never happened


async def test_a_graceful_stop_finishes_the_current_action() -> None:
    h = Harness()
    stop = asyncio.Event()

    class StoppingGateway(FakeGateway):
        async def join_channel(self, uid: int, username: str) -> None:
            await super().join_channel(uid, username)
            stop.set()  # the stop arrives while the first action is in progress

    h.executor.gateway = h.gateway = StoppingGateway()
    outcome = await h.executor.execute(TARGET, plan(JOIN_A, READ_A, BROWSE), stop=stop)
    assert outcome.status == "interrupted" and "stopped" in (outcome.error or "")
    assert h.outcomes() == [("join_channel", "ok", None)]
    assert len(h.gateway.calls) == 1


async def test_a_run_whose_lease_was_reaped_stops() -> None:
    h = Harness(heartbeat_s=5)
    h.recorder.reaped = True
    outcome = await h.run(JOIN_A, Action("read_messages", "chan_a", 40.0), BROWSE)
    assert outcome.status == "partial" and "lost its lease" in (outcome.error or "")
    assert [c[0] for c in h.gateway.calls] == ["join_channel", "read_history"]


async def test_each_action_is_written_before_the_next_one_starts() -> None:
    h = Harness()
    written_before: list[int] = []

    class WatchingGateway(FakeGateway):
        async def _call(self, operation: str, uid: int, channel: str | None = None) -> None:
            written_before.append(len(h.recorder.actions))
            await super()._call(operation, uid, channel)

    h.executor.gateway = h.gateway = WatchingGateway()
    await h.run(JOIN_A, BROWSE, READ_A, IDLE, BROWSE)
    # The nth gateway call (actions 1, 2, 3 and 5) finds every earlier action's row written.
    assert written_before == [0, 1, 2, 4]
