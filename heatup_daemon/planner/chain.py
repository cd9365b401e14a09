"""``LLMWithFallback``: the LLM plans when it can, the built-in planner otherwise.

The fallback plans when the LLM fails or answers too little, when the day's token budget
is spent, and while the circuit breaker is open after ``llm.breaker_failures`` consecutive
failures, so that a dead LLM does not add its timeout to every run. After
``llm.breaker_cooloff_s`` the breaker lets exactly one run try the LLM (half-open): its
success closes the breaker, its failure opens it again; every other run meanwhile plans with
the fallback and never waits for the LLM.

The budget is counted in the database (``ports.TokenLedger``), per UTC day, across every
node and restart. Before a call, as many tokens as the plan can cost at most
(``LLMPlanner.tokens_at_most``) are reserved, atomically: a call that would not fit is not
made, however many runs and nodes plan at once. After it, the difference from what it cost
is given back. A count the database could not take (it was away) is carried into the
process's next write to the ledger.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import replace
from datetime import date
from typing import Final

from heatup_daemon.errors import DatabaseUnavailable, PlannerUnavailable
from heatup_daemon.planner.fallback import FallbackPlanner
from heatup_daemon.planner.llm import LLMPlanner
from heatup_daemon.planner.model import Plan, PlanContext
from heatup_daemon.stores import TokenLedger
from heatup_daemon.timing.clock import Clock

log = logging.getLogger(__name__)

BREAKER_OPEN: Final = "LLM circuit breaker open"
BUDGET_SPENT: Final = "daily token budget spent"
BUDGET_UNKNOWN: Final = "daily token budget unknown: the database is unavailable"


class CircuitBreaker:
    """Closed, open (for ``cooloff_s`` after ``failures`` consecutive failures), or
    half-open: one trial call in flight, everyone else refused until it reports."""

    def __init__(self, failures: int, cooloff_s: float, clock: Clock) -> None:
        self._threshold = failures
        self._cooloff_s = cooloff_s
        self._clock = clock
        self.consecutive_failures = 0
        self._open_until: float | None = None
        self._trial = False

    def acquire(self) -> bool:
        """Whether this caller may call the LLM now. After a ``True`` the caller must report
        ``success``, ``failure`` or ``release``."""
        if self._open_until is None:
            return True
        if self._trial or self._clock.monotonic() < self._open_until:
            return False
        self._trial = True  # half-open: this caller is the one trial
        return True

    def success(self) -> None:
        self.consecutive_failures = 0
        self._open_until = None
        self._trial = False

    def failure(self) -> None:
        self.consecutive_failures += 1
        self._trial = False
        if self.consecutive_failures >= self._threshold:
            self._open_until = self._clock.monotonic() + self._cooloff_s

    def release(self) -> None:
        """The call ended without a verdict (it was cancelled): let another caller try."""
        self._trial = False


class LLMWithFallback:
    """The daemon's ``Planner`` when an LLM is configured."""

    def __init__(
        self,
        llm: LLMPlanner,
        fallback: FallbackPlanner,
        breaker: CircuitBreaker,
        ledger: TokenLedger,
        daily_token_budget: int,
        clock: Clock,
    ) -> None:
        self.llm = llm
        self.fallback = fallback
        self.breaker = breaker
        self._ledger = ledger
        self._daily = daily_token_budget
        self._clock = clock
        # Settlements not yet written (the database was away): what each plan's key used.
        self._owed: dict[str, int] = {}
        self._paying = asyncio.Lock()

    async def aclose(self) -> None:
        await self.llm.aclose()

    async def plan(self, context: PlanContext) -> Plan:
        if not self.breaker.acquire():
            return self.fallback.plan_now(context, BREAKER_OPEN)
        reserved = self.llm.tokens_at_most(context)
        key = str(uuid.uuid4())
        try:
            refusal = await self._reserve(key, self._clock.now().date(), reserved)
        except BaseException:
            self.breaker.release()
            raise
        if refusal is not None:
            self.breaker.release()
            return self.fallback.plan_now(context, refusal)
        try:
            plan = await self.llm.plan(context)
        except PlannerUnavailable as exc:
            self.breaker.failure()
            await self._settle(key, exc.prompt_tokens + exc.completion_tokens)
            log.warning("LLM planning failed, the built-in planner plans this run: %s", exc)
            fallback = self.fallback.plan_now(context, str(exc))
            return replace(
                fallback, prompt_tokens=exc.prompt_tokens, completion_tokens=exc.completion_tokens
            )
        except BaseException:  # cancelled: what the call cost is unknown, the reservation stays
            self.breaker.release()
            raise
        self.breaker.success()
        await self._settle(key, plan.prompt_tokens + plan.completion_tokens)
        return plan

    async def _reserve(self, key: str, day: date, tokens: int) -> str | None:
        """``None`` when ``tokens`` are reserved under ``key``, else why the LLM may not be
        called."""
        if self._daily <= 0:
            return BUDGET_SPENT
        try:
            await self._pay_owed()
            reserved = await self._ledger.reserve_tokens(key, day, tokens, self._daily)
        except DatabaseUnavailable:
            self._owed[key] = 0  # the reservation may have landed: give it back
            return BUDGET_UNKNOWN
        except asyncio.CancelledError:
            self._owed[key] = 0  # no call will be made: give back what may have landed
            raise
        return None if reserved else BUDGET_SPENT

    async def _settle(self, key: str, spent: int) -> None:
        self._owed[key] = spent
        try:
            await self._pay_owed()
        except DatabaseUnavailable as exc:
            log.warning(
                "the LLM tokens of this plan are counted against the budget once the "
                "database answers again: %s",
                exc,
            )

    async def _pay_owed(self) -> None:
        """Write the settlements owed, one payer at a time; each is written once however
        often it is asked (``TokenLedger.settle_tokens``), so one whose answer was lost is
        simply asked again."""
        async with self._paying:
            for key, spent in list(self._owed.items()):
                await self._ledger.settle_tokens(key, spent)
                del self._owed[key]
