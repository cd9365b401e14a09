"""Once a defect: planner/chain.py _reserve: a plan cancelled while its reservation is being
written (a stop's cancel, an admin's disable) leaves the whole reservation counted forever: the
write completes in the background (every repository operation is shielded), the LLM is never
called, and no settlement is owed for the key (unlike the DatabaseUnavailable path, which owes
0). The day's ledger is then above what the plans used."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text

from heatup_daemon.config.sections import PlannerSettings
from heatup_daemon.planner.chain import CircuitBreaker, LLMWithFallback
from heatup_daemon.planner.fallback import FallbackPlanner
from heatup_daemon.testing import FakeClock
from tests.conftest import migrated_repository
from tests.worlds import START


class StubLLM:
    calls = 0

    def tokens_at_most(self, context: Any) -> int:
        return 5000

    async def plan(self, context: Any) -> Any:
        StubLLM.calls += 1
        raise AssertionError("not reached")

    async def aclose(self) -> None:
        pass


async def test_a_cancelled_reservation_is_never_given_back(tmp_path: Path) -> None:
    async with migrated_repository(f"sqlite+aiosqlite:///{tmp_path / 't.db'}") as repo:
        clock = FakeClock(START)
        chain = LLMWithFallback(
            StubLLM(),  # type: ignore[arg-type]
            FallbackPlanner(PlannerSettings(seed=1)),
            CircuitBreaker(3, 60, clock),
            repo,
            daily_token_budget=100_000,
            clock=clock,
        )
        busy = asyncio.ensure_future(repo._write(lambda db: time.sleep(0.3)))  # writer busy
        await asyncio.sleep(0.05)
        planning = asyncio.create_task(chain.plan(None))  # type: ignore[arg-type]
        for _ in range(5):
            await asyncio.sleep(0)  # it awaits reserve_tokens (queued behind `busy`)
        planning.cancel()  # a stop that ran out of time, or a disable
        await asyncio.gather(planning, busy, return_exceptions=True)
        await repo.drain()
        day = START.date()
        spent = await repo.tokens_spent(day)
        await repo._read(
            lambda db: db.execute(
                text("select key, reserved, settled from llm_token_settlements")
            ).all()
        )
        # A later plan pays what is owed: nothing is, so nothing changes.
        await chain._pay_owed()
        assert spent in (0, 5000)  # the cancelled write may have landed
        assert await repo.tokens_spent(day) == 0  # given back: the plan used no tokens
