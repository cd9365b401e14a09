"""Carrying out one plan for one session through the gateway, at a natural pace.

- Between actions: a pause uniform in ``executor.delay_min_s..delay_max_s``, plus, with
  ``executor.long_pause_chance``, an extra one in ``long_pause_min_s..long_pause_max_s``;
  ``read_messages`` and ``idle`` last their ``duration_s``. ``executor.time_scale`` multiplies
  every wait (0: no waiting at all).
- Each action's row is written as soon as the action ends, so a crash loses at most the
  action in flight.
- Outcomes follow GATEWAY.md: a failed action does not stop the run; a flood wait sets the
  session's cooldown and ends the run; a lost, frozen or unknown session is set to
  ``needs_attention`` and ends the run; after ``CHANNELS_TOO_MUCH`` the run joins nothing
  more; a gateway that refuses heatup's token ends the run.
- The run's heartbeat (its lease on the session) is renewed at least every ``heartbeat_s``
  while it waits or acts; a run whose lease was taken by the reaper stops.
- A graceful stop lets the action in progress finish, then ends the run ``interrupted``.
  Cancellation (an admin's disable, or a stop that ran out of time) stops at the next await;
  the action in flight is recorded as failed with code ``interrupted``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Protocol

from heatup_daemon import metrics
from heatup_daemon.clock import Clock
from heatup_daemon.config import ExecutorSettings
from heatup_daemon.db.runs import ActionRecord
from heatup_daemon.errors import (
    ChannelUnavailable,
    FloodWait,
    GatewayAuthFailed,
    GatewayError,
    InvalidValue,
    SessionGone,
    TooManyChannels,
    UnknownSession,
)
from heatup_daemon.gateway import Gateway
from heatup_daemon.planner.model import Action, Plan

INTERRUPTED: Final = "interrupted"
STOPPED: Final = "heatup stopped before the rest of the plan"


class RunRecorder(Protocol):
    """Where the executor writes what happens (the repository, or a fake in unit tests)."""

    async def record_action(self, run_id: int, record: ActionRecord) -> None: ...
    async def heartbeat(self, run_id: int, at: datetime) -> bool: ...
    async def set_cooldown(self, session_id: int, until: datetime) -> None: ...
    async def mark_needs_attention(self, session_id: int, reason: str) -> None: ...
    async def record_join(self, session_id: int, channel: str, at: datetime) -> None: ...
    async def note_channel_failure(self, channel: str, code: str, at: datetime) -> bool: ...


@dataclass(frozen=True, slots=True)
class RunTarget:
    run_id: int
    session_id: int
    gateway_session_id: int


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How a run ended: ``status`` for ``warmup_runs.status``, ``error`` for its error."""

    status: str
    error: str | None
    actions: tuple[ActionRecord, ...]

    def count(self, outcome: str) -> int:
        return sum(1 for a in self.actions if a.outcome == outcome)


# Hears of each action as soon as its row is written (live output, metrics).
ActionObserver = Callable[[RunTarget, ActionRecord], None]


class _Stop(Exception):
    """Ends the run after the current action; the message says why."""


class Executor:
    def __init__(
        self,
        gateway: Gateway,
        recorder: RunRecorder,
        settings: ExecutorSettings,
        *,
        clock: Clock,
        heartbeat_s: float,
        rng: random.Random | None = None,
    ) -> None:
        self.gateway = gateway
        self.recorder = recorder
        self.settings = settings
        self.clock = clock
        self.heartbeat_s = heartbeat_s
        self.rng = rng or random.Random()

    async def execute(
        self,
        target: RunTarget,
        plan: Plan,
        on_action: ActionObserver | None = None,
        stop: asyncio.Event | None = None,
    ) -> RunOutcome:
        """Carry out ``plan``. Once ``stop`` is set, the action in progress finishes and the
        run ends ``interrupted`` (a graceful shutdown)."""
        run = _Run(self, target, on_action)

        def stopping() -> bool:
            return stop is not None and stop.is_set()

        try:
            for seq, action in enumerate(plan.actions, start=1):
                if seq > 1 and not stopping():
                    await run.stay(self.pause_s())
                if stopping():
                    return RunOutcome(INTERRUPTED, STOPPED, tuple(run.records))
                await run.perform(seq, action)
        except _Stop as stopped:
            return run.outcome(str(stopped))
        return run.outcome(None)

    def pause_s(self) -> float:
        settings, rng = self.settings, self.rng
        pause = rng.uniform(settings.delay_min_s, settings.delay_max_s)
        if rng.random() < settings.long_pause_chance:
            pause += rng.uniform(settings.long_pause_min_s, settings.long_pause_max_s)
        return pause


class _Run:
    """The state of one run in flight."""

    def __init__(
        self, executor: Executor, target: RunTarget, on_action: ActionObserver | None
    ) -> None:
        self.executor = executor
        self.target = target
        self.on_action = on_action
        self.records: list[ActionRecord] = []
        self.joins_blocked = False
        self.last_beat = executor.clock.monotonic()

    def outcome(self, stopped: str | None) -> RunOutcome:
        ok = sum(1 for r in self.records if r.outcome == "ok")
        total = len(self.records)
        if stopped is not None:
            status = "partial" if ok else "failed"
            error: str | None = stopped
        elif ok == total:
            status, error = "succeeded", None
        else:
            status = "partial" if ok else "failed"
            error = f"{total - ok} of {total} actions did not succeed"
        return RunOutcome(status, error, tuple(self.records))

    async def beat(self) -> None:
        clock = self.executor.clock
        self.last_beat = clock.monotonic()
        if not await self.executor.recorder.heartbeat(self.target.run_id, clock.now()):
            raise _Stop("the run lost its lease: the reaper marked it interrupted")

    async def stay(self, seconds: float) -> None:
        """Wait ``seconds`` (scaled), refreshing the heartbeat every heartbeat_s meanwhile."""
        clock, heartbeat_s = self.executor.clock, self.executor.heartbeat_s
        remaining = seconds * self.executor.settings.time_scale
        while remaining > 0:
            until_beat = heartbeat_s - (clock.monotonic() - self.last_beat)
            slice_s = min(remaining, max(until_beat, 0.0))
            await clock.sleep(slice_s)
            remaining -= slice_s
            if clock.monotonic() - self.last_beat >= heartbeat_s:
                await self.beat()

    async def perform(self, seq: int, action: Action) -> None:
        clock = self.executor.clock
        started_at, started = clock.now(), clock.monotonic()
        latency: float | None = None
        code: str | None = None
        text: str | None = None
        stop: str | None = None
        outcome = "ok"
        channel_problem = False
        try:
            if action.kind == "join_channel" and self.joins_blocked:
                outcome, code = "skipped", TooManyChannels.code
                text = "the session has joined as many channels as Telegram allows"
            else:
                latency = await self._act(action)
        except asyncio.CancelledError:
            record = self._record(
                seq, action, started_at, started, latency, "failed", INTERRUPTED, "cancelled"
            )
            await asyncio.shield(record)
            raise
        except GatewayError as error:
            outcome, code, text = "failed", error.code, str(error)[:500]
            channel_problem = isinstance(error, ChannelUnavailable)
            stop = await self._react(error)
        except InvalidValue as error:  # a plan value the gateway client refused locally
            outcome, code, text = "failed", "invalid", str(error)[:500]
        await self._record(seq, action, started_at, started, latency, outcome, code, text)
        if channel_problem and code is not None and action.channel is not None:
            # After the action row: those rows are the evidence the flag is decided on.
            await self.executor.recorder.note_channel_failure(action.channel, code, clock.now())
        if clock.monotonic() - self.last_beat >= self.executor.heartbeat_s:
            await self.beat()
        if stop is not None:
            raise _Stop(stop)

    async def _act(self, action: Action) -> float | None:
        """Carry out ``action``; return the seconds spent in gateway calls."""
        gateway, uid, clock = (
            self.executor.gateway,
            self.target.gateway_session_id,
            self.executor.clock,
        )
        before = clock.monotonic()
        if action.kind == "join_channel":
            assert action.channel is not None
            await gateway.join_channel(uid, action.channel)
            latency = clock.monotonic() - before
            await self.executor.recorder.record_join(
                self.target.session_id, action.channel, clock.now()
            )
            return latency
        if action.kind == "read_messages":
            assert action.channel is not None
            await gateway.read_history(uid, action.channel)
            latency = clock.monotonic() - before
            await self.stay(action.duration_s or 0.0)
            return latency
        if action.kind == "browse_dialogs":
            await gateway.browse_dialogs(uid)
            return clock.monotonic() - before
        await self.stay(action.duration_s or 0.0)  # idle: no gateway call
        return None

    async def _react(self, error: GatewayError) -> str | None:
        """Apply GATEWAY.md's consequence of ``error``; return why the run stops, if it does."""
        recorder, session_id = self.executor.recorder, self.target.session_id
        if isinstance(error, FloodWait):
            metrics.FLOOD_WAIT_SECONDS.inc(error.seconds)
            until = self.executor.clock.now() + timedelta(seconds=error.seconds)
            await recorder.set_cooldown(session_id, until)
            return f"flood wait of {error.seconds} s: cooling down until {until:%Y-%m-%d %H:%M:%S}Z"
        if isinstance(error, SessionGone):
            await recorder.mark_needs_attention(session_id, f"session {error.reason}: {error}")
            return f"session {error.reason}: needs attention"
        if isinstance(error, UnknownSession):
            await recorder.mark_needs_attention(
                session_id, "the gateway does not know this session"
            )
            return "the gateway does not know this session: needs attention"
        if isinstance(error, GatewayAuthFailed):
            return "the gateway refused heatup's token"
        if isinstance(error, TooManyChannels):
            self.joins_blocked = True
        return None

    async def _record(
        self,
        seq: int,
        action: Action,
        started_at: datetime,
        started: float,
        latency: float | None,
        outcome: str,
        code: str | None,
        text: str | None,
    ) -> None:
        clock = self.executor.clock
        record = ActionRecord(
            seq=seq,
            kind=action.kind,
            channel=action.channel,
            planned_duration_s=action.duration_s,
            actual_duration_s=round(clock.monotonic() - started, 3),
            started_at=started_at,
            finished_at=clock.now(),
            outcome=outcome,
            error_code=code,
            error_text=text,
            gateway_latency_s=None if latency is None else round(latency, 4),
        )
        await self.executor.recorder.record_action(self.target.run_id, record)
        metrics.ACTIONS.labels(record.kind, record.outcome).inc()
        metrics.ACTION_DURATION.labels(record.kind).observe(record.actual_duration_s or 0.0)
        self.records.append(record)
        if self.on_action is not None:
            self.on_action(self.target, record)
