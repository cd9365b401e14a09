"""The LLM of the simulated world: an ``LLMPlanner`` stand-in behind heatup's real chain
(``planner.chain.LLMWithFallback``: the token budget, the circuit breaker, the fallback).

``SimLLM`` keeps ``LLMPlanner``'s contract: ``tokens_at_most(context)`` bounds what a plan
for ``context`` costs, ``plan`` answers a valid plan with its token counts or raises
``PlannerUnavailable`` (with the tokens an unusable answer cost). Its answers come fast,
slowly (up to the SDK's timeout and retry), or fail, by the seed. Every call is logged with
what it reserved and cost: the truth the token ledger is held to.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Final

from heatup_daemon.config.sections import PlannerSettings
from heatup_daemon.enums import LLMOutcome, PlanSource
from heatup_daemon.errors import PlannerUnavailable
from heatup_daemon.planner.fallback import FallbackPlanner
from heatup_daemon.planner.llm import MAX_ANSWER_TOKENS
from heatup_daemon.planner.model import Plan, PlanContext
from tests.sim.faults import Fault, Faults
from tests.sim.loop import log_fields

PROMPT_BASE: Final = 600
PROMPT_PER_CHANNEL: Final = 14
PROMPT_PER_RUN: Final = 20
FAST_S: Final = (0.3, 4.0)
# The SDK's timeout (llm.timeout_s) and one retry: the longest a call may take.
SLOWEST_S: Final = 40.0


@dataclass(slots=True)
class Call:
    node: object
    run: int | None
    day: date
    reserved: int  # what tokens_at_most said for its context
    started_s: float
    state: str = "open"  # done (cost known), cancelled (cost unknown)
    cost: int = 0


@dataclass
class LLMWorld:
    time: Callable[[], float]
    today: Callable[[], date]
    calls: list[Call] = field(default_factory=list)


class SimLLM:
    """One node's LLM client."""

    def __init__(
        self,
        world: LLMWorld,
        node: object,
        faults: Faults,
        bounds: PlannerSettings,
        trace: Callable[..., None],
    ) -> None:
        self._world = world
        self._node = node
        self._faults = faults
        self._trace = trace
        self._planner = FallbackPlanner(bounds, random.Random(faults.rng.random()))

    async def aclose(self) -> None:
        pass

    def tokens_at_most(self, context: PlanContext) -> int:
        prompt = (
            PROMPT_BASE
            + PROMPT_PER_CHANNEL * len(context.pool)
            + PROMPT_PER_RUN * len(context.recent_runs)
        )
        return prompt + MAX_ANSWER_TOKENS

    async def plan(self, context: PlanContext) -> Plan:
        world, faults = self._world, self._faults
        rng = faults.rng
        if getattr(self._node, "dead", False):
            raise asyncio.CancelledError
        reserved = self.tokens_at_most(context)
        name = str(getattr(self._node, "name", "?"))
        call = Call(self._node, log_fields().get("run"), world.today(), reserved, world.time())
        world.calls.append(call)
        fault = faults.draw()
        try:
            if fault is Fault.SLOW or fault is Fault.TIMEOUT:
                await asyncio.sleep(rng.uniform(0, SLOWEST_S))
            elif fault is Fault.DELAY:
                await asyncio.sleep(rng.uniform(0, faults.rates.delay_s))
            else:
                await asyncio.sleep(rng.uniform(*FAST_S))
        except asyncio.CancelledError:
            call.state = "cancelled"
            self._trace(name, "llm", call.run, reserved, "cancelled")
            raise
        prompt = reserved - MAX_ANSWER_TOKENS - rng.randint(0, PROMPT_BASE // 2)
        completion = rng.randint(40, MAX_ANSWER_TOKENS)
        call.state = "done"
        if fault in (Fault.FAIL, Fault.TIMEOUT):
            call.cost = 0
            self._trace(name, "llm", call.run, reserved, "failed", 0)
            raise PlannerUnavailable("LLM failed: timeout", LLMOutcome.TIMEOUT)
        if fault is Fault.LOSE:  # an answer that cannot be used still costs its tokens
            call.cost = prompt + completion
            self._trace(name, "llm", call.run, reserved, "unusable", call.cost)
            raise PlannerUnavailable(
                "LLM failed: the answer was cut off at the token limit",
                LLMOutcome.UNUSABLE_ANSWER,
                prompt,
                completion,
            )
        call.cost = prompt + completion
        self._trace(name, "llm", call.run, reserved, "ok", call.cost)
        return Plan(
            self._planner.actions(context),
            PlanSource.LLM,
            model="sim-llm",
            prompt_tokens=prompt,
            completion_tokens=completion,
        )
