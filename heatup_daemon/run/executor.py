"""Carrying out one plan for one session through the gateway, at a natural pace.

- Between actions: a pause uniform in ``executor.delay_min_s..delay_max_s``, plus, with
  ``executor.long_pause_chance``, an extra one in ``long_pause_min_s..long_pause_max_s``;
  ``read_messages`` and ``idle`` last their ``duration_seconds``. ``executor.time_scale``
  multiplies every wait (0: no waiting at all).
- Each action's row is written as soon as the action ends; an action that calls the gateway
  has its row written ``unknown`` ("in flight") before the call, so that a crash leaves a
  row for every call that may have happened, never none.
- Outcomes follow GATEWAY.md: a failed action does not stop the run; a flood wait sets the
  session's cooldown and ends the run; a lost, frozen or unknown session is set to
  ``needs_attention`` and ends the run; after ``CHANNELS_TOO_MUCH`` the run joins nothing
  more; a gateway that refuses heatup's token ends the run.
- A join whose answer never came (the gateway stayed unavailable) is checked with a
  read-only call: recorded ``ok`` if the session is a member, ``failed`` if not, and
  ``unknown`` if the check fails too; never ``failed`` when it happened.
- The fence: before each gateway call the action's in-flight row is written by a statement
  that succeeds only while the run is ``running`` and its node's lease outlasts the call
  (``RunRecorder.start_call``); a run the reaper ended makes no further call, and one whose
  lease would not cover the call asks for a renewal first. The call has one deadline,
  ``call_budget_s``, for all its requests and their bodies (a read is up to three): it ends
  while the lease the fence checked still holds, as ``transient`` if it ran out. Waits
  write nothing: the node's lease (``lease.NodeLease``) keeps every run of the process
  alive.
- A graceful stop lets the action in progress finish, then ends the run ``interrupted``.
  Cancellation (an admin's disable, or a stop that ran out of time) stops at the next await;
  the action in flight is recorded as failed with code ``interrupted``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, TypeVar

from heatup_daemon.config.sections import ExecutorSettings
from heatup_daemon.enums import ActionCode, ActionKind, Clearance, Outcome, RunStatus
from heatup_daemon.errors import (
    ChannelUnavailable,
    FloodWait,
    GatewayAuthFailed,
    GatewayError,
    GatewayUnavailable,
    InvalidValue,
    SessionGone,
    TooManyChannels,
    UnknownSession,
)
from heatup_daemon.gateway import Gateway
from heatup_daemon.logs import log_context
from heatup_daemon.planner.model import Plan, PlannedAction
from heatup_daemon.records import IN_FLIGHT, ActionRecord, Run
from heatup_daemon.run.events import RunObserver
from heatup_daemon.stores import RunRecorder, carried
from heatup_daemon.timing.clock import Clock

STOPPED: Final = "heatup stopped before the rest of the plan"
LEASE_LOST: Final = "the run lost its lease: another node's reaper ended it"
LEASE_SHORT: Final = "its node's lease could not be renewed to outlast the next gateway call"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How a run ended: ``status`` for ``warmup_runs.status``, ``error`` for its error."""

    status: RunStatus
    error: str | None
    actions: tuple[ActionRecord, ...]

    def count(self, outcome: Outcome) -> int:
        return sum(1 for a in self.actions if a.outcome is outcome)


class _Stop(Exception):
    """Ends the run after the current action; the message says why."""


class Executor:
    def __init__(
        self,
        gateway: Gateway,
        recorder: RunRecorder,
        settings: ExecutorSettings,
        observer: RunObserver,
        *,
        clock: Clock,
        call_budget_s: float,
        renew_lease: Callable[[], Awaitable[None]],
        rng: random.Random | None = None,
    ) -> None:
        self._gateway = gateway
        self._recorder = recorder
        self._settings = settings
        self._observer = observer
        self._clock = clock
        self._call_budget_s = call_budget_s
        self._renew_lease = renew_lease
        self._rng = rng or random.Random()

    async def execute(self, run: Run, plan: Plan, stop: asyncio.Event | None = None) -> RunOutcome:
        """Carry out ``plan``. Once ``stop`` is set, the action in progress finishes and the
        run ends ``interrupted`` (a graceful shutdown)."""
        state = _Run(run, self)

        def stopping() -> bool:
            return stop is not None and stop.is_set()

        try:
            for seq, action in enumerate(plan.actions, start=1):
                if seq > 1 and not stopping():
                    await state.stay(self.pause_s())
                if stopping():
                    return RunOutcome(RunStatus.INTERRUPTED, STOPPED, tuple(state.records))
                await state.perform(seq, action)
        except _Stop as stopped:
            return state.outcome(str(stopped))
        return state.outcome(None)

    def pause_s(self) -> float:
        settings, rng = self._settings, self._rng
        pause = rng.uniform(settings.delay_min_s, settings.delay_max_s)
        if rng.random() < settings.long_pause_chance:
            pause += rng.uniform(settings.long_pause_min_s, settings.long_pause_max_s)
        return pause


class _Run:
    """The state of one run in flight."""

    def __init__(self, run: Run, executor: Executor) -> None:
        self.run = run
        self.gateway = executor._gateway
        self.recorder = executor._recorder
        self.observer = executor._observer
        self.clock = executor._clock
        self.time_scale = executor._settings.time_scale
        self.call_budget_s = executor._call_budget_s
        self.renew_lease = executor._renew_lease
        self.records: list[ActionRecord] = []
        self.joins_blocked = False

    @property
    def gateway_id(self) -> int:
        return self.run.session.gateway_session_id

    def outcome(self, stopped: str | None) -> RunOutcome:
        ok = sum(1 for r in self.records if r.outcome is Outcome.OK)
        total = len(self.records)
        if stopped is not None:
            status = RunStatus.PARTIAL if ok else RunStatus.FAILED
            error: str | None = stopped
        elif ok == total:
            status, error = RunStatus.SUCCEEDED, None
        else:
            status = RunStatus.PARTIAL if ok else RunStatus.FAILED
            error = f"{total - ok} of {total} actions did not succeed"
        return RunOutcome(status, error, tuple(self.records))

    async def clear_call(self, in_flight: ActionRecord) -> float:
        """The fence before a gateway call: write the action's in-flight row, or stop the run
        (``_Stop``) if it may not make the call. Returns the call's deadline (event loop
        time), counted from when the fence was asked: its write ran after that (behind a
        queue of writes, or at its transaction's start), so the lease it checked outlasts
        the deadline. A fence that waited out an outage is asked again, for a deadline that
        leaves the call its time."""
        loop, renewed = asyncio.get_running_loop(), False
        for attempt in range(4):
            asked = loop.time()
            clearance = await self.recorder.start_call(
                self.run.id, in_flight, self.call_budget_s, self.clock.now()
            )
            if clearance is Clearance.CLEARED:
                deadline = asked + self.call_budget_s
                if deadline - loop.time() >= self.call_budget_s / 2 or attempt == 3:
                    return deadline
                continue  # it waited long: judge again from now
            if clearance is Clearance.REAPED:
                raise _Stop(LEASE_LOST)
            if renewed:
                break
            await self.renew_lease()  # the lease would not outlast the call
            renewed = True
        raise _Stop(LEASE_SHORT)

    async def stay(self, seconds: float) -> None:
        """Wait ``seconds`` (scaled)."""
        await self.clock.sleep(seconds * self.time_scale)

    async def perform(self, seq: int, action: PlannedAction) -> None:
        with log_context(action=seq):
            await self._perform(seq, action)

    async def _perform(self, seq: int, action: PlannedAction) -> None:
        started_at, started = self.clock.now(), self.clock.monotonic()
        result = _Result(seq, started_at)
        try:
            if action.action is ActionKind.JOIN_CHANNEL and self.joins_blocked:
                result.skip(
                    TooManyChannels.code,
                    "the session has joined as many channels as Telegram allows",
                )
            else:
                await self._act(action, result)
        except asyncio.CancelledError:
            result.cancelled()
            await carried(self._record(seq, action, started_at, started, result))
            raise
        except GatewayError as error:
            result.fail(error.code, str(error))
            if action.action is ActionKind.JOIN_CHANNEL and isinstance(error, GatewayUnavailable):
                await self._confirm_join(action, result)
            result.stop = await self._react(error)
            result.channel_problem = isinstance(error, ChannelUnavailable)
        except InvalidValue as error:  # a plan value the gateway client refused locally
            result.fail(ActionCode.INVALID, str(error))
        await self._record(seq, action, started_at, started, result)
        if result.channel_problem and result.code is not None and action.channel is not None:
            # After the action row: those rows are the evidence the flag is decided on.
            flagged = await self.recorder.note_channel_failure(
                action.channel, result.code, self.clock.now()
            )
            if flagged is not None:
                self.observer.channel_flagged(self.run, action.channel, flagged)
        if result.stop is not None:
            raise _Stop(result.stop)

    async def _act(self, action: PlannedAction, result: _Result) -> None:
        """Carry out ``action``, noting in ``result`` the seconds spent in gateway calls."""
        gateway, gateway_id, clock = self.gateway, self.gateway_id, self.clock
        kind = action.action
        if kind is ActionKind.IDLE:
            await self.stay(action.duration_seconds or 0.0)  # no gateway call
            return
        deadline = await self.clear_call(self._in_flight(action, result))
        result.calling = True
        before = clock.monotonic()
        if kind is ActionKind.JOIN_CHANNEL:
            assert action.channel is not None
            await self.within(deadline, gateway.join_channel(gateway_id, action.channel))
            result.latency_s = clock.monotonic() - before
        elif kind is ActionKind.READ_MESSAGES:
            assert action.channel is not None
            await self.within(deadline, gateway.read_history(gateway_id, action.channel))
            result.latency_s = clock.monotonic() - before
            await self.stay(action.duration_seconds or 0.0)
        else:
            await self.within(deadline, gateway.browse_dialogs(gateway_id))
            result.latency_s = clock.monotonic() - before

    async def within(self, deadline: float, call: Awaitable[T]) -> T:
        """``call``, cut short at the ``deadline`` its fence cleared it for."""
        try:
            async with asyncio.timeout_at(deadline):
                return await call
        except TimeoutError:
            raise GatewayUnavailable(
                f"no answer within the call's deadline of {self.call_budget_s:g} s"
            ) from None

    @staticmethod
    def _in_flight(action: PlannedAction, result: _Result) -> ActionRecord:
        """The row of an action whose gateway call is about to start."""
        return ActionRecord(
            seq=result.seq,
            kind=action.action,
            channel=action.channel,
            planned_duration_s=action.duration_seconds,
            actual_duration_s=None,
            started_at=result.started_at,
            finished_at=result.started_at,
            outcome=Outcome.UNKNOWN,
            error_code=IN_FLIGHT,
            error_text="heatup stopped while the action was in flight: it may have happened",
        )

    async def _confirm_join(self, action: PlannedAction, result: _Result) -> None:
        """The join's answer was lost: ask, read-only, whether the session is a member."""
        assert action.channel is not None
        deadline = await self.clear_call(self._in_flight(action, result))
        try:
            member = await self.within(
                deadline, self.gateway.is_member(self.gateway_id, action.channel)
            )
        except (GatewayError, InvalidValue):
            member = None
        if member:
            result.outcome, result.code = Outcome.OK, None
            result.text = "joined (confirmed after the gateway's answer was lost)"
        elif member is None:
            result.outcome = Outcome.UNKNOWN
            result.text = f"{result.text} (whether it joined is unknown)"

    async def _react(self, error: GatewayError) -> str | None:
        """Apply GATEWAY.md's consequence of ``error``; return why the run stops, if it does."""
        recorder, session_id = self.recorder, self.run.session.id
        if isinstance(error, FloodWait):
            now = self.clock.now()
            until = now + timedelta(seconds=error.seconds)
            await recorder.set_cooldown(session_id, until, error.seconds, now)
            self.observer.cooldown_set(self.run, until, error.seconds)
            return f"flood wait of {error.seconds} s: cooling down until {until:%Y-%m-%d %H:%M:%S}Z"
        if isinstance(error, SessionGone | UnknownSession):
            reason = (
                f"session {error.reason}: {error}"
                if isinstance(error, SessionGone)
                else "the gateway does not know this session"
            )
            await recorder.mark_needs_attention(session_id, reason)
            self.observer.needs_attention(self.run, reason)
            return f"{reason[:200]}: needs attention"
        if isinstance(error, GatewayAuthFailed):
            return "the gateway refused heatup's token"
        if isinstance(error, TooManyChannels):
            self.joins_blocked = True
        return None

    async def _record(
        self,
        seq: int,
        action: PlannedAction,
        started_at: datetime,
        started: float,
        result: _Result,
    ) -> None:
        """Write the action's row (a join's settles its place in the ledger with it)."""
        clock = self.clock
        record = ActionRecord(
            seq=seq,
            kind=action.action,
            channel=action.channel,
            planned_duration_s=action.duration_seconds,
            actual_duration_s=round(clock.monotonic() - started, 3),
            started_at=started_at,
            finished_at=clock.now(),
            outcome=result.outcome,
            error_code=result.code,
            error_text=result.text,
            gateway_latency_s=None if result.latency_s is None else round(result.latency_s, 4),
        )
        if action.action is ActionKind.JOIN_CHANNEL and action.channel is not None:
            await self.recorder.record_join(self.run, record)
        else:
            await self.recorder.record_action(self.run.id, record)
        self.records.append(record)
        self.observer.action_ended(self.run, record)


class _Result:
    """What happened to one action, as it becomes known."""

    def __init__(self, seq: int, started_at: datetime) -> None:
        self.seq = seq
        self.started_at = started_at
        self.outcome = Outcome.OK
        self.code: str | None = None
        self.text: str | None = None
        self.latency_s: float | None = None
        self.stop: str | None = None
        self.channel_problem = False
        self.calling = False  # its gateway call has started

    def fail(self, code: str, text: str) -> None:
        self.outcome, self.code, self.text = Outcome.FAILED, code, text

    def cancelled(self) -> None:
        """The run was cancelled during this action: what can be said of it."""
        if self.latency_s is not None:  # the call was made; the stay after it was cut short
            self.outcome, self.code = Outcome.OK, None
            self.text = "the stay after it was cut short: the run was cancelled"
        elif self.calling:  # the call may have reached Telegram
            self.outcome, self.code = Outcome.UNKNOWN, ActionCode.INTERRUPTED
            self.text = "the run was cancelled during the gateway call: it may have happened"
        else:
            self.fail(ActionCode.INTERRUPTED, "cancelled")

    def skip(self, code: str, text: str) -> None:
        self.outcome, self.code, self.text = Outcome.SKIPPED, code, text
