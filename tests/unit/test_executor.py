"""The executor against a scripted gateway, the in-memory store and a fake clock."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from heatup_daemon.config.sections import ExecutorSettings, SchedulerSettings
from heatup_daemon.enums import ActionKind, Clearance, Outcome, PlanSource, RunStatus, Trigger
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
from heatup_daemon.gateway import HistoryRead
from heatup_daemon.lease import NodeLease
from heatup_daemon.planner.model import Plan, PlannedAction, step
from heatup_daemon.records import ActionRecord, Run
from heatup_daemon.run.executor import Executor, RunOutcome
from heatup_daemon.testing import FakeClock, FakeGateway, InMemoryStore, RecordingObserver
from heatup_daemon.validation import validate_channel
from tests.builders import session_spec

START = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SETTINGS = ExecutorSettings(time_scale=1.0, long_pause_chance=0.0, delay_min_s=3, delay_max_s=3)
LEASE_S, CALL_BUDGET_S = 120, 50


def plan(*actions: PlannedAction) -> Plan:
    return Plan(tuple(actions), PlanSource.FALLBACK)


JOIN_A = step(ActionKind.JOIN_CHANNEL, "chan_a")
JOIN_B = step(ActionKind.JOIN_CHANNEL, "chan_b")
READ_A = step(ActionKind.READ_MESSAGES, "chan_a", 20.0)
BROWSE = step(ActionKind.BROWSE_DIALOGS)
IDLE = step(ActionKind.IDLE, None, 7.0)


class SpyStore(InMemoryStore):
    """The in-memory store, keeping every fence and channel failure it was asked about."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.fences: list[tuple[datetime, Clearance]] = []
        self.channel_failures: list[tuple[str, str]] = []
        self.reaped = False  # another node's reaper ends the run before the next fence

    async def start_call(
        self, run_id: int, record: ActionRecord, budget_s: float, now: datetime
    ) -> Clearance:
        if self.reaped:
            self._update(run_id, status=RunStatus.INTERRUPTED, error="reaped elsewhere")
        clearance = await super().start_call(run_id, record, budget_s, now)
        self.fences.append((now, clearance))
        return clearance

    async def note_channel_failure(self, channel: str, code: str, at: datetime) -> str | None:
        self.channel_failures.append((channel, code))
        return await super().note_channel_failure(channel, code, at)


class Harness:
    def __init__(
        self, settings: ExecutorSettings = SETTINGS, call_budget_s: float = CALL_BUDGET_S
    ) -> None:
        self.call_budget_s = call_budget_s
        self.clock = FakeClock(START)
        self.gateway = FakeGateway()
        self.store = SpyStore(self.clock)
        self.observer = RecordingObserver()
        self.settings = settings
        timing = SchedulerSettings(stale_run_s=LEASE_S, heartbeat_s=15)
        self.lease = NodeLease(self.store, "n1", timing, clock=self.clock)
        self.run_id = 0

    def executor(self) -> Executor:
        return Executor(
            self.gateway,
            self.store,
            self.settings,
            self.observer,
            clock=self.clock,
            call_budget_s=self.call_budget_s,
            renew_lease=self.lease.renew,
            rng=random.Random(4),
        )

    async def start(self) -> Run:
        for name in ("chan_a", "chan_b"):
            await self.store.add_channel(
                validate_channel(username=name, title=None, category=None, description=None)
            )
        await self.store.add_session(session_spec(77))
        node = await self.lease.acquire()
        run = await self.store.start_run(77, Trigger.CLI, self.clock.now(), node)
        self.run_id = run.id
        return run

    async def run(self, *actions: PlannedAction, stop: asyncio.Event | None = None) -> RunOutcome:
        return await self.executor().execute(await self.start(), plan(*actions), stop)

    @property
    def session(self) -> dict[str, object]:
        return next(iter(self.store.sessions.values()))

    @property
    def actions(self) -> list[object]:
        return list(self.store.runs[self.run_id].actions)

    def outcomes(self) -> list[tuple[str, str, str | None]]:
        run = self.store.runs[self.run_id]
        return [(a.kind, a.outcome, a.error_code) for a in run.actions]

    def joined(self) -> list[str]:
        return sorted(
            self.store.channels[c]["username"] for s in self.store.joined.values() for c in s
        )


async def test_a_clean_run() -> None:
    h = Harness()
    outcome = await h.run(JOIN_A, READ_A, BROWSE, IDLE)
    assert (outcome.status, outcome.error) == (RunStatus.SUCCEEDED, None)
    assert h.gateway.calls == [
        ("join_channel", 77, "chan_a"),
        ("read_history", 77, "chan_a"),
        ("browse_dialogs", 77, None),
    ]
    assert h.joined() == ["chan_a"]
    run = h.store.runs[h.run_id]
    assert [a.seq for a in run.actions] == [1, 2, 3, 4]
    # Three pauses of 3 s, a 20 s read and a 7 s idle: 36 s of waiting, nothing else.
    assert sum(h.clock.sleeps) == pytest.approx(36.0)
    assert run.actions[1].actual_duration_s == pytest.approx(20.0)
    assert [e.seq for e in h.observer.of("action_ended")] == [1, 2, 3, 4]  # type: ignore[attr-defined]


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
        InMemoryStore(),
        settings,
        RecordingObserver(),
        clock=FakeClock(),
        call_budget_s=CALL_BUDGET_S,
        renew_lease=_no_renewal,
        rng=random.Random(2),
    )
    pauses = [executor.pause_s() for _ in range(2000)]
    assert min(pauses) >= 3 and max(pauses) <= 20
    long = [p for p in pauses if p > 10]
    assert 0.2 < len(long) / len(pauses) < 0.5  # some of the half with a long pause


async def _no_renewal() -> None:
    raise AssertionError("no renewal expected")


async def test_waits_write_nothing_and_every_call_is_fenced() -> None:
    h = Harness()
    await h.run(JOIN_A, step(ActionKind.READ_MESSAGES, "chan_a", 40.0), IDLE, BROWSE)
    # One fence per gateway call, right before it; the 40 s read and the idle wrote nothing.
    assert [at for at, _ in h.store.fences] == [START, START + timedelta(seconds=3),
                                                 START + timedelta(seconds=56)]  # fmt: skip
    assert {clearance for _, clearance in h.store.fences} == {Clearance.CLEARED}
    assert len(h.gateway.calls) == 3


async def test_flood_wait_stops_the_run_and_cools_the_session() -> None:
    h = Harness()
    h.gateway.fail[("join_channel", "chan_b")] = FloodWait(73, "wait")
    outcome = await h.run(JOIN_A, JOIN_B, READ_A, BROWSE)
    assert outcome.status == "partial" and "flood wait of 73 s" in (outcome.error or "")
    assert h.outcomes() == [("join_channel", "ok", None), ("join_channel", "failed", "FLOOD_WAIT")]
    flood_at = outcome.actions[1].finished_at
    assert h.session["cooldown_until"] == flood_at + timedelta(seconds=73)
    assert h.session["flood_wait_s"] == 73
    assert h.observer.of("cooldown_set") == [flood_at + timedelta(seconds=73)]
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
    assert h.session["state"] == "needs_attention" and h.session["state_reason"]
    assert len(h.observer.of("needs_attention")) == 1


async def test_auth_failure_stops_without_blaming_the_session() -> None:
    h = Harness()
    h.gateway.fail["browse_dialogs"] = GatewayAuthFailed("refused")
    outcome = await h.run(BROWSE, JOIN_A, IDLE)
    assert outcome.status == "failed" and "token" in (outcome.error or "")
    assert h.session["state"] == "active" and h.session["cooldown_until"] is None


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
    assert h.store.channel_failures == [("chan_a", "CHANNEL_PRIVATE")]  # only channel codes
    assert h.joined() == []


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

    async def read_history(self, gateway_id: int, username: str, limit: int = 20) -> HistoryRead:
        result = await super().read_history(gateway_id, username, limit)
        self.reading.set()
        return result


async def test_cancellation_records_the_action_in_flight() -> None:
    h = Harness()
    gateway = SignallingGateway()
    h.gateway = gateway
    task = asyncio.create_task(h.run(JOIN_A, step(ActionKind.READ_MESSAGES, "chan_a", 1e6), BROWSE))
    await gateway.reading.wait()  # the read is done; the run now stays in the channel
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The read happened; only the stay after it was cut short.
    assert h.outcomes() == [("join_channel", "ok", None), ("read_messages", "ok", None)]
    assert "cut short" in (h.store.runs[h.run_id].actions[1].error_text or "")
    assert len(h.gateway.calls) == 2  # the browse never happened


async def test_cancellation_during_a_call_leaves_it_unknown_and_the_join_counted() -> None:
    h = Harness()
    reached, never = asyncio.Event(), asyncio.Event()

    class Hanging(FakeGateway):
        async def join_channel(self, gateway_id: int, username: str) -> None:
            await super().join_channel(gateway_id, username)
            reached.set()
            await never.wait()

    h.gateway = Hanging()
    task = asyncio.create_task(h.run(JOIN_A, BROWSE))
    await reached.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert h.outcomes() == [("join_channel", "unknown", "interrupted")]


async def test_a_graceful_stop_finishes_the_current_action() -> None:
    h = Harness()
    stop = asyncio.Event()

    class StoppingGateway(FakeGateway):
        async def join_channel(self, gateway_id: int, username: str) -> None:
            await super().join_channel(gateway_id, username)
            stop.set()  # the stop arrives while the first action is in progress

    h.gateway = StoppingGateway()
    outcome = await h.run(JOIN_A, READ_A, BROWSE, stop=stop)
    assert outcome.status == "interrupted" and "stopped" in (outcome.error or "")
    assert h.outcomes() == [("join_channel", "ok", None)]
    assert len(h.gateway.calls) == 1


async def test_a_run_whose_lease_was_reaped_stops() -> None:
    h = Harness()

    class ReapedDuringTheCall(FakeGateway):
        async def _call(self, operation: str, gateway_id: int, channel: str | None) -> None:
            h.store.reaped = True  # meanwhile another node's reaper ends the run
            await super()._call(operation, gateway_id, channel)

    h.gateway = ReapedDuringTheCall()
    outcome = await h.run(JOIN_A, READ_A, BROWSE)
    assert outcome.status == "partial" and "lost its lease" in (outcome.error or "")
    assert [c[0] for c in h.gateway.calls] == ["join_channel"]  # nothing after the reap
    assert h.store.fences[-1][1] is Clearance.REAPED


async def test_each_action_is_written_before_the_next_one_starts() -> None:
    h = Harness()
    seen: list[list[tuple[int, str]]] = []

    class WatchingGateway(FakeGateway):
        async def _call(self, operation: str, gateway_id: int, channel: str | None) -> None:
            rows = h.store.runs[h.run_id].actions
            seen.append([(row.seq, row.outcome.value) for row in rows])
            await super()._call(operation, gateway_id, channel)

    h.gateway = WatchingGateway()
    await h.run(JOIN_A, BROWSE, READ_A, IDLE, BROWSE)
    # At each gateway call (actions 1, 2, 3 and 5) every earlier action's row is final, and
    # the action's own row is already there, "unknown" while its call is in flight.
    assert seen == [
        [(1, "unknown")],
        [(1, "ok"), (2, "unknown")],
        [(1, "ok"), (2, "ok"), (3, "unknown")],
        [(1, "ok"), (2, "ok"), (3, "ok"), (4, "ok"), (5, "unknown")],
    ]


async def test_a_crash_during_a_call_leaves_the_action_unknown_not_missing() -> None:
    h = Harness()
    reached, release = asyncio.Event(), asyncio.Event()

    class Stuck(FakeGateway):
        async def browse_dialogs(self, gateway_id: int, limit: int = 20) -> int:
            await super().browse_dialogs(gateway_id, limit)
            reached.set()
            await release.wait()  # the call reached the gateway; the process dies now
            return 0

    h.gateway = Stuck()
    task = asyncio.create_task(h.run(JOIN_A, BROWSE))
    await reached.wait()
    crashed = h.store.runs[h.run_id]  # what a SIGKILL now would leave behind
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [(a.seq, a.outcome, a.error_code) for a in crashed.actions] == [
        (1, Outcome.OK, None),
        (2, Outcome.UNKNOWN, "in_flight"),
    ]


async def test_no_gateway_call_after_the_reaper_ended_the_run() -> None:
    h = Harness(ExecutorSettings(time_scale=0))
    run = await h.start()
    h.store.reaped = True  # e.g. the loop was stuck and another node judged this one dead
    outcome = await h.executor().execute(run, plan(BROWSE, JOIN_A))
    assert h.gateway.calls == []  # the fence came first, and the run was gone
    assert outcome.error is not None and "lost its lease" in outcome.error
    assert h.actions == []  # nothing was attempted, nothing is recorded


async def test_a_lease_too_short_for_the_call_is_renewed_first() -> None:
    h = Harness(ExecutorSettings(time_scale=0))
    run = await h.start()
    h.clock.advance(LEASE_S - CALL_BUDGET_S + 1)  # no renewal came (the database was away)
    outcome = await h.executor().execute(run, plan(BROWSE))
    assert [c for _, c in h.store.fences] == [Clearance.LEASE_SHORT, Clearance.CLEARED]
    assert outcome.status is RunStatus.SUCCEEDED and len(h.gateway.calls) == 1


async def test_a_lease_that_cannot_be_renewed_makes_no_call() -> None:
    h = Harness(ExecutorSettings(time_scale=0))
    run = await h.start()
    h.clock.advance(LEASE_S - CALL_BUDGET_S + 1)
    await h.store.release_node(h.lease.node)  # its row is gone: renewal registers anew
    outcome = await h.executor().execute(run, plan(BROWSE))
    assert h.gateway.calls == []
    assert "could not be renewed" in (outcome.error or "")


@pytest.mark.parametrize(
    ("member", "outcome", "joined"),
    [(True, Outcome.OK, ["chan_a"]), (False, Outcome.FAILED, []), (None, Outcome.UNKNOWN, [])],
)
async def test_a_join_whose_answer_was_lost_is_confirmed_read_only(
    member: bool | None, outcome: Outcome, joined: list[str]
) -> None:
    h = Harness()
    h.gateway.fail["join_channel"] = GatewayUnavailable("the answer never came")
    h.gateway.members["chan_a"] = member
    result = await h.run(JOIN_A, BROWSE)
    assert h.gateway.calls[:2] == [("join_channel", 77, "chan_a"), ("is_member", 77, "chan_a")]
    assert result.actions[0].outcome is outcome
    assert h.joined() == joined
    if outcome is Outcome.OK:
        assert result.actions[0].error_code is None and "confirmed" in (
            result.actions[0].error_text or ""
        )


async def test_a_failed_confirmation_leaves_the_join_unknown() -> None:
    h = Harness()
    h.gateway.fail["join_channel"] = GatewayUnavailable("lost")
    h.gateway.fail["is_member"] = GatewayUnavailable("still down")
    result = await h.run(JOIN_A)
    assert result.actions[0].outcome is Outcome.UNKNOWN
    assert result.actions[0].error_code == "transient"


class TrickleGateway(FakeGateway):
    """A read made of three requests, each answered ``each_s`` late (the loop's seconds)."""

    def __init__(self, each_s: float) -> None:
        super().__init__()
        self.each_s = each_s
        self.requests_answered = 0

    async def read_history(self, gateway_session_id: int, username: str, limit: int = 20) -> Any:
        for _ in range(3):  # resolve, history, read
            await asyncio.sleep(self.each_s)
            self.requests_answered += 1
        return await super().read_history(gateway_session_id, username, limit)


async def test_an_action_ends_within_the_budget_its_fence_cleared() -> None:
    # Each request is within the budget; the three of one read are not.
    h = Harness(call_budget_s=0.5)
    h.gateway = TrickleGateway(each_s=0.3)
    loop = asyncio.get_running_loop()
    began = loop.time()
    outcome = await h.run(READ_A)
    assert loop.time() - began < 0.85  # cut at the deadline, before the read's third answer
    assert h.gateway.requests_answered <= 1
    assert h.outcomes() == [("read_messages", "failed", "transient")]
    assert "deadline of 0.5 s" in (h.actions[0].error_text or "")  # type: ignore[attr-defined]
    assert outcome.status is RunStatus.FAILED
