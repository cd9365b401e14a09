"""Writes that must land: a run's plan, each action, the session state a run changes, the
run's end, its lease. While the database is unavailable they are retried, with capped
backoff, until it answers again; the run waits (and makes no gateway call) meanwhile. Once
a stop has run out of time (``cut_short`` is set), a write is tried once more and then
given up (``DatabaseUnavailable``): the reaper ends what it leaves ``running``.

Every write retried here is idempotent, so one that landed before its acknowledgement was
lost is not stored twice: actions are unique per (run, seq), joins per (session, channel),
and the rest are updates to a value.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Final, TypeVar

from heatup_daemon.enums import Clearance, JoinRefusal, RunStatus, Trigger
from heatup_daemon.errors import DatabaseUnavailable
from heatup_daemon.records import (
    ActionRecord,
    JoinLimits,
    Node,
    PlanningFacts,
    Run,
    RunInFlight,
    StoredPlan,
)
from heatup_daemon.session import Session
from heatup_daemon.stores import RunRecorder
from heatup_daemon.timing.clock import Clock

log = logging.getLogger(__name__)

T = TypeVar("T")

BACKOFF_INITIAL_S: Final = 0.5
BACKOFF_MAX_S: Final = 10.0


class DurableRecorder:
    """A ``RunRecorder`` whose writes wait out database outages."""

    def __init__(
        self, recorder: RunRecorder, clock: Clock, cut_short: asyncio.Event | None = None
    ) -> None:
        self._recorder = recorder
        self._clock = clock
        self._cut_short = cut_short or asyncio.Event()

    async def _durably(self, what: str, write: Callable[[], Awaitable[T]]) -> T:
        delay_s = BACKOFF_INITIAL_S
        warned = False
        while True:
            try:
                result = await write()
            except DatabaseUnavailable as exc:
                if self._cut_short.is_set():
                    raise
                if not warned:
                    log.warning(
                        "cannot write %s yet, retrying until the database answers: %s", what, exc
                    )
                    warned = True
                await self._pause(delay_s)
                delay_s = min(delay_s * 2, BACKOFF_MAX_S)
                continue
            if warned:
                log.info("wrote %s after the database came back", what)
            return result

    async def _pause(self, delay_s: float) -> None:
        """The backoff's sleep, cut short by a stop that ran out of time."""
        sleeping = asyncio.ensure_future(self._clock.sleep(delay_s))
        cut = asyncio.ensure_future(self._cut_short.wait())
        try:
            await asyncio.wait([sleeping, cut], return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeping.cancel()
            cut.cancel()
            await asyncio.wait([sleeping, cut])  # both gone before this returns

    async def start_run(
        self, gateway_session_id: int, trigger: Trigger, now: datetime, node: Node
    ) -> Run:
        return await self._recorder.start_run(gateway_session_id, trigger, now, node)

    async def runs_in_flight(self, node: Node) -> list[RunInFlight]:
        return await self._recorder.runs_in_flight(node)

    async def planning_facts(self, session: Session, now: datetime) -> PlanningFacts:
        return await self._recorder.planning_facts(session, now)

    async def set_run_plan(self, run_id: int, plan: StoredPlan) -> None:
        await self._durably("the run's plan", lambda: self._recorder.set_run_plan(run_id, plan))

    async def record_action(self, run_id: int, record: ActionRecord) -> None:
        await self._durably(
            f"action {record.seq}", lambda: self._recorder.record_action(run_id, record)
        )

    async def start_call(
        self, run_id: int, record: ActionRecord, budget_s: float, now: datetime
    ) -> Clearance:
        # Retried through an outage with the moment of each attempt: the fence is decided
        # when the write lands, never on a stale reading.
        return await self._durably(
            f"action {record.seq}",
            lambda: self._recorder.start_call(run_id, record, budget_s, self._clock.now()),
        )

    async def finish_run(
        self, run_id: int, status: RunStatus, error: str | None, at: datetime
    ) -> RunStatus:
        return await self._durably(
            "the run's end", lambda: self._recorder.finish_run(run_id, status, error, at)
        )

    async def set_cooldown(
        self, session_id: int, until: datetime, wait_s: int, at: datetime
    ) -> None:
        await self._durably(
            "the session's cooldown",
            lambda: self._recorder.set_cooldown(session_id, until, wait_s, at),
        )

    async def mark_needs_attention(self, session_id: int, reason: str) -> None:
        await self._durably(
            "the session's state", lambda: self._recorder.mark_needs_attention(session_id, reason)
        )

    async def reserve_joins(
        self, run: Run, channels: Sequence[str], limits: JoinLimits, now: datetime
    ) -> dict[str, JoinRefusal | None]:
        return await self._durably(
            "the plan's join reservations",
            lambda: self._recorder.reserve_joins(run, channels, limits, now),
        )

    async def record_join(self, run: Run, record: ActionRecord) -> None:
        await self._durably(f"action {record.seq}", lambda: self._recorder.record_join(run, record))

    async def note_channel_failure(self, channel: str, code: str, at: datetime) -> str | None:
        return await self._durably(
            "the channel's failure", lambda: self._recorder.note_channel_failure(channel, code, at)
        )
